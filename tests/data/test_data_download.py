"""download() against a real loopback server: success, checksum mismatch, HTTP and network failure."""

from __future__ import annotations

import hashlib

import pytest

from nonn.data import download
from nonn.data.fetch import mirrored
from nonn.errors import DataError


def test_download_writes_the_file(server, tmp_path):
    payload = bytes(range(256)) * 5000
    (server.root / "blob.bin").write_bytes(payload)
    dest = tmp_path / "cache" / "blob.bin"
    out = download(
        f"{server.url}/blob.bin",
        dest,
        md5=hashlib.md5(payload).hexdigest(),
        sha256=hashlib.sha256(payload).hexdigest(),
        progress=False,
    )
    assert out == dest and dest.read_bytes() == payload
    assert server.requests == ["/blob.bin"]


@pytest.mark.parametrize("kind", ["md5", "sha256"])
def test_checksum_mismatch_leaves_nothing(server, tmp_path, kind):
    (server.root / "blob.bin").write_bytes(b"not what you expected")
    cache = tmp_path / "cache"
    wrong = "0" * (32 if kind == "md5" else 64)
    with pytest.raises(DataError) as info:
        download(f"{server.url}/blob.bin", cache / "blob.bin", progress=False, **{kind: wrong})
    message = str(info.value)
    actual = hashlib.new(kind, b"not what you expected").hexdigest()
    assert "blob.bin" in message and wrong in message and actual in message
    assert "--data-dir" in message and "\n" not in message
    assert list(cache.iterdir()) == []  # not even a temporary file


def test_http_error_is_a_data_error(server, tmp_path):
    with pytest.raises(DataError, match="404") as info:
        download(f"{server.url}/missing.bin", tmp_path / "dl" / "missing.bin", progress=False)
    assert "NONN_DATA_MIRROR" in str(info.value)
    assert not (tmp_path / "dl").exists() or list((tmp_path / "dl").iterdir()) == []


def test_unreachable_host_is_a_data_error(dead_url, tmp_path):
    with pytest.raises(DataError, match="could not download x.bin"):
        download(f"{dead_url}/x.bin", tmp_path / "dl" / "x.bin", progress=False)
    assert not (tmp_path / "dl" / "x.bin").exists()


def test_mirror_keeps_the_path():
    url = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
    assert mirrored(url, None) == url
    assert (
        mirrored(url, "http://m.local/base/") == "http://m.local/base/~kriz/cifar-10-python.tar.gz"
    )


def test_malformed_url_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="bad URL"):
        download("nonsense-without-scheme", tmp_path / "x.bin", progress=False)
    assert list(tmp_path.iterdir()) == []
