"""Build the `nonn-edge` wheel from src/nonn/edge: the device runtime alone, without torch.

    python packaging/edge/build_wheel.py [--out dist]

The edge code exists once, in src/nonn/edge; this script packs those files, under the same
import name `nonn.edge`, into dist/nonn_edge-<version>-py3-none-any.whl. The version and every
pin come from the main pyproject.toml, so the two distributions never disagree. Only the
standard library is used (a wheel is a zip with a few text files), so it builds offline.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import os
import re
import sys
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EDGE = ROOT / "src" / "nonn" / "edge"
NAME = "nonn-edge"
SUMMARY = "NoNN edge runtime: student nodes, gateway, client and certificates over gRPC, without torch"
# dependencies of the runtime itself; the rest are extras for optional features
REQUIRES = ("numpy", "onnxruntime", "grpcio", "grpcio-health-checking", "grpcio-reflection", "protobuf")
EXTRAS = {
    "images": ("pillow",),            # PNG/JPEG in `classify` and the Python client
    "certs": ("cryptography",),       # `nonn-edge certs`
    "metrics": ("prometheus-client",),  # --metrics-listen
    "mqtt": ("paho-mqtt",),           # gateway --mqtt
}
SUFFIXES = (".py", ".proto", ".pyi")
SCRIPT = "nonn-edge = nonn.edge.__main__:main"


def _pins() -> tuple[str, dict[str, str]]:
    """(version, {normalised name: requirement}) from the main pyproject.toml."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = {}
    for requirement in project["dependencies"]:
        name = re.split(r"[=<>!~\[; ]", requirement, maxsplit=1)[0]
        pins[_normal(name)] = requirement
    return project["version"], pins


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement(name: str, pins: dict[str, str]) -> str:
    try:
        return pins[_normal(name)]
    except KeyError:
        raise SystemExit(f"error: {name} has no pin in pyproject.toml; add it to [project] dependencies") from None


def metadata(version: str, pins: dict[str, str]) -> str:
    lines = ["Metadata-Version: 2.1", f"Name: {NAME}", f"Version: {version}", f"Summary: {SUMMARY}",
             "License: Apache-2.0", "Requires-Python: >=3.11"]
    lines += [f"Requires-Dist: {_requirement(name, pins)}" for name in REQUIRES]
    for extra, names in [*EXTRAS.items(), ("all", tuple(n for ns in EXTRAS.values() for n in ns))]:
        lines.append(f"Provides-Extra: {extra}")
        lines += [f"Requires-Dist: {_requirement(name, pins)}; extra == \"{extra}\"" for name in names]
    readme = (Path(__file__).parent / "README.md")
    body = readme.read_text() if readme.is_file() else ""
    return "\n".join(lines) + "\nDescription-Content-Type: text/markdown\n\n" + body


def _sources() -> list[Path]:
    return sorted(p for p in EDGE.iterdir() if p.is_file() and p.suffix in SUFFIXES)


def build(out: str | Path) -> Path:
    """Write the wheel into `out` (atomically) and return its path."""
    version, pins = _pins()
    dist_info = f"nonn_edge-{version}.dist-info"
    files: dict[str, bytes] = {f"nonn/edge/{p.name}": p.read_bytes() for p in _sources()}
    files[f"{dist_info}/METADATA"] = metadata(version, pins).encode()
    files[f"{dist_info}/WHEEL"] = (b"Wheel-Version: 1.0\nGenerator: nonn packaging/edge/build_wheel.py\n"
                                   b"Root-Is-Purelib: true\nTag: py3-none-any\n")
    files[f"{dist_info}/entry_points.txt"] = f"[console_scripts]\n{SCRIPT}\n".encode()
    files[f"{dist_info}/top_level.txt"] = b"nonn\n"
    record = io.StringIO()
    for name, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.write(f"{name},sha256={digest},{len(data)}\n")
    record.write(f"{dist_info}/RECORD,,\n")
    files[f"{dist_info}/RECORD"] = record.getvalue().encode()

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    wheel = out / f"nonn_edge-{version}-py3-none-any.whl"
    tmp = wheel.with_name(wheel.name + ".tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))  # reproducible bytes
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, data)
    os.replace(tmp, wheel)
    return wheel


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "dist"), metavar="DIR", help="default: dist/")
    args = parser.parse_args(argv)
    print(build(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
