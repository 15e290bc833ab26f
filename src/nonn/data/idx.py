"""Read gzip-compressed IDX files (the MNIST format) with numpy, checking header and size."""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from nonn.errors import DataError

UBYTE = 0x08


def read_idx(path: Path, ndim: int) -> np.ndarray:
    """The uint8 array stored in a .gz IDX file, which must have `ndim` dimensions."""
    fix = "delete it to download it again, or pass --data-dir with a good copy"
    try:
        with gzip.open(path, "rb") as handle:
            data = handle.read()
    except (OSError, EOFError, zlib.error) as err:
        raise DataError(f"{path} is not a readable gzip file ({err}); {fix}") from err
    if len(data) < 4 + 4 * ndim:
        raise DataError(f"{path} is too short for an IDX header; {fix}")
    zero, dtype, dims = int.from_bytes(data[:2], "big"), data[2], data[3]
    if zero != 0 or dtype != UBYTE or dims != ndim:
        raise DataError(
            f"{path} has IDX magic 0x{int.from_bytes(data[:4], 'big'):08x}, expected "
            f"0x{(UBYTE << 8) | ndim:08x} (unsigned bytes, {ndim} dims); {fix}"
        )
    shape = tuple(int(v) for v in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    body = memoryview(data)[4 + 4 * ndim :]
    expected = int(np.prod(shape, dtype=np.int64))
    if len(body) != expected:
        raise DataError(
            f"{path} holds {len(body)} data bytes but its header {shape} says {expected}; {fix}"
        )
    return np.frombuffer(body, dtype=np.uint8).reshape(shape).copy()
