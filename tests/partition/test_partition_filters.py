"""partition_filters' inputs, outputs and figures; the random control."""

import subprocess
import sys

import networkx as nx
import numpy as np
import pytest

from nonn.errors import NonnError, PartitionError
from nonn.partition import (
    Partition,
    build_filter_graph,
    partition_filters,
    random_partition,
)
from nonn.partition.communities import graph_from_adjacency
from nonn.partition.quality import intra_weight_share, modularity


def sample_graph(c=64, seed=0):
    x = np.random.default_rng(seed).gamma(0.7, 1.0, size=(300, c))
    return build_filter_graph(x, top_k=16)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"k": 0}, r"k=0 is out of range for the 8 filters; choose 1 <= k <= 8"),
        ({"k": 9}, r"k=9 is out of range for the 8 filters; choose 1 <= k <= 8"),
        ({"k": 2.5}, r"not an integer"),
        ({"k": 2, "threshold_percentile": 101}, r"outside \[0, 100\]"),
        ({"k": 2, "max_imbalance": 0.9}, r">= 1"),
        ({"k": 2, "resolution": 0}, r"positive"),
        ({"k": 2, "seed": None}, r"seed"),
    ],
)
def test_bad_arguments_raise_partition_error(kwargs, match):
    w = np.ones((8, 8))
    with pytest.raises(PartitionError, match=match) as info:
        partition_filters(w, **kwargs)
    assert "\n" not in str(info.value)
    assert isinstance(info.value, NonnError)


@pytest.mark.parametrize(
    ("w", "match"),
    [
        (np.ones((3, 4)), r"shape \(3, 4\); pass a square C×C"),
        (np.ones(5), r"shape \(5,\)"),
        (np.array([[0.0, 1.0], [2.0, 0.0]]), "not symmetric"),
        (np.array([[0.0, -1.0], [-1.0, 0.0]]), "negative"),
        (np.array([[0.0, np.inf], [np.inf, 0.0]]), "NaN or inf"),
    ],
)
def test_bad_graphs_raise_partition_error(w, match):
    with pytest.raises(PartitionError, match=match):
        partition_filters(w, 1)


def test_figures_are_consistent_with_networkx_and_the_groups():
    w = sample_graph()
    p = partition_filters(w, 4, seed=3, threshold_percentile=95)
    wn = w / w.max()
    full = graph_from_adjacency(wn)
    assert p.modularity == pytest.approx(nx.community.modularity(full, p.groups, weight="weight"), abs=1e-12)
    thr = np.where(wn >= p.threshold, wn, 0.0)
    cut = graph_from_adjacency(thr)
    assert p.modularity_thresholded == pytest.approx(nx.community.modularity(cut, p.groups, weight="weight"), abs=1e-12)
    assert p.isolated_fraction == pytest.approx(sum(d == 0 for _, d in cut.degree()) / 64)
    upper = wn[np.triu_indices(64, 1)]
    assert p.threshold == pytest.approx(np.percentile(upper[upper > 0], 95))
    assert p.num_communities == len(p.communities) >= 1
    assert all(thr[c].any() for c in p.communities)
    assert (p.seed, p.resolution, p.threshold_percentile, p.rule, p.method) == (3, 0.7, 95.0, None, "louvain")


def test_quality_helpers_on_a_tiny_graph():
    # two triangles joined by one edge; grouping by triangle
    a = np.zeros((6, 6))
    for i, j in [(0, 1), (1, 2), (0, 2), (3, 4), (4, 5), (3, 5), (2, 3)]:
        a[i, j] = a[j, i] = 1.0
    groups = [[0, 1, 2], [3, 4, 5]]
    # m = 7; each side: 3 inner edges, degree sum 7 -> Q = 2 * (3/7 - (7/14)^2) = 6/7 - 1/2
    assert modularity(a, groups) == pytest.approx(6 / 7 - 0.5)
    assert intra_weight_share(a, groups) == pytest.approx(6 / 7)
    assert modularity(np.zeros((3, 3)), [[0, 1, 2]]) == 0.0


def test_same_inputs_same_groups_and_the_seed_matters_only_through_louvain():
    w = sample_graph(seed=1)
    a = partition_filters(w, 3, seed=5)
    b = partition_filters(w.copy(), 3, seed=5)
    assert a.groups == b.groups and a.to_dict() == b.to_dict()


def test_a_graph_without_edges_is_all_filler():
    p = partition_filters(np.zeros((10, 10)), 3)
    assert p.sizes == [4, 3, 3]
    assert p.isolated_fraction == 1.0 and p.num_communities == 0 and p.threshold == 0.0
    assert p.modularity == 0.0 and p.intra_weight_share == 0.0


def test_k_equal_to_c_and_k_equal_to_one():
    w = sample_graph(c=12)
    assert partition_filters(w, 12).groups == [[i] for i in range(12)]
    assert partition_filters(w, 1).groups == [list(range(12))]


def test_random_control_balanced_by_default_and_deterministic():
    p = random_partition(10, 3, seed=4)
    assert p.sizes == [4, 3, 3] and p.method == "random" and p.modularity is None
    assert sorted(f for g in p.groups for f in g) == list(range(10))
    assert random_partition(10, 3, seed=4).groups == p.groups
    assert random_partition(10, 3, seed=5).groups != p.groups


def test_random_control_with_given_sizes_and_a_graph():
    w = sample_graph()
    real = partition_filters(w, 3)
    control = random_partition(64, 3, seed=0, sizes=real.sizes, W=w)
    assert control.sizes == real.sizes
    assert control.threshold == pytest.approx(real.threshold)
    assert control.isolated_fraction == pytest.approx(real.isolated_fraction)
    assert control.modularity_thresholded < real.modularity_thresholded


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((10, 3, 0, [5, 5]), "sizes=.* must be 3 positive numbers that sum to 10"),
        ((10, 2, 0, [10, 0]), "must be 2 positive numbers"),
        ((10, 11), "choose 1 <= k <= 10"),
        ((0, 1), "num_filters"),
    ],
)
def test_random_control_errors(args, match):
    with pytest.raises(PartitionError, match=match):
        random_partition(*args)
    with pytest.raises(PartitionError, match="W is 4×4 but num_filters=5"):
        random_partition(5, 2, W=np.ones((4, 4)))


def test_partition_dict_round_trip_and_validation():
    p = partition_filters(sample_graph(), 2)
    p.rule = "ah"
    d = p.to_dict()
    assert d["k"] == 2 and d["num_filters"] == 64 and d["sizes"] == p.sizes
    assert Partition.from_dict(d) == p
    broken = dict(d, groups=[d["groups"][0], d["groups"][0]])
    with pytest.raises(PartitionError, match="exactly once"):
        Partition.from_dict(broken)
    with pytest.raises(PartitionError, match="sizes"):
        Partition.from_dict(dict(d, sizes=[1, 63]))


def test_the_package_does_not_import_torch_or_pyplot():
    code = (
        "import sys, nonn.partition\n"
        "bad = [m for m in sys.modules if m.split('.')[0] == 'torch' or m == 'matplotlib.pyplot']\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
