"""A restricted unpickler for the CIFAR batches: numpy arrays, bytes and plain containers only."""

from __future__ import annotations

import pickle
from typing import IO, Any

# Python 2 era pickles name numpy.core; numpy 2 keeps those functions under numpy._core.
_RENAMED = {
    "numpy.core.multiarray": "numpy._core.multiarray",
    "numpy.core.numeric": "numpy._core.numeric",
}
_ALLOWED = {
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
}


class _NumpyOnly(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        module = _RENAMED.get(module, module)
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def load_numpy_pickle(handle: IO[bytes]) -> Any:
    """Unpickle (Python 2 strings read as bytes) allowing nothing beyond numpy arrays."""
    return _NumpyOnly(handle, encoding="bytes").load()
