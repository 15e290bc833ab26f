"""The random-partition control for ablations: filters dealt into K groups at random."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from nonn.errors import PartitionError
from nonn.partition.grouping import check_k
from nonn.partition.quality import intra_weight_share, isolated_fraction, modularity
from nonn.partition.result import Partition
from nonn.partition.thresholding import (
    edge_threshold,
    normalised_graph,
    thresholded_adjacency,
)


def random_partition(
    num_filters: int,
    k: int,
    seed: int = 0,
    sizes: Sequence[int] | None = None,
    W=None,
    threshold_percentile: float = 99,
) -> Partition:
    """K random groups: sizes as even as possible (the larger ones first), or the given sizes in order.

    Group i has ``sizes[i]`` filters, so ``sizes=real.sizes`` gives a size-matched control.
    With a W, the quality figures are computed as for partition_filters (threshold at
    ``threshold_percentile``); without one they are None.
    """
    if isinstance(num_filters, bool) or not isinstance(num_filters, (int, np.integer)) or num_filters < 1:
        raise PartitionError(f"num_filters={num_filters!r} must be a positive integer (the teacher's C)")
    c = int(num_filters)
    k = check_k(k, c)
    if sizes is None:
        sizes = [c // k + (1 if i < c % k else 0) for i in range(k)]
    else:
        sizes = [int(s) for s in sizes]
        if len(sizes) != k or min(sizes) < 1 or sum(sizes) != c:
            raise PartitionError(
                f"sizes={sizes} must be {k} positive numbers that sum to {c}; or leave sizes unset for even groups"
            )
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise PartitionError(f"seed={seed!r} must be an integer")
    perm = np.random.default_rng(seed).permutation(c)
    cuts = np.cumsum(sizes)[:-1]
    groups = [sorted(int(f) for f in part) for part in np.split(perm, cuts)]
    part = Partition(groups=groups, method="random", seed=int(seed))
    if W is not None:
        w = normalised_graph(W)
        if w.shape[0] != c:
            raise PartitionError(f"W is {w.shape[0]}×{w.shape[0]} but num_filters={c}; pass the W of the same teacher")
        threshold = edge_threshold(w, threshold_percentile)
        adjacency = thresholded_adjacency(w, threshold)
        part.modularity = modularity(w, groups)
        part.modularity_thresholded = modularity(adjacency, groups)
        part.isolated_fraction = isolated_fraction(adjacency)
        part.intra_weight_share = intra_weight_share(w, groups)
        part.threshold = threshold
        part.threshold_percentile = float(threshold_percentile)
    return part
