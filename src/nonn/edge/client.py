"""Classify images through a gateway: `classify("host:port", "cat.png", ...)` for one image,
GatewayClient for many calls, StreamingClient (asyncio) for many images over one stream."""

from __future__ import annotations

import asyncio
import itertools
import time
from pathlib import Path
from typing import Self

import grpc
import numpy as np

from nonn.edge import images
from nonn.edge import nonn_pb2 as pb
from nonn.edge import nonn_pb2_grpc as pb_grpc
from nonn.edge.errors import EdgeError, GatewayError
from nonn.edge.channels import channel_options, open_aio_channel, open_channel
from nonn.edge.tensors import encode_array
from nonn.edge.tls import channel_credentials

IMAGE_SUFFIXES = images.IMAGE_SUFFIXES
CHANNEL_OPTIONS = channel_options()


def read_image(image: str | Path | np.ndarray) -> tuple[np.ndarray, str]:
    """(pixels, layout) from an array, a .npy file or a PNG/JPEG (HWC uint8), as they are."""
    if isinstance(image, np.ndarray):
        return _pixels(image), ""
    path = Path(image)
    suffix = path.suffix.lower()
    if not path.is_file():
        raise EdgeError(f"image {path} does not exist; pass a .npy, .png or .jpg file")
    if suffix == ".npy":
        try:
            array = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise EdgeError(f"cannot read {path} as a numpy array ({exc}); save it with numpy.save") from None
        return _pixels(array), ""
    if suffix in IMAGE_SUFFIXES:
        return images.as_pixels(images.open_image(path)), "HWC"
    raise EdgeError(f"{path} has suffix {suffix!r}; pass a .npy, .png, .jpg or .jpeg file")


def _is_photo(image) -> bool:
    return not isinstance(image, np.ndarray) and Path(image).suffix.lower() in IMAGE_SUFFIXES


def _pixels(array: np.ndarray) -> np.ndarray:
    """uint8 stays; other real arrays become float32 (the gateway checks the 0..255 range)."""
    if array.dtype == np.uint8:
        return array
    if array.dtype.kind in "iuf":
        return array.astype(np.float32)
    raise EdgeError(f"image dtype {array.dtype} is not a pixel type; use uint8 or float in [0, 255]")


def to_message(pixels: np.ndarray, layout: str = "") -> pb.Image:
    shape, dtype, data = encode_array(pixels)
    return pb.Image(shape=shape, dtype=dtype, data=data, layout=layout)


def prediction_to_dict(prediction: pb.Prediction) -> dict:
    """Every field of a Prediction as plain Python values."""
    return {
        "label": prediction.label,
        "class_name": prediction.class_name,
        "probabilities": list(prediction.probabilities),
        "logits": list(prediction.logits),
        "degraded": prediction.degraded,
        "missing_nodes": list(prediction.missing_nodes),
        "nodes": [
            {
                "index": n.index,
                "address": n.address,
                "compute_ms": n.compute_ms,
                "round_trip_ms": n.round_trip_ms,
                "bytes_sent": n.bytes_sent,
                "bytes_received": n.bytes_received,
                "missing": n.missing,
                "error": n.error,
                "batch_size": n.batch_size,
            }
            for n in prediction.nodes
        ],
        "bytes_sent": prediction.bytes_sent,
        "bytes_received": prediction.bytes_received,
        "gateway_ms": prediction.gateway_ms,
        "head_ms": prediction.head_ms,
    }


class GatewayClient:
    """A reusable connection to a gateway; use it to classify many images (benchmarks).

    `tls` is (cert, key, ca) or a TLSFiles: `ca` verifies the gateway, cert/key are the
    client certificate for mutual TLS (None for plain TLS).
    """

    def __init__(self, gateway: str, *, tls=None, insecure: bool = False):
        self.channel = open_channel(gateway, channel_credentials(tls, insecure), CHANNEL_OPTIONS)
        stub = pb_grpc.GatewayStub(self.channel)
        self._classify, self._describe = stub.Classify, stub.Describe
        self._input_shape: tuple[int, int, int] | None = None

    def input_shape(self, timeout_s: float = 5.0) -> tuple[int, int, int]:
        """[C, H, W] of the images the gateway's model takes (asked once)."""
        if self._input_shape is None:
            try:
                info = self._describe(pb.DescribeRequest(), timeout=timeout_s)
            except grpc.RpcError as exc:
                raise _describe_error(exc) from None
            self._input_shape = _shape_of(info)
        return self._input_shape

    def classify(self, image: str | Path | np.ndarray, *, timeout_s: float = 5.0, layout: str | None = None,
                 resize: bool = True) -> dict:
        """The prediction as a dict, plus client_ms; GatewayError on a non-OK status. A PNG/JPEG is
        resized and centre-cropped to the model's input first unless `resize` is False."""
        if resize and _is_photo(image):
            img = images.open_image(image)  # a missing or broken file fails before the gateway is asked
            pixels, inferred = images.fit(img, *self.input_shape(timeout_s)), "HWC"
        else:
            pixels, inferred = read_image(image)
        request = to_message(pixels, layout if layout is not None else inferred)
        start = time.perf_counter()
        try:
            prediction = self._classify(request, timeout=timeout_s, wait_for_ready=False)
        except grpc.RpcError as exc:
            raise GatewayError(exc.code().name, (exc.details() or "").strip() or "no details") from None
        elapsed = (time.perf_counter() - start) * 1000.0
        result = prediction_to_dict(prediction)
        result["client_ms"] = elapsed
        return result

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _Stream:
    """One ClassifyStream call: what waits to be written, who waits for a reply, its two tasks."""

    def __init__(self, call):
        self.call = call
        self.outbox: list[pb.ClassifyRequest] = []
        self.wake = asyncio.Event()
        self.waiting: dict[int, asyncio.Future] = {}
        self.tasks: list[asyncio.Task] = []


class StreamingClient:
    """Many images over one ClassifyStream, on the running asyncio loop. `await classify(...)`
    may be called from many tasks at once: the images asked for in the same turn of the loop
    leave in one message, and replies are matched to them by id.

    `tls` is as for GatewayClient. A message on an open stream costs the client and the
    gateway a fraction of a call: use it for a camera or any steady flow of images.
    """

    def __init__(self, gateway: str, *, tls=None, insecure: bool = False):
        self.channel = open_aio_channel(gateway, channel_credentials(tls, insecure), CHANNEL_OPTIONS)
        self._open = self.channel.stream_stream("/nonn.v1.Gateway/ClassifyStream",
                                                request_serializer=pb.ClassifyRequests.SerializeToString,
                                                response_deserializer=pb.ClassifyReplies.FromString)
        self._describe = pb_grpc.GatewayStub(self.channel).Describe
        self._stream: _Stream | None = None
        self._ids = itertools.count(1)
        self._input_shape: tuple[int, int, int] | None = None

    async def input_shape(self, timeout_s: float = 5.0) -> tuple[int, int, int]:
        """[C, H, W] of the images the gateway's model takes (asked once)."""
        if self._input_shape is None:
            try:
                info = await self._describe(pb.DescribeRequest(), timeout=timeout_s)
            except grpc.aio.AioRpcError as exc:
                raise _describe_error(exc) from None
            self._input_shape = _shape_of(info)
        return self._input_shape

    async def classify(self, image: str | Path | np.ndarray, *, timeout_s: float = 5.0,
                       layout: str | None = None, resize: bool = True) -> dict:
        """The prediction as a dict, plus client_ms; GatewayError on a failure. A PNG/JPEG is
        resized to the model's input first unless `resize` is False."""
        if resize and _is_photo(image):
            img = images.open_image(image)
            pixels, inferred = images.fit(img, *await self.input_shape(timeout_s)), "HWC"
        else:
            pixels, inferred = read_image(image)
        prediction, elapsed = await self.predict(to_message(pixels, layout if layout is not None else inferred),
                                                 timeout_s=timeout_s)
        result = prediction_to_dict(prediction)
        result["client_ms"] = elapsed
        return result

    async def predict(self, image: pb.Image, *, timeout_s: float = 5.0) -> tuple[pb.Prediction, float]:
        """(the Prediction, milliseconds until it came) for an image already in a message (to_message);
        GatewayError on a failure. What classify() does without reading files or making a dict."""
        request_id = next(self._ids)
        request = pb.ClassifyRequest(id=request_id, image=image, timeout_us=max(1, int(timeout_s * 1e6)))
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        start = time.perf_counter()
        stream = self._stream or self._start()
        stream.waiting[request_id] = future
        stream.outbox.append(request)
        stream.wake.set()  # the writer sends it at its next turn, with the others asked for meanwhile
        timer = loop.call_later(timeout_s, _expire, future, timeout_s)
        try:
            reply = await future
        finally:
            timer.cancel()
            stream.waiting.pop(request_id, None)
        elapsed = (time.perf_counter() - start) * 1000.0
        if reply.code != 0:
            name = next((c.name for c in grpc.StatusCode if c.value[0] == reply.code), str(reply.code))
            raise GatewayError(name, reply.error.strip() or "no details")
        return reply.prediction, elapsed

    def _start(self) -> _Stream:
        stream = _Stream(self._open(wait_for_ready=False))
        loop = asyncio.get_running_loop()
        stream.tasks = [loop.create_task(self._write(stream)), loop.create_task(self._read(stream))]
        self._stream = stream
        return stream

    async def _write(self, stream: _Stream) -> None:
        """Send what waits, one message per turn: owned by the client, so a caller that gives up
        (cancelled, timed out) never strands the others' images."""
        try:
            while True:
                await stream.wake.wait()
                stream.wake.clear()
                while stream.outbox:
                    requests, stream.outbox = stream.outbox, []
                    await stream.call.write(pb.ClassifyRequests(requests=requests))
        except (grpc.aio.AioRpcError, grpc.aio.UsageError, asyncio.InvalidStateError):
            code = await stream.call.code()  # the stream is over: its status says why
            self._end(stream, GatewayError(code.name, (await stream.call.details() or "").strip() or "no details"))

    async def _read(self, stream: _Stream) -> None:
        error: GatewayError | None = None
        try:
            async for message in stream.call:
                for reply in message.replies:
                    future = stream.waiting.get(reply.id)
                    if future is not None and not future.done():
                        future.set_result(reply)
        except grpc.aio.AioRpcError as exc:
            error = GatewayError(exc.code().name, (exc.details() or "").strip() or "no details")
        except asyncio.CancelledError:
            error = GatewayError("CANCELLED", "the client is closing")
        self._end(stream, error or GatewayError("UNAVAILABLE", "the gateway ended the stream"))

    def _end(self, stream: _Stream, error: GatewayError) -> None:
        """The stream is over: its images fail with `error`; the next image opens another stream."""
        if self._stream is stream:
            self._stream = None
        for future in stream.waiting.values():
            if not future.done():
                future.set_exception(error)
        stream.outbox.clear()
        current = asyncio.current_task()
        for task in stream.tasks:
            if task is not current:
                task.cancel()

    async def close(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.call.cancel()
            for task in stream.tasks:
                task.cancel()
            await asyncio.gather(*stream.tasks, return_exceptions=True)
        await self.channel.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()


def _describe_error(exc) -> GatewayError:
    if exc.code() == grpc.StatusCode.UNIMPLEMENTED:
        return GatewayError("UNIMPLEMENTED", "this gateway cannot say its input size (an older version); "
                                             "upgrade it, or resize the image yourself and pass --no-resize")
    return GatewayError(exc.code().name, (exc.details() or "").strip() or "no details")


def _shape_of(info: pb.ModelInfo) -> tuple[int, int, int]:
    shape = tuple(int(d) for d in info.input_shape)
    if len(shape) != 3 or min(shape) < 1:
        raise GatewayError("FAILED_PRECONDITION", f"the gateway describes its input as {list(shape)}, not [C, H, W]; "
                                                  "upgrade it, or pass resize=False (--no-resize)")
    return shape


def _expire(future: asyncio.Future, timeout_s: float) -> None:
    if not future.done():
        future.set_exception(GatewayError("DEADLINE_EXCEEDED", f"no reply within {timeout_s * 1000:.0f} ms"))


def classify(
    gateway: str,
    image: str | Path | np.ndarray,
    *,
    tls=None,
    insecure: bool = False,
    timeout_s: float = 5.0,
    layout: str | None = None,
    resize: bool = True,
) -> dict:
    """Send one image to the gateway over a fresh connection; return the prediction dict.

    `tls` is (cert, key, ca) or a TLSFiles (see GatewayClient). Raises GatewayError with
    the gRPC status name when the gateway answers an error.
    """
    with GatewayClient(gateway, tls=tls, insecure=insecure) as client:
        return client.classify(image, timeout_s=timeout_s, layout=layout, resize=resize)
