"""In-process fakes of a node (nonn.v1.Student) for unit tests of NodeLink, FanOut and the
gateway: a thread-pool gRPC server in this process whose answers a test scripts."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from concurrent import futures

import grpc
import numpy as np

from nonn.edge import nonn_pb2 as pb
from nonn.edge import nonn_pb2_grpc as pb_grpc
from nonn.edge import serving
from nonn.edge.node import COMPUTE_TIME_KEY, MAX_MESSAGE_KEY
from nonn.edge.node_link import Job
from nonn.edge.tensors import from_tensor, to_tensor

COMPUTE_US = 123


def first_pixels(x: np.ndarray, features: int) -> np.ndarray:
    """What a FakeStudent answers by default: each image's first value, `features` times."""
    return np.repeat(x.reshape(len(x), -1)[:, :1].astype(np.float32), features, axis=1)


class FakeStudent(pb_grpc.StudentServicer):
    """Answers every request with features(x) (default: first_pixels), after `delay_s`; records
    the requests. `fail(request, k)` may return (code, message) to answer the k-th request with
    an error instead. `stream=False` refuses FeaturesStream as an older node does."""

    def __init__(self, features: int = 4, *, delay_s: float = 0.0, stream: bool = True, max_message: int = 0,
                 fail=None, compute=None, reverse_pairs: bool = False, abort_first_stream: bool = False):
        self.features = features
        self.delay_s = delay_s
        self.stream = stream
        self.max_message = max_message
        self.fail = fail or (lambda request, k: None)
        self.compute = compute or (lambda x: first_pixels(x, self.features))
        self.reverse_pairs = reverse_pairs  # hold every odd request and answer the pair in reverse order
        self.abort_first_stream = abort_first_stream
        self.requests: list[pb.FeaturesRequest] = []
        self.streams = 0
        self._lock = threading.Lock()

    def reply(self, request: pb.FeaturesRequest) -> pb.FeaturesReply:
        with self._lock:
            k = len(self.requests)
            self.requests.append(request)
        if self.delay_s:
            time.sleep(self.delay_s)
        problem = self.fail(request, k)
        if problem is not None:
            code, message = problem
            return pb.FeaturesReply(id=request.id, code=code.value[0], error=message)
        x = from_tensor(request.tensor)
        return pb.FeaturesReply(id=request.id, features=to_tensor(self.compute(x)), compute_us=COMPUTE_US)

    def FeaturesStream(self, request_iterator, context):
        if not self.stream:
            context.abort(grpc.StatusCode.UNIMPLEMENTED, "Method not implemented!")
        with self._lock:
            self.streams += 1
            first = self.streams == 1
        context.send_initial_metadata(((MAX_MESSAGE_KEY, str(self.max_message)),) if self.max_message else ())
        held = None
        for request in request_iterator:
            if first and self.abort_first_stream:
                context.abort(grpc.StatusCode.INTERNAL, "the fake node broke its stream")
            reply = self.reply(request)
            if not self.reverse_pairs:
                yield reply
            elif held is None:
                held = reply
            else:
                yield reply
                yield held
                held = None
        if held is not None:
            yield held

    def Features(self, request, context):
        reply = self.reply(pb.FeaturesRequest(id=0, tensor=request))
        if reply.code:
            code = next(c for c in grpc.StatusCode if c.value[0] == reply.code)
            context.abort(code, reply.error)
        context.set_trailing_metadata(((COMPUTE_TIME_KEY, str(reply.compute_us)),))
        return reply.features


@contextlib.contextmanager
def fake_node(servicer: FakeStudent, *, max_receive: int | None = None):
    """Serve `servicer` on 127.0.0.1 (plaintext) in this process; yields its address."""
    options = [] if max_receive is None else [("grpc.max_receive_message_length", max_receive)]
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8), options=options)
    pb_grpc.add_StudentServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.stop(0).wait(5)


def on_loop(coro, timeout: float = 20.0):
    """Run a coroutine on the serving loop, where the gateway runs its links."""
    return serving.run_on_loop(coro, timeout)


def jobs_for(images, timeout: float = 5.0) -> list[Job]:
    """One Job per image, due in `timeout` seconds (call on the loop)."""
    loop = asyncio.get_running_loop()
    return [Job(x, loop.create_future(), loop.time() + timeout) for x in images]


def images(n: int, shape=(1, 3, 2, 2), dtype=np.float32, start: float = 1.0) -> list[np.ndarray]:
    """`n` images whose first values are start, start + 1, ... (so rows can be told apart)."""
    out = []
    for i in range(n):
        x = np.zeros(shape, dtype=dtype)
        x.flat[0] = start + i
        out.append(x)
    return out
