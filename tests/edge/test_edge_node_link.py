"""NodeLink against in-process fake nodes: batches, rows, order, errors, fallbacks, byte order."""

from __future__ import annotations

import asyncio
import math

import grpc
import numpy as np
from fake_nodes import COMPUTE_US, FakeStudent, fake_node, images, jobs_for, on_loop

from nonn.edge.node_link import MESSAGE_HEADROOM_BYTES, NodeLink
from nonn.edge.tensors import from_tensor

OK = grpc.StatusCode.OK


async def _through(address: str, batches, *, features: int = 4, timeout: float = 5.0, describe: str = "",
                   after=None):
    """Send each batch of images over one NodeLink to `address`; the answers per batch and the link."""
    channel = grpc.aio.insecure_channel(address)
    link = NodeLink(channel, features, describe=describe)
    try:
        sent = []
        for batch in batches:
            jobs = jobs_for(batch, timeout)
            link.send(jobs)
            sent.append(jobs)
        answers = [[await asyncio.wait_for(job.future, timeout + 5) for job in jobs] for jobs in sent]
        if after is not None:
            answers.append(await after(link))
        return answers, link
    finally:
        await link.close()
        await channel.close()


def test_a_batch_is_one_message_and_every_image_gets_its_own_row():
    node = FakeStudent(features=4)
    with fake_node(node) as address:
        [answers], link = on_loop(_through(address, [images(3)]))
    assert len(node.requests) == 1 and list(node.requests[0].tensor.shape) == [3, 3, 2, 2]
    sent = node.requests[0].tensor.ByteSize()
    for i, answer in enumerate(answers):
        assert answer.code is OK, answer.details
        np.testing.assert_array_equal(answer.features, np.full((1, 4), 1.0 + i, np.float32))
        assert answer.batch_size == 3 and answer.compute_us == COMPUTE_US
        assert answer.bytes_sent == math.ceil(sent / 3) and answer.bytes_received > 0
    assert link.in_flight == 0 and not link.busy


def test_replies_that_come_back_out_of_order_reach_their_own_images():
    node = FakeStudent(features=2, reverse_pairs=True)
    with fake_node(node) as address:
        answers, _ = on_loop(_through(address, [images(2, start=1.0), images(1, start=10.0)], features=2))
    assert [a.features[0, 0] for a in answers[0]] == [1.0, 2.0]
    assert answers[1][0].features[0, 0] == 10.0 and answers[1][0].batch_size == 1


def test_big_endian_pixels_travel_little_endian_and_arrive_as_their_values():
    node = FakeStudent(features=3)
    x = (np.arange(12).reshape(1, 3, 2, 2) + 1.5).astype(">f4")
    assert x.dtype.byteorder == ">"
    with fake_node(node) as address:
        [[answer]], _ = on_loop(_through(address, [[x]], features=3))
    tensor = node.requests[0].tensor
    assert tensor.dtype == "float32" and tensor.data == x.astype("<f4").tobytes()
    np.testing.assert_array_equal(from_tensor(tensor), x)
    assert answer.code is OK, answer.details
    np.testing.assert_array_equal(answer.features, np.full((1, 3), 1.5, np.float32))


def test_a_non_contiguous_batch_arrives_in_c_order():
    node = FakeStudent(features=1, compute=lambda x: x.reshape(len(x), -1)[:, 1:2].astype(np.float32))
    x = np.arange(12, dtype=np.float32).reshape(1, 2, 2, 3).transpose(0, 3, 1, 2)  # NHWC seen as NCHW
    assert not x.flags.c_contiguous
    with fake_node(node) as address:
        [[answer]], _ = on_loop(_through(address, [[x]], features=1))
    np.testing.assert_array_equal(from_tensor(node.requests[0].tensor), x)
    assert answer.features[0, 0] == np.ascontiguousarray(x).flat[1]


def test_the_request_carries_the_time_left_before_the_deadline():
    node = FakeStudent()
    with fake_node(node) as address:
        on_loop(_through(address, [images(1)], timeout=2.0))
    timeout_us = node.requests[0].timeout_us
    assert 1.0e6 < timeout_us <= 2.0e6


def test_an_error_reply_fails_its_batch_only_and_the_stream_goes_on():
    refused = (grpc.StatusCode.INVALID_ARGUMENT, "expected a float32 tensor")
    node = FakeStudent(fail=lambda request, k: refused if k == 0 else None)
    with fake_node(node) as address:
        answers, _ = on_loop(_through(address, [images(2), images(1, start=5.0)]))
    assert [(a.code, a.details) for a in answers[0]] == [refused, refused]
    assert answers[1][0].code is OK and answers[1][0].features[0, 0] == 5.0
    assert node.streams == 1


def test_features_of_the_wrong_shape_fail_naming_what_to_check():
    node = FakeStudent(features=5)
    with fake_node(node) as address:
        [[answer]], _ = on_loop(_through(address, [images(1)], features=4, describe="is it serving student_0.onnx?"))
    assert answer.code == grpc.StatusCode.FAILED_PRECONDITION
    assert "[1, 5], expected [1, 4]" in answer.details and "student_0.onnx" in answer.details


def test_a_node_without_streams_is_called_with_features_instead():
    node = FakeStudent(features=2, stream=False)
    with fake_node(node) as address:
        answers, link = on_loop(_through(address, [images(2), images(1, start=7.0)], features=2))
    assert not link.streams
    assert [a.features[0, 0] for a in answers[0]] == [1.0, 2.0] and answers[1][0].features[0, 0] == 7.0
    assert all(a.code is OK and a.compute_us == COMPUTE_US for batch in answers for a in batch)


def test_a_broken_stream_fails_its_batches_and_the_next_batch_opens_another():
    node = FakeStudent(abort_first_stream=True)

    async def again(link):
        jobs = jobs_for(images(1, start=3.0))
        link.send(jobs)
        return [await asyncio.wait_for(jobs[0].future, 10)]

    with fake_node(node) as address:
        answers, link = on_loop(_through(address, [images(2)], after=again))
    assert all(a.code == grpc.StatusCode.UNAVAILABLE and "the stream broke" in a.details for a in answers[0])
    assert answers[1][0].code is OK and answers[1][0].features[0, 0] == 3.0
    assert node.streams == 2 and link.streams


def test_a_batch_larger_than_the_node_takes_goes_in_smaller_ones():
    limit = 600  # bytes; an image is 4 x 48 pixels of float32 = 192 bytes, so one fits, two do not
    node = FakeStudent(max_message=limit)
    with fake_node(node) as address:
        [answers], link = on_loop(_through(address, [images(4, shape=(1, 3, 4, 4))]))
    assert [a.code for a in answers] == [OK] * 4
    assert [a.features[0, 0] for a in answers] == [1.0, 2.0, 3.0, 4.0]
    assert link.max_batch_bytes == limit - MESSAGE_HEADROOM_BYTES
    assert len(node.requests) == 4 and all(r.ByteSize() <= limit for r in node.requests)


def test_a_node_that_refuses_a_message_as_too_large_gets_smaller_batches():
    node = FakeStudent()
    with fake_node(node, max_receive=1200) as address:  # a 4-image batch is about 3 KB
        [answers], link = on_loop(_through(address, [images(4, shape=(1, 3, 8, 8))]))
    assert [a.code for a in answers] == [OK] * 4, [a.details for a in answers]
    assert [a.features[0, 0] for a in answers] == [1.0, 2.0, 3.0, 4.0]
    assert link.max_batch_bytes is not None and link.max_batch_bytes < 4 * 768


def test_an_image_too_large_alone_fails_naming_the_flag():
    node = FakeStudent()
    with fake_node(node, max_receive=1024) as address:
        [[answer]], _ = on_loop(_through(address, [images(1, shape=(1, 3, 16, 16))]))
    assert answer.code == grpc.StatusCode.RESOURCE_EXHAUSTED and "--max-message-bytes" in answer.details


def test_a_closed_link_answers_cancelled_without_sending():
    node = FakeStudent()

    async def closed(address):
        channel = grpc.aio.insecure_channel(address)
        link = NodeLink(channel, 4)
        await link.close()
        jobs = jobs_for(images(2))
        link.send(jobs)
        answers = [job.future.result() for job in jobs]  # answered at once
        await channel.close()
        return answers

    with fake_node(node) as address:
        answers = on_loop(closed(address))
    assert all(a.code == grpc.StatusCode.CANCELLED and "stopping" in a.details for a in answers)
    assert node.requests == []


def test_a_node_that_is_down_answers_unavailable():
    async def down():
        channel = grpc.aio.insecure_channel("127.0.0.1:1")
        link = NodeLink(channel, 4)
        jobs = jobs_for(images(1))
        link.send(jobs)
        try:
            return await asyncio.wait_for(jobs[0].future, 10)
        finally:
            await link.close()
            await channel.close()

    answer = on_loop(down())
    assert answer.code == grpc.StatusCode.UNAVAILABLE


def test_on_idle_runs_when_a_batch_is_done():
    node = FakeStudent()
    calls = []

    async def run(address):
        channel = grpc.aio.insecure_channel(address)
        link = NodeLink(channel, 4, on_idle=lambda: calls.append(link.in_flight))
        jobs = jobs_for(images(1))
        link.send(jobs)
        assert link.in_flight == 1 and link.busy
        await asyncio.wait_for(jobs[0].future, 10)
        await link.close()
        await channel.close()

    with fake_node(node) as address:
        on_loop(run(address))
    assert calls[0] == 0  # run again when the stream closes
