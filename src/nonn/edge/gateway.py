"""The gateway: fans an image out to the K nodes at once, concatenates, runs the head.

Everything runs on one asyncio event loop (grpc.aio): the server, the K node channels and
the Python work of a request. Requests travel to each node over long-lived
FeaturesStream calls, matched to replies by id: a message on an open stream costs the
gateway and the node a fraction of a call. A node that does not offer the stream (an older
runtime) is called with Features instead.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from pathlib import Path

import grpc
import numpy as np
from google.protobuf.message import DecodeError

from nonn.edge import nonn_pb2 as pb
from nonn.edge import nonn_pb2_grpc as pb_grpc
from nonn.edge import serving
from nonn.edge.errors import EdgeError, TensorError
from nonn.edge.manifest import Manifest, load_manifest
from nonn.edge.node import COMPUTE_TIME_KEY, load_session
from nonn.edge.tensors import decode_array, from_tensor
from nonn.edge.tls import TLSFiles, channel_credentials, server_credentials

SERVICE_NAME = "nonn.v1.Gateway"
FEATURES_METHOD = "/nonn.v1.Student/Features"
STREAM_METHOD = "/nonn.v1.Student/FeaturesStream"
# Requests take turns over this many streams per node; a node answers each stream in order,
# so two let it receive the next request while it sends a reply.
STREAMS_PER_NODE = 2
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32).reshape(3, 1, 1)  # ITU-R BT.601
_OK = grpc.StatusCode.OK
_CODES = {code.value[0]: code for code in grpc.StatusCode}


def node_channel_options(max_message_bytes: int) -> list[tuple[str, int]]:
    """Reconnect quickly after a node restarts; notice silently dead links with keepalive."""
    return [
        ("grpc.max_send_message_length", int(max_message_bytes)),
        ("grpc.max_receive_message_length", int(max_message_bytes)),
        ("grpc.initial_reconnect_backoff_ms", 100),
        ("grpc.min_reconnect_backoff_ms", 100),
        ("grpc.max_reconnect_backoff_ms", 1000),
        ("grpc.keepalive_time_ms", 10000),
        ("grpc.keepalive_timeout_ms", 5000),
    ]


def parse_nodes(nodes) -> list[str]:
    """A list of host:port from a list or a comma-separated string."""
    if isinstance(nodes, str):
        nodes = nodes.split(",")
    addresses = [n.strip() for n in nodes if n.strip()]
    for address in addresses:
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit():
            raise EdgeError(f"node address {address!r} is not HOST:PORT; pass --nodes host:port,host:port,...")
    return addresses


class _Answer:
    """What one node answered to one request (or why it did not)."""

    __slots__ = ("code", "compute_us", "details", "done", "nbytes", "tensor")

    def __init__(self, code, details="", tensor=None, compute_us=0, nbytes=0):
        self.code, self.details, self.tensor = code, details, tensor
        self.compute_us, self.nbytes = compute_us, nbytes
        self.done = time.perf_counter()


class _NodeLink:
    """The gateway's side of one node: a FeaturesStream kept open on the node's channel, with
    replies matched to the waiting requests by id. A broken stream fails the requests on it
    and is opened again by the next request, once the channel has reconnected."""

    def __init__(self, channel: grpc.aio.Channel):
        self._open_stream = channel.stream_stream(STREAM_METHOD, request_serializer=None,
                                                  response_deserializer=None)
        self._features = channel.unary_unary(FEATURES_METHOD, request_serializer=None,
                                             response_deserializer=None)
        self._outbox: asyncio.Queue | None = None
        self._call = None
        self._waiting: dict[int, tuple[asyncio.Future, pb.Tensor, float]] = {}
        self._closing = False
        self._tasks: set[asyncio.Task] = set()  # the loop keeps only weak references to tasks
        self.streams = True  # False once the node refuses the stream: call Features instead

    def submit(self, request_id: int, payload: bytes, tensor: pb.Tensor, timeout: float,
               loop: asyncio.AbstractEventLoop) -> asyncio.Future:
        """A future of the node's _Answer to `payload`, the serialized FeaturesRequest
        holding `tensor`."""
        future = loop.create_future()
        if not self.streams:
            self._spawn(loop, self._call_features(future, tensor, timeout))
            return future
        if self._outbox is None:
            self._open(loop)
        self._waiting[request_id] = (future, tensor, timeout)
        self._outbox.put_nowait(payload)
        return future

    def forget(self, request_id: int) -> None:
        """Stop waiting for a request's reply (its deadline passed); a late reply is dropped."""
        self._waiting.pop(request_id, None)

    def _open(self, loop: asyncio.AbstractEventLoop) -> None:
        outbox: asyncio.Queue = asyncio.Queue()

        async def requests():
            # Write nothing before the node has accepted the stream: a write racing its refusal
            # would turn the refusal (UNIMPLEMENTED, RESOURCE_EXHAUSTED) into INTERNAL.
            await call.initial_metadata()
            if call.done():
                return
            while (payload := await outbox.get()) is not None:
                yield payload

        call = self._open_stream(requests(), wait_for_ready=False)
        self._outbox, self._call = outbox, call
        self._spawn(loop, self._read(call, outbox))

    def _spawn(self, loop: asyncio.AbstractEventLoop, coro) -> None:
        task = loop.create_task(coro)
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
                future = self._waiting.pop(reply.id, (None,))[0]
                if future is not None and not future.done():
                    answer_code = _CODES.get(reply.code, grpc.StatusCode.UNKNOWN)
                    features = reply.features if reply.code == 0 else None
                    future.set_result(_Answer(answer_code, reply.error, features, reply.compute_us,
                                              0 if features is None else features.ByteSize()))
        except grpc.aio.AioRpcError as exc:
            code, details = exc.code(), exc.details() or ""
        except asyncio.CancelledError:
            code, details = grpc.StatusCode.CANCELLED, "the gateway is stopping"
        except Exception as exc:  # noqa: BLE001 (never leave a request waiting on a dead stream)
            code, details = grpc.StatusCode.UNAVAILABLE, f"the stream failed: {exc!r}"
        self._closed(call, outbox, code, details)

    def _closed(self, call, outbox: asyncio.Queue, code: grpc.StatusCode, details: str) -> None:
        """The stream ended: the next request opens another; the waiting ones get `code`, or
        go to Features when the node refused the stream."""
        if self._call is call:
            self._outbox, self._call = None, None
        outbox.put_nowait(None)
        waiting, self._waiting = self._waiting, {}
        if code in (grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.RESOURCE_EXHAUSTED):
            self.streams = False  # an older node, or one serving too many streams
            loop = asyncio.get_running_loop()
            for future, tensor, timeout in waiting.values():
                if not future.done():
                    self._spawn(loop, self._call_features(future, tensor, timeout))
            return
        if self._closing:
            code, details = grpc.StatusCode.CANCELLED, "the gateway is stopping"
        elif code not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.FAILED_PRECONDITION):
            # The node's verdict on a request travels in its reply; a stream that ends
            # otherwise (the node stopping, a broken connection) means the link is gone.
            code, details = grpc.StatusCode.UNAVAILABLE, f"the stream broke: {code.name}: {details}"
        for future, _, _ in waiting.values():
            if not future.done():
                future.set_result(_Answer(code, details))

    async def _call_features(self, future: asyncio.Future, tensor: pb.Tensor, timeout: float) -> None:
        call = self._features(tensor.SerializeToString(), timeout=timeout, wait_for_ready=False)
        try:
            raw = await call
        except grpc.aio.AioRpcError as exc:
            answer = _Answer(exc.code(), exc.details() or "")
        else:
            done = time.perf_counter()
            try:
                tensor = pb.Tensor.FromString(raw)
            except DecodeError as exc:
                answer = _Answer(grpc.StatusCode.FAILED_PRECONDITION, f"sent a malformed reply: {exc}")
            else:
                answer = _Answer(_OK, "", tensor, _compute_us(await call.trailing_metadata()), len(raw))
                answer.done = done
        if not future.done():
            future.set_result(answer)

    async def close(self) -> None:
        self._closing = True
        if self._call is not None:
            self._call.cancel()


class GatewayServicer(pb_grpc.GatewayServicer):
    """Classify: normalise, fan out to every node, gather within the deadline, run the head.

    The node channels are opened by open() on the serving loop; without them the servicer
    still preprocesses and decodes (benchmarks and tests use that in-process)."""

    def __init__(self, manifest: Manifest, nodes: list[str], *, deadline_s: float, degraded: bool,
                 credentials: grpc.ChannelCredentials | None, max_message_bytes: int, intra_op_threads: int):
        if len(nodes) != len(manifest.students):
            raise EdgeError(
                f"{manifest.path} lists {len(manifest.students)} students but --nodes names {len(nodes)} "
                "addresses; give one host:port per student, in partition order"
            )
        if not deadline_s > 0:
            raise EdgeError(f"the deadline must be positive, got {deadline_s * 1000:g} ms")
        self.manifest = manifest
        self.nodes = nodes
        self.deadline_s = float(deadline_s)
        self.degraded = degraded
        self.head = load_session(manifest.head_file, intra_op_threads)
        self._check_head()
        channel, height, width = manifest.input_shape
        self._shape = (1, channel, height, width)
        self._scale = np.float32(manifest.scale)
        self._mean = np.asarray(manifest.mean, dtype=np.float32).reshape(channel, 1, 1)
        self._std = np.asarray(manifest.std, dtype=np.float32).reshape(channel, 1, 1)
        self._sizes = manifest.partition_sizes
        self._zeros = [np.zeros((1, n), dtype=np.float32) for n in self._sizes]
        self._credentials = credentials
        self._options = node_channel_options(max_message_bytes)
        self.channels: list[grpc.aio.Channel] = []
        self._links: list[list[_NodeLink]] = []
        self._ids = itertools.count(1)

    async def open(self) -> None:
        """Open one channel per node on the running loop (they connect on first use)."""
        for address in self.nodes:
            if self._credentials is None:
                channel = grpc.aio.insecure_channel(address, options=self._options)
            else:
                channel = grpc.aio.secure_channel(address, self._credentials, options=self._options)
            self.channels.append(channel)
        self._links = [[_NodeLink(ch) for _ in range(STREAMS_PER_NODE)] for ch in self.channels]

    async def aclose(self) -> None:
        channels, links, self.channels, self._links = self.channels, self._links, [], []
        for link in itertools.chain.from_iterable(links):
            await link.close()
        for channel in channels:
            await channel.close()

    def close(self) -> None:
        if self.channels:
            serving.run_on_loop(self.aclose(), 10.0)

    def _check_head(self) -> None:
        inputs, outs = self.head.get_inputs(), self.head.get_outputs()
        if len(inputs) != 1 or len(outs) < 1:
            raise EdgeError("head.onnx must have exactly one input and one output; re-export it")
        inp = inputs[0]
        width, classes = inp.shape[-1], outs[0].shape[-1]
        total = sum(self.manifest.partition_sizes)
        if isinstance(width, int) and width != total:
            raise EdgeError(f"head.onnx takes {width} features but partition_sizes sum to {total}; re-export")
        if isinstance(classes, int) and classes != len(self.manifest.classes):
            raise EdgeError(f"head.onnx has {classes} outputs but the manifest lists "
                            f"{len(self.manifest.classes)} classes; re-export")
        self._head_input, self._head_outputs = inp.name, [outs[0].name]

    # -- preprocessing -------------------------------------------------------------------

    def _layout(self, shape: tuple[int, ...], layout: str) -> str:
        _, height, width = self.manifest.input_shape
        fits = {
            "HW": len(shape) == 2 and shape == (height, width),
            "HWC": len(shape) == 3 and shape[:2] == (height, width) and shape[2] in (1, 3, 4),
            "CHW": len(shape) == 3 and shape[1:] == (height, width) and shape[0] in (1, 3, 4),
        }
        expected = (f"expected an image of {height}x{width} pixels as [H, W], [H, W, C] or [C, H, W] "
                    f"with C in 1, 3, 4 (resize it first), got shape {list(shape)}")
        if layout:
            if layout not in fits:
                raise TensorError(f"image layout {layout!r} is unknown; expected HWC, CHW, HW or empty")
            if not fits[layout]:
                raise TensorError(f"{expected} with layout {layout}")
            return layout
        matches = [name for name, ok in fits.items() if ok]
        if not matches:
            raise TensorError(expected)
        if len(matches) > 1:
            raise TensorError(f"image shape {list(shape)} is ambiguous; set the layout field to HWC or CHW")
        return matches[0]

    def preprocess(self, image: pb.Image) -> np.ndarray:
        """Raw pixels -> normalised float32 [1, C, H, W] (C-contiguous)."""
        pixels = decode_array(image.shape, image.dtype, image.data, allowed=("uint8", "float32"), what="image")
        if pixels.ndim == 4 and pixels.shape[0] == 1:
            pixels = pixels[0]
        if pixels.dtype == np.float32 and pixels.size and (pixels.min() < 0 or pixels.max() > 255):
            raise TensorError("float32 pixels must lie in [0, 255]; send uint8 or scale them to 0..255")
        layout = self._layout(tuple(pixels.shape), image.layout)
        if layout == "HW":
            chw = pixels[None]
        elif layout == "HWC":
            chw = pixels.transpose(2, 0, 1)
        else:
            chw = pixels
        want = self.manifest.input_shape[0]
        x = chw.astype(np.float32, order="C")
        if x.shape[0] == 4:  # drop alpha
            x = x[:3]
        if x.shape[0] == 3 and want == 1:
            x = (x * LUMA).sum(axis=0, keepdims=True, dtype=np.float32)
        elif x.shape[0] == 1 and want == 3:
            x = np.repeat(x, 3, axis=0)
        elif x.shape[0] != want:
            raise TensorError(f"the model takes {want} channels, the image has {x.shape[0]}")
        x /= self._scale
        x -= self._mean
        x /= self._std
        return np.ascontiguousarray(x).reshape(self._shape)

    # -- the RPC -------------------------------------------------------------------------

    async def Classify(self, request, context):
        start = time.perf_counter()
        try:
            x = self.preprocess(request)
        except TensorError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        timeout = self.deadline_s
        remaining = context.time_remaining()
        if remaining is not None:
            timeout = max(0.0, min(timeout, remaining))

        parts, timings, failures = [], [], []
        for k, (features, timing, problem) in enumerate(await self._fan_out(x, timeout)):
            if problem is not None:
                failures.append(problem)
                features = self._zeros[k]
            parts.append(features)
            timings.append(timing)
        if failures and (not self.degraded or len(failures) == len(timings)):
            real = [f for f in failures if f[0] != grpc.StatusCode.CANCELLED] or failures
            prefix = "all nodes failed: " if self.degraded else ""
            await context.abort(real[0][0], prefix + "; ".join(message for _, message in real))

        head_start = time.perf_counter()
        (logits,) = self.head.run(self._head_outputs, {self._head_input: np.concatenate(parts, axis=1)})
        head_ms = (time.perf_counter() - head_start) * 1000.0
        logits = logits[0].astype(np.float64)
        probabilities = np.exp(logits - logits.max())
        probabilities /= probabilities.sum()
        label = int(np.argmax(logits))
        return pb.Prediction(
            label=label,
            class_name=self.manifest.classes[label] if label < len(self.manifest.classes) else str(label),
            probabilities=probabilities.tolist(),
            logits=logits.tolist(),
            nodes=timings,
            bytes_sent=sum(t.bytes_sent for t in timings),
            bytes_received=sum(t.bytes_received for t in timings),
            degraded=bool(failures),
            missing_nodes=[t.address for t in timings if t.missing],
            gateway_ms=(time.perf_counter() - start) * 1000.0,
            head_ms=head_ms,
        )

    def node_request(self, x: np.ndarray, request_id: int, timeout: float) -> tuple[bytes, pb.Tensor]:
        """(the FeaturesRequest serialized once for all K nodes, the Tensor it holds)."""
        tensor = pb.Tensor(shape=self._shape, dtype="float32", data=x.tobytes())
        request = pb.FeaturesRequest(id=request_id, tensor=tensor, timeout_us=max(1, int(timeout * 1e6)))
        return request.SerializeToString(), tensor

    async def _fan_out(self, x: np.ndarray, timeout: float) -> list:
        """Send the image to every node at once; (features or None, NodeTiming, (status,
        message) or None) per node, in partition order, within `timeout`."""
        loop = asyncio.get_running_loop()
        request_id = next(self._ids)
        payload, tensor = self.node_request(x, request_id, timeout)
        fail_fast = not self.degraded
        waiter = loop.create_future()
        pending = [len(self._links)]

        def finished(future) -> None:
            if future.cancelled():
                return
            pending[0] -= 1
            if not waiter.done() and (pending[0] == 0 or (fail_fast and future.result().code is not _OK)):
                waiter.set_result(True)

        sent = time.perf_counter()
        tensor_bytes = tensor.ByteSize()  # what Features would carry: the stream's framing is not counted
        links = [node_links[request_id % len(node_links)] for node_links in self._links]
        futures = []
        for link in links:
            future = link.submit(request_id, payload, tensor, timeout, loop)
            future.add_done_callback(finished)
            futures.append(future)
        timer = loop.call_later(timeout, lambda: waiter.done() or waiter.set_result(False))
        try:
            woken = await waiter
        finally:
            timer.cancel()
            for link, future in zip(links, futures):
                if not future.done():
                    link.forget(request_id)
                    future.cancel()
        results = []
        for k, future in enumerate(futures):
            timing = pb.NodeTiming(index=k, address=self.nodes[k], bytes_sent=tensor_bytes)
            features, problem = None, None
            if future.cancelled():
                problem = ((grpc.StatusCode.CANCELLED, "was not awaited: another node failed first") if woken
                           else (grpc.StatusCode.DEADLINE_EXCEEDED, f"did not answer within {timeout * 1000:.0f} ms"))
            else:
                answer = future.result()
                if answer.code is not _OK:
                    problem = self._describe(answer.code, answer.details, timeout)
                else:
                    timing.bytes_received = answer.nbytes
                    timing.round_trip_ms = (answer.done - sent) * 1000.0
                    timing.compute_ms = answer.compute_us / 1000.0
                    features, problem = self._decode(k, answer.tensor)
            if problem is not None:
                code, detail = problem
                problem = (code, f"node {k} ({self.nodes[k]}) {detail}")
                timing.missing, timing.error = True, f"{code.name}: {problem[1]}"
            results.append((features, timing, problem))
        return results

    def _decode(self, k: int, tensor: pb.Tensor):
        """(features [1, n_k], None) or (None, (status, what is wrong)) for node k's reply."""
        try:
            features = from_tensor(tensor, allowed=("float32",))
        except TensorError as exc:
            return None, (grpc.StatusCode.FAILED_PRECONDITION, f"sent bad features: {exc}")
        if features.shape != (1, self._sizes[k]):
            return None, (grpc.StatusCode.FAILED_PRECONDITION,
                          (f"sent features of shape {list(features.shape)}, expected [1, {self._sizes[k]}]; "
                           f"is it serving {self.manifest.students[k].file.name}?"))
        return features, None

    @staticmethod
    def _describe(code: grpc.StatusCode, details: str | None, timeout: float) -> tuple[grpc.StatusCode, str]:
        details = (details or "").strip().splitlines()[0][:300] if (details or "").strip() else ""
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            return code, f"did not answer within {timeout * 1000:.0f} ms"
        if code == grpc.StatusCode.UNAVAILABLE:
            return code, f"is unavailable: {details}"
        # The node rejected what the gateway sent: the deployment does not match the manifest.
        return grpc.StatusCode.FAILED_PRECONDITION, f"answered {code.name}: {details}"


def _compute_us(metadata) -> int:
    for key, value in metadata or ():
        if key == COMPUTE_TIME_KEY:
            try:
                return int(value)
            except ValueError:
                return 0
    return 0


class GatewayServer:
    """The running gRPC server plus the gateway's node channels; stop() closes both."""

    def __init__(self, server: serving.AioServer, servicer: GatewayServicer):
        self._server = server
        self.servicer = servicer

    def stop(self, grace: float | None = None):
        return self._server.stop(grace)

    def __getattr__(self, name):
        return getattr(self._server, name)


def _start(manifest_path, nodes, listen, deadline_s, degraded, tls, insecure, nodes_ca,
           max_message_bytes, intra_op_threads, workers):
    server_credentials(tls, insecure)  # refuse plaintext before loading anything
    tls = TLSFiles.of(tls)
    if insecure:
        credentials = None
    else:
        credentials = channel_credentials(TLSFiles(tls.cert, tls.key, nodes_ca or tls.ca), False)
    manifest = load_manifest(manifest_path)
    servicer = GatewayServicer(
        manifest, parse_nodes(nodes), deadline_s=deadline_s, degraded=degraded, credentials=credentials,
        max_message_bytes=max_message_bytes, intra_op_threads=intra_op_threads,
    )

    async def start():
        await servicer.open()
        try:
            server, port, mode, health = await serving.start_aio_server(
                lambda server: pb_grpc.add_GatewayServicer_to_server(servicer, server),
                [SERVICE_NAME], listen, tls, insecure,
                max_message_bytes=max_message_bytes, max_concurrent_rpcs=16 * max(1, workers),
            )
        except BaseException:
            await servicer.aclose()
            raise
        return serving.AioServer(server, health, servicer.aclose), port, mode

    server, port, mode = serving.run_on_loop(start())
    return GatewayServer(server, servicer), port, mode, manifest


def serve_gateway(
    manifest_path: str | Path,
    nodes,
    listen: str = "127.0.0.1:0",
    *,
    deadline_s: float = 1.0,
    degraded: bool = False,
    tls=None,
    insecure: bool = False,
    nodes_ca: str | Path | None = None,
    max_message_bytes: int = serving.DEFAULT_MAX_MESSAGE_BYTES,
    intra_op_threads: int = 1,
    workers: int = 8,
) -> tuple[GatewayServer, int]:
    """Start the gateway and return (server, bound port).

    `nodes` lists host:port per student, in partition order. `tls` is (cert, key, ca or
    None): the gateway serves with cert/key, requires client certificates signed by `ca`
    when given, verifies nodes against `nodes_ca` (default: `ca`), and presents its own
    certificate to nodes (mutual TLS). A node slower than `deadline_s` or down fails the
    request naming it, unless `degraded`, which zero-fills its features instead. The server
    runs on the process's serving loop and takes up to 16 x `workers` requests at once.
    """
    server, port, *_ = _start(manifest_path, nodes, listen, deadline_s, degraded, tls, insecure, nodes_ca,
                              max_message_bytes, intra_op_threads, workers)
    return server, port


def run_gateway(
    manifest_path: str | Path,
    nodes,
    listen: str = "127.0.0.1:0",
    *,
    deadline_s: float = 1.0,
    degraded: bool = False,
    tls=None,
    insecure: bool = False,
    nodes_ca: str | Path | None = None,
    max_message_bytes: int = serving.DEFAULT_MAX_MESSAGE_BYTES,
    intra_op_threads: int = 1,
    workers: int = 8,
) -> int:
    """Serve the gateway until SIGTERM/SIGINT; prints one line naming the bound address."""
    server, port, mode, manifest = _start(manifest_path, nodes, listen, deadline_s, degraded, tls, insecure,
                                          nodes_ca, max_message_bytes, intra_op_threads, workers)
    banner = (f"nonn gateway serving {manifest.path.name} ({len(manifest.students)} nodes) on "
              f"{serving.bound_address(listen, port)} ({mode})")
    try:
        return serving.serve_until_signal(server.stop, banner)
    finally:
        serving.stop_event_loop()
