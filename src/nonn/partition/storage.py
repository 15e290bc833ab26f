"""Run-directory artifacts of this stage: partition.json and filter_graph.npz, written atomically."""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from nonn.atomic import atomic_path, write_json
from nonn.errors import PartitionError
from nonn.partition.result import Partition

PARTITION_FILE = "partition.json"
FILTER_GRAPH_FILE = "filter_graph.npz"
_RERUN = "rerun `nonn partition RUN_DIR`"


def _resolve(path: str | os.PathLike, default_name: str) -> Path:
    """A run directory stands for the artifact inside it."""
    path = Path(path)
    return path / default_name if path.is_dir() else path


def save_partition(path: str | os.PathLike, partition: Partition, *, extra: dict[str, Any] | None = None) -> Path:
    """Write partition.json atomically (path may be the run directory); returns the file written.

    `extra` entries (a run's inputs hash, say) are stored beside the partition's own and ignored on loading."""
    target = _resolve(path, PARTITION_FILE)
    data = partition.to_dict()
    clash = set(extra or {}) & set(data)
    if clash:
        raise PartitionError(f"extra keys {sorted(clash)} would overwrite the partition's own; rename them")
    write_json(target, {**data, **(extra or {})})
    return target


def load_partition(path: str | os.PathLike) -> Partition:
    """Read partition.json (path may be the run directory); PartitionError if missing or corrupt."""
    target = _resolve(path, PARTITION_FILE)
    try:
        data = json.loads(target.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PartitionError(f"{target} does not exist; {_RERUN}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PartitionError(f"{target} is unreadable or corrupt ({exc}); {_RERUN}") from None
    try:
        return Partition.from_dict(data)
    except PartitionError as exc:
        raise PartitionError(f"{target}: {exc}") from None
    except (TypeError, ValueError) as exc:
        raise PartitionError(f"{target} has unexpected content ({exc}); {_RERUN}") from None


def save_filter_graph(path: str | os.PathLike, W, **meta: Any) -> Path:
    """Write filter_graph.npz atomically: W plus one array per meta entry (None values are left out)."""
    target = _resolve(path, FILTER_GRAPH_FILE)
    arrays = {"W": np.asarray(W, dtype=np.float64)}
    for key, value in meta.items():
        if key == "W":
            raise PartitionError("meta may not be called 'W'; pick another name")
        if value is None:
            continue
        arr = np.asarray(value)
        if arr.dtype == object:
            raise PartitionError(f"meta {key}={value!r} is not a number, string or array; convert it first")
        arrays[key] = arr
    # Written through a file object, so numpy does not append its own ".npz" to the temporary name.
    with atomic_path(target) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, **arrays)
    return target


def load_filter_graph(path: str | os.PathLike) -> tuple[np.ndarray, dict[str, Any]]:
    """Read filter_graph.npz → (W, meta); 0-d meta arrays come back as Python scalars/strings."""
    target = _resolve(path, FILTER_GRAPH_FILE)
    try:
        with np.load(target, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
    except FileNotFoundError:
        raise PartitionError(f"{target} does not exist; {_RERUN}") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise PartitionError(f"{target} is unreadable or corrupt ({exc}); {_RERUN}") from None
    w = arrays.pop("W", None)
    if w is None or w.ndim != 2 or w.shape[0] != w.shape[1]:
        raise PartitionError(f"{target} holds no square W; {_RERUN}")
    meta = {key: (arr.item() if arr.ndim == 0 else arr) for key, arr in arrays.items()}
    return w, meta
