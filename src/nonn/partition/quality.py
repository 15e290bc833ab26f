"""Quality figures of a grouping on a dense weighted graph: modularity, intra-group weight share."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def modularity(adjacency: np.ndarray, groups: Sequence[Sequence[int]]) -> float:
    """Newman modularity (resolution 1), the same value as ``nx.community.modularity``.

    Computed densely with numpy so it stays fast on the unthresholded graph, where nearly
    every pair is an edge. 0.0 when the graph has no edges (modularity is undefined there).
    """
    total = adjacency.sum()  # = 2m for a symmetric adjacency without self-loops
    if total <= 0:
        return 0.0
    degree = adjacency.sum(axis=1)
    q = 0.0
    for g in groups:
        idx = np.asarray(g, dtype=np.intp)
        q += adjacency[np.ix_(idx, idx)].sum() / total - (degree[idx].sum() / total) ** 2
    return float(q)


def intra_weight_share(adjacency: np.ndarray, groups: Sequence[Sequence[int]]) -> float:
    """Share of the total edge weight that lies inside groups (0.0 when there is no weight)."""
    total = adjacency.sum()
    if total <= 0:
        return 0.0
    inside = sum(adjacency[np.ix_(idx, idx)].sum() for idx in (np.asarray(g, dtype=np.intp) for g in groups))
    return float(inside / total)


def isolated_fraction(adjacency: np.ndarray) -> float:
    """Fraction of nodes without any edge."""
    return float(np.mean(~np.any(adjacency > 0, axis=1)))
