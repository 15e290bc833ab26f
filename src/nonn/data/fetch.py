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


# Where Debian's dataset-* packages install data: /usr/share/datasets/<name>/<official file names>.
SYSTEM_DATA_DIRS = (Path("/usr/share/datasets"),)


class Source(NamedTuple):
    """One place to get one file. Several sources with the same filename are tried in order.

    ``content_md5`` is the MD5 of a gzip file's decompressed bytes: a re-compressed copy of the genuine
    data (whose archive ``md5`` differs) is accepted when its content matches.
    """

    url: str
    filename: str
    md5: str | None = None
    content_md5: str | None = None


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


def search_dirs(
    data_dir: Path,
    name: str,
    extra_dirs: Iterable[str] = (),
    system_dirs: Iterable[Path] | None = None,
) -> list[Path]:
    """Folders a dataset's files may already be in, in order: the data folder (data_dir/<name>/,
    data_dir/, then dataset-specific subfolders), the default cache likewise when data_dir is another
    folder, then each system folder's <name>/ (Debian's /usr/share/datasets/<name>/)."""
    roots = [data_dir]
    cache = default_data_dir()
    if cache.expanduser().absolute() != data_dir.expanduser().absolute():
        roots.append(cache)
    dirs = [d for root in roots for d in (root / name, root, *(root / e for e in extra_dirs))]
    dirs += [Path(s) / name for s in (SYSTEM_DATA_DIRS if system_dirs is None else system_dirs)]
    return list(dict.fromkeys(dirs))


def candidate_paths(
    data_dir: Path, name: str, filename: str, extra_dirs: Iterable[str] = (),
    system_dirs: Iterable[Path] | None = None,
) -> list[Path]:
    """Places a file may already be, in the order of `search_dirs`."""
    return [d / filename for d in search_dirs(data_dir, name, extra_dirs, system_dirs)]


def fetch_files(
    name: str,
    sources: Iterable[Source],
    data_dir: Path,
    *,
    download_missing: bool = True,
    extra_dirs: Iterable[str] = (),
    system_dirs: Iterable[Path] | None = None,
    install_hint: str | None = None,
    progress: bool = True,
) -> dict[str, Path]:
    """Map each filename of `sources` to a verified local path, downloading into data_dir/<name>/.

    A file found but refused (wrong checksum, truncated) is named with the reason when the download
    that replaces it fails too; when nothing was found the message names every folder searched.
    """
    by_file: dict[str, list[Source]] = {}
    for source in sources:
        by_file.setdefault(source.filename, []).append(source)
    found: dict[str, Path] = {}
    for filename, options in by_file.items():
        md5 = next((s.md5 for s in options if s.md5), None)
        content_md5 = next((s.content_md5 for s in options if s.content_md5), None)
        refused: list[tuple[Path, str]] = []
        for path in candidate_paths(data_dir, name, filename, extra_dirs, system_dirs):
            if path.is_file():
                problem = checksum_problem(path, md5, content_md5=content_md5)
                if problem is None:
                    found[filename] = path
                    break
                refused.append((path, problem))
        if filename in found:
            continue
        where = _not_found(name, filename, data_dir, extra_dirs, system_dirs, refused, install_hint)
        if not download_missing:
            if refused:
                raise ChecksumError(f"{where}; delete it and allow downloading, or pass --data-dir with a verified copy")
            raise DataError(f"{where}; allow downloading or put the file in {data_dir / name}")
        try:
            found[filename] = _download_first(options, data_dir / name / filename, md5, content_md5,
                                              progress)
        except ChecksumError:
            raise
        except DataError as err:
            raise DataError(f"{err}; {where}") from err
    return found


def _not_found(name: str, filename: str, data_dir: Path, extra_dirs, system_dirs,
               refused: list[tuple[Path, str]], install_hint: str | None) -> str:
    """One clause: the files found and refused with why, or the folders searched, and how to get the data."""
    if refused:
        text = "; ".join(f"found {path} but refused it: {why}" for path, why in refused)
    else:
        dirs = search_dirs(data_dir, name, extra_dirs, system_dirs)
        text = f"{filename} is in none of {', '.join(str(d) for d in dirs)}"
    if install_hint:
        text += f"; {install_hint}"
    return text


def _download_first(options: list[Source], dest: Path, md5: str | None, content_md5: str | None,
                    progress: bool) -> Path:
    """Try each URL in turn; a checksum mismatch stops at once, a network failure moves on."""
    last: DataError | None = None
    for source in options:
        try:
            return download(source.url, dest, md5=md5, progress=progress, content_md5=content_md5)
        except ChecksumError:
            raise
        except DataError as err:
            last = err
    assert last is not None
    raise last
