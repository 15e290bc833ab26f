"""A threshold chosen from the graph: the percentile whose K groups are most modular on the whole of W.

At the authors' 99th percentile most filters of a small teacher keep no edge (half of a WRN-16-4's 256 on
Fashion-MNIST), so Louvain sees a few small communities and the grouping is mostly filler: its groups then hold
little more of W's weight than random groups do. Lower percentiles keep more of the graph. Which one serves is
a property of the graph, so it is measured there: each candidate percentile's K groups are scored by their
Newman modularity on the unthresholded normalised W, and the best is kept (ties: the higher percentile).
"""

from __future__ import annotations

from nonn.partition.result import Partition

CANDIDATE_PERCENTILES = (99.0, 98.0, 95.0, 90.0, 75.0, 50.0, 0.0)


def best_threshold_partition(W, k: int, *, seed: int = 0, resolution: float = 0.7, max_imbalance: float = 1.5,
                             candidates=CANDIDATE_PERCENTILES) -> Partition:
    """``partition_filters`` at every candidate percentile; the one with the highest modularity on W."""
    from nonn.partition.communities import partition_filters
    best, scores = None, []
    for pct in candidates:
        part = partition_filters(W, k, seed=seed, resolution=resolution, threshold_percentile=float(pct),
                                 max_imbalance=max_imbalance)
        scores.append([float(pct), float(part.modularity)])
        if best is None or part.modularity > best.modularity + 1e-12:
            best = part
    best.threshold_scores = scores
    return best
