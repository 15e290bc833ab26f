"""The table of known datasets: how to get each one's files, read them, and augment it.

``register_dataset(name, read, ...)`` adds a user's own; ``load_dataset(name)`` then loads it like a built-in one
(seeded val split, ``limit_train``, channel statistics). Registrations live in this process only.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from nonn.data.cifar import (
    CIFAR10_SOURCES,
    CIFAR100_SOURCES,
    read_cifar10,
    read_cifar100,
)
from nonn.data.dataset import AugmentSpec, Split
from nonn.data.digits import read_digits
from nonn.data.fetch import Source, as_sources
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


_NAME = re.compile(r"[a-z0-9][a-z0-9.-]*")


def _key(name: object) -> str:
    return str(name).strip().lower().replace("_", "-")


def register_dataset(
    name: str,
    read: Callable[[dict[str, Path]], RawData],
    *,
    augment: AugmentSpec | None = None,
    sources: Iterable = (),
    extra_dirs: Iterable[str] = (),
    install_hint: str | None = None,
    replace: bool = False,
) -> DatasetEntry:
    """Add a dataset that ``load_dataset(name)`` and the pipeline's ``data.name`` then accept.

    ``read(files)`` returns ``RawData(train, test, classes)``: uint8 N×C×H×W images and int64 labels in
    ``0..len(classes)-1``; ``files`` maps the filename of each of ``sources`` (``(url, filename[, md5])`` tuples,
    found in the data folder or downloaded, verified) to its local path, and is empty when there are none.
    ``augment`` is the default training augmentation (none when omitted); ``extra_dirs`` are folders under the data
    folder where other tools keep the same files; ``install_hint`` says how to get them without the network.
    ``name`` is lowercase letters, digits, '.' and '-'; ``replace=True`` replaces a dataset of that name.
    """
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        hint = _key(name) if isinstance(name, str) and _NAME.fullmatch(_key(name)) else "my-data"
        raise DataError(f"dataset name {name!r} must be lowercase letters, digits, '.' and '-'; use e.g. '{hint}'")
    if name in DATASETS and not replace:
        raise DataError(f"dataset '{name}' is already registered; choose another name or pass replace=True")
    if not callable(read):
        raise DataError(f"dataset '{name}' needs a reader: a function of the files dict that returns "
                        f"nonn.data.RawData(train, test, classes), got {read!r}")
    augment = AugmentSpec() if augment is None else augment
    if not (isinstance(augment, AugmentSpec) and isinstance(augment.pad, int) and not isinstance(augment.pad, bool)
            and augment.pad >= 0 and isinstance(augment.flip, bool)):
        raise DataError(f"dataset '{name}': augment must be nonn.data.AugmentSpec(pad=<int >= 0>, flip=<bool>), "
                        f"got {augment!r}")
    if isinstance(sources, (str, bytes)):
        raise DataError(f"dataset '{name}': sources must be a list of (url, filename[, md5]) tuples, got {sources!r}")
    chosen = tuple(as_sources(sources))
    for source in chosen:
        if not all(isinstance(v, str) and v for v in source[:2]):
            raise DataError(f"dataset '{name}': bad source {tuple(source)!r}; give (url, filename[, md5]) strings")
    dirs = None if isinstance(extra_dirs, str) else tuple(extra_dirs)
    if dirs is None or not all(isinstance(d, str) for d in dirs):
        raise DataError(f"dataset '{name}': extra_dirs must be a list of folder names, got {extra_dirs!r}")
    if install_hint is not None and not isinstance(install_hint, str):
        raise DataError(f"dataset '{name}': install_hint must be a sentence or None, got {install_hint!r}")
    entry = DatasetEntry(name, _checked_reader(name, read), augment, chosen, dirs, install_hint)
    DATASETS[name] = entry
    return entry


def _checked_reader(name: str, read: Callable[[dict[str, Path]], RawData]) -> Callable[[dict[str, Path]], RawData]:
    """``read`` whose result is checked, so a user's reader that returns the wrong thing is a DataError."""

    def checked(files: dict[str, Path]) -> RawData:
        raw = read(files)
        expected = "its reader must return nonn.data.RawData(train=Split, test=Split, classes=[names])"
        if not (isinstance(raw, tuple) and len(raw) == 3):
            raise DataError(f"dataset '{name}': {expected}, got {type(raw).__name__}")
        train, test, classes = raw
        if not (isinstance(train, Split) and isinstance(test, Split)):
            raise DataError(f"dataset '{name}': {expected}; train and test must be nonn.data.Split(x, y)")
        if not (isinstance(classes, (list, tuple)) and classes and all(isinstance(c, str) for c in classes)):
            raise DataError(f"dataset '{name}': {expected}; classes must be a non-empty list of names")
        if train.x.shape[1:] != test.x.shape[1:]:
            raise DataError(f"dataset '{name}': train images are {tuple(train.x.shape[1:])} but test images "
                            f"{tuple(test.x.shape[1:])}; give both splits the same C×H×W")
        for split_name, split in (("train", train), ("test", test)):
            if len(split) == 0:
                raise DataError(f"dataset '{name}': the {split_name} split is empty; give it images")
            if int(split.y.min()) < 0 or int(split.y.max()) >= len(classes):
                raise DataError(f"dataset '{name}': {split_name} labels must be in 0..{len(classes) - 1}, one "
                                f"per class name; got {int(split.y.min())}..{int(split.y.max())}")
        return RawData(train, test, list(classes))

    return checked


def dataset_names() -> list[str]:
    """Names accepted by load_dataset, sorted."""
    return sorted(DATASETS)


def get_entry(name: str) -> DatasetEntry:
    """The registry entry for `name` (case and '_'/'-' insensitive), else a DataError listing choices."""
    key = _key(name)
    if key not in DATASETS:
        raise DataError(f"unknown dataset '{name}'; choose one of: {', '.join(dataset_names())}")
    return DATASETS[key]
