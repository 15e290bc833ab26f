"""Checking, normalising and thresholding a filter graph W before community detection."""

from __future__ import annotations

import numpy as np

from nonn.errors import PartitionError


def normalised_graph(W) -> np.ndarray:
    """W checked (square, finite, nonnegative, symmetric) and scaled to max 1, diagonal zeroed."""
    w = np.array(W, dtype=np.float64, copy=True)
    if w.ndim != 2 or w.shape[0] != w.shape[1] or w.shape[0] == 0:
        raise PartitionError(f"W has shape {w.shape}; pass a square C×C filter graph (see build_filter_graph)")
    if not np.all(np.isfinite(w)):
        raise PartitionError("W contains NaN or inf; rebuild the filter graph from finite activations")
    if np.any(w < 0):
        raise PartitionError("W has negative weights; pass a nonnegative filter graph (see build_filter_graph)")
    np.fill_diagonal(w, 0.0)
    top = w.max()
    if not np.allclose(w, w.T, rtol=1e-9, atol=1e-12 * max(top, 1e-300)):
        raise PartitionError("W is not symmetric; pass a symmetric filter graph, e.g. (W + W.T) / 2")
    w = (w + w.T) / 2.0
    if top > 0:
        w /= top
    return w


def check_percentile(threshold_percentile: float) -> float:
    """Return the percentile as a float, or raise PartitionError when it is outside [0, 100]."""
    try:
        p = float(threshold_percentile)
    except (TypeError, ValueError):
        raise PartitionError(f"threshold_percentile={threshold_percentile!r} must be a number in [0, 100] or "
                             "'auto'; the authors used 99") from None
    if not 0.0 <= p <= 100.0:
        raise PartitionError(f"threshold_percentile={threshold_percentile!r} is outside [0, 100]; the authors used 99")
    return p


def edge_threshold(w: np.ndarray, threshold_percentile: float) -> float:
    """The cut value: that percentile of the nonzero upper-triangle weights (0.0 when there are none)."""
    p = check_percentile(threshold_percentile)
    upper = w[np.triu_indices(w.shape[0], k=1)]
    nonzero = upper[upper > 0]
    if nonzero.size == 0:
        return 0.0
    return float(np.percentile(nonzero, p))


def thresholded_adjacency(w: np.ndarray, threshold: float) -> np.ndarray:
    """Dense adjacency that keeps the positive weights at or above the threshold."""
    return np.where((w >= threshold) & (w > 0), w, 0.0)
