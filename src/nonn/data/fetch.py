"""Where dataset files live, and how each one is found in the data folder or fetched into it."""

from __future__ import annotations

import os
import urllib.parse
from pathlib import Path
from typing import Iterable, NamedTuple

from nonn.data.download import ChecksumError, checksum_problem, download
from nonn.errors import DataError

MIRROR_ENV = "NONN_DATA_MIRROR"
DATA_DIR_ENV = "NONN_DATA_DIR"


class Source(NamedTuple):
    """One place to get one file. Several sources with the same filename are tried in order."""

    url: str
    filename: str
    md5: str | None = None


def default_data_dir() -> Path:
    """`$NONN_DATA_DIR`, else `~/.cache/nonn`."""
    env = os.environ.get(DATA_DIR_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "nonn"


def mirrored(url: str, mirror: str | None) -> str:
    """`url` with its scheme and host replaced by the mirror base URL (the path is kept)."""
    if not mirror:
        return url
    path = urllib.parse.urlsplit(url).path
    return mirror.rstrip("/") + "/" + path.lstrip("/")


def as_sources(entries: Iterable) -> list[Source]:
    """Coerce (url, filename[, md5]) tuples into Sources; a malformed entry is a DataError."""
    out = []
    for entry in entries:
        try:
            out.append(Source(*entry))
        except TypeError as err:
            raise DataError(
                f"bad source entry {entry!r}; give (url, filename, md5) tuples"
            ) from err
    return out


def candidate_paths(
    data_dir: Path, name: str, filename: str, extra_dirs: Iterable[str] = ()
) -> list[Path]:
    """Places a file may already be: data_dir/<name>/, data_dir/, then any dataset-specific folders."""
    dirs = [data_dir / name, data_dir, *(data_dir / d for d in extra_dirs)]
    return [d / filename for d in dirs]


def fetch_files(
    name: str,
    sources: Iterable[Source],
    data_dir: Path,
    *,
    download_missing: bool = True,
    extra_dirs: Iterable[str] = (),
    progress: bool = True,
) -> dict[str, Path]:
    """Map each filename of `sources` to a verified local path, downloading into data_dir/<name>/."""
    by_file: dict[str, list[Source]] = {}
    for source in sources:
        by_file.setdefault(source.filename, []).append(source)
    found: dict[str, Path] = {}
    for filename, options in by_file.items():
        md5 = next((s.md5 for s in options if s.md5), None)
        stale = None
        for path in candidate_paths(data_dir, name, filename, extra_dirs):
            if path.is_file():
                problem = checksum_problem(path, md5)
                if problem is None:
                    found[filename] = path
                    break
                stale = stale or (path, problem)
        if filename in found:
            continue
        if not download_missing:
            if stale:
                raise ChecksumError(
                    f"{stale[0]} is corrupt ({stale[1]}); delete it and download again, "
                    "or pass --data-dir with a verified copy"
                )
            raise DataError(
                f"{filename} for dataset '{name}' is not in {data_dir}; allow downloading "
                f"or put the file in {data_dir / name}"
            )
        found[filename] = _download_first(options, data_dir / name / filename, md5, progress)
    return found


def _download_first(options: list[Source], dest: Path, md5: str | None, progress: bool) -> Path:
    """Try each URL in turn; a checksum mismatch stops at once, a network failure moves on."""
    last: DataError | None = None
    for source in options:
        try:
            return download(source.url, dest, md5=md5, progress=progress)
        except ChecksumError:
            raise
        except DataError as err:
            last = err
    assert last is not None
    raise last
