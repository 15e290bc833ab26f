"""FanOut against fake links: what leaves when, in which batches, to which node."""

from __future__ import annotations

import asyncio

import grpc
import numpy as np

from nonn.edge.fan_out import FanOut
from nonn.edge.node_link import Answer, Job


class FakeLink:
    """What FanOut sees of a NodeLink; records what it is sent and what it rejects."""

    def __init__(self, max_batch_bytes: int | None = None):
        self.sent: list[list[Job]] = []
        self.rejected: list[tuple[list[Job], str]] = []
        self.busy = False
        self.in_flight = 0
        self.max_batch_bytes = max_batch_bytes

    def send(self, jobs: list[Job]) -> None:
        self.sent.append(jobs)

    def reject(self, jobs: list[Job], why: str) -> None:
        self.rejected.append((jobs, why))
        for job in jobs:
            job.future.set_result(Answer(grpc.StatusCode.UNAVAILABLE, why))

    def values(self) -> list[list[float]]:
        """The first value of each image, per batch sent."""
        return [[float(job.x.flat[0]) for job in batch] for batch in self.sent]


def _image(loop, links, value: float, *, dtype=np.float32, nbytes: int = 16) -> list[Job]:
    """One image's K jobs (the same pixels for every node, as the gateway makes them)."""
    x = np.zeros(nbytes // np.dtype(dtype).itemsize, dtype=dtype)
    x[0] = value
    return [Job(x, loop.create_future(), loop.time() + 5.0) for _ in links]


def _run(test):
    async def main():
        return test(asyncio.get_running_loop())

    return asyncio.run(main())


def test_an_image_that_finds_every_node_idle_leaves_at_once_to_every_node():
    def test(loop):
        links = [FakeLink(), FakeLink(), FakeLink()]
        fan = FanOut(links)
        jobs = _image(loop, links, 1.0)
        fan.submit(jobs)
        assert [link.sent for link in links] == [[[jobs[0]]], [[jobs[1]]], [[jobs[2]]]]

    _run(test)


def test_images_that_arrive_while_a_node_is_busy_leave_together_when_it_is_done():
    def test(loop):
        links = [FakeLink(), FakeLink()]
        fan = FanOut(links)
        links[1].busy = True
        images = [_image(loop, links, float(v)) for v in (1, 2, 3)]
        for jobs in images:
            fan.submit(jobs)
        assert all(link.sent == [] for link in links)  # even the idle node waits: batches line up
        links[1].busy = False
        fan.pump()
        for k, link in enumerate(links):
            assert link.sent == [[jobs[k] for jobs in images]]  # one batch, oldest first, to every node

    _run(test)


def test_a_full_batch_leaves_although_a_node_is_busy():
    def test(loop):
        links = [FakeLink(), FakeLink()]
        links[0].busy = True
        fan = FanOut(links, max_batch=2)
        for v in (1, 2, 3):
            fan.submit(_image(loop, links, float(v)))
        assert links[0].values() == links[1].values() == [[1.0, 2.0]]
        links[0].busy = False
        fan.pump()
        assert links[1].values() == [[1.0, 2.0], [3.0]]

    _run(test)


def test_batches_stay_within_the_bytes_a_message_may_carry():
    def test(loop):
        links = [FakeLink(max_batch_bytes=100), FakeLink()]
        fan = FanOut(links, max_batch_bytes=1000)  # the links' own limit is the smaller
        links[0].busy = True
        for v in range(5):
            fan.submit(_image(loop, links, float(v), nbytes=40))
        # 2 x 40 bytes fill a 100-byte message as far as it goes: a batch by bytes leaves at once
        assert links[1].values() == [[0.0, 1.0], [2.0, 3.0]]
        links[0].busy = False
        fan.pump()
        assert links[0].values() == links[1].values() == [[0.0, 1.0], [2.0, 3.0], [4.0]]

    _run(test)


def test_a_batch_holds_one_dtype():
    def test(loop):
        links = [FakeLink()]
        links[0].busy = True
        fan = FanOut(links)
        fan.submit(_image(loop, links, 1.0))
        fan.submit(_image(loop, links, 2.0, dtype=np.uint8))
        fan.submit(_image(loop, links, 3.0))
        links[0].busy = False
        fan.pump()
        assert [[job.x.dtype for job in batch] for batch in links[0].sent] == [
            [np.float32], [np.uint8], [np.float32]]

    _run(test)


def test_images_given_up_on_are_not_sent():
    def test(loop):
        links = [FakeLink(), FakeLink()]
        links[0].busy = True
        fan = FanOut(links)
        late, failed, live = (_image(loop, links, float(v)) for v in (1, 2, 3))
        for jobs in (late, failed, live):
            fan.submit(jobs)
        late[0].dropped = True  # its deadline passed
        failed[1].future.set_result(Answer(grpc.StatusCode.UNAVAILABLE, "node 1 is down"))
        links[0].busy = False
        fan.pump()
        assert links[0].values() == links[1].values() == [[3.0]]

    _run(test)


def test_a_node_with_too_many_unanswered_batches_gets_its_images_failed_and_the_others_still_go():
    def test(loop):
        links = [FakeLink(), FakeLink()]
        links[1].in_flight = 4
        fan = FanOut(links, max_in_flight=4)
        jobs = _image(loop, links, 1.0)
        fan.submit(jobs)
        assert links[0].sent == [[jobs[0]]] and links[1].sent == []
        assert links[1].rejected[0][0] == [jobs[1]] and "hung" in links[1].rejected[0][1]
        assert jobs[1].future.result().code == grpc.StatusCode.UNAVAILABLE

    _run(test)


def test_the_images_of_one_client_message_leave_together():
    def test(loop):
        links = [FakeLink()]
        fan = FanOut(links)
        fan.expect(3)
        fan.submit(_image(loop, links, 1.0))
        fan.submit(_image(loop, links, 2.0))
        assert links[0].sent == []
        fan.submit(_image(loop, links, 3.0))
        assert links[0].values() == [[1.0, 2.0, 3.0]]

    _run(test)


def test_an_announced_image_that_never_comes_holds_the_others_one_turn_only():
    async def main():
        loop = asyncio.get_running_loop()
        links = [FakeLink()]
        fan = FanOut(links)
        fan.expect(3)
        fan.submit(_image(loop, links, 1.0))
        fan.submit(_image(loop, links, 2.0))  # the third was malformed and never submitted
        assert links[0].sent == []
        await asyncio.sleep(0)
        assert links[0].values() == [[1.0, 2.0]]
        fan.submit(_image(loop, links, 3.0))  # nothing announced any more: leaves at once
        assert links[0].values() == [[1.0, 2.0], [3.0]]

    asyncio.run(main())


def test_close_answers_the_images_that_never_left():
    def test(loop):
        links = [FakeLink(), FakeLink()]
        links[0].busy = True
        fan = FanOut(links)
        jobs = _image(loop, links, 1.0)
        fan.submit(jobs)
        fan.close()
        assert all(job.future.result().code == grpc.StatusCode.CANCELLED for job in jobs)
        assert all(link.sent == [] for link in links)

    _run(test)
