"""MNIST and Fashion-MNIST from their four official gzip IDX files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from nonn.data.dataset import Split
from nonn.data.fetch import Source
from nonn.data.idx import read_idx
from nonn.data.raw import RawData
from nonn.errors import DataError

TRAIN_IMAGES = "train-images-idx3-ubyte.gz"
TRAIN_LABELS = "train-labels-idx1-ubyte.gz"
TEST_IMAGES = "t10k-images-idx3-ubyte.gz"
TEST_LABELS = "t10k-labels-idx1-ubyte.gz"

MNIST_MD5 = {
    TRAIN_IMAGES: "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    TRAIN_LABELS: "d53e105ee54ea40749a09fcbcd1e9432",
    TEST_IMAGES: "9fb629c4189551a2d022fa330f9573f3",
    TEST_LABELS: "ec29112dd5afa0611ce80d1b7f02629c",
}
FASHION_MD5 = {
    TRAIN_IMAGES: "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    TRAIN_LABELS: "25c81989df183df01b3e8a0aad5dffbe",
    TEST_IMAGES: "bef4ecab320f06d8554ea6380940ec79",
    TEST_LABELS: "bb300cfdad3c16e7a12a480ee83cd310",
}
# MD5 of each file's decompressed IDX bytes: the genuine data, however it was re-compressed (Debian's
# dataset-fashion-mnist re-gzips its files, so their archive MD5 differs from the official one).
MNIST_CONTENT_MD5 = {
    TRAIN_IMAGES: "6bbc9ace898e44ae57da46a324031adb",
    TRAIN_LABELS: "a25bea736e30d166cdddb491f175f624",
    TEST_IMAGES: "2646ac647ad5339dbf082846283269ea",
    TEST_LABELS: "27ae3e4e09519cfbb04c329615203637",
}
FASHION_CONTENT_MD5 = {
    TRAIN_IMAGES: "f4a8712d7a061bf5bd6d2ca38dc4d50a",
    TRAIN_LABELS: "9018921c3c673c538a1fc5bad174d6f9",
    TEST_IMAGES: "8181f5470baa50b63fa0f6fddb340f0a",
    TEST_LABELS: "15d484375f8d13e6eb1aabb0c3f46965",
}
# The original host often refuses downloads, so the widely used S3 copy is tried first.
MNIST_BASES = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)
FASHION_BASES = ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",)

MNIST_SOURCES = tuple(
    Source(base + f, f, md5, MNIST_CONTENT_MD5[f]) for base in MNIST_BASES for f, md5 in MNIST_MD5.items()
)
FASHION_SOURCES = tuple(
    Source(base + f, f, md5, FASHION_CONTENT_MD5[f])
    for base in FASHION_BASES
    for f, md5 in FASHION_MD5.items()
)

MNIST_CLASSES = [str(d) for d in range(10)]
FASHION_CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]


def _split(images: Path, labels: Path) -> Split:
    x = read_idx(images, 3)
    y = read_idx(labels, 1)
    if x.shape[0] != y.shape[0]:
        raise DataError(
            f"{images.name} has {x.shape[0]} images but {labels.name} has {y.shape[0]} labels; "
            "delete both to download them again"
        )
    if y.size and int(y.max()) >= 10:
        raise DataError(
            f"{labels} has label {int(y.max())}, expected 0..9; delete it to download it again"
        )
    return Split(torch.from_numpy(x).unsqueeze(1), torch.from_numpy(y.astype(np.int64)))


def _reader(classes: list[str]):
    def read(files: dict[str, Path]) -> RawData:
        """The official 60k/10k split (smaller when the files are smaller)."""
        train = _split(files[TRAIN_IMAGES], files[TRAIN_LABELS])
        test = _split(files[TEST_IMAGES], files[TEST_LABELS])
        if train.x.shape[1:] != test.x.shape[1:]:
            raise DataError(
                f"train images are {tuple(train.x.shape[2:])} but test images are "
                f"{tuple(test.x.shape[2:])}; delete the files to download them again"
            )
        return RawData(train, test, list(classes))

    return read


read_mnist = _reader(MNIST_CLASSES)
read_fashion_mnist = _reader(FASHION_CLASSES)
