"""CIFAR-10 and CIFAR-100 from the official python-format tar.gz archives, without torchvision."""

from __future__ import annotations

import pickle
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from nonn.data.dataset import Split
from nonn.data.fetch import Source
from nonn.data.raw import RawData
from nonn.data.unpickle import load_numpy_pickle
from nonn.errors import DataError

CIFAR10_ARCHIVE = "cifar-10-python.tar.gz"
CIFAR100_ARCHIVE = "cifar-100-python.tar.gz"
CIFAR10_SOURCES = (
    Source(
        "https://www.cs.toronto.edu/~kriz/" + CIFAR10_ARCHIVE,
        CIFAR10_ARCHIVE,
        "c58f30108f718f92721af3b95e74349a",
    ),
)
CIFAR100_SOURCES = (
    Source(
        "https://www.cs.toronto.edu/~kriz/" + CIFAR100_ARCHIVE,
        CIFAR100_ARCHIVE,
        "eb9058c3a382ffc7106e4002c42a8d85",
    ),
)


@dataclass(frozen=True)
class CifarLayout:
    """Where things are inside one CIFAR archive."""

    archive: str
    folder: str
    train: tuple[str, ...]
    test: str
    meta: str
    label_key: bytes
    names_key: bytes


CIFAR10 = CifarLayout(
    CIFAR10_ARCHIVE,
    "cifar-10-batches-py",
    tuple(f"data_batch_{i}" for i in range(1, 6)),
    "test_batch",
    "batches.meta",
    b"labels",
    b"label_names",
)
CIFAR100 = CifarLayout(
    CIFAR100_ARCHIVE,
    "cifar-100-python",
    ("train",),
    "test",
    "meta",
    b"fine_labels",
    b"fine_label_names",
)


def _key(d: dict, key: bytes):
    # Tolerate str keys too (a batch re-pickled under Python 3).
    if key in d:
        return d[key]
    return d[key.decode()]


def read_archive(path: Path, layout: CifarLayout) -> dict[str, dict]:
    """Unpickle the archive's batch and meta members, read in one pass over the stream."""
    wanted = {f"{layout.folder}/{m}": m for m in (*layout.train, layout.test, layout.meta)}
    fix = "delete it to download it again, or pass --data-dir with a good copy"
    found: dict[str, dict] = {}
    try:
        with tarfile.open(path, "r|gz") as tar:
            for member in tar:
                short = wanted.get(member.name)
                if short is not None and member.isfile():
                    found[short] = load_numpy_pickle(tar.extractfile(member))
    except (
        tarfile.TarError,
        OSError,
        EOFError,
        zlib.error,
        pickle.UnpicklingError,
        ValueError,
    ) as err:
        raise DataError(f"{path} is not a readable CIFAR archive ({err}); {fix}") from err
    missing = [m for m in wanted.values() if m not in found]
    if missing:
        raise DataError(f"{path} lacks {', '.join(f'{layout.folder}/{m}' for m in missing)}; {fix}")
    return found


def _batches_to_split(
    batches: list[dict], layout: CifarLayout, num_classes: int, path: Path
) -> Split:
    fix = "delete it to download it again"
    try:
        data = np.concatenate([np.asarray(_key(b, b"data")) for b in batches])
        labels = np.concatenate(
            [np.asarray(_key(b, layout.label_key), dtype=np.int64) for b in batches]
        )
    except (KeyError, ValueError, TypeError) as err:
        raise DataError(
            f"{path} has a batch without the expected data/labels ({err}); {fix}"
        ) from err
    if (
        data.dtype != np.uint8
        or data.ndim != 2
        or data.shape[1] != 3 * 32 * 32
        or len(labels) != len(data)
    ):
        raise DataError(
            f"{path} has a batch of shape {data.shape} ({data.dtype}) with {len(labels)} labels, "
            f"expected N×3072 uint8 with N labels; {fix}"
        )
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise DataError(f"{path} has labels outside 0..{num_classes - 1}; {fix}")
    return Split(torch.from_numpy(data.reshape(-1, 3, 32, 32)), torch.from_numpy(labels))


def read_cifar(path: Path, layout: CifarLayout) -> RawData:
    """Official train (50k) and test (10k) splits and class names of one CIFAR archive."""
    members = read_archive(path, layout)
    try:
        classes = [
            n.decode() if isinstance(n, bytes) else str(n)
            for n in _key(members[layout.meta], layout.names_key)
        ]
    except (KeyError, TypeError, UnicodeDecodeError) as err:
        raise DataError(
            f"{path} has no readable class names in {layout.meta} ({err}); delete it"
        ) from err
    train = _batches_to_split([members[m] for m in layout.train], layout, len(classes), path)
    test = _batches_to_split([members[layout.test]], layout, len(classes), path)
    return RawData(train, test, classes)


def read_cifar10(files: dict[str, Path]) -> RawData:
    return read_cifar(files[CIFAR10_ARCHIVE], CIFAR10)


def read_cifar100(files: dict[str, Path]) -> RawData:
    return read_cifar(files[CIFAR100_ARCHIVE], CIFAR100)
