"""Knowledge partitioning, pure numpy/networkx: activation summaries → W → communities → K groups."""

from nonn.partition.communities import partition_filters
from nonn.partition.graph import RULES, FilterGraphAccumulator, build_filter_graph
from nonn.partition.grouping import group_communities, size_bounds
from nonn.partition.plot import plot_partition
from nonn.partition.random_control import random_partition
from nonn.partition.result import Partition
from nonn.partition.storage import (
    load_filter_graph,
    load_partition,
    save_filter_graph,
    save_partition,
)
from nonn.partition.summaries import filter_summaries

__all__ = [
    "RULES",
    "FilterGraphAccumulator",
    "Partition",
    "build_filter_graph",
    "filter_summaries",
    "group_communities",
    "load_filter_graph",
    "load_partition",
    "partition_filters",
    "plot_partition",
    "random_partition",
    "save_filter_graph",
    "save_partition",
    "size_bounds",
]
