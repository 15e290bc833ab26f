"""MNIST-style gzip IDX files: served, found on disk, and rejected when corrupt."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
import torch
from data_builders import MNIST_FILES, idx_bytes, md5_of, mnist_arrays, write_mnist

from nonn.data import load_dataset
from nonn.errors import DataError


def _sources(name, base_url, sums):
    return {name: [(f"{base_url}/{f}", f, sums[f]) for f in MNIST_FILES]}


def _check(data, arrays, n_train):
    assert data.input_shape == (1, 28, 28)
    assert len(data.train) + len(data.val) == n_train
    for split in (data.train, data.val, data.test):
        assert split.x.dtype == torch.uint8 and split.y.dtype == torch.int64
        assert torch.equal(split.x[:, 0, 0, 0].long(), split.y * 20)
    assert torch.equal(data.test.x[:, 0], torch.from_numpy(arrays["t10k-images-idx3-ubyte.gz"]))
    assert torch.equal(
        data.test.y, torch.from_numpy(arrays["t10k-labels-idx1-ubyte.gz"].astype(np.int64))
    )


def test_mnist_download_then_cache(server, tmp_path):
    arrays = mnist_arrays()
    sums = write_mnist(server.root, arrays)
    data_dir = tmp_path / "cache"
    data = load_dataset(
        "mnist", data_dir, sources=_sources("mnist", server.url, sums), val_fraction=0.25
    )
    _check(data, arrays, 40)
    assert (len(data.train), len(data.val)) == (30, 10)
    assert data.classes == [str(i) for i in range(10)]
    assert sorted(server.requests) == sorted(f"/{f}" for f in MNIST_FILES)
    assert sorted(p.name for p in (data_dir / "mnist").iterdir()) == sorted(MNIST_FILES)

    load_dataset("mnist", data_dir, sources=_sources("mnist", server.url, sums))
    assert len(server.requests) == 4


def test_fashion_mnist_names_and_own_folder(server, tmp_path):
    arrays = mnist_arrays(seed=1)
    sums = write_mnist(server.root, arrays)
    data = load_dataset(
        "fashion-mnist", tmp_path, sources=_sources("fashion-mnist", server.url, sums)
    )
    _check(data, arrays, 40)
    assert (
        data.classes[0] == "T-shirt/top"
        and data.classes[9] == "Ankle boot"
        and data.num_classes == 10
    )
    assert (tmp_path / "fashion-mnist" / MNIST_FILES[0]).is_file()


@pytest.mark.parametrize("subdir", ["", "mnist", "MNIST/raw"])
def test_files_already_in_data_dir_need_no_server(tmp_path, dead_url, subdir):
    arrays = mnist_arrays()
    sums = write_mnist(tmp_path / subdir, arrays)
    data = load_dataset("mnist", tmp_path, sources=_sources("mnist", dead_url, sums))
    _check(data, arrays, 40)


def test_no_files_and_no_download_names_the_fix(tmp_path):
    with pytest.raises(DataError, match="is in none of .*put the file in"):
        load_dataset("mnist", tmp_path, download=False)


def test_unreachable_source_is_a_data_error(tmp_path, dead_url):
    with pytest.raises(DataError, match="could not download"):
        load_dataset(
            "mnist", tmp_path, sources=_sources("mnist", dead_url, {f: None for f in MNIST_FILES})
        )
    assert not any(p.is_file() for p in (tmp_path / "cache").rglob("*"))


def _corrupt(tmp_path, name, blob, dead_url):
    arrays = mnist_arrays()
    write_mnist(tmp_path, arrays)
    (tmp_path / name).write_bytes(blob)
    sums = {f: md5_of(tmp_path / f) for f in MNIST_FILES}
    return lambda: load_dataset("mnist", tmp_path, sources=_sources("mnist", dead_url, sums))


def test_idx_with_fewer_bytes_than_its_header_says(tmp_path, dead_url):
    images = mnist_arrays()["train-images-idx3-ubyte.gz"]
    blob = gzip.compress(idx_bytes(images[:30], claimed_shape=(40, 28, 28)))
    with pytest.raises(DataError, match="data bytes but its header"):
        _corrupt(tmp_path, "train-images-idx3-ubyte.gz", blob, dead_url)()


def test_idx_with_wrong_magic(tmp_path, dead_url):
    labels = mnist_arrays()["train-labels-idx1-ubyte.gz"]
    blob = gzip.compress(idx_bytes(labels, magic=0x00000903))
    with pytest.raises(DataError, match="magic 0x00000903"):
        _corrupt(tmp_path, "train-labels-idx1-ubyte.gz", blob, dead_url)()


def test_truncated_gzip(tmp_path, dead_url):
    good = gzip.compress(idx_bytes(mnist_arrays()["t10k-images-idx3-ubyte.gz"]))
    with pytest.raises(DataError, match="not a readable gzip file"):
        _corrupt(tmp_path, "t10k-images-idx3-ubyte.gz", good[: len(good) // 2], dead_url)()


def test_label_count_mismatch(tmp_path, dead_url):
    labels = mnist_arrays()["t10k-labels-idx1-ubyte.gz"][:-1]
    with pytest.raises(DataError, match="20 images but .* 19 labels"):
        _corrupt(
            tmp_path, "t10k-labels-idx1-ubyte.gz", gzip.compress(idx_bytes(labels)), dead_url
        )()


def test_mirror_env_rewrites_the_official_host(server, tmp_path, monkeypatch):
    write_mnist(server.root / "mnist", mnist_arrays())  # not the official bytes: checksums differ
    monkeypatch.setenv("NONN_DATA_MIRROR", server.url)
    with pytest.raises(DataError, match="checksum mismatch.*expected 6bbc9ace898e44ae57da46a324031adb"):
        load_dataset("mnist", tmp_path / "cache")
    assert server.requests == ["/mnist/train-images-idx3-ubyte.gz"]
    assert not any(p.is_file() for p in (tmp_path / "cache").rglob("*"))
