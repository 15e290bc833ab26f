"""The gateway: fans an image out to the K nodes at once, concatenates, runs the head."""

from __future__ import annotations

import threading
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
from nonn.edge.tls import (
    TLSFiles,
    channel_credentials,
    open_channel,
    server_credentials,
)

SERVICE_NAME = "nonn.v1.Gateway"
FEATURES_METHOD = "/nonn.v1.Student/Features"
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32).reshape(3, 1, 1)  # ITU-R BT.601


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


class _Gather:
    """Completion bookkeeping for one fan-out: wakes the waiter when all calls are done,
    or at the first failure when failing fast."""

    __slots__ = ("done_at", "event", "fail_fast", "lock", "pending")

    def __init__(self, count: int, fail_fast: bool):
        self.pending = count
        self.done_at = [0.0] * count
        self.event = threading.Event()
        self.fail_fast = fail_fast
        self.lock = threading.Lock()

    def watch(self, future, k: int) -> None:
        def done(f):
            self.done_at[k] = time.perf_counter()
            with self.lock:
                self.pending -= 1
                finished = self.pending == 0
            if finished or (self.fail_fast and f.code() != grpc.StatusCode.OK):
                self.event.set()

        future.add_done_callback(done)


class GatewayServicer(pb_grpc.GatewayServicer):
    """Classify: normalise, fan out to every node, gather within the deadline, run the head."""

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
        options = node_channel_options(max_message_bytes)
        self.channels = [open_channel(address, credentials, options) for address in nodes]
        # Raw bytes in and out: the request is serialized once for all K nodes, and the
        # payload sizes are measured without re-serializing.
        self._calls = [
            ch.unary_unary(FEATURES_METHOD, request_serializer=None, response_deserializer=None)
            for ch in self.channels
        ]

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

    def close(self) -> None:
        for channel in self.channels:
            channel.close()

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

    def Classify(self, request, context):
        start = time.perf_counter()
        try:
            x = self.preprocess(request)
        except TensorError as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        payload = pb.Tensor(shape=self._shape, dtype="float32", data=x.tobytes()).SerializeToString()
        timeout = self.deadline_s
        remaining = context.time_remaining()
        if remaining is not None:
            timeout = max(0.0, min(timeout, remaining))

        parts, timings, failures = [], [], []
        for k, (features, timing, problem) in enumerate(self._fan_out(payload, timeout)):
            if problem is not None:
                failures.append(problem)
                features = self._zeros[k]
            parts.append(features)
            timings.append(timing)
        if failures and (not self.degraded or len(failures) == len(timings)):
            real = [f for f in failures if f[0] != grpc.StatusCode.CANCELLED] or failures
            prefix = "all nodes failed: " if self.degraded else ""
            context.abort(real[0][0], prefix + "; ".join(message for _, message in real))

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

    def _fan_out(self, payload: bytes, timeout: float):
        """Send `payload` to every node at once; yield (features or None, NodeTiming,
        (status, message) or None) per node, in partition order, within `timeout`."""
        gather = _Gather(len(self._calls), fail_fast=not self.degraded)
        sent = time.perf_counter()
        futures = [call.future(payload, timeout=timeout, wait_for_ready=False) for call in self._calls]
        for k, future in enumerate(futures):
            gather.watch(future, k)
        # gRPC enforces the deadline itself; the margin only guards against a lost callback.
        woken = gather.event.wait(timeout + 0.5)
        for k, future in enumerate(futures):
            timing = pb.NodeTiming(index=k, address=self.nodes[k], bytes_sent=len(payload))
            features, problem = None, None
            if not future.done():
                future.cancel()
                problem = ((grpc.StatusCode.CANCELLED, "was not awaited: another node failed first") if woken
                           else (grpc.StatusCode.DEADLINE_EXCEEDED, f"did not answer within {timeout * 1000:.0f} ms"))
            elif future.code() != grpc.StatusCode.OK:
                problem = self._describe(future.code(), future.details(), timeout)
            else:
                raw = future.result()
                timing.bytes_received = len(raw)
                timing.round_trip_ms = (gather.done_at[k] - sent) * 1000.0
                timing.compute_ms = _compute_ms(future.trailing_metadata())
                features, problem = self._decode(k, raw)
            if problem is not None:
                code, detail = problem
                problem = (code, f"node {k} ({self.nodes[k]}) {detail}")
                timing.missing, timing.error = True, f"{code.name}: {problem[1]}"
            yield features, timing, problem

    def _decode(self, k: int, raw: bytes):
        """(features [1, n_k], None) or (None, (status, what is wrong)) for node k's reply."""
        try:
            features = from_tensor(pb.Tensor.FromString(raw), allowed=("float32",))
        except (DecodeError, TensorError) as exc:
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


def _compute_ms(metadata) -> float:
    for key, value in metadata or ():
        if key == COMPUTE_TIME_KEY:
            try:
                return int(value) / 1000.0
            except ValueError:
                return 0.0
    return 0.0


class GatewayServer:
    """The running gRPC server plus the gateway's node channels; stop() closes both."""

    def __init__(self, server: grpc.Server, servicer: GatewayServicer):
        self._server = server
        self.servicer = servicer

    def stop(self, grace: float | None = None) -> threading.Event:
        event = self._server.stop(grace)
        event.wait(None if grace is None else grace + 1.0)
        self.servicer.close()
        return event

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
    try:
        server, port, mode, health = serving.start_server(
            lambda server: pb_grpc.add_GatewayServicer_to_server(servicer, server),
            [SERVICE_NAME], listen, tls, insecure, max_message_bytes=max_message_bytes, workers=workers,
        )
    except BaseException:
        servicer.close()
        raise
    return GatewayServer(server, servicer), port, mode, health, manifest


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
    request naming it, unless `degraded`, which zero-fills its features instead.
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
    server, port, mode, health, manifest = _start(manifest_path, nodes, listen, deadline_s, degraded, tls,
                                                  insecure, nodes_ca, max_message_bytes, intra_op_threads,
                                                  workers)
    banner = (f"nonn gateway serving {manifest.path.name} ({len(manifest.students)} nodes) on "
              f"{serving.bound_address(listen, port)} ({mode})")
    try:
        return serving.serve_until_signal(server._server, health, banner)
    finally:
        server.servicer.close()
