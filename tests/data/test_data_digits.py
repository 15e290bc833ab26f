"""The bundled digits dataset: shapes, stratified disjoint splits, seeds, limit_train."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from nonn.data import channel_stats, load_dataset
from nonn.errors import DataError


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def _multiset(*splits) -> Counter:
    return Counter((s.x[i].numpy().tobytes(), int(s.y[i])) for s in splits for i in range(len(s)))


def test_shapes_and_dtypes(digits):
    assert digits.input_shape == (1, 8, 8)
    assert digits.num_classes == 10 and digits.classes == [str(i) for i in range(10)]
    for split in (digits.train, digits.val, digits.test):
        assert split.x.dtype == torch.uint8 and split.y.dtype == torch.int64
        assert split.x.shape[1:] == (1, 8, 8) and split.x.shape[0] == split.y.shape[0]
    assert (len(digits.train), len(digits.val), len(digits.test)) == (1294, 144, 359)
    assert int(digits.train.x.max()) == 255 and int(digits.train.x.min()) == 0
    assert digits.augment.pad == 1 and digits.augment.flip is False


def test_splits_partition_the_dataset_without_overlap(digits):
    bunch = load_digits()
    images = np.rint(bunch.images * 255 / 16).astype(np.uint8)
    full = Counter((images[i][None].tobytes(), int(bunch.target[i])) for i in range(len(images)))
    assert _multiset(digits.train, digits.val, digits.test) == full


def test_splits_are_stratified(digits):
    for split, total in ((digits.test, 359), (digits.val, 144)):
        counts = torch.bincount(split.y, minlength=10).numpy()
        expected = total * np.bincount(load_digits().target) / 1797
        assert np.all(np.abs(counts - expected) < 2), counts


def test_seed_moves_val_but_not_test(digits):
    again = load_dataset("digits")
    other = load_dataset("digits", seed=1)
    assert torch.equal(again.val.x, digits.val.x) and torch.equal(again.train.y, digits.train.y)
    assert not torch.equal(other.val.x, digits.val.x)
    assert torch.equal(other.test.x, digits.test.x)


def test_mean_and_std_come_from_train(digits):
    assert digits.mean == pytest.approx(channel_stats(digits.train.x)[0])
    assert digits.std == pytest.approx(channel_stats(digits.train.x)[1])
    small = load_dataset("digits", limit_train=30)
    assert small.mean == pytest.approx(channel_stats(small.train.x)[0])
    assert small.mean != pytest.approx(digits.mean)


def test_limit_train_keeps_a_stratified_subset_and_the_same_val(digits):
    small = load_dataset("digits", limit_train=50)
    assert len(small.train) == 50
    assert torch.bincount(small.train.y, minlength=10).tolist() == [5] * 10
    assert torch.equal(small.val.x, digits.val.x)
    assert not _multiset(small.train) - _multiset(digits.train)  # a subset of the full train
    assert len(load_dataset("digits", limit_train=10**6).train) == len(digits.train)


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "10"])
def test_bad_limit_train_is_a_data_error(bad):
    with pytest.raises(DataError, match="limit_train"):
        load_dataset("digits", limit_train=bad)


def test_val_fraction_zero_and_bad_values():
    # The loader agrees with data.val_fraction in the config: training keeps its best-on-validation weights.
    data = load_dataset("digits", val_fraction=0.05)
    assert len(data.val) > 0 and len(data.train) + len(data.val) == 1797 - 359
    for bad in (0.0, -0.1, 1.0, 2):
        with pytest.raises(DataError, match="val_fraction"):
            load_dataset("digits", val_fraction=bad)
