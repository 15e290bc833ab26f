"""The gateway's side of one node: batches of images over a long-lived FeaturesStream, each
reply split back into one answer per image. fan_out.py decides what is sent when.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import time
from collections.abc import Callable

import grpc
import numpy as np
from google.protobuf.message import DecodeError

from nonn.edge import nonn_pb2 as pb
from nonn.edge.errors import TensorError
from nonn.edge.node import COMPUTE_TIME_KEY, MAX_BATCH_KEY, MAX_MESSAGE_KEY, MODEL_SHA256_KEY
from nonn.edge.tensors import from_tensor, to_tensor

FEATURES_METHOD = "/nonn.v1.Student/Features"
MESSAGE_HEADROOM_BYTES = 256  # a FeaturesRequest's fields beside the pixels (shape, dtype, id, timeout)
STREAM_METHOD = "/nonn.v1.Student/FeaturesStream"
_OK = grpc.StatusCode.OK
_CODES = {code.value[0]: code for code in grpc.StatusCode}


class Job:
    """One image for one node; `future` gets the node's Answer."""

    __slots__ = ("created", "deadline", "dropped", "future", "x")

    def __init__(self, x: np.ndarray, future: asyncio.Future, deadline: float):
        self.x, self.future, self.deadline = x, future, deadline  # deadline on the loop's clock
        self.created = time.perf_counter()
        self.dropped = False


class Answer:
    """What a node answered for one image (or why it did not)."""

    __slots__ = ("batch_size", "bytes_received", "bytes_sent", "code", "compute_us", "details", "done",
                 "features")

    def __init__(self, code: grpc.StatusCode, details: str = "", features: np.ndarray | None = None,
                 compute_us: int = 0, batch_size: int = 0, bytes_sent: int = 0, bytes_received: int = 0):
        self.code, self.details, self.features = code, details, features
        self.compute_us, self.batch_size = compute_us, batch_size
        self.bytes_sent, self.bytes_received = bytes_sent, bytes_received
        self.done = time.perf_counter()


class NodeLink:
    """Sends batches of jobs to one node and hands each job its row of the reply.

    A broken stream fails the batches on it and is opened again by the next batch, once the
    channel has reconnected. A node that refuses the stream (UNIMPLEMENTED: an older runtime;
    RESOURCE_EXHAUSTED: too many streams) is called with Features instead. `on_idle()` runs
    whenever a batch is done."""

    def __init__(self, channel: grpc.aio.Channel, features: int, *, describe: str = "",
                 on_idle: Callable[[], None] = lambda: None, expect_sha256: str | None = None,
                 model_name: str = "the manifest's model"):
        self._open_stream = channel.stream_stream(STREAM_METHOD, request_serializer=None,
                                                  response_deserializer=None)
        self._features_call = channel.unary_unary(FEATURES_METHOD, request_serializer=None,
                                                  response_deserializer=None)
        self.features = int(features)
        self.describe = describe  # e.g. "is it serving student_0.onnx?"
        self.on_idle = on_idle
        self._outbox: asyncio.Queue | None = None
        self._call = None
        self._batches: dict[int, tuple[object, list[Job], int]] = {}  # id -> (call or None, jobs, bytes sent)
        self._ids = itertools.count(1)
        self._closing = False
        self._accepted: set = set()  # streams the node accepted (its initial metadata came)
        self.max_batch_bytes: int | None = None  # learned when the node refused a batch as too large
        self.max_batch_images: int | None = None  # what the node said it takes (its stream's metadata)
        self.expect_sha256 = expect_sha256.lower() if expect_sha256 else None
        self.model_name = model_name
        self._refused: dict = {}  # stream -> why the gateway refused the node on it
        self._tasks: set[asyncio.Task] = set()  # the loop keeps only weak references to tasks
        self.streams = True  # False once the node refused the stream

    # -- what the fan-out calls ---------------------------------------------------------

    @property
    def in_flight(self) -> int:
        """Batches sent and not yet answered."""
        return len(self._batches)

    @property
    def busy(self) -> bool:
        """Whether some image the gateway still waits for is with the node (batches whose
        images all gave up, a hung node's, do not count)."""
        return any(not job.future.done() for _, jobs, _ in self._batches.values() for job in jobs)

    def send(self, jobs: list[Job]) -> None:
        """Send the jobs (same dtype) to the node as one batch."""
        if self._closing:
            for job in jobs:
                self._resolve(job, Answer(grpc.StatusCode.CANCELLED, "the gateway is stopping"))
            return
        self._send(jobs)

    def reject(self, jobs: list[Job], why: str) -> None:
        """Answer the jobs UNAVAILABLE without sending them (the other nodes still get theirs)."""
        for job in jobs:
            self._resolve(job, Answer(grpc.StatusCode.UNAVAILABLE, why))

    async def close(self) -> None:
        self._closing = True
        if self._call is not None:
            self._call.cancel()

    # -- the batches -------------------------------------------------------------------------

    def _send(self, jobs: list[Job]) -> None:
        loop = asyncio.get_running_loop()
        x = jobs[0].x if len(jobs) == 1 else np.concatenate([job.x for job in jobs])
        tensor = to_tensor(x)  # little-endian on the wire, whatever the array's byte order
        timeout = max(0.0, max(job.deadline for job in jobs) - loop.time())
        batch_id = next(self._ids)
        if not self.streams:
            self._batches[batch_id] = (None, jobs, tensor.ByteSize())
            self._spawn(self._call_features(batch_id, tensor, timeout))
            return
        if self._outbox is None:
            self._open()
        self._batches[batch_id] = (self._call, jobs, tensor.ByteSize())
        request = pb.FeaturesRequest(id=batch_id, tensor=tensor, timeout_us=max(1, int(timeout * 1e6)))
        self._outbox.put_nowait((batch_id, request.SerializeToString()))

    def _finish(self, batch_id: int, answer_of) -> None:
        """A batch's reply is in: answer each job."""
        entry = self._batches.pop(batch_id, None)
        if entry is None:
            return
        _, jobs, nbytes = entry
        for row, job in enumerate(jobs):
            self._resolve(job, answer_of(row, len(jobs), nbytes))
        self.on_idle()

    @staticmethod
    def _resolve(job: Job, answer: Answer) -> None:
        if not job.future.done():
            job.future.set_result(answer)

    def _answers(self, code: grpc.StatusCode, details: str, tensor: pb.Tensor | None, compute_us: int):
        """A function (row, batch size, bytes sent) -> that row's Answer, from one reply."""
        if code is not _OK:
            return lambda row, n, sent: Answer(code, details)
        try:
            features = from_tensor(tensor, allowed=("float32",))
        except TensorError as exc:
            problem = f"sent bad features: {exc}"
            return lambda row, n, sent: Answer(grpc.StatusCode.FAILED_PRECONDITION, problem)
        received = tensor.ByteSize()

        def answer(row: int, n: int, sent: int) -> Answer:
            if features.shape != (n, self.features):
                return Answer(grpc.StatusCode.FAILED_PRECONDITION,
                              f"sent features of shape {list(features.shape)}, expected [{n}, {self.features}]"
                              + (f"; {self.describe}" if self.describe else ""))
            # each image is charged its share of the batch's bytes
            return Answer(_OK, "", features[row:row + 1], compute_us, n, math.ceil(sent / n),
                          math.ceil(received / n))

        return answer

    # -- the streams ---------------------------------------------------------------------------

    def _open(self) -> None:
        outbox: asyncio.Queue = asyncio.Queue()

        async def requests():
            # Write nothing before the node has accepted the stream: a write racing its refusal
            # would turn the refusal (UNIMPLEMENTED, RESOURCE_EXHAUSTED) into INTERNAL.
            metadata = await call.initial_metadata()
            limit = _metadata_int(metadata, MAX_MESSAGE_KEY)
            if call.done():
                return
            served = _metadata_value(metadata, MODEL_SHA256_KEY)
            if self.expect_sha256 and served and served.lower() != self.expect_sha256:
                self._refused[call] = (f"serves a model with SHA-256 {served[:16]}..., not {self.model_name} "
                                       f"({self.expect_sha256[:16]}...) of the manifest; start it with that model")
                call.cancel()
                return
            self._accepted.add(call)
            if limit:  # the node says how large a message it takes: batches stay below it
                self.max_batch_bytes = min(self.max_batch_bytes or limit, max(1, limit - MESSAGE_HEADROOM_BYTES))
            images = _metadata_int(metadata, MAX_BATCH_KEY)
            if images and images > 0:  # and it says how many images: batches stay within that too
                self.max_batch_images = images
            while (item := await outbox.get()) is not None:
                batch_id, payload = item
                entry = self._batches.get(batch_id)
                if entry is None:
                    continue  # answered or failed meanwhile
                too_many = self.max_batch_images and len(entry[1]) > self.max_batch_images
                if ((limit and len(payload) > limit) or too_many) and len(entry[1]) > 1:
                    # batched before the node said what it takes: send its images in smaller batches
                    del self._batches[batch_id]
                    self._resend_smaller([entry[1]])
                    continue
                yield payload

        call = self._open_stream(requests(), wait_for_ready=False)
        self._outbox, self._call = outbox, call
        self._spawn(self._read(call, outbox))

    def _spawn(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _read(self, call, outbox: asyncio.Queue) -> None:
        code, details = grpc.StatusCode.UNAVAILABLE, "closed the stream"
        try:
            async for raw in call:
                try:
                    reply = pb.FeaturesReply.FromString(raw)
                except DecodeError as exc:
                    code, details = grpc.StatusCode.FAILED_PRECONDITION, f"sent a malformed reply: {exc}"
                    call.cancel()
                    break
                answer_code = _CODES.get(reply.code, grpc.StatusCode.UNKNOWN)
                self._finish(reply.id, self._answers(answer_code, reply.error,
                                                     reply.features if reply.code == 0 else None, reply.compute_us))
        except grpc.aio.AioRpcError as exc:
            code, details = exc.code(), exc.details() or ""
        except asyncio.CancelledError:
            code, details = grpc.StatusCode.CANCELLED, "the gateway is stopping"
        except Exception as exc:  # noqa: BLE001 (never leave a job waiting on a dead stream)
            code, details = grpc.StatusCode.UNAVAILABLE, f"the stream failed: {exc!r}"
        self._closed(call, outbox, code, details)

    def _closed(self, call, outbox: asyncio.Queue, code: grpc.StatusCode, details: str) -> None:
        """The stream ended: its batches fail with `code`, or go to Features when the node
        refused the stream; the next batch opens another stream."""
        outbox.put_nowait(None)
        if self._call is call:
            self._outbox, self._call = None, None
        accepted = call in self._accepted
        self._accepted.discard(call)
        refused_model = self._refused.pop(call, None)
        if refused_model is not None:
            code, details = grpc.StatusCode.FAILED_PRECONDITION, refused_model
        mine = [batch_id for batch_id, (on, _, _) in self._batches.items() if on is call]
        refused = {batch_id: self._batches.pop(batch_id)[1] for batch_id in mine}
        jobs = [job for batch in refused.values() for job in batch]
        if (not accepted and not self._closing
                and code in (grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.RESOURCE_EXHAUSTED)):
            self.streams = False  # the node refused the stream: an older node, or one serving too many
            for batch_id in mine:
                self._send(refused[batch_id])
            return
        if code == grpc.StatusCode.RESOURCE_EXHAUSTED and not self._closing:
            if self._resend_smaller(list(refused.values())):
                return
            details = f"refused a message as too large ({details}); raise its --max-message-bytes"
        elif self._closing:
            code, details = grpc.StatusCode.CANCELLED, "the gateway is stopping"
        elif refused_model is not None:
            pass
        elif code not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.FAILED_PRECONDITION):
            # The node's verdict on a batch travels in its reply; a stream that ends
            # otherwise (the node stopping, a broken connection) means the link is gone.
            code, details = grpc.StatusCode.UNAVAILABLE, f"the stream broke: {code.name}: {details}"
        for job in jobs:
            self._resolve(job, Answer(code, details))
        self.on_idle()

    def _resend_smaller(self, batches: list[list[Job]]) -> bool:
        """The node refused a message as too large: halve the batch size in bytes it is sent and
        send these jobs again in batches that small. False when no batch had more than one image
        to split (then they fail)."""
        if all(len(jobs) < 2 for jobs in batches):
            return False
        largest = max(sum(job.x.nbytes for job in jobs) for jobs in batches)
        too_many = self.max_batch_images and max(len(jobs) for jobs in batches) > self.max_batch_images
        if not too_many and (not self.max_batch_bytes or self.max_batch_bytes >= largest):
            self.max_batch_bytes = max(1, largest // 2)
        images = self.max_batch_images or max(len(jobs) for jobs in batches)
        for jobs in batches:
            chunk: list[Job] = []
            for job in (j for j in jobs if not (j.dropped or j.future.done())):
                if chunk and (len(chunk) >= images or (self.max_batch_bytes and sum(j.x.nbytes for j in chunk)
                                                       + job.x.nbytes > self.max_batch_bytes)):
                    self._send(chunk)
                    chunk = []
                chunk.append(job)
            if chunk:
                self._send(chunk)
        return True

    async def _call_features(self, batch_id: int, tensor: pb.Tensor, timeout: float) -> None:
        call = self._features_call(tensor.SerializeToString(), timeout=max(timeout, 1e-3), wait_for_ready=False)
        try:
            raw = await call
            metadata = await call.trailing_metadata()
        except grpc.aio.AioRpcError as exc:
            code, details = exc.code(), exc.details() or ""
            if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
                jobs = self._batches.get(batch_id, (None, []))[1]
                if len(jobs) > 1:  # too large for the node: send its images again in smaller batches
                    del self._batches[batch_id]
                    self._resend_smaller([jobs])
                    return
                details = f"refused a message as too large ({details}); raise its --max-message-bytes"
            answers = self._answers(code, details, None, 0)
        except asyncio.CancelledError:
            answers = self._answers(grpc.StatusCode.CANCELLED, "the gateway is stopping", None, 0)
        else:
            try:
                reply = pb.Tensor.FromString(raw)
            except DecodeError as exc:
                answers = self._answers(grpc.StatusCode.FAILED_PRECONDITION, f"sent a malformed reply: {exc}",
                                        None, 0)
            else:
                answers = self._answers(_OK, "", reply, _compute_us(metadata))
        self._finish(batch_id, answers)


def _metadata_value(metadata, wanted: str) -> str | None:
    """A value of the node's metadata (None: not said)."""
    for key, value in metadata or ():
        if key == wanted:
            return value.decode() if isinstance(value, bytes) else str(value)
    return None


def _metadata_int(metadata, wanted: str) -> int | None:
    """An integer the node said in its metadata, like the largest message it takes (None: not said)."""
    value = _metadata_value(metadata, wanted)
    try:
        return None if value is None else int(value)
    except ValueError:
        return None


def _compute_us(metadata) -> int:
    for key, value in metadata or ():
        if key == COMPUTE_TIME_KEY:
            try:
                return int(value)
            except ValueError:
                return 0
    return 0
