"""A node: one student network behind `nonn.v1.Student/Features`, on ONNX Runtime's CPU."""

from __future__ import annotations

import math
import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import numpy as np
import onnxruntime as ort
from grpc_health.v1 import health

from nonn.edge import nonn_pb2 as pb
from nonn.edge import nonn_pb2_grpc as pb_grpc
from nonn.edge import authz, serving
from nonn.edge.addresses import check_address
from nonn.edge.errors import EdgeError, TensorError
from nonn.edge.files import sha256_file
from nonn.edge.operations import NodeOperations
from nonn.edge.options import DEFAULT_MAX_MESSAGE_BYTES, NodeOptions
from nonn.edge.pixels import Normalisation
from nonn.edge.tensors import from_tensor, to_tensor
from nonn.edge.serving import UNDECODABLE
from nonn.edge.tls import server_credentials, server_identity

COMPUTE_TIME_KEY = "nonn-compute-us"  # trailing metadata: model time in microseconds
MAX_MESSAGE_KEY = "nonn-max-message-bytes"  # FeaturesStream's initial metadata: the largest request taken
MAX_BATCH_KEY = "nonn-max-batch-images"  # FeaturesStream's initial metadata: the most images per request
MODEL_SHA256_KEY = "nonn-model-sha256"  # FeaturesStream's and health Check's initial metadata
# The default --max-batch-images bounds one request's working memory: MEMORY_BOUND_BYTES at an
# estimated WORKING_FACTOR x the float32 input per image (a CNN's first layers are wider than its
# input, and ONNX Runtime's convolution buffers come on top), and its reply to one message.
MEMORY_BOUND_BYTES = 64 * 1024 * 1024  # x `workers` runs at once: fits a 512 MiB Raspberry Pi
WORKING_FACTOR = 64
REPLY_HEADROOM_BYTES = 256
SERVICE_NAME = "nonn.v1.Student"
MAX_STREAMS = 32  # FeaturesStream calls open at once (a gateway opens two); each holds a thread
ORT_DTYPES = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(uint8)": "uint8",
    "tensor(int64)": "int64",
}


M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter
MMAP_THRESHOLD_BYTES = 1024 * 1024
TRIM_AFTER_BYTES = 256 * 1024  # a batch whose float32 input is this large (21 images of 3x32x32) is followed by a trim


class MemoryTrimmer:
    """Gives the memory a large batch freed back to the system once no model runs any more.

    glibc keeps freed blocks in its heaps (and raises its mmap threshold as large blocks are
    freed), so a burst of large batches would stay resident for ever. malloc_trim(0) returns
    the free pages; it is called only after a batch of TRIM_AFTER_BYTES or more, when the last
    run in progress ends, so that ordinary batches keep their fast reuse of the heap. Where
    there is no glibc it does nothing."""

    def __init__(self):
        self._lock = threading.Lock()
        self._running = 0
        self._large = False
        self.trims = 0
        try:
            import ctypes

            libc = ctypes.CDLL(None)
            self._malloc_trim = libc.malloc_trim
            # blocks above 1 MiB (a large batch's tensors; a 16-image batch's stay below) are
            # mapped on their own and unmapped when freed, instead of glibc raising its threshold
            libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
        except (OSError, AttributeError):
            self._malloc_trim = None

    def started(self, nbytes: int) -> None:
        with self._lock:
            self._running += 1
            self._large = self._large or nbytes >= TRIM_AFTER_BYTES

    def finished(self) -> None:
        with self._lock:
            self._running -= 1
            trim = self._running == 0 and self._large
            if trim:
                self._large = False
        if trim and self._malloc_trim is not None:
            self._malloc_trim(0)
            self.trims += 1


def load_session(path: str | Path, intra_op_threads: int = 1) -> ort.InferenceSession:
    """An ONNX Runtime CPU session, or EdgeError when the file is missing or not a model."""
    path = Path(path)
    if not path.is_file():
        raise EdgeError(f"model {path} does not exist; pass the .onnx file written by `nonn export`")
    if intra_op_threads < 1:
        raise EdgeError(f"--threads must be at least 1, got {intra_op_threads}")
    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3
    # Batches of every size come and go: ONNX Runtime's CPU arena would keep the largest one's
    # memory for ever, and memory patterns only help fixed shapes. Plain malloc/free instead.
    options.enable_cpu_mem_arena = False
    options.enable_mem_pattern = False
    try:
        return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 (ORT raises its own unrelated exception types)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise EdgeError(f"cannot load ONNX model {path}: {first}; re-export it with `nonn export`") from None


def default_max_batch(input_shape, features, max_message_bytes: int) -> int:
    """Images per request: the fewer of what one reply message carries (float32 features) and
    what MEMORY_BOUND_BYTES of working memory holds (WORKING_FACTOR x the float32 input)."""
    per_input = 4 * math.prod(d if isinstance(d, int) and d > 0 else 1 for d in input_shape[1:])
    per_reply = 4 * (features if isinstance(features, int) and features > 0 else per_input // 4)
    by_reply = (int(max_message_bytes) - REPLY_HEADROOM_BYTES) // per_reply
    by_memory = MEMORY_BOUND_BYTES // (WORKING_FACTOR * per_input)
    return max(1, min(by_reply, by_memory))


def model_sha256(path: str | Path, expect: str | None = None) -> str:
    """The model file's SHA-256; EdgeError when `expect` is given and differs."""
    digest = sha256_file(Path(path))
    if expect is not None and digest != expect.strip().lower():
        raise EdgeError(f"model {Path(path).name} has SHA-256 {digest[:16]}..., not the expected "
                        f"{expect.strip()[:16]}...; copy the model named in the manifest again")
    return digest


def _first_line(exc: BaseException) -> str:
    """An exception's message, first line, without its type name."""
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else "no details"


def _shape_text(shape) -> str:
    return "[" + ", ".join(str(d) if isinstance(d, int) else "N" for d in shape) + "]"


class StudentServicer(pb_grpc.StudentServicer):
    """Validates the request against the model input, runs the model, reports compute time.

    Features answers one call; FeaturesStream answers a gateway's stream of requests, in
    order, on one thread (or concurrently when a link delay is emulated)."""

    def __init__(self, session: ort.InferenceSession, delay_ms: float = 0.0, workers: int = 4,
                 max_message_bytes: int | None = None, max_batch_images: int | None = None,
                 model_sha256: str | None = None):
        inputs, outputs = session.get_inputs(), session.get_outputs()
        if len(inputs) != 1 or len(outputs) < 1:
            raise EdgeError("a student model must have exactly one input and one output; re-export it")
        self.session = session
        self.input_name = inputs[0].name
        self.output_names = [outputs[0].name]
        self.input_shape = list(inputs[0].shape)
        self.input_dtype = ORT_DTYPES.get(inputs[0].type)
        if self.input_dtype is None:
            raise EdgeError(f"model input type {inputs[0].type} is not supported; export it with float32 input")
        self.delay_s = max(0.0, float(delay_ms)) / 1000.0
        self.max_message_bytes = max_message_bytes
        self.model_sha256 = model_sha256
        if max_batch_images is None:
            max_batch_images = default_max_batch(self.input_shape, outputs[0].shape[-1] if outputs[0].shape else None,
                                                 max_message_bytes or DEFAULT_MAX_MESSAGE_BYTES)
        if int(max_batch_images) < 1:
            raise EdgeError(f"--max-batch-images must be at least 1, got {max_batch_images}")
        self.max_batch_images = int(max_batch_images)
        # uint8 pixels are normalised here when the model carries its normalisation
        self.pixels = Normalisation.from_metadata(session.get_modelmeta().custom_metadata_map)
        if self.input_dtype != "float32" or (self.pixels is not None and isinstance(self.input_shape[1], int)
                                             and self.input_shape[1] != self.pixels.channels):
            self.pixels = None
        self._allowed = (self.input_dtype,) if self.pixels is None else (self.input_dtype, "uint8")
        self._expected = f"a {' or '.join(self._allowed)} tensor of shape {_shape_text(self.input_shape)}"
        self._inferences = threading.BoundedSemaphore(max(1, workers))  # model runs at once
        self._memory = MemoryTrimmer()
        self._streams = threading.BoundedSemaphore(MAX_STREAMS)
        self._lock = threading.Lock()
        self._waiting: dict[int, grpc.ServicerContext] = {}  # streams waiting for their next request
        self._stopping = False
        self.metrics = None  # a NodeMetrics told of every request (--metrics-listen)

    def _check(self, array: np.ndarray) -> None:
        fits = array.ndim == len(self.input_shape) and all(
            not isinstance(want, int) or want == got for want, got in zip(self.input_shape, array.shape)
        )
        if not fits or array.dtype.name not in self._allowed:
            raise TensorError(f"expected {self._expected}, got {array.dtype.name} {list(array.shape)}")

    def _infer(self, tensor: pb.Tensor):
        """(features, compute microseconds, None) or (None, 0, (status, what is wrong))."""
        if self.metrics is None:
            return self._run(tensor)
        started = time.perf_counter()
        result = self._run(tensor)
        self.metrics.observe(tensor, result, started)
        return result

    def _run(self, tensor: pb.Tensor):
        if tensor is UNDECODABLE:
            return None, 0, (grpc.StatusCode.INVALID_ARGUMENT, "the request is not a nonn.v1.Tensor message")
        images = tensor.shape[0] if tensor.shape else 0
        if images > self.max_batch_images:  # refused before anything is decoded or computed
            return None, 0, (grpc.StatusCode.RESOURCE_EXHAUSTED,
                             f"{images} images in one request; this node takes at most {self.max_batch_images} "
                             "(--max-batch-images): send smaller batches")
        try:
            array = from_tensor(tensor, allowed=self._allowed)
            self._check(array)
            if self.pixels is not None and array.dtype == np.uint8:
                array = self.pixels.apply(array)  # not counted as compute: the model's time alone is
        except TensorError as exc:
            return None, 0, (grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except ValueError as exc:  # pixels that do not broadcast against the model's normalisation
            return None, 0, (grpc.StatusCode.INVALID_ARGUMENT, f"expected {self._expected}: {exc}")
        with self._inferences:
            start = time.perf_counter_ns()
            self._memory.started(array.nbytes if array.dtype != np.uint8 else 4 * array.nbytes)
            try:
                (features,) = self.session.run(self.output_names, {self.input_name: array})
            except Exception as exc:  # noqa: BLE001 (report a model failure to the caller, keep serving)
                return None, 0, (grpc.StatusCode.INTERNAL, f"model failed: {_first_line(exc)}")
            finally:
                self._memory.finished()
            elapsed_us = (time.perf_counter_ns() - start) // 1000
        if not np.isfinite(features).all():
            if array.dtype.kind == "f" and not np.isfinite(array).all():
                return None, 0, (grpc.StatusCode.INVALID_ARGUMENT, "the input holds NaN or infinity")
            return None, 0, (grpc.StatusCode.INTERNAL, "the model computed NaN or infinite features from finite "
                                                       "input; check the model file")
        return features, elapsed_us, None

    def _delay(self, context: grpc.ServicerContext) -> None:
        """Hold the message for the emulated propagation delay. A message that would arrive
        after the caller's deadline is dropped there instead of holding a worker longer."""
        if self.delay_s:
            remaining = context.time_remaining()
            if remaining is not None and remaining <= self.delay_s:
                time.sleep(max(0.0, remaining))
                context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, "the emulated link delay exceeds the deadline")
            time.sleep(self.delay_s)

    def Features(self, request, context):
        self._delay(context)
        features, elapsed_us, problem = self._infer(request)
        if problem is not None:
            context.abort(*problem)
            return None
        context.set_trailing_metadata(((COMPUTE_TIME_KEY, str(elapsed_us)),))
        reply = to_tensor(features)
        self._delay(context)
        return reply

    def _answer(self, request: pb.FeaturesRequest) -> pb.FeaturesReply:
        try:
            features, elapsed_us, problem = self._infer(request.tensor)
        except Exception as exc:  # noqa: BLE001 (one bad request must not end the stream and its other requests)
            problem = (grpc.StatusCode.INTERNAL, f"the node failed on this request: {_first_line(exc)}")
        if problem is not None:
            code, error = problem
            return pb.FeaturesReply(id=request.id, code=code.value[0], error=error)
        return pb.FeaturesReply(id=request.id, features=to_tensor(features), compute_us=elapsed_us)

    def FeaturesStream(self, request_iterator, context):
        if not self._streams.acquire(blocking=False):
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                          f"this node already serves {MAX_STREAMS} streams; stop an unused gateway")
        try:
            # the stream is accepted: the caller may write, in messages no larger than this
            context.send_initial_metadata(self.stream_metadata())
            bad = [False]
            if self.delay_s:
                yield from self._delayed_stream(request_iterator, bad)
            else:
                while (request := self._next_request(request_iterator, context)) is not None:
                    if request is UNDECODABLE:
                        bad[0] = True
                        break
                    yield self._answer(request)
            if bad[0]:  # every request before it is answered; the ones after it are not read
                context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                              "a message on the stream is not a nonn.v1.FeaturesRequest; the stream ends here")
        finally:
            with self._lock:
                self._waiting.pop(id(context), None)
            self._streams.release()

    def stream_metadata(self) -> tuple[tuple[str, str], ...]:
        """What a FeaturesStream's initial metadata says about this node."""
        said = [(MAX_BATCH_KEY, str(self.max_batch_images))]
        if self.max_message_bytes:
            said.append((MAX_MESSAGE_KEY, str(self.max_message_bytes)))
        if self.model_sha256:
            said.append((MODEL_SHA256_KEY, self.model_sha256))
        return tuple(said)

    def _next_request(self, request_iterator, context):
        """The stream's next request, or None when it ended or the node is stopping."""
        with self._lock:
            if self._stopping:
                return None
            self._waiting[id(context)] = context
        request = next(request_iterator, None)
        with self._lock:
            self._waiting.pop(id(context), None)
        return request

    def end_streams(self) -> None:
        """The node is stopping: end the streams that wait for a request now, and the others
        after their current reply, instead of holding the shutdown for the grace period."""
        with self._lock:
            self._stopping = True
            waiting = list(self._waiting.values())
        for context in waiting:
            context.cancel()

    def _delayed_stream(self, request_iterator, bad: list):
        """Each request is held for the link delay on its way in and its reply on the way out,
        all at the same time like messages on a link; a request whose caller would give up
        before it arrives is answered DEADLINE_EXCEEDED when the caller gives up."""
        replies: queue.SimpleQueue = queue.SimpleQueue()
        done = object()

        def handle(request: pb.FeaturesRequest, received: float) -> None:
            timeout = request.timeout_us / 1e6 if request.timeout_us > 0 else None
            if timeout is not None and timeout <= self.delay_s:
                time.sleep(max(0.0, received + timeout - time.monotonic()))
                replies.put(pb.FeaturesReply(id=request.id, code=grpc.StatusCode.DEADLINE_EXCEEDED.value[0],
                                             error="the emulated link delay exceeds the deadline"))
                return
            time.sleep(max(0.0, received + self.delay_s - time.monotonic()))
            reply = self._answer(request)
            time.sleep(self.delay_s)
            replies.put(reply)

        with ThreadPoolExecutor(max_workers=32, thread_name_prefix="nonn-link") as pool:
            def read() -> None:
                try:
                    for request in request_iterator:
                        if request is UNDECODABLE:
                            bad[0] = True
                            return
                        pool.submit(handle, request, time.monotonic())
                except (grpc.RpcError, RuntimeError):
                    return  # the call was cancelled (RuntimeError: its pool already shut down)
                finally:
                    replies.put(done)

            reader = threading.Thread(target=read, name="nonn-link-reader", daemon=True)
            reader.start()
            while (reply := replies.get()) is not done:
                yield reply
        # the caller closed its side: answer what is still on its way
        while not replies.empty():
            reply = replies.get()
            if reply is not done:
                yield reply


def serve_node(model_path: str | Path, listen: str = "127.0.0.1:0", options: NodeOptions | None = None,
               **fields) -> tuple[grpc.Server, int]:
    """Start serving one student and return (server, bound port); stop it with server.stop(grace).

    `options` (a NodeOptions, whose fields document every setting), with any of its fields
    given as keywords on top: serve_node(model, insecure=True, delay_ms=5). Plaintext needs
    insecure=True.
    """
    server, port, *_ = _start(model_path, listen, NodeOptions.of(options, **fields))
    return server, port


class _Health(health.HealthServicer):
    """The standard health service; Check's initial metadata also names the model's SHA-256."""

    def __init__(self, model_sha256: str):
        super().__init__()
        self._said = ((MODEL_SHA256_KEY, model_sha256),)

    def Check(self, request, context):
        context.send_initial_metadata(self._said)
        return super().Check(request, context)


def node_policy(tls):
    """With mutual TLS: the Student service takes the gateway of this node's cluster alone."""
    me = server_identity(tls)
    if me is None:
        return ()
    return (authz.SyncAuthorizer(authz.Policy({f"/{SERVICE_NAME}/": authz.Rule(me.cluster, ("gateway",))},
                                              authz.Rule(me.cluster))),)


def _start(model_path, listen: str, options: NodeOptions):
    check_address(listen, "--listen")
    server_credentials(options.tls, options.insecure)  # refuse plaintext before paying for the model load
    interceptors = node_policy(options.tls)
    session = load_session(model_path, options.intra_op_threads)
    digest = model_sha256(model_path, options.expect_sha256)
    servicer = StudentServicer(session, options.delay_ms, options.workers, options.max_message_bytes,
                               options.max_batch_images, digest)
    ops = NodeOperations(options, model_path, digest)
    servicer.metrics, servicer.ops = ops.metrics, ops
    ops.start()
    try:
        server, port, mode, health_servicer = serving.start_server(
            lambda server: serving.add_servicer(server, SERVICE_NAME, {
                "Features": ("unary_unary", servicer.Features, pb.Tensor, pb.Tensor),
                "FeaturesStream": ("stream_stream", servicer.FeaturesStream, pb.FeaturesRequest, pb.FeaturesReply),
            }),
            [SERVICE_NAME],
            listen,
            options.tls,
            options.insecure,
            max_message_bytes=options.max_message_bytes,
            workers=options.workers,
            stream_threads=MAX_STREAMS,
            interceptors=interceptors,
            health_servicer=_Health(digest),
        )
    except BaseException:
        ops.close()
        raise
    return server, port, mode, health_servicer, servicer


def run_node(model_path: str | Path, listen: str = "127.0.0.1:0", options: NodeOptions | None = None,
             **fields) -> int:
    """Serve one student until SIGTERM/SIGINT; prints one line naming the bound address.
    Takes what serve_node takes."""
    server, port, mode, health, servicer = _start(model_path, listen, NodeOptions.of(options, **fields))
    banner = f"nonn node serving {Path(model_path).name} on {serving.bound_address(listen, port)} ({mode})"

    def stop(grace: float) -> None:
        serving.stop_server(server, health, grace, servicer.end_streams)
        servicer.ops.close()

    return serving.serve_until_signal(stop, banner, events=servicer.ops.events,
                                      **servicer.ops.start_fields(serving.bound_address(listen, port), mode))
