"""Soak: N clients classify through a gateway and its K nodes for T seconds, over several rounds.

    python -m nonn.bench.soak --teacher-arch wrn-40-4 --student-arch wrn-16-1 --k 2 --input 3x32x32 \
        --clients 32 --seconds 60 --rounds 3 --out runs/soak
    python -m nonn.bench.soak --manifest DIR/onnx/manifest.json --clients 32 --seconds 60 --rounds 3

Serves either an export's manifest or, given architectures (the flags of `nonn bench-edge`),
UNTRAINED models of them, exported first into OUT/onnx as `nonn bench-edge` exports them.
Starts the nodes and the gateway as processes on 127.0.0.1 (mutual TLS unless --insecure, the
certificates made in --out), runs a warm-up, then `rounds` rounds of `clients` closed-loop
clients (each keeps one image in flight on its own ClassifyStream, kept open for the whole
soak; --reconnect opens new connections every round) and reports, per round,
images/s, p50 and p99 latency, errors by status, and the resident memory (VmRSS) of every
process after the round; RSS growth is the last round's against the warm-up's. A benchmark,
not a test: it asserts nothing; the figures go in the README with the command.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

from ..errors import ConfigError

MIB = 1024 * 1024


def _pixels(manifest: Path, count: int = 16) -> list[np.ndarray]:
    from nonn.edge.manifest import load_manifest

    c, h, w = load_manifest(manifest, verify=False).input_shape
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, size=(h, w, c), dtype=np.uint8) for _ in range(count)]


async def _round(streams: list, seconds: float, images: list[np.ndarray], timeout_s: float) -> dict:
    """Each stream classifies one image after another for `seconds`."""
    from nonn.edge.errors import GatewayError

    latencies: list[float] = []
    errors: Counter = Counter()
    stop = time.monotonic() + seconds

    async def client(i: int, stream) -> None:
        n = i
        while time.monotonic() < stop:
            start = time.perf_counter()
            try:
                await stream.classify(images[n % len(images)], timeout_s=timeout_s)
                latencies.append((time.perf_counter() - start) * 1000.0)
            except GatewayError as exc:
                errors[exc.code] += 1
            n += 1

    start = time.monotonic()
    await asyncio.gather(*(client(i, stream) for i, stream in enumerate(streams)))
    elapsed = time.monotonic() - start
    lat = np.asarray(latencies) if latencies else np.zeros(1)
    return {"images": len(latencies), "errors": dict(errors), "seconds": round(elapsed, 2),
            "images_per_s": round(len(latencies) / elapsed, 1),
            "p50_ms": round(float(np.percentile(lat, 50)), 2), "p99_ms": round(float(np.percentile(lat, 99)), 2)}


def _rss(cluster) -> dict[str, float | None]:
    from nonn.deploy.procfs import rss_bytes

    return {c.name: (None if (r := rss_bytes(c.pid)) is None else round(r / MIB, 1))
            for c in cluster.processes.children}


def soak(manifest: str | Path, *, clients: int = 32, seconds: float = 60.0, rounds: int = 3, warmup_s: float = 10.0,
         out: str | Path = "runs/soak", insecure: bool = False, deadline_ms: float = 1000.0,
         timeout_s: float = 5.0, reconnect: bool = False, models: dict | None = None, log=print) -> dict:
    """Run the soak and return its figures (also written to OUT/soak.json). Each client keeps its
    stream for the whole soak, or, with `reconnect`, opens a new connection every round. `models`
    (what export_models returns) is recorded in soak.json."""
    from nonn.deploy.cluster import LocalCluster, Security, ensure_certs
    from nonn.deploy.processes import interrupt_on_signals
    from nonn.edge.grpc_io import use_polling_io
    from nonn.edge.manifest import load_manifest

    use_polling_io()
    if clients < 1 or rounds < 1 or not seconds > 0:
        raise ConfigError("--clients and --rounds must be at least 1 and --seconds positive")
    manifest, out = Path(manifest), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    k = len(load_manifest(manifest, verify=False).students)
    security = Security(None if insecure else ensure_certs(out / "certs", k))
    images = _pixels(manifest)
    result: dict = {"command": " ".join(["python -m nonn.bench.soak", *sys.argv[1:]]), "clients": clients,
                    "seconds": seconds, "manifest": str(manifest), "models": models, "rounds": [],
                    "security": security.mode}
    async def run(cluster) -> None:
        streams = []
        try:
            for r in range(rounds + 1):  # round 0: the warm-up
                if reconnect or not streams:
                    await asyncio.gather(*(stream.close() for stream in streams))
                    streams = [cluster.stream_client() for _ in range(clients)]
                figures = await _round(streams, warmup_s if r == 0 else seconds, images, timeout_s)
                figures["rss_mib"] = _rss(cluster)
                if r == 0:
                    result["warmup"] = figures
                    log(f"[soak] warm-up: {figures['images_per_s']} images/s, RSS {figures['rss_mib']}")
                    continue
                result["rounds"].append(figures)
                log(f"[soak] round {r}: {figures['images_per_s']} images/s, p50 {figures['p50_ms']} ms, "
                    f"p99 {figures['p99_ms']} ms, errors {figures['errors'] or 0}, RSS {figures['rss_mib']}")
        finally:
            await asyncio.gather(*(stream.close() for stream in streams))

    result["reconnect"] = reconnect
    with interrupt_on_signals(), LocalCluster(manifest, security, out / "logs", deadline_ms=deadline_ms,
                                              log=log) as cluster:
        asyncio.run(run(cluster))
        cluster.processes.check_alive()
    before, after = result["warmup"]["rss_mib"], result["rounds"][-1]["rss_mib"]
    result["rss_growth_percent"] = {name: round(100.0 * (after[name] - before[name]) / before[name], 2)
                                    for name in before if before[name] and after.get(name) is not None}
    result["errors"] = sum(sum(r["errors"].values()) for r in result["rounds"])
    log(f"[soak] RSS growth over {rounds} rounds: {result['rss_growth_percent']}; errors {result['errors']}")
    (out / "soak.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


ARCH_FLAGS = ("teacher_arch", "student_arch", "k", "input")


def export_models(teacher_arch: str, student_arch: str, k: int = 2, input_shape="3x32x32", *,
                  out: str | Path = "runs/soak", log=print) -> tuple[Path, dict]:
    """UNTRAINED models of these architectures exported into OUT/onnx, as `nonn bench-edge` exports them:
    (the manifest's path, what was exported)."""
    from .synthetic import UNTRAINED_NOTE, export_untrained, parse_input

    input_shape = parse_input(input_shape)
    log(f"[soak] {UNTRAINED_NOTE}")
    models = export_untrained(teacher_arch, student_arch, k, input_shape, out, log=log, save_teacher=False)
    return Path(out) / "onnx" / "manifest.json", {
        "untrained": True, "teacher_arch": teacher_arch, "student_arch": student_arch, "k": k,
        "input_shape": list(input_shape), **models}


def _models_from_args(args) -> str | None:
    """The one-line complaint about --manifest and the architecture flags, or None when they fit."""
    given = [f"--{name.replace('_', '-')}" for name in ARCH_FLAGS if getattr(args, name) is not None]
    if args.manifest and given:
        return (f"give --manifest or {' '.join(given)}, not both: --manifest serves an export, the architecture "
                "flags export untrained models")
    if not args.manifest and not given:
        return ("give --manifest DIR/onnx/manifest.json, or the architectures to export untrained, like "
                "--teacher-arch wrn-40-4 --student-arch wrn-16-1 --k 2 --input 3x32x32")
    if not args.manifest and (args.teacher_arch is None or args.student_arch is None):
        return "give both --teacher-arch and --student-arch (--k and --input default to 2 and 3x32x32)"
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nonn.bench.soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--manifest", metavar="JSON", help="onnx/manifest.json of an export")
    parser.add_argument("--teacher-arch", metavar="ARCH", help="instead of --manifest: export untrained models, "
                        "like `nonn bench-edge` (e.g. wrn-40-4)")
    parser.add_argument("--student-arch", metavar="ARCH", help="with --teacher-arch (e.g. wrn-16-1)")
    parser.add_argument("--k", type=int, metavar="K", help="with --teacher-arch: number of students (default: 2)")
    parser.add_argument("--input", metavar="CxHxW", help="with --teacher-arch: input shape (default: 3x32x32)")
    parser.add_argument("--clients", type=int, default=32, metavar="N", help="concurrent clients (default: 32)")
    parser.add_argument("--seconds", type=float, default=60.0, metavar="T", help="per round (default: 60)")
    parser.add_argument("--rounds", type=int, default=3, metavar="N", help="default: 3")
    parser.add_argument("--warmup-s", type=float, default=10.0, metavar="S", help="default: 10")
    parser.add_argument("--deadline-ms", type=float, default=1000.0, metavar="MS", help="the gateway's (default: 1000)")
    parser.add_argument("--out", default="runs/soak", metavar="DIR",
                        help="exported models (onnx/), certificates, logs, soak.json (default: runs/soak)")
    parser.add_argument("--insecure", action="store_true", help="plaintext instead of mutual TLS")
    parser.add_argument("--reconnect", action="store_true",
                        help="every client opens a new connection each round (default: one for the whole soak)")
    args = parser.parse_args(argv)
    from nonn.edge.errors import EdgeError
    from nonn.errors import NonnError

    try:
        if (complaint := _models_from_args(args)) is not None:
            raise ConfigError(complaint)
        if args.clients < 1 or args.rounds < 1 or not args.seconds > 0:
            raise ConfigError("--clients and --rounds must be at least 1 and --seconds positive")
        manifest, models = args.manifest, None
        if manifest is None:
            manifest, models = export_models(args.teacher_arch, args.student_arch, 2 if args.k is None else args.k,
                                             args.input or "3x32x32", out=args.out)
        soak(manifest, clients=args.clients, seconds=args.seconds, rounds=args.rounds, warmup_s=args.warmup_s,
             out=args.out, insecure=args.insecure, deadline_ms=args.deadline_ms, reconnect=args.reconnect,
             models=models)
    except (NonnError, EdgeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
