"""Real-world copies of IDX datasets: re-compressed genuine files load, altered ones are refused and named,
and Debian's /usr/share/datasets/<name>/ is searched after the data folder and the cache."""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import pytest
from data_builders import MNIST_FILES, idx_bytes, mnist_arrays
from nonn_test_support import debian_fashion_mnist

from nonn.data import load_dataset
from nonn.data.mnist import FASHION_CONTENT_MD5
from nonn.errors import DataError


def _official(arrays) -> tuple[dict[str, bytes], dict[str, bytes]]:
    """The IDX payloads and the 'official' archives (gzip level 9, fixed mtime) of a tiny MNIST."""
    payloads = {f: idx_bytes(arrays[f]) for f in MNIST_FILES}
    return payloads, {f: gzip.compress(p, compresslevel=9, mtime=0) for f, p in payloads.items()}


def _sources(base_url, payloads, archives):
    return {"mnist": [(f"{base_url}/{f}", f, hashlib.md5(archives[f]).hexdigest(),
                       hashlib.md5(payloads[f]).hexdigest()) for f in MNIST_FILES]}


def _recompress(payload: bytes) -> bytes:
    return gzip.compress(payload, compresslevel=1, mtime=1234567890)


def _write(folder: Path, blobs: dict[str, bytes]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, blob in blobs.items():
        (folder / name).write_bytes(blob)


def test_recompressed_genuine_files_load_without_a_download(tmp_path, server):
    arrays = mnist_arrays()
    payloads, archives = _official(arrays)
    copies = {f: _recompress(p) for f, p in payloads.items()}
    assert all(copies[f] != archives[f] for f in MNIST_FILES)  # the archive checksum would refuse them
    _write(tmp_path / "data", copies)
    data = load_dataset("mnist", tmp_path / "data", sources=_sources(server.url, payloads, archives))
    assert len(data.train) + len(data.val) == 40 and len(data.test) == 20
    assert server.requests == []


def test_recompressed_download_is_accepted_by_its_content(tmp_path, server):
    payloads, archives = _official(mnist_arrays())
    _write(server.root, {f: _recompress(p) for f, p in payloads.items()})
    data = load_dataset("mnist", tmp_path / "cache", sources=_sources(server.url, payloads, archives))
    assert len(data.test) == 20 and len(server.requests) == 4


@pytest.mark.parametrize("damage, reason", [
    (lambda blob: blob[: len(blob) // 2], "does not decompress"),
    (lambda blob: _recompress(gzip.decompress(blob)[:-1] + b"\x01"), "not the genuine data"),
])
def test_damaged_copy_is_refused_and_named_when_the_download_fails(tmp_path, dead_url, damage, reason):
    payloads, archives = _official(mnist_arrays())
    copies = {f: _recompress(p) for f, p in payloads.items()}
    bad = "t10k-images-idx3-ubyte.gz"
    copies[bad] = damage(copies[bad])
    _write(tmp_path / "data", copies)
    with pytest.raises(DataError) as err:
        load_dataset("mnist", tmp_path / "data", sources=_sources(dead_url, payloads, archives))
    message = str(err.value)
    assert "\n" not in message
    assert "could not download" in message
    assert f"found {tmp_path / 'data' / bad} but refused it" in message and reason in message


def test_system_folder_is_searched_after_data_dir_and_cache(tmp_path, dead_url, monkeypatch):
    system = tmp_path / "usr-share-datasets"
    monkeypatch.setattr("nonn.data.fetch.SYSTEM_DATA_DIRS", (system,))
    cache = tmp_path / "cache"
    monkeypatch.setenv("NONN_DATA_DIR", str(cache))
    payloads, archives = _official(mnist_arrays(seed=0))
    sources = _sources(dead_url, payloads, archives)
    _write(system / "mnist", {f: _recompress(p) for f, p in payloads.items()})
    data = load_dataset("mnist", tmp_path / "empty", sources=sources)
    assert len(data.test) == 20

    # The cache comes before the system folder: a refused copy there is named, then the system's is used.
    _write(cache / "mnist", {MNIST_FILES[0]: b"junk"})
    assert len(load_dataset("mnist", tmp_path / "empty", sources=sources).test) == 20


def test_nothing_found_names_every_folder_and_the_debian_package(tmp_path, dead_url, monkeypatch):
    system = tmp_path / "usr-share-datasets"
    monkeypatch.setattr("nonn.data.fetch.SYSTEM_DATA_DIRS", (system,))
    monkeypatch.setenv("NONN_DATA_MIRROR", dead_url)
    with pytest.raises(DataError) as err:
        load_dataset("fashion-mnist", tmp_path / "data")
    message = str(err.value)
    assert "\n" not in message
    assert str(tmp_path / "data" / "fashion-mnist") in message and str(system / "fashion-mnist") in message
    assert "apt-get install dataset-fashion-mnist" in message


def test_debian_fashion_mnist_loads_with_no_data_dir(tmp_path, dead_url, monkeypatch):
    folder = debian_fashion_mnist()
    monkeypatch.setattr("nonn.data.fetch.SYSTEM_DATA_DIRS", (folder.parent,))
    monkeypatch.setenv("NONN_DATA_MIRROR", dead_url)  # a download attempt would fail loudly
    data = load_dataset("fashion-mnist", val_fraction=0.1)
    assert (len(data.train), len(data.val), len(data.test)) == (54000, 6000, 10000)
    assert data.input_shape == (1, 28, 28) and data.classes[9] == "Ankle boot"
    # Debian re-gzipped the files: the archive differs from the official one, the content does not.
    for name in MNIST_FILES:
        assert hashlib.md5(gzip.decompress((folder / name).read_bytes())).hexdigest() == FASHION_CONTENT_MD5[name]
    assert not (tmp_path / "default-cache").exists()
