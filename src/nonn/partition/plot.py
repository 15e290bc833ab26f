"""A PNG of the thresholded filter graph, nodes coloured by group, isolated filters faint."""

from __future__ import annotations

import os
from pathlib import Path

import networkx as nx
import numpy as np

from nonn.atomic import atomic_path
from nonn.errors import PartitionError
from nonn.partition.communities import graph_from_adjacency
from nonn.partition.result import Partition
from nonn.partition.thresholding import (
    edge_threshold,
    normalised_graph,
    thresholded_adjacency,
)


def plot_partition(
    path: str | os.PathLike, W, partition: Partition, threshold: float | None = None, *, layout_seed: int = 0
) -> Path:
    """Draw W's thresholded graph to a PNG at path (atomically); returns the path.

    ``threshold`` is in units of max(W); by default the partition's own threshold (or the
    99th percentile when it has none). The spring layout is seeded, so the picture is
    reproducible. Uses matplotlib's Agg canvas directly: pyplot and its global backend are
    left untouched.
    """
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.collections import LineCollection
    from matplotlib.figure import Figure

    w = normalised_graph(W)
    c = w.shape[0]
    if partition.num_filters != c:
        raise PartitionError(
            f"the partition covers {partition.num_filters} filters but W has {c}; pass the W it was made from"
        )
    if threshold is None:
        threshold = partition.threshold if partition.threshold is not None else edge_threshold(w, 99)
    adjacency = thresholded_adjacency(w, float(threshold))

    g = graph_from_adjacency(adjacency)
    pos = nx.spring_layout(g, seed=layout_seed, weight="weight")

    group_of = np.empty(c, dtype=int)
    for i, members in enumerate(partition.groups):
        group_of[members] = i
    cmap = colormaps["tab10" if partition.k <= 10 else "tab20"]

    fig = Figure(figsize=(7, 7), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.set_axis_off()
    xy = np.array([pos[n] for n in range(c)])
    if g.number_of_edges():
        segments = [(xy[u], xy[v]) for u, v in g.edges()]
        widths = [0.3 + 1.7 * d["weight"] for _, _, d in g.edges(data=True)]
        ax.add_collection(LineCollection(segments, linewidths=widths, colors="#888888", alpha=0.5, zorder=1))
    has_edge = np.array([g.degree(n) > 0 for n in range(c)])
    for i in range(partition.k):
        colour = cmap(i % cmap.N)
        in_group = group_of == i
        label = f"group {i} ({partition.sizes[i]})"
        for mask, alpha, size in ((in_group & has_edge, 0.95, 60), (in_group & ~has_edge, 0.2, 25)):
            if mask.any():
                ax.scatter(
                    xy[mask, 0], xy[mask, 1], s=size, color=colour, alpha=alpha, label=label, zorder=2, linewidths=0
                )
                label = None  # one legend entry per group
    isolated = int((~has_edge).sum())
    title = f"K={partition.k}, C={c}, isolated {isolated}/{c} (faint)"
    if partition.modularity is not None:
        title += f"\nmodularity {partition.modularity:+.3f} (thresholded {partition.modularity_thresholded:+.3f})"
    ax.set_title(title)
    ax.legend(loc="upper right", fontsize=8, frameon=False)

    target = Path(path)
    with atomic_path(target) as tmp, open(tmp, "wb") as fh:
        fig.savefig(fh, format="png")
    return target
