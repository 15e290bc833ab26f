"""load_dataset: official files → official train/test → seeded stratified val (and optional subset)."""

from __future__ import annotations

import os
from numbers import Integral
from pathlib import Path
from typing import Iterable, Mapping

import torch

from nonn.data.dataset import Dataset
from nonn.data.fetch import (
    MIRROR_ENV,
    Source,
    as_sources,
    default_data_dir,
    fetch_files,
    mirrored,
)
from nonn.data.normalize import channel_stats
from nonn.data.registry import get_entry
from nonn.data.splits import fraction_count, stratified_split
from nonn.errors import DataError


def _resolve_sources(
    name: str, official: tuple[Source, ...], sources: Mapping[str, Iterable] | None
) -> list[Source]:
    if sources is not None and name in sources:
        return as_sources(sources[name])
    mirror = os.environ.get(MIRROR_ENV)
    urls = [Source(mirrored(s.url, mirror), s.filename, s.md5, s.content_md5) for s in official]
    return list(dict.fromkeys(urls))  # a mirror may map two hosts onto one URL


def _index(ix) -> torch.Tensor:
    return torch.from_numpy(ix)


def load_dataset(
    name: str,
    data_dir: str | os.PathLike | None = None,
    *,
    limit_train: int | None = None,
    val_fraction: float = 0.1,
    seed: int = 0,
    download: bool = True,
    sources: Mapping[str, Iterable] | None = None,
) -> Dataset:
    """Load a dataset; val is carved from the official train split, seeded and stratified.

    `sources` maps a dataset name to (url, filename, md5) tuples replacing the official URL
    table; `$NONN_DATA_MIRROR` replaces the official host of the default table.
    """
    entry = get_entry(name)
    if not (isinstance(val_fraction, (int, float)) and 0.0 < val_fraction < 1.0):
        raise DataError(f"val_fraction must be in (0, 1), got {val_fraction!r}: training keeps its best-on-validation "
                        "weights; pass e.g. 0.1")
    if limit_train is not None and (
        isinstance(limit_train, bool) or not isinstance(limit_train, Integral) or limit_train < 1
    ):
        raise DataError(
            f"limit_train must be a whole number >= 1, got {limit_train!r}; omit it to use all"
        )

    files: dict[str, Path] = {}
    chosen = _resolve_sources(entry.name, entry.sources, sources)
    if chosen:
        root = Path(data_dir).expanduser() if data_dir is not None else default_data_dir()
        files = fetch_files(
            entry.name, chosen, root, download_missing=download, extra_dirs=entry.extra_dirs,
            install_hint=entry.install_hint,
        )
    raw = entry.read(files)

    labels = raw.train.y.numpy()
    rest, val = stratified_split(labels, fraction_count(len(labels), val_fraction), seed)
    train, val_split = raw.train.take(_index(rest)), raw.train.take(_index(val))
    if limit_train is not None and limit_train < len(train):
        # Val is carved before this, so limit_train never changes val; seed+1 keeps the draws apart.
        _, keep = stratified_split(train.y.numpy(), int(limit_train), seed + 1)
        train = train.take(_index(keep))

    mean, std = channel_stats(train.x)
    c, h, w = raw.train.x.shape[1:]
    return Dataset(
        name=entry.name,
        train=train,
        val=val_split,
        test=raw.test,
        classes=raw.classes,
        mean=mean,
        std=std,
        input_shape=(int(c), int(h), int(w)),
        augment=entry.augment,
    )
