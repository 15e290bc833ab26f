"""CIFAR-10/100 built in the genuine archive format, served over loopback, loaded end to end."""

from __future__ import annotations

import io
import os
import pickle
import tarfile

import numpy as np
import pytest
import torch
from data_builders import build_cifar10, build_cifar100, md5_of

from nonn.data import load_dataset
from nonn.errors import DataError

C10 = "cifar-10-python.tar.gz"
C100 = "cifar-100-python.tar.gz"


@pytest.fixture
def cifar10_served(server):
    meta = build_cifar10(server.root / C10)
    sources = {"cifar10": [(f"{server.url}/{C10}", C10, md5_of(server.root / C10))]}
    return server, meta, sources


def _check_pixels_encode_labels(split):
    assert torch.equal(split.x[:, 1, 0, 0].long(), split.y)
    assert torch.all(split.x[:, 1] == split.x[:, 1, :1, :1])  # channel 1 constant
    assert torch.equal(
        split.x[:, 2, :, 0], (torch.arange(32) * 8).to(torch.uint8).expand(len(split), 32)
    )


def test_cifar10_loads_and_is_cached(cifar10_served, tmp_path):
    server, meta, sources = cifar10_served
    data_dir = tmp_path / "cache"
    data = load_dataset("cifar10", data_dir, sources=sources, val_fraction=0.1)
    assert server.requests == [f"/{C10}"]
    assert (data_dir / "cifar10" / C10).is_file()
    assert data.classes == meta["classes"] and data.num_classes == 10
    assert data.input_shape == (3, 32, 32)
    assert (len(data.train), len(data.val), len(data.test)) == (90, 10, 20)
    assert data.train.x.dtype == torch.uint8 and data.train.y.dtype == torch.int64
    assert torch.equal(data.test.y, torch.from_numpy(meta["labels"]["test_batch"]))
    assert torch.all(data.test.x[:, 0] == 6)  # the test batch, in order
    for split in (data.train, data.val, data.test):
        _check_pixels_encode_labels(split)
    all_train = np.concatenate([meta["labels"][f"data_batch_{i}"] for i in range(1, 6)])
    got = torch.cat([data.train.y, data.val.y]).bincount(minlength=10)
    assert got.tolist() == np.bincount(all_train, minlength=10).tolist()
    assert torch.bincount(data.val.y, minlength=10).tolist() == [1] * 10
    assert data.augment.pad == 4 and data.augment.flip
    assert len(data.mean) == 3 and data.mean[1] == pytest.approx(
        float(data.train.y.float().mean()) / 255
    )

    server.stop()
    again = load_dataset("cifar10", data_dir, sources=sources, val_fraction=0.1)
    assert torch.equal(again.train.x, data.train.x)
    assert server.requests == [f"/{C10}"]


def test_wrong_checksum_leaves_no_file(cifar10_served, tmp_path):
    server, _, sources = cifar10_served
    good = sources["cifar10"][0][2]
    bad = {"cifar10": [(sources["cifar10"][0][0], C10, "f" * 32)]}
    data_dir = tmp_path / "cache"
    with pytest.raises(DataError) as info:
        load_dataset("cifar10", data_dir, sources=bad)
    message = str(info.value)
    assert C10 in message and "f" * 32 in message and good in message
    leftovers = [p for p in data_dir.rglob("*") if p.is_file()] if data_dir.exists() else []
    assert leftovers == []


def test_archive_already_in_data_dir_is_used_without_a_server(tmp_path, dead_url):
    data_dir = tmp_path / "mine"
    data_dir.mkdir()
    build_cifar10(data_dir / C10, per_batch=10)
    sources = {"cifar10": [(f"{dead_url}/{C10}", C10, md5_of(data_dir / C10))]}
    data = load_dataset("cifar10", data_dir, sources=sources, val_fraction=0.2)
    assert (len(data.train), len(data.val), len(data.test)) == (40, 10, 10)


def test_stale_archive_is_replaced_by_a_verified_download(cifar10_served, tmp_path):
    server, _, sources = cifar10_served
    data_dir = tmp_path / "cache"
    (data_dir / "cifar10").mkdir(parents=True)
    (data_dir / "cifar10" / C10).write_bytes(b"half a download")
    load_dataset("cifar10", data_dir, sources=sources)
    assert md5_of(data_dir / "cifar10" / C10) == sources["cifar10"][0][2]
    assert server.requests == [f"/{C10}"]


def test_stale_archive_without_download_names_the_fix(tmp_path):
    (tmp_path / C10).write_bytes(b"junk")
    with pytest.raises(DataError, match="refused it: expected md5.*delete it"):
        load_dataset("cifar10", tmp_path, download=False)


def test_truncated_archive_is_a_data_error(tmp_path, dead_url):
    full = tmp_path / "full.tar.gz"
    build_cifar10(full)
    blob = full.read_bytes()
    (tmp_path / C10).write_bytes(blob[: len(blob) // 2])
    sources = {"cifar10": [(f"{dead_url}/{C10}", C10, md5_of(tmp_path / C10))]}
    with pytest.raises(DataError, match="not a readable CIFAR archive"):
        load_dataset("cifar10", tmp_path, sources=sources)


def test_archive_with_foreign_pickle_is_refused(tmp_path, dead_url):
    path = tmp_path / C10
    build_cifar10(tmp_path / "good.tar.gz")
    with tarfile.open(tmp_path / "good.tar.gz", "r:gz") as src, tarfile.open(path, "w:gz") as dst:
        for member in src.getmembers():
            blob = src.extractfile(member).read()
            if member.name.endswith("test_batch"):
                blob = pickle.dumps({b"data": os.getcwd}, protocol=2)  # a callable outside numpy
                member.size = len(blob)
            dst.addfile(member, io.BytesIO(blob))
    sources = {"cifar10": [(f"{dead_url}/{C10}", C10, md5_of(path))]}
    with pytest.raises(DataError, match="refusing to load"):
        load_dataset("cifar10", tmp_path, sources=sources)


def test_cifar100_fine_labels(server, tmp_path):
    meta = build_cifar100(server.root / C100)
    sources = {"cifar100": [(f"{server.url}/{C100}", C100, md5_of(server.root / C100))]}
    data = load_dataset(
        "cifar100", tmp_path / "cache", sources=sources, val_fraction=0.5, limit_train=40
    )
    assert data.num_classes == 100 and data.classes == meta["classes"]
    assert (len(data.train), len(data.val), len(data.test)) == (40, 100, 100)
    assert torch.equal(data.test.y, torch.from_numpy(meta["labels"]["test"]))
    for split in (data.train, data.val, data.test):
        _check_pixels_encode_labels(split)
