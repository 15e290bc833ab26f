"""The dataset table, name lookup, the default data folder, and a user's own dataset added with register_dataset."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch

from nonn.data import (
    DATASETS,
    AugmentSpec,
    DatasetEntry,
    RawData,
    Split,
    dataset_names,
    default_data_dir,
    load_dataset,
    register_dataset,
)
from nonn.errors import DataError, NonnError


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


# --- register_dataset: a user's own dataset, loaded like a built-in one ---

@pytest.fixture
def restore_datasets():
    """Registrations made in a test are undone after it."""
    saved = dict(DATASETS)
    yield
    DATASETS.clear()
    DATASETS.update(saved)


def _split(n: int, classes: int = 3, shape=(1, 4, 4), seed: int = 0) -> Split:
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, *shape), generator=g, dtype=torch.uint8)
    return Split(x, torch.arange(n, dtype=torch.int64) % classes)


def _read_blobs(files):
    return RawData(_split(60), _split(15, seed=1), ["a", "b", "c"])


def test_a_registered_dataset_loads_through_load_dataset(restore_datasets):
    entry = register_dataset("blobs", _read_blobs, augment=AugmentSpec(pad=1, flip=True))
    assert isinstance(entry, DatasetEntry) and DATASETS["blobs"] is entry
    assert "blobs" in dataset_names()
    ds = load_dataset("BLOBS", limit_train=20, val_fraction=0.2, seed=3)
    assert (ds.name, ds.classes, ds.num_classes, ds.input_shape) == ("blobs", ["a", "b", "c"], 3, (1, 4, 4))
    assert (len(ds.train), len(ds.val), len(ds.test)) == (20, 12, 15)
    assert ds.augment == AugmentSpec(pad=1, flip=True) and len(ds.mean) == 1


def test_a_registered_dataset_gets_its_files_found_and_verified(restore_datasets, tmp_path):
    payload = bytes(range(16)) * 4
    (tmp_path / "tiles").mkdir()
    (tmp_path / "tiles" / "tiles.bin").write_bytes(payload)
    seen = {}

    def read(files):
        seen.update(files)
        x = torch.frombuffer(bytearray(files["tiles.bin"].read_bytes()), dtype=torch.uint8).reshape(4, 1, 4, 4)
        return RawData(Split(x.repeat(5, 1, 1, 1), torch.tensor([0, 1] * 10)), Split(x, torch.tensor([0, 1] * 2)),
                       ["even", "odd"])

    md5 = hashlib.md5(payload).hexdigest()
    register_dataset("tiles", read, sources=[("https://example.invalid/tiles.bin", "tiles.bin", md5)])
    ds = load_dataset("tiles", data_dir=tmp_path, download=False)
    assert seen == {"tiles.bin": tmp_path / "tiles" / "tiles.bin"} and len(ds.test) == 4
    with pytest.raises(DataError, match="tiles.bin is in none of"):
        load_dataset("tiles", data_dir=tmp_path / "elsewhere", download=False)


def test_a_duplicate_name_names_the_fix(restore_datasets):
    register_dataset("blobs", _read_blobs)
    for name in ("blobs", "digits"):
        with pytest.raises(DataError, match=f"dataset '{name}' is already registered; choose another name or pass "
                                            "replace=True"):
            register_dataset(name, _read_blobs)
    register_dataset("digits", _read_blobs, replace=True)
    assert load_dataset("digits").classes == ["a", "b", "c"]
    assert issubclass(DataError, NonnError)


@pytest.mark.parametrize("kwargs,match", [
    (dict(name="My_Blobs"), "lowercase letters, digits, '.' and '-'; use e.g. 'my-blobs'"),
    (dict(name="my blobs"), "use e.g. 'my-data'"),
    (dict(name=""), "use e.g. 'my-data'"),
    (dict(name=3), "use e.g. 'my-data'"),
    (dict(read="not a function"), "needs a reader"),
    (dict(augment=(4, True)), r"augment must be nonn.data.AugmentSpec\(pad=<int >= 0>, flip=<bool>\)"),
    (dict(augment=AugmentSpec(pad=-1)), "augment must be"),
    (dict(sources="https://example.invalid/x.bin"), r"sources must be a list of \(url, filename\[, md5\]\) tuples"),
    (dict(sources=[("https://example.invalid/x.bin",)]), "bad source"),
    (dict(sources=[(3, "x.bin")]), "bad source"),
    (dict(extra_dirs="raw"), "extra_dirs must be a list of folder names"),
    (dict(install_hint=3), "install_hint must be a sentence"),
])
def test_bad_arguments_name_the_fix(restore_datasets, kwargs, match):
    args = {"name": "blobs", "read": _read_blobs, **kwargs}
    with pytest.raises(DataError, match=match):
        register_dataset(args.pop("name"), args.pop("read"), **args)
    assert set(DATASETS) == set(dataset_names()) and "blobs" not in DATASETS


@pytest.mark.parametrize("raw,match", [
    ((_split(9), _split(3)), "must return nonn.data.RawData"),
    ((_split(9), "test", ["a", "b", "c"]), "train and test must be nonn.data.Split"),
    ((_split(9), _split(3), []), "classes must be a non-empty list"),
    ((_split(9), _split(3, shape=(3, 4, 4)), ["a", "b", "c"]), r"train images are \(1, 4, 4\) but test images"),
    ((_split(9, classes=4), _split(3), ["a", "b", "c"]), r"train labels must be in 0..2"),
    ((_split(9), _split(0), ["a", "b", "c"]), "the test split is empty"),
])
def test_a_reader_that_returns_the_wrong_thing_is_a_data_error(restore_datasets, raw, match):
    register_dataset("broken", lambda files: raw)
    with pytest.raises(DataError, match=f"dataset 'broken': .*{match}"):
        load_dataset("broken")


def test_a_plain_tuple_from_a_reader_is_accepted(restore_datasets):
    register_dataset("tupled", lambda files: (_split(30), _split(6), ("a", "b", "c")))
    assert load_dataset("tupled").classes == ["a", "b", "c"]
