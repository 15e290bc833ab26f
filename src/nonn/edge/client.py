"""Classify one image through a gateway: `classify("host:port", "cat.png", ...)`."""

from __future__ import annotations

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
