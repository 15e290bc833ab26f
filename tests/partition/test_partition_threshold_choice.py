"""threshold_percentile="auto": the percentile whose K groups are most modular on the whole graph."""

from __future__ import annotations

import numpy as np
import pytest

from nonn.errors import PartitionError
from nonn.partition import Partition, partition_filters
from nonn.partition.quality import modularity
from nonn.partition.threshold_choice import CANDIDATE_PERCENTILES


def planted(c=40, seed=0):
    """Two blocks of filters that fire together (weights ~1 inside, ~0.3 across, with noise), and a few very
    strong pairs that a 99th-percentile threshold keeps alone, leaving most filters isolated."""
    rng = np.random.default_rng(seed)
    block = np.arange(c) < c // 2
    w = np.where(block[:, None] == block[None, :], 1.0, 0.3) * rng.uniform(0.6, 1.0, (c, c))
    for i in range(0, c, 8):  # strong pairs that cross the blocks
        j = (i + c // 2 + 1) % c
        w[i, j] = 5.0
    w = np.triu(w, 1)
    w = w + w.T
    return w, [list(np.flatnonzero(block)), list(np.flatnonzero(~block))]


def test_auto_finds_the_planted_blocks_that_the_99th_percentile_misses():
    w, blocks = planted()
    p99 = partition_filters(w, 2, seed=0, threshold_percentile=99)
    auto = partition_filters(w, 2, seed=0, threshold_percentile="auto")
    assert p99.isolated_fraction > 0.5
    assert sorted(map(sorted, auto.groups)) == sorted(map(sorted, blocks))
    assert auto.modularity > p99.modularity + 0.1
    assert auto.threshold_percentile < 99


def test_auto_keeps_the_best_candidate_and_records_every_score():
    w, _ = planted(seed=3)
    auto = partition_filters(w, 2, seed=1, threshold_percentile="auto")
    scores = dict((p, m) for p, m in auto.threshold_scores)
    assert sorted(scores) == sorted(CANDIDATE_PERCENTILES)
    assert scores[auto.threshold_percentile] == pytest.approx(max(scores.values()))
    for pct, mod in scores.items():  # each score is the modularity that percentile's groups really have
        groups = partition_filters(w, 2, seed=1, threshold_percentile=pct).groups
        assert modularity(w / w.max(), groups) == pytest.approx(mod)
    assert Partition.from_dict(auto.to_dict()).threshold_scores == auto.threshold_scores


def test_other_words_are_refused():
    with pytest.raises(PartitionError, match="must be a number in \\[0, 100\\] or 'auto'"):
        partition_filters(np.ones((6, 6)), 2, threshold_percentile="sometimes")
