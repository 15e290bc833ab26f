"""When the gateway sends what: every image goes to all K nodes, and the images that arrive
while a node is busy wait and leave together, as one batch per node.

An image that finds every node idle leaves at once (at the end of the loop's current turn,
with the others of the same client message), so at low load each travels alone. Images
that arrive while any node computes leave together when the last busy node answers, the
same batch to every node: an image is done only when all K nodes have answered it, so
batches that line up across the nodes finish together, and their answers go back to the
clients together. Under load one message then serves many images, which is what makes a
node's per-message cost small. A full batch (max_batch) does not wait, so that a slow link
stays busy; nothing ever waits for a batch to fill.
"""

from __future__ import annotations

import asyncio
from collections import deque

import grpc

from nonn.edge.node_link import Answer, Job, NodeLink
from nonn.edge.options import MAX_BATCH
MAX_IN_FLIGHT = 32  # batches sent to one node and not yet answered; beyond, its images fail at once


class FanOut:
    """Batches images across the K node links (each NodeLink's on_idle must call pump)."""

    def __init__(self, links: list[NodeLink], *, max_batch: int = MAX_BATCH, max_in_flight: int = MAX_IN_FLIGHT,
                 max_batch_bytes: int | None = None):
        self.links = links
        self.max_batch = max(1, int(max_batch))
        self.max_batch_bytes = max_batch_bytes  # the pixels of one batch: what a message may carry
        self.max_in_flight = max(1, int(max_in_flight))
        self._pending: deque[list[Job]] = deque()  # per image, its K jobs in partition order
        self._pump_soon = False
        self._expected = 0

    def expect(self, images: int) -> None:
        """`images` more are about to be submitted (one client message): send once they are all
        in, rather than at the end of the loop's turn."""
        self._expected += images

    def submit(self, jobs: list[Job]) -> None:
        """Queue one image's K jobs; they leave, when no node is busy, once the images that
        were announced with expect() are all in, else at the end of this turn of the loop
        with the images queued in the same turn."""
        self._pending.append(jobs)
        self._expected = max(0, self._expected - 1)
        if self._expected == 0:
            self.pump()
        elif not self._pump_soon:
            self._pump_soon = True  # an announced image may never come (a malformed one)
            asyncio.get_running_loop().call_soon(self._scheduled_pump)

    def _scheduled_pump(self) -> None:
        self._pump_soon = False
        self._expected = 0  # the images of one message are all submitted within one turn
        self.pump()

    def pump(self) -> None:
        """Send the waiting images: at once when no node is busy; while one is, only full batches."""
        while self._pending:
            if any(link.busy for link in self.links) and not self._full():
                return  # they leave together when the last busy node answers
            batch = self._take()
            if not batch:
                return
            for k, link in enumerate(self.links):
                jobs = [images[k] for images in batch]
                if link.in_flight >= self.max_in_flight:  # hung, or far slower than the deadline
                    link.reject(jobs, f"has {link.in_flight} batches it has not answered; it is hung or far "
                                      "slower than the deadline")
                else:
                    link.send(jobs)

    def close(self) -> None:
        """Answer the images that never left: the gateway is stopping."""
        while self._pending:
            for job in self._pending.popleft():
                if not job.future.done():
                    job.future.set_result(Answer(grpc.StatusCode.CANCELLED, "the gateway is stopping"))

    def _cap(self) -> int | None:
        """The bytes of pixels a message to every node may carry (None: no limit known)."""
        caps = [c for c in (self.max_batch_bytes, *(link.max_batch_bytes for link in self.links)) if c]
        return min(caps) if caps else None

    def _images(self) -> int:
        """Images per batch: max_batch, and no more than any node said it takes."""
        said = [link.max_batch_images for link in self.links if getattr(link, "max_batch_images", None)]
        return max(1, min([self.max_batch, *said]))

    def _full(self) -> bool:
        """Whether the waiting images make a full batch, by count or by bytes."""
        live = [jobs for jobs in self._pending if _live(jobs)]
        cap = self._cap()
        return len(live) >= self._images() or bool(cap and sum(jobs[0].x.nbytes for jobs in live) >= cap)

    def _take(self) -> list[list[Job]]:
        """Up to max_batch waiting images, oldest first, of one dtype, within the bytes a message
        to every node may carry; given-up ones are dropped."""
        cap = self._cap()
        images = self._images()
        batch: list[list[Job]] = []
        nbytes = 0
        while self._pending and len(batch) < images:
            jobs = self._pending[0]
            if not _live(jobs):
                self._pending.popleft()
                continue
            if batch and (jobs[0].x.dtype != batch[0][0].x.dtype or (cap and nbytes + jobs[0].x.nbytes > cap)):
                break
            nbytes += jobs[0].x.nbytes
            batch.append(self._pending.popleft())
        return batch


def _live(jobs: list[Job]) -> bool:
    """The gateway still waits for this image (its deadline has not passed, no node failed it)."""
    return not any(job.dropped or job.future.done() for job in jobs)
