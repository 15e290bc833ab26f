"""Stream a URL into a file atomically, verifying its checksum before the file gets its name."""

from __future__ import annotations

import gzip
import hashlib
import http.client
import zlib
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path

from nonn.atomic import atomic_path
from nonn.errors import DataError

TIMEOUT_S = 30.0
CHUNK = 1 << 20


class ChecksumError(DataError):
    """A file's checksum is not the expected one."""


def file_digest(path: str | os.PathLike, algorithm: str) -> str:
    """Hex digest of a file, read in chunks."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        while block := handle.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def gunzipped_md5(path: str | os.PathLike) -> str:
    """MD5 of a gzip file's decompressed content; OSError, EOFError or zlib.error if it is not whole gzip."""
    digest = hashlib.md5()
    with gzip.open(path, "rb") as handle:
        while block := handle.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def checksum_problem(
    path: str | os.PathLike,
    md5: str | None = None,
    sha256: str | None = None,
    content_md5: str | None = None,
) -> str | None:
    """None if the file matches every given checksum, else why not, in a few words.

    With ``content_md5`` (the MD5 of a gzip file's decompressed bytes), a file whose archive ``md5``
    differs is still accepted when its content matches: a re-compressed copy of the same data.
    """
    for algorithm, expected in (("md5", md5), ("sha256", sha256)):
        if expected:
            actual = file_digest(path, algorithm)
            if actual.lower() == expected.lower():
                continue
            if algorithm == "md5" and content_md5:
                problem = _content_problem(path, content_md5, actual)
                if problem is None:
                    continue
                return problem
            return f"expected {algorithm} {expected.lower()}, got {actual}"
    if content_md5 and not md5:
        return _content_problem(path, content_md5, None)
    return None


def _content_problem(path: str | os.PathLike, expected: str, archive_md5: str | None) -> str | None:
    """None if the decompressed content has MD5 ``expected``, else why the file is refused."""
    prefix = f"archive md5 {archive_md5} is not the official one and " if archive_md5 else ""
    try:
        actual = gunzipped_md5(path)
    except (OSError, EOFError, zlib.error) as err:
        return f"{prefix}it does not decompress ({err}): truncated or not gzip"
    if actual.lower() == expected.lower():
        return None
    return f"{prefix}its decompressed content has md5 {actual}, expected {expected.lower()}: not the genuine data"


def _progress_bar(total: int | None, name: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(
        total=total,
        desc=name,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        leave=False,
        disable=not (enabled and sys.stderr.isatty()),
    )


def download(
    url: str,
    dest: str | os.PathLike,
    md5: str | None = None,
    sha256: str | None = None,
    progress: bool = True,
    content_md5: str | None = None,
) -> Path:
    """Download `url` to `dest`; a failure or checksum mismatch leaves no file at `dest`."""
    dest = Path(dest)
    try:
        with atomic_path(dest) as tmp:
            with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
                length = response.headers.get("Content-Length")
                total = int(length) if length and length.isdigit() else None
                received = 0
                with open(tmp, "wb") as out, _progress_bar(total, dest.name, progress) as bar:
                    while block := response.read(CHUNK):
                        out.write(block)
                        received += len(block)
                        bar.update(len(block))
            if total is not None and received != total:
                raise DataError(
                    f"download of {dest.name} from {url} stopped at {received} of {total} bytes; "
                    "run the command again to retry"
                )
            problem = checksum_problem(tmp, md5, sha256, content_md5)
            if problem:
                raise ChecksumError(
                    f"checksum mismatch for {dest.name} downloaded from {url}: {problem}; the file was "
                    "discarded: re-run to download it again, set NONN_DATA_MIRROR to another mirror, "
                    "or put a verified copy in --data-dir"
                )
    except DataError:
        raise
    except (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError) as err:
        reason = (
            err if isinstance(err, urllib.error.HTTPError) else getattr(err, "reason", None) or err
        )
        raise DataError(
            f"could not download {dest.name} from {url} ({reason}); check the network, set "
            f"NONN_DATA_MIRROR to a reachable mirror, or put the file in {dest.parent}"
        ) from err
    except ValueError as err:  # urllib's answer to a malformed URL
        raise DataError(
            f"cannot download {dest.name}: bad URL {url!r} ({err}); fix the source or NONN_DATA_MIRROR"
        ) from err
    except OSError as err:
        raise DataError(
            f"could not write {dest} ({err.strerror or err}); pass --data-dir with a writable folder"
        ) from err
    return dest
