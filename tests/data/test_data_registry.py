"""The dataset table, name lookup and the default data folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from nonn.data import DATASETS, dataset_names, default_data_dir, load_dataset
from nonn.errors import DataError


def test_names():
    assert dataset_names() == ["cifar10", "cifar100", "digits", "fashion-mnist", "mnist"]
    assert set(DATASETS) == set(dataset_names())


def test_unknown_dataset_lists_the_choices():
    with pytest.raises(DataError) as info:
        load_dataset("cifar11")
    message = str(info.value)
    assert message == (
        "unknown dataset 'cifar11'; choose one of: cifar10, cifar100, digits, fashion-mnist, mnist"
    )
    assert "\n" not in message


def test_names_are_case_and_underscore_tolerant():
    assert load_dataset("DIGITS", limit_train=5).name == "digits"
    with pytest.raises(DataError, match="is in none of"):
        # Resolved to fashion-mnist (not 'unknown'); no files and no downloading allowed.
        load_dataset("Fashion_MNIST", data_dir="/nonexistent-nonn", download=False)


def test_default_augmentation():
    assert (DATASETS["cifar10"].augment.pad, DATASETS["cifar10"].augment.flip) == (4, True)
    assert (DATASETS["mnist"].augment.pad, DATASETS["mnist"].augment.flip) == (2, False)
    assert DATASETS["fashion-mnist"].augment.pad == 2


def test_default_data_dir(monkeypatch, tmp_path):
    monkeypatch.delenv("NONN_DATA_DIR")
    assert default_data_dir() == Path.home() / ".cache" / "nonn"
    monkeypatch.setenv("NONN_DATA_DIR", str(tmp_path))
    assert default_data_dir() == tmp_path
