"""The table of known datasets: how to get each one's files, read them, and augment it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from nonn.data.cifar import (
    CIFAR10_SOURCES,
    CIFAR100_SOURCES,
    read_cifar10,
    read_cifar100,
)
from nonn.data.dataset import AugmentSpec
from nonn.data.digits import read_digits
from nonn.data.fetch import Source
from nonn.data.mnist import (
    FASHION_SOURCES,
    MNIST_SOURCES,
    read_fashion_mnist,
    read_mnist,
)
from nonn.data.raw import RawData
from nonn.errors import DataError


@dataclass(frozen=True)
class DatasetEntry:
    """One dataset: its official files (none when bundled), reader and default augmentation."""

    name: str
    read: Callable[[dict[str, Path]], RawData]
    augment: AugmentSpec
    sources: tuple[Source, ...] = ()
    # Folders (relative to the data dir) where other tools keep the same files.
    extra_dirs: tuple[str, ...] = ()
    # How to get the files without the network (named when they cannot be found or downloaded).
    install_hint: str | None = None


DATASETS: dict[str, DatasetEntry] = {
    entry.name: entry
    for entry in (
        DatasetEntry("digits", read_digits, AugmentSpec(pad=1, flip=False)),
        DatasetEntry(
            "mnist", read_mnist, AugmentSpec(pad=2, flip=False), MNIST_SOURCES, ("MNIST/raw",)
        ),
        # Clothes are left-right symmetric, so unlike digits a mirror image is still the same class.
        DatasetEntry(
            "fashion-mnist",
            read_fashion_mnist,
            AugmentSpec(pad=2, flip=True),
            FASHION_SOURCES,
            ("FashionMNIST/raw",),
            "on Debian: apt-get install dataset-fashion-mnist",
        ),
        DatasetEntry("cifar10", read_cifar10, AugmentSpec(pad=4, flip=True), CIFAR10_SOURCES),
        DatasetEntry("cifar100", read_cifar100, AugmentSpec(pad=4, flip=True), CIFAR100_SOURCES),
    )
}


def dataset_names() -> list[str]:
    """Names accepted by load_dataset, sorted."""
    return sorted(DATASETS)


def get_entry(name: str) -> DatasetEntry:
    """The registry entry for `name` (case and '_'/'-' insensitive), else a DataError listing choices."""
    key = str(name).strip().lower().replace("_", "-")
    if key not in DATASETS:
        raise DataError(f"unknown dataset '{name}'; choose one of: {', '.join(dataset_names())}")
    return DATASETS[key]
