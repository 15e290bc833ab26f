"""The filter graph W: pairwise filter weights accumulated over images, streamed in batches."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from nonn.errors import PartitionError
from nonn.partition.summaries import check_top_k, filter_summaries

RULES = ("ah", "coact")
"""``ah``: Activation-Hub, a_i·a_j·|a_i − a_j| (the NoNN paper's rule); ``coact``: a_i·a_j."""

# Elements of the largest temporary (images × kept × kept) built per step: 2**22 float64 = 32 MiB.
_STEP_ELEMENTS = 2**22


def check_rule(rule: str) -> str:
    """Return the rule name, or raise PartitionError listing the choices."""
    if rule not in RULES:
        raise PartitionError(f"unknown filter-graph rule {rule!r}; choose one of: {', '.join(RULES)}")
    return rule


class FilterGraphAccumulator:
    """Accumulates W (C×C, float64) batch by batch; holds only W, never the activations."""

    def __init__(self, num_filters: int, rule: str = "ah", top_k: int = 50):
        if isinstance(num_filters, bool) or not isinstance(num_filters, (int, np.integer)) or num_filters < 1:
            raise PartitionError(f"num_filters={num_filters!r} must be a positive integer (the teacher's C)")
        self.num_filters = int(num_filters)
        self.rule = check_rule(rule)
        self.top_k = check_top_k(top_k)
        self.images = 0
        self._w = np.zeros((self.num_filters, self.num_filters), dtype=np.float64)

    def update(self, spatial_means_batch) -> None:
        """Add one batch (B×C per-image spatial means) to W."""
        batch = np.asarray(spatial_means_batch)
        if batch.ndim != 2 or batch.shape[1] != self.num_filters:
            raise PartitionError(
                f"batch has shape {batch.shape}, expected (B, {self.num_filters}); "
                "pass per-image spatial means of the same layer every time"
            )
        kept = min(self.top_k, self.num_filters)
        step = max(1, _STEP_ELEMENTS // (kept * kept))
        for start in range(0, batch.shape[0], step):
            a, _ = filter_summaries(batch[start : start + step], self.top_k)
            if self.rule == "coact":
                self._w += a.T @ a
            elif kept == self.num_filters:
                self._w += _hub_weights_dense(a)
            else:
                self._w += _hub_weights_sparse(a, kept)
        self.images += batch.shape[0]

    def result(self) -> np.ndarray:
        """W so far: symmetric, zero diagonal, a fresh copy."""
        w = (self._w + self._w.T) / 2.0
        np.fill_diagonal(w, 0.0)
        return w


def _hub_weights_dense(a: np.ndarray) -> np.ndarray:
    """Σ_n a_i·a_j·|a_i − a_j| over all filter pairs (B×C×C temporary)."""
    pair = a[:, :, None] * a[:, None, :]
    pair *= np.abs(a[:, :, None] - a[:, None, :])
    return pair.sum(axis=0)


def _hub_weights_sparse(a: np.ndarray, kept: int) -> np.ndarray:
    """Σ_n a_i·a_j·|a_i − a_j| over each image's kept filters only (B×kept×kept temporary)."""
    c = a.shape[1]
    # a holds at most `kept` nonzero values per row, so its `kept` largest include all of them.
    idx = np.argsort(-a, axis=1, kind="stable")[:, :kept]
    v = np.take_along_axis(a, idx, axis=1)
    pair = v[:, :, None] * v[:, None, :]
    pair *= np.abs(v[:, :, None] - v[:, None, :])
    flat = idx[:, :, None] * c + idx[:, None, :]
    return np.bincount(flat.ravel(), weights=pair.ravel(), minlength=c * c).reshape(c, c)


def build_filter_graph(activations, rule: str = "ah", top_k: int = 50, batch_size: int = 256) -> np.ndarray:
    """W from an N×C array (or an iterable of B×C batches) of per-image filter spatial means.

    The array is streamed through a FilterGraphAccumulator ``batch_size`` rows at a time, so a
    memory-mapped array never has to be read whole.
    """
    check_rule(rule)
    check_top_k(top_k)
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise PartitionError(f"batch_size={batch_size!r} must be a positive integer")
    if hasattr(activations, "ndim"):
        if activations.ndim != 2:
            raise PartitionError(
                f"activations have shape {tuple(activations.shape)}; pass an N×C array of per-image spatial means"
            )
        batches: Iterable = (activations[s : s + batch_size] for s in range(0, activations.shape[0], batch_size))
    else:
        batches = activations
    acc = None
    for batch in batches:
        batch = np.asarray(batch)
        if acc is None:
            if batch.ndim != 2:
                raise PartitionError(f"a batch has shape {batch.shape}; pass B×C arrays of per-image spatial means")
            acc = FilterGraphAccumulator(batch.shape[1], rule=rule, top_k=top_k)
        acc.update(batch)
    if acc is None or acc.images == 0:
        raise PartitionError("no images were given; pass at least one row of activations")
    return acc.result()
