"""Regenerate nonn_pb2.py, nonn_pb2.pyi and nonn_pb2_grpc.py from nonn.proto.

Devices only need the committed modules; this needs the dev extra (grpcio-tools)::

    python -m nonn.edge._protogen            # rewrite the modules beside nonn.proto
    python -m nonn.edge._protogen OUT_DIR    # write OUT_DIR/nonn/edge/nonn_pb2*.py instead

The proto is compiled from the directory that holds the `nonn` package, so the generated
modules import each other as `nonn.edge.nonn_pb2`.
"""

from __future__ import annotations

import sys
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
SOURCE_ROOT = PACKAGE_DIR.parent.parent
PROTO = "nonn/edge/nonn.proto"
GENERATED = ("nonn_pb2.py", "nonn_pb2.pyi", "nonn_pb2_grpc.py")


def generate(out_root: str | Path = SOURCE_ROOT) -> list[Path]:
    """Compile nonn.proto into OUT_ROOT/nonn/edge/ and return the written files."""
    from grpc_tools import protoc  # dev-only dependency

    out_root = Path(out_root)
    (out_root / "nonn" / "edge").mkdir(parents=True, exist_ok=True)
    args = [
        "grpc_tools.protoc",
        f"-I{SOURCE_ROOT}",
        f"--python_out={out_root}",
        f"--pyi_out={out_root}",
        f"--grpc_python_out={out_root}",
        PROTO,
    ]
    if protoc.main(args) != 0:
        raise RuntimeError(f"protoc failed on {SOURCE_ROOT / PROTO}")
    return [out_root / "nonn" / "edge" / name for name in GENERATED]


if __name__ == "__main__":
    for path in generate(sys.argv[1] if len(sys.argv) > 1 else SOURCE_ROOT):
        print(path)
