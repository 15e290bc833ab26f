"""Does --mqtt cost classification throughput? A benchmark, not a test (it asserts nothing):

    python -m nonn.deploy.mqtt_bench RUN_DIR [--requests 400] [--concurrency 8] [--rounds 5]

Two nodes and three gateways on loopback (plaintext), one gateway without --mqtt, one with
--mqtt to a broker that is down (nothing listens on its port), one with --mqtt to a live
mosquitto (when the Debian package is installed). Rounds alternate between the gateways, each
going first in turn, so a noisy machine weighs on all alike; the medians, and their ratios to
the gateway without --mqtt, go to RUN_DIR/bench_mqtt.json."""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .errors import DeployError
from .procfs import cpu_seconds


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _mosquitto(workdir: Path):
    """(process, port) of a mosquitto on loopback, or (None, None) without the package."""
    binary = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin:/sbin")
    if binary is None:
        return None, None
    port = _free_port()
    conf = workdir / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nuser root\n")
    proc = subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return proc, port
        except OSError:
            time.sleep(0.1)
    proc.kill()
    return None, None


def bench_mqtt(run_dir: str | Path, *, requests: int = 400, concurrency: int = 8, rounds: int = 5,
               log=print) -> dict:
    from nonn.edge.client import StreamingClient
    from nonn.edge.manifest import load_manifest
    from nonn.edge.options import GatewayOptions, NodeOptions

    from ..rundir import RunDir
    from .load import drive, summarize
    from .local import ensure_export, in_process_labels
    from .processes import ChildProcesses, gateway_args, node_args

    if min(requests, concurrency, rounds) < 1:
        raise DeployError("--requests, --concurrency and --rounds must be at least 1")
    rd = RunDir(Path(run_dir))
    rd.load_config()
    manifest_path, _ = ensure_export(rd, log)
    manifest = load_manifest(manifest_path)
    images, _, _ = in_process_labels(rd, 64)
    work = Path(tempfile.mkdtemp(prefix="nonn-bench-mqtt-"))
    broker, broker_port = _mosquitto(work)
    variants = {"no --mqtt": None, "--mqtt, broker down": f"mqtt://127.0.0.1:{_free_port()}/nonn/bench"}
    if broker is not None:
        variants["--mqtt, broker up"] = f"mqtt://127.0.0.1:{broker_port}/nonn/bench"
    results: dict[str, list[dict]] = {name: [] for name in variants}
    try:
        with ChildProcesses(rd.path / "logs" / "bench-mqtt") as procs:
            nodes = [procs.start(f"node {k}", node_args(s.file, "127.0.0.1:0", NodeOptions(insecure=True)))
                     for k, s in enumerate(manifest.students)]
            gateways = {name: procs.start(f"gateway {i}", gateway_args(
                manifest_path, [n.address for n in nodes], "127.0.0.1:0",
                GatewayOptions(insecure=True, mqtt=url, deadline_s=10.0)))
                for i, (name, url) in enumerate(variants.items())}
            time.sleep(1.0)  # the MQTT clients connect (or fail to) on their own threads
            order = list(gateways.items())
            for r in range(rounds):
                for name, child in order[r % len(order):] + order[:r % len(order)]:  # each goes first in turn
                    cpu = cpu_seconds(child.pid)
                    run = drive(lambda a=child.address: StreamingClient(a, insecure=True), images,
                                requests=requests, concurrency=concurrency, warmup=5, timeout_s=30.0)
                    summary = summarize(run)
                    # the gateway's own CPU time per image: what --mqtt costs, little moved by other load
                    summary["gateway_cpu_ms_per_image"] = (cpu_seconds(child.pid) - cpu) * 1000.0 / (
                        requests + 5 * min(concurrency, requests))
                    results[name].append(summary)
                    log(f"[bench-mqtt] round {r + 1}/{rounds} {name:<22} {run.throughput:8.1f} images/s, "
                        f"gateway {summary['gateway_cpu_ms_per_image']:.3f} CPU ms/image")
    finally:
        if broker is not None:
            broker.kill()
            broker.wait()
        shutil.rmtree(work, ignore_errors=True)
    base = statistics.median(s["throughput_per_s"] for s in results["no --mqtt"])
    table = {}
    for name, runs in results.items():
        median = statistics.median(s["throughput_per_s"] for s in runs)
        table[name] = {"throughput_per_s": [s["throughput_per_s"] for s in runs], "median_per_s": median,
                       "ratio_to_no_mqtt": median / base,
                       "p50_latency_ms": statistics.median(s["latency_ms"]["p50"] for s in runs),
                       "gateway_cpu_ms_per_image": statistics.median(s["gateway_cpu_ms_per_image"] for s in runs)}
    result = {"run": str(rd.path), "requests": requests, "concurrency": concurrency, "rounds": rounds,
              "mosquitto": broker is not None, "variants": table}
    out = rd.path / "bench_mqtt.json"
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    tmp.replace(out)
    return result


def format_table(result: dict) -> str:
    lines = [f"{'gateway':<24}{'images/s (median)':>19}{'ratio':>8}{'p50 ms':>9}{'CPU ms/image':>14}   rounds"]
    for name, row in result["variants"].items():
        rounds = " ".join(f"{t:.0f}" for t in row["throughput_per_s"])
        lines.append(f"{name:<24}{row['median_per_s']:>19.1f}{row['ratio_to_no_mqtt']:>8.3f}"
                     f"{row['p50_latency_ms']:>9.2f}{row['gateway_cpu_ms_per_image']:>14.3f}   {rounds}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from ..errors import NonnError

    parser = argparse.ArgumentParser(prog="python -m nonn.deploy.mqtt_bench", description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", metavar="RUN_DIR")
    parser.add_argument("--requests", type=int, default=400, help="images per gateway per round (default: 400)")
    parser.add_argument("--concurrency", type=int, default=8, help="images in flight (default: 8)")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds (default: 5)")
    args = parser.parse_args(argv)
    try:
        result = bench_mqtt(args.run_dir, requests=args.requests, concurrency=args.concurrency, rounds=args.rounds)
    except NonnError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_table(result))
    print(f"wrote {result['run']}/bench_mqtt.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
