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

from nonn.edge import nonn_pb2 as pb
from nonn.edge import nonn_pb2_grpc as pb_grpc
from nonn.edge.errors import EdgeError, GatewayError
from nonn.edge.serving import DEFAULT_MAX_MESSAGE_BYTES
from nonn.edge.tensors import encode_array
from nonn.edge.tls import channel_credentials, open_channel

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def read_image(image: str | Path | np.ndarray) -> tuple[np.ndarray, str]:
    """(pixels, layout) from an array, a .npy file or a PNG/JPEG (HWC uint8)."""
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
        try:
            from PIL import Image, UnidentifiedImageError
        except ImportError:
            raise EdgeError("reading PNG/JPEG needs Pillow; pip install pillow, or send a .npy file") from None
        try:
            with Image.open(path) as img:
                img = img.convert("L" if img.mode in ("1", "L", "LA", "I", "I;16", "F") else "RGB")
                array = np.asarray(img, dtype=np.uint8)
        except (UnidentifiedImageError, OSError) as exc:
            raise EdgeError(f"cannot decode {path}: {exc}; pass a valid PNG or JPEG") from None
        return (array[:, :, None] if array.ndim == 2 else array), "HWC"
    raise EdgeError(f"{path} has suffix {suffix!r}; pass a .npy, .png, .jpg or .jpeg file")


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
        options = [("grpc.max_send_message_length", DEFAULT_MAX_MESSAGE_BYTES),
                   ("grpc.max_receive_message_length", DEFAULT_MAX_MESSAGE_BYTES)]
        self.channel = open_channel(gateway, channel_credentials(tls, insecure), options)
        self._classify = pb_grpc.GatewayStub(self.channel).Classify

    def classify(self, image: str | Path | np.ndarray, *, timeout_s: float = 5.0, layout: str | None = None) -> dict:
        """The prediction as a dict, plus client_ms; GatewayError on a non-OK status."""
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


class StreamingClient:
    """Many images over one ClassifyStream, on the running asyncio loop. `await classify(...)`
    may be called from many tasks at once: the images they send in the same moment leave in
    one message, and replies are matched to them by id.

    `tls` is as for GatewayClient. A message on an open stream costs the client and the
    gateway a fraction of a call: use it for a camera or any steady flow of images.
    """

    def __init__(self, gateway: str, *, tls=None, insecure: bool = False):
        options = [("grpc.max_send_message_length", DEFAULT_MAX_MESSAGE_BYTES),
                   ("grpc.max_receive_message_length", DEFAULT_MAX_MESSAGE_BYTES)]
        credentials = channel_credentials(tls, insecure)
        if credentials is None:
            self.channel = grpc.aio.insecure_channel(gateway, options=options)
        else:
            self.channel = grpc.aio.secure_channel(gateway, credentials, options=options)
        self._open = self.channel.stream_stream("/nonn.v1.Gateway/ClassifyStream",
                                                request_serializer=pb.ClassifyRequests.SerializeToString,
                                                response_deserializer=pb.ClassifyReplies.FromString)
        self._call = None
        self._reader: asyncio.Task | None = None
        self._waiting: dict[int, asyncio.Future] = {}
        self._ids = itertools.count(1)
        self._outbox: list[pb.ClassifyRequest] = []
        self._writing = False

    async def classify(self, image: str | Path | np.ndarray, *, timeout_s: float = 5.0,
                       layout: str | None = None) -> dict:
        """The prediction as a dict, plus client_ms; GatewayError on a failure."""
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
        self._waiting[request_id] = future
        timer = loop.call_later(timeout_s, _expire, future, timeout_s)
        try:
            if self._call is None:
                self._start()
            self._outbox.append(request)
            if not self._writing:
                await self._write(self._call)
            reply = await future
        finally:
            timer.cancel()
            self._waiting.pop(request_id, None)
        elapsed = (time.perf_counter() - start) * 1000.0
        if reply.code != 0:
            name = next((c.name for c in grpc.StatusCode if c.value[0] == reply.code), str(reply.code))
            raise GatewayError(name, reply.error.strip() or "no details")
        return reply.prediction, elapsed

    async def _write(self, call) -> None:
        """Send what waits in the outbox, one message at a time, until it is empty; requests
        added meanwhile (by other tasks) go together in the next message."""
        self._writing = True
        try:
            await asyncio.sleep(0)  # the requests made in this turn of the loop leave together
            while self._outbox:
                requests, self._outbox = self._outbox, []
                try:
                    await call.write(pb.ClassifyRequests(requests=requests))
                except (grpc.aio.AioRpcError, grpc.aio.UsageError, asyncio.InvalidStateError):
                    # the stream is over: its status says why
                    if call is self._call:
                        self._call = None
                    error = GatewayError((await call.code()).name,
                                         (await call.details() or "").strip() or "no details")
                    for request in requests + self._outbox:
                        self._fail(request.id, error)
                    self._outbox = []
                    return
        finally:
            self._writing = False

    def _fail(self, request_id: int, error: BaseException) -> None:
        future = self._waiting.get(request_id)
        if future is not None and not future.done():
            future.set_exception(error)

    def _start(self) -> None:
        self._call = self._open(wait_for_ready=False)
        self._reader = asyncio.get_running_loop().create_task(self._read(self._call))

    async def _read(self, call) -> None:
        error: BaseException | None = None
        try:
            async for message in call:
                for reply in message.replies:
                    future = self._waiting.get(reply.id)
                    if future is not None and not future.done():
                        future.set_result(reply)
        except grpc.aio.AioRpcError as exc:
            error = GatewayError(exc.code().name, (exc.details() or "").strip() or "no details")
        except asyncio.CancelledError:
            error = GatewayError("CANCELLED", "the client is closing")
        if self._call is call:
            self._call = None  # the next image opens another stream
        elif self._call is not None:
            return  # a newer stream carries the waiting requests
        error = error or GatewayError("UNAVAILABLE", "the gateway ended the stream")
        for request_id in list(self._waiting):
            self._fail(request_id, error)

    async def close(self) -> None:
        call, self._call = self._call, None
        if call is not None:
            call.cancel()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)
        await self.channel.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()


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
) -> dict:
    """Send one image to the gateway over a fresh connection; return the prediction dict.

    `tls` is (cert, key, ca) or a TLSFiles (see GatewayClient). Raises GatewayError with
    the gRPC status name when the gateway answers an error.
    """
    with GatewayClient(gateway, tls=tls, insecure=insecure) as client:
        return client.classify(image, timeout_s=timeout_s, layout=layout)
