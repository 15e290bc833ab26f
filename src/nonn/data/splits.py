"""Seeded, stratified index splits: every class keeps its share, and the result is reproducible."""

from __future__ import annotations

import numpy as np


def stratified_counts(labels: np.ndarray, count: int) -> dict[int, int]:
    """How many of `count` items each class gets, proportional to its size (largest remainder)."""
    classes, sizes = np.unique(labels, return_counts=True)
    total = int(sizes.sum())
    exact = sizes * count / total if total else sizes * 0.0
    quota = np.floor(exact).astype(np.int64)
    remainder = exact - quota
    # Ties go to the earlier class (stable sort), so the allocation is deterministic.
    for i in np.argsort(-remainder, kind="stable")[: count - int(quota.sum())]:
        quota[i] += 1
    return {int(c): int(q) for c, q in zip(classes, quota, strict=True)}


def stratified_split(labels: np.ndarray, count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split indices of `labels` into (rest, chosen) with `count` chosen, stratified; both sorted."""
    labels = np.asarray(labels)
    count = max(0, min(int(count), labels.shape[0]))
    rng = np.random.default_rng(seed)
    chosen = []
    for cls, quota in stratified_counts(labels, count).items():
        members = np.flatnonzero(labels == cls)
        chosen.append(rng.permutation(members)[:quota])
    picked = np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, dtype=np.int64)
    mask = np.ones(labels.shape[0], dtype=bool)
    mask[picked] = False
    return np.flatnonzero(mask), picked.astype(np.int64)


def fraction_count(n: int, fraction: float) -> int:
    """The number of items a fraction of n stands for (rounded to nearest)."""
    return int(round(n * fraction))
