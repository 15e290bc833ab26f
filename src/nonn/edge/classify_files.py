"""`classify FILE|FOLDER ...`: one gateway connection, one line (or one JSON line) per file."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from nonn.edge.client import GatewayClient
from nonn.edge.errors import EdgeError, GatewayError
from nonn.edge.images import expand


def detail_lines(result: dict) -> list[str]:
    """The one-image report: label, then each node, the totals, and whether it was degraded."""
    p = result["probabilities"][result["label"]]
    lines = [f"label {result['label']} ({result['class_name']}) p={p:.3f}"]
    for n in result["nodes"]:
        state = f"MISSING {n['error']}" if n["missing"] else (
            f"compute {n['compute_ms']:.2f} ms, round trip {n['round_trip_ms']:.2f} ms")
        lines.append(f"  node {n['index']} {n['address']}: {state}")
    lines.append(f"  gateway {result['gateway_ms']:.2f} ms, client {result['client_ms']:.2f} ms, "
                 f"{result['bytes_sent']} bytes sent, {result['bytes_received']} received")
    if result["degraded"]:
        lines.append(f"  DEGRADED: zero-filled features of {', '.join(result['missing_nodes'])}")
    return lines


def short_line(path, result: dict) -> str:
    p = result["probabilities"][result["label"]]
    return f"{path}: label {result['label']} ({result['class_name']}) p={p:.3f}" + (
        " DEGRADED" if result["degraded"] else "")


def classify_files(args, tls) -> int:
    """One line per file: for one file its label (with --verbose, each node's times too; with --json,
    the whole prediction); for several files or a folder the file's name and its label, or its
    error on its line (with --json, one object per line). Exit status:
    0, 2 when a file was refused as input, 1 when the gateway failed."""
    files = expand(args.file)
    single = len(args.file) == 1 and len(files) == 1 and files[0] == Path(args.file[0])
    status = 0
    with GatewayClient(args.gateway, tls=tls, insecure=args.insecure) as client:
        for path in files:
            try:
                result = client.classify(path, timeout_s=args.timeout_s, layout=args.layout,
                                         resize=not args.no_resize)
            except (GatewayError, EdgeError) as exc:
                if single or (isinstance(exc, GatewayError) and exc.code == "UNAVAILABLE"):
                    raise  # one line from the command: nothing else would get through either
                failed = 2 if not isinstance(exc, GatewayError) or exc.code == "INVALID_ARGUMENT" else 1
                status = max(status, failed)
                if args.json:
                    print(json.dumps({"file": str(path), "error": str(exc)}), flush=True)
                else:
                    print(f"{path}: error: {exc}", flush=True)
                continue
            if single:
                lines = detail_lines(result) if args.verbose else detail_lines(result)[:1]
                print(json.dumps(result, indent=2) if args.json else "\n".join(lines))
            elif args.json:
                print(json.dumps({"file": str(path), **result}), flush=True)
            else:
                print(short_line(path, result), flush=True)
    if status:
        print("error: some files were not classified (see their lines)", file=sys.stderr)
    return status
