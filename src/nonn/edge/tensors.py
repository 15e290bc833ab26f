"""numpy <-> nonn.v1.Tensor: raw little-endian bytes with a shape and a dtype name."""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from nonn.edge import nonn_pb2 as pb
from nonn.edge.errors import TensorError

# Wire names and their little-endian numpy dtypes.
DTYPES: dict[str, np.dtype] = {
    "float32": np.dtype("<f4"),
    "float16": np.dtype("<f2"),
    "uint8": np.dtype("u1"),
    "int64": np.dtype("<i8"),
}
MAX_RANK = 8


def dtype_name(dtype: np.dtype | type | str) -> str:
    """The wire name of a numpy dtype, or TensorError when it cannot travel."""
    dt = np.dtype(dtype)
    for name, wire in DTYPES.items():
        if dt.kind == wire.kind and dt.itemsize == wire.itemsize:
            return name
    raise TensorError(f"dtype {dt} cannot be sent; use one of {', '.join(DTYPES)}")


def encode_array(array: np.ndarray) -> tuple[list[int], str, bytes]:
    """(shape, dtype name, little-endian bytes) of an array."""
    array = np.asarray(array)
    name = dtype_name(array.dtype)
    data = np.ascontiguousarray(array, dtype=DTYPES[name]).tobytes()
    return list(array.shape), name, data


def decode_array(
    shape: Iterable[int],
    dtype: str,
    data: bytes,
    *,
    allowed: Iterable[str] | None = None,
    what: str = "tensor",
) -> np.ndarray:
    """A read-only array viewing `data`; TensorError says what was expected when invalid."""
    allowed = tuple(allowed) if allowed is not None else tuple(DTYPES)
    if dtype not in allowed:
        raise TensorError(f"{what} dtype {dtype!r} is not supported; expected one of {', '.join(allowed)}")
    shape = [int(d) for d in shape]
    if len(shape) > MAX_RANK or any(d < 0 for d in shape):
        raise TensorError(f"{what} shape {shape} is invalid; expected at most {MAX_RANK} dimensions, each >= 0")
    wire = DTYPES[dtype]
    expected = math.prod(shape) * wire.itemsize
    if expected != len(data):
        raise TensorError(
            f"{what} of shape {shape} and dtype {dtype} needs {expected} bytes of data, got {len(data)}"
        )
    try:
        array = np.frombuffer(data, dtype=wire).reshape(shape)
    except ValueError as exc:  # e.g. [0, 2**40, 2**40]: no data, but too many elements for numpy
        raise TensorError(f"{what} shape {shape} is too large ({exc}); expected a shape numpy can hold") from None
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise TensorError(f"{what} holds NaN or Inf; expected finite values only")
    return array.astype(wire.newbyteorder("="), copy=False)


def to_tensor(array: np.ndarray) -> pb.Tensor:
    """Wrap an array in a Tensor message."""
    shape, dtype, data = encode_array(array)
    return pb.Tensor(shape=shape, dtype=dtype, data=data)


def from_tensor(message: pb.Tensor, *, allowed: Iterable[str] | None = None) -> np.ndarray:
    """The array a Tensor message holds (read-only), validated."""
    return decode_array(message.shape, message.dtype, message.data, allowed=allowed)
