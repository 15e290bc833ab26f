"""Stratified, seeded index splits."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from nonn.data.splits import stratified_split


@settings(max_examples=40, deadline=None)
@given(
    labels=st.lists(st.integers(0, 4), min_size=1, max_size=60),
    frac=st.floats(0, 1),
    seed=st.integers(0, 99),
)
def test_split_partitions_and_stratifies(labels, frac, seed):
    labels = np.array(labels)
    count = int(round(frac * len(labels)))
    rest, chosen = stratified_split(labels, count, seed)
    assert len(chosen) == count
    assert np.array_equal(np.sort(np.concatenate([rest, chosen])), np.arange(len(labels)))
    assert np.all(np.diff(chosen) > 0) and np.all(np.diff(rest) > 0)
    for cls in np.unique(labels):
        share = count * np.sum(labels == cls) / len(labels)
        assert abs(np.sum(labels[chosen] == cls) - share) < 1.0 + 1e-9


def test_split_is_seeded():
    labels = np.repeat(np.arange(3), 20)
    a = stratified_split(labels, 12, 1)[1]
    assert np.array_equal(a, stratified_split(labels, 12, 1)[1])
    assert not np.array_equal(a, stratified_split(labels, 12, 2)[1])
    assert np.bincount(labels[a]).tolist() == [4, 4, 4]
