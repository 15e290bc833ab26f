"""Grouping into K balanced groups: coverage, exact K, the balance guarantee, determinism."""

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nonn.partition import (
    group_communities,
    partition_filters,
    random_partition,
    size_bounds,
)
from nonn.partition.grouping import connection_order

FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
LOUVAIN = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def achievable(c: int, k: int, m: float) -> bool:
    """Brute force: do K positive sizes summing to C exist with largest <= m * smallest?"""
    return any(k * lo <= c <= k * math.floor(m * lo + 1e-9) for lo in range(1, c // k + 1))


def assert_valid(groups, c, k, m=1.5):
    """Every filter once, exactly k non-empty groups, sorted, and the documented balance guarantee."""
    assert len(groups) == k
    assert all(len(g) > 0 for g in groups)
    assert sorted(f for g in groups for f in g) == list(range(c))
    assert all(g == sorted(g) for g in groups)
    assert [g[0] for g in groups] == sorted(g[0] for g in groups)
    sizes = [len(g) for g in groups]
    if achievable(c, k, m):
        assert max(sizes) <= m * min(sizes), sizes
    else:
        assert max(sizes) - min(sizes) <= 1, sizes


def random_graph(c: int, density: float, kind: str, seed: int) -> np.ndarray:
    """Symmetric nonnegative test graphs: uniform noise, planted blocks, or one dominant hub structure."""
    rng = np.random.default_rng(seed)
    if kind == "uniform":
        w = rng.random((c, c))
    elif kind == "blocks":
        labels = rng.integers(0, max(1, c // 16), size=c)
        w = rng.random((c, c)) * 0.1 + (labels[:, None] == labels[None, :])
    else:  # hubs: a heavy-tailed activation profile gives a few huge communities
        v = rng.pareto(1.5, size=c)
        w = np.outer(v, v) * rng.random((c, c))
    w = np.triu(w * (rng.random((c, c)) < density), 1)
    return w + w.T


def test_size_bounds_meet_the_ratio_exactly_when_achievable():
    for m in (1.0, 1.25, 1.5, 2.0):
        for c in range(1, 70):
            for k in range(1, c + 1):
                lo, hi = size_bounds(c, k, m)
                assert 1 <= lo <= hi and k * lo <= c <= k * hi
                if achievable(c, k, m):
                    assert hi <= m * lo + 1e-9, (c, k, m, lo, hi)
                else:
                    assert (lo, hi) == (c // k, -(-c // k))
                # the closed form stated in the docstring
                assert achievable(c, k, m) == (-(-c // k) <= m * (c // k) + 1e-9)


def test_balance_is_guaranteed_for_every_k_up_to_8_with_256_filters():
    for kind in ("uniform", "blocks", "hubs"):
        w = random_graph(256, 0.5, kind, seed=7)
        for k in range(1, 9):
            p = partition_filters(w, k)
            assert_valid(p.groups, 256, k)
            assert max(p.sizes) <= 1.5 * min(p.sizes)


@LOUVAIN
@given(
    data=st.data(),
    c=st.integers(8, 256),
    density=st.sampled_from([0.0, 0.02, 0.2, 1.0]),
    kind=st.sampled_from(["uniform", "blocks", "hubs"]),
    percentile=st.sampled_from([80.0, 95.0, 99.0]),  # lower ones only slow Louvain down
    seed=st.integers(0, 2**16),
)
def test_partition_filters_properties(data, c, density, kind, percentile, seed):
    k = data.draw(st.one_of(st.integers(1, min(c, 16)), st.integers(1, c)), label="k")
    w = random_graph(c, density, kind, seed)
    p = partition_filters(w, k, seed=seed, threshold_percentile=percentile)
    assert_valid(p.groups, c, k)
    assert p.sizes == [len(g) for g in p.groups]
    assert 0.0 <= p.isolated_fraction <= 1.0 and 0.0 <= p.intra_weight_share <= 1.0 + 1e-12
    again = partition_filters(w.copy(), k, seed=seed, threshold_percentile=percentile)
    assert again.to_dict() == p.to_dict()


@FAST
@given(
    c=st.integers(2, 200),
    k=st.integers(1, 200),
    labels_seed=st.integers(0, 2**16),
    num_labels=st.integers(1, 40),
    singleton_share=st.floats(0.0, 1.0),
    m=st.sampled_from([1.0, 1.2, 1.5, 3.0]),
)
def test_group_communities_properties(c, k, labels_seed, num_labels, singleton_share, m):
    """Any community structure, including ones far larger than a group, becomes valid groups."""
    k = min(k, c)
    rng = np.random.default_rng(labels_seed)
    # skewed community sizes; a share of the filters are single-filter "communities" (isolated)
    labels = np.minimum(rng.geometric(0.2, size=c), num_labels)
    labels[rng.random(c) < singleton_share] = -1
    communities = [np.flatnonzero(labels == lab).tolist() for lab in np.unique(labels[labels >= 0])]
    communities += [[int(f)] for f in np.flatnonzero(labels == -1)]
    adjacency = np.where(labels[:, None] == labels[None, :], rng.random((c, c)), 0.0)
    adjacency[labels == -1] = 0.0
    adjacency[:, labels == -1] = 0.0
    adjacency = np.triu(adjacency, 1)
    adjacency += adjacency.T
    groups = group_communities(communities, adjacency, k, m)
    assert_valid(groups, c, k, m)
    assert group_communities(communities, adjacency.copy(), k, m) == groups


def test_whole_communities_stay_together_when_balance_allows():
    # sizes 95, 86, 75 all lie in size_bounds(256, 3, 1.5) = (73, 109)
    assert size_bounds(256, 3, 1.5) == (73, 109)
    comms = [list(range(95)), list(range(95, 181)), list(range(181, 256))]
    adjacency = np.zeros((256, 256))
    for com in comms:
        adjacency[np.ix_(com, com)] = 1.0
    np.fill_diagonal(adjacency, 0.0)
    assert group_communities(comms, adjacency, 3) == comms


def test_a_too_large_community_is_cut_into_connected_chunks():
    # one chain community of 200 filters and 56 isolated ones, into 2 groups: the chain must be
    # cut (no group may exceed 153), and each group's part of the chain must stay connected.
    c = 256
    adjacency = np.zeros((c, c))
    for i in range(199):
        adjacency[i, i + 1] = adjacency[i + 1, i] = 1.0
    comms = [list(range(200))] + [[i] for i in range(200, c)]
    groups = group_communities(comms, adjacency, 2)
    assert_valid(groups, c, 2)
    for g in groups:
        chain = sorted(f for f in g if f < 200)
        assert chain == list(range(chain[0], chain[-1] + 1)), "a chain chunk is not contiguous"
    assert max(len(g) for g in groups) == 153  # the chunk filled a group up to its bound


def test_connection_order_starts_at_the_hub_and_follows_heavy_edges():
    adjacency = np.zeros((5, 5))
    for i, j, wt in [(2, 0, 0.5), (2, 4, 0.9), (2, 1, 0.2), (4, 3, 1.0)]:
        adjacency[i, j] = adjacency[j, i] = wt
    # strengths: 0:0.5 1:0.2 2:1.6 3:1.0 4:1.9 -> hub 4, then its neighbours by weight (3, 2), then 2's
    assert connection_order(range(5), adjacency) == [4, 3, 2, 0, 1]


@pytest.mark.parametrize("k", [2, 3, 4, 8])
def test_planted_blocks_are_recovered(k):
    c = 256
    rng = np.random.default_rng(k)
    labels = rng.permutation(np.arange(c) % k)  # k shuffled blocks of equal size
    same = labels[:, None] == labels[None, :]
    w = np.where(same, rng.uniform(0.5, 1.0, (c, c)), rng.uniform(0.0, 0.1, (c, c)))
    w = np.triu(w, 1)
    w += w.T
    blocks = sorted((np.flatnonzero(labels == b).tolist() for b in range(k)), key=lambda g: g[0])
    # intra-block pairs are 1/k of all pairs, so the 90th percentile for k <= 8 cuts only between-block noise
    p = partition_filters(w, k, threshold_percentile=90)
    assert p.groups == blocks
    assert p.num_communities == k
    assert p.isolated_fraction == 0.0
    control = random_partition(c, k, W=w, threshold_percentile=90)
    assert p.intra_weight_share > max(0.6, control.intra_weight_share + 0.15)
    assert p.modularity_thresholded > control.modularity_thresholded + 0.3
    assert p.modularity > 0.3


def test_planted_cliques_with_the_default_threshold():
    # equal intra weights: the 99th percentile of the nonzero weights keeps every intra edge
    labels = np.repeat(np.arange(4), 64)
    w = (labels[:, None] == labels[None, :]).astype(float)
    np.fill_diagonal(w, 0.0)
    perm = np.random.default_rng(0).permutation(256)
    w = w[np.ix_(perm, perm)]
    p = partition_filters(w, 4)
    expected = sorted((sorted(np.flatnonzero(labels[perm] == b).tolist()) for b in range(4)), key=lambda g: g[0])
    assert p.groups == expected
    assert p.modularity == pytest.approx(0.75)
