"""Per-image filter activation summaries: clamp, normalise by the image's maximum, keep the top k."""

from __future__ import annotations

import numpy as np

from nonn.errors import PartitionError


def check_top_k(top_k: int) -> int:
    """Return top_k as an int, or raise PartitionError when it is not a positive integer."""
    if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 1:
        raise PartitionError(f"top_k={top_k!r} is not a positive integer; choose top_k >= 1 (default 50)")
    return int(top_k)


def filter_summaries(spatial_means, top_k: int = 50) -> tuple[np.ndarray, np.ndarray]:
    """Turn an N×C array of per-image spatial means into normalised, top-k-masked summaries.

    Each row is clamped at 0 and divided by its maximum (all-zero rows stay zero); only the
    ``top_k`` largest values of a row are kept (all of them when C <= top_k), the rest are
    zeroed. Returns ``(a, keep_mask)``: ``a`` is N×C float64 and ``keep_mask`` marks the kept
    filters that are active (a kept filter whose value is 0 contributes nothing, so it is not
    marked). Ties at the cut keep the lower filter index.
    """
    top_k = check_top_k(top_k)
    x = np.asarray(spatial_means, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] == 0:
        raise PartitionError(f"activations have shape {x.shape}; pass an N×C array of per-image filter spatial means")
    if not np.all(np.isfinite(x)):
        raise PartitionError("activations contain NaN or inf; check the teacher's outputs for the images used")
    a = np.maximum(x, 0.0)
    row_max = a.max(axis=1, keepdims=True) if a.shape[0] else np.zeros((0, 1))
    # Rows that are all zero keep a divisor of 1 so they stay zero instead of becoming NaN.
    a /= np.where(row_max > 0, row_max, 1.0)
    n, c = a.shape
    if top_k < c and n:
        order = np.argsort(-a, axis=1, kind="stable")
        selected = np.zeros_like(a, dtype=bool)
        np.put_along_axis(selected, order[:, :top_k], True, axis=1)
        a[~selected] = 0.0
    keep_mask = a > 0
    return a, keep_mask
