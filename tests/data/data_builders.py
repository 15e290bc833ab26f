"""Build small files in the genuine CIFAR and MNIST formats, with contents that encode the labels."""

from __future__ import annotations

import gzip
import hashlib
import io
import pickle
import struct
import tarfile
from pathlib import Path

import numpy as np


def md5_of(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def cifar_images(labels: np.ndarray, batch: int) -> np.ndarray:
    """N×3072 rows: channel 0 constant = batch id, channel 1 constant = label, channel 2 = 8·row index."""
    n = len(labels)
    img = np.zeros((n, 3, 32, 32), dtype=np.uint8)
    img[:, 0] = batch
    img[:, 1] = labels.reshape(n, 1, 1)
    img[:, 2] = (np.arange(32, dtype=np.uint8) * 8).reshape(1, 32, 1)
    return img.reshape(n, 3072)


def _add(tar: tarfile.TarFile, name: str, obj) -> None:
    # Protocol 2 like the original Python 2 pickles; dict keys as bytes like encoding='bytes' yields.
    blob = pickle.dumps(obj, protocol=2)
    info = tarfile.TarInfo(name)
    info.size = len(blob)
    tar.addfile(info, io.BytesIO(blob))


def build_cifar10(path: Path, per_batch: int = 20, seed: int = 0) -> dict:
    """A cifar-10-python.tar.gz with five train batches and a test batch of `per_batch` images."""
    rng = np.random.default_rng(seed)
    names = [f"class{i}" for i in range(10)]
    labels = {}
    with tarfile.open(path, "w:gz") as tar:
        _add(tar, "cifar-10-batches-py/batches.meta", {b"label_names": [n.encode() for n in names]})
        for b, member in enumerate(
            [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"], start=1
        ):
            y = np.resize(np.arange(10), per_batch)[rng.permutation(per_batch)]
            labels[member] = y
            _add(
                tar,
                f"cifar-10-batches-py/{member}",
                {
                    b"batch_label": member.encode(),
                    b"labels": [int(v) for v in y],
                    b"data": cifar_images(y, b),
                    b"filenames": [b"x.png"] * per_batch,
                },
            )
    return {"classes": names, "labels": labels}


def build_cifar100(path: Path, n_train: int = 200, n_test: int = 100, seed: int = 0) -> dict:
    """A cifar-100-python.tar.gz with train/test/meta members and fine and coarse labels."""
    rng = np.random.default_rng(seed)
    fine = [f"fine{i:02d}" for i in range(100)]
    coarse = [f"coarse{i:02d}" for i in range(20)]
    labels = {}
    with tarfile.open(path, "w:gz") as tar:
        _add(
            tar,
            "cifar-100-python/meta",
            {
                b"fine_label_names": [n.encode() for n in fine],
                b"coarse_label_names": [n.encode() for n in coarse],
            },
        )
        for b, (member, n) in enumerate([("train", n_train), ("test", n_test)], start=1):
            y = np.resize(np.arange(100), n)[rng.permutation(n)]
            labels[member] = y
            _add(
                tar,
                f"cifar-100-python/{member}",
                {
                    b"filenames": [b"x.png"] * n,
                    b"batch_label": member.encode(),
                    b"fine_labels": [int(v) for v in y],
                    b"coarse_labels": [int(v) // 5 for v in y],
                    b"data": cifar_images(y, b),
                },
            )
    return {"classes": fine, "labels": labels}


def idx_bytes(
    array: np.ndarray, magic: int | None = None, claimed_shape: tuple | None = None
) -> bytes:
    """IDX encoding of a uint8 array (optionally with a wrong magic number or header shape)."""
    shape = claimed_shape or array.shape
    magic = (0x08 << 8) | len(shape) if magic is None else magic
    return (
        struct.pack(">I", magic)
        + struct.pack(f">{len(shape)}I", *shape)
        + array.astype(np.uint8).tobytes()
    )


MNIST_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)


def mnist_arrays(n_train: int = 40, n_test: int = 20, seed: int = 0) -> dict[str, np.ndarray]:
    """Images whose top-left pixel is 20·label and whose pixel (1, 0) is the index in the file."""
    rng = np.random.default_rng(seed)
    out = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        y = np.resize(np.arange(10), n)[rng.permutation(n)].astype(np.uint8)
        x = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        x[:, 0, 0] = y * 20
        x[:, 1, 0] = np.arange(n)
        out[f"{prefix}-images-idx3-ubyte.gz"] = x
        out[f"{prefix}-labels-idx1-ubyte.gz"] = y
    return out


def write_mnist(folder: Path, arrays: dict[str, np.ndarray]) -> dict[str, str]:
    """Write the four gzip IDX files into `folder`; returns filename → md5."""
    folder.mkdir(parents=True, exist_ok=True)
    sums = {}
    for name, arr in arrays.items():
        path = folder / name
        path.write_bytes(gzip.compress(idx_bytes(arr)))
        sums[name] = md5_of(path)
    return sums
