"""partition_filters: threshold W, find Louvain communities, group them into K balanced groups."""

from __future__ import annotations

import math

import networkx as nx
import numpy as np

from nonn.errors import PartitionError
from nonn.partition.grouping import check_k, check_max_imbalance, group_communities
from nonn.partition.quality import intra_weight_share, isolated_fraction, modularity
from nonn.partition.result import Partition
from nonn.partition.thresholding import (
    edge_threshold,
    normalised_graph,
    thresholded_adjacency,
)


def graph_from_adjacency(adjacency: np.ndarray) -> nx.Graph:
    """An nx.Graph with every filter as a node (isolated ones too) and the positive weights as edges."""
    g = nx.Graph()
    g.add_nodes_from(range(adjacency.shape[0]))
    rows, cols = np.nonzero(np.triu(adjacency, k=1))
    g.add_weighted_edges_from(zip(rows.tolist(), cols.tolist(), adjacency[rows, cols].tolist()))
    return g


def louvain(adjacency: np.ndarray, resolution: float, seed: int) -> list[list[int]]:
    """Seeded Louvain communities of the thresholded graph, each sorted, ordered by smallest filter."""
    g = graph_from_adjacency(adjacency)
    if g.number_of_edges() == 0:
        return [[n] for n in range(adjacency.shape[0])]
    found = nx.community.louvain_communities(g, weight="weight", resolution=resolution, seed=seed)
    return sorted((sorted(c) for c in found), key=lambda c: c[0])


def partition_filters(
    W,
    k: int,
    *,
    seed: int = 0,
    resolution: float = 0.7,
    threshold_percentile: float | str = 99,
    max_imbalance: float = 1.5,
) -> Partition:
    """Split the C filters of W into exactly k balanced groups that follow W's communities.

    W is scaled to max 1; edges at or above ``threshold_percentile`` of the nonzero weights
    are kept; Louvain (seeded) finds communities; they are grouped so that the largest group
    is at most ``max_imbalance`` × the smallest whenever any grouping allows it (see
    ``nonn.partition.grouping``). Same W, k and seed give the same groups. ``"auto"`` chooses the
    percentile from the graph (``nonn.partition.threshold_choice``).
    """
    if isinstance(threshold_percentile, str) and threshold_percentile == "auto":
        from nonn.partition.threshold_choice import best_threshold_partition
        return best_threshold_partition(W, k, seed=seed, resolution=resolution, max_imbalance=max_imbalance)
    w = normalised_graph(W)
    c = w.shape[0]
    k = check_k(k, c)
    max_imbalance = check_max_imbalance(max_imbalance)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise PartitionError(f"seed={seed!r} must be an integer")
    resolution = float(resolution)
    if not (math.isfinite(resolution) and resolution > 0):
        raise PartitionError(f"resolution={resolution!r} must be a positive number (the authors used 0.7)")

    threshold = edge_threshold(w, threshold_percentile)
    adjacency = thresholded_adjacency(w, threshold)
    communities = louvain(adjacency, resolution, int(seed))
    groups = group_communities(communities, adjacency, k, max_imbalance)
    linked = [com for com in communities if adjacency[com].any()]
    return Partition(
        groups=groups,
        method="louvain",
        modularity=modularity(w, groups),
        modularity_thresholded=modularity(adjacency, groups),
        num_communities=len(linked),
        isolated_fraction=isolated_fraction(adjacency),
        intra_weight_share=intra_weight_share(w, groups),
        threshold=threshold,
        threshold_percentile=float(threshold_percentile),
        resolution=resolution,
        max_imbalance=max_imbalance,
        seed=int(seed),
        communities=linked,
    )
