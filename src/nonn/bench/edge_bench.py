"""`nonn bench-edge`: the edge runtime's own cost, measured in one run with UNTRAINED models.

Three questions: how much latency the distribution adds (gateway overhead = client-measured
end-to-end latency minus the slowest node's compute), how close the served throughput comes
to the compute-bound ceiling of this machine, and how much memory a node process needs next
to a process that holds the teacher in PyTorch.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

from .. import atomic
from ..deploy.cluster import LocalCluster, Security, ensure_certs, node_cores
from ..deploy.load import Run, drive, percentiles, summarize
from ..deploy.local import bytes_per_inference, request_bytes
from ..deploy.processes import interrupt_on_signals
from ..deploy.procfs import peak_rss_bytes
from ..errors import ConfigError
from .deployments import normalise
from .synthetic import BENCH_FORMAT, UNTRAINED_MEAN, UNTRAINED_NOTE, UNTRAINED_STD, export_untrained, parse_input
from .transport_floor import TransportFloor

OVERHEAD_TARGET_MS = 1.0
THROUGHPUT_TARGET = 0.5
CEILING_WORKERS = 2
CEILING_BATCHES = (1, 8)
LOAD_CONCURRENCY = (1, 8)
DISTINCT_IMAGES = 64


def compute_ceiling(student_files: list[Path], inputs: np.ndarray, *, images_per_worker: int,
                    workers: int = CEILING_WORKERS, warmup: int = 10, batch: int = 1) -> dict:
    """Images/s of the K student sessions run directly, `batch` images per run, one intra-op
    thread each, in `workers` threads (ONNX Runtime releases the GIL), with no gRPC, no
    gateway, no head. `inputs` is [N, 1, C, H, W] normalised float32."""
    from nonn.edge.node import load_session

    batches = [np.concatenate([inputs[(i + j) % len(inputs)] for j in range(batch)]) for i in range(len(inputs))]
    runs_per_worker = max(1, -(-images_per_worker // batch))  # at least images_per_worker each

    def sessions():
        return [load_session(p, 1) for p in student_files]

    per_worker = [sessions() for _ in range(workers)]
    serial_ms = []
    for i in range(warmup + 20):  # one worker alone: the compute of one image, all K students in turn
        start = time.perf_counter()
        for s in per_worker[0]:
            s.run(None, {"image": inputs[i % len(inputs)]})
        if i >= warmup:
            serial_ms.append((time.perf_counter() - start) * 1000.0)
    barrier = threading.Barrier(workers + 1)

    cores = node_cores()

    def work(w: int) -> None:
        if cores:  # worker w on core w, as node w is in the cluster
            os.sched_setaffinity(0, {cores[w % len(cores)]})
        mine = per_worker[w]
        for i in range(warmup):
            for s in mine:
                s.run(None, {"image": batches[i % len(batches)]})
        barrier.wait()
        for i in range(runs_per_worker):
            x = batches[(w + i) % len(batches)]
            for s in mine:
                s.run(None, {"image": x})

    threads = [threading.Thread(target=work, args=(w,), daemon=True) for w in range(workers)]
    for t in threads:
        t.start()
    barrier.wait()
    start = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    images = workers * runs_per_worker * batch
    return {
        "images_per_s": images / wall,
        "batch": batch,
        "workers": workers,
        "images": images,
        "wall_s": wall,
        "serial_ms_per_image": percentiles(serial_ms),
        "method": (f"{len(student_files)} student ONNX sessions per worker, 1 intra-op thread each, batch {batch}, "
                   f"{workers} worker threads on {os.cpu_count()} cores, each pinned to its own core and running "
                   "every student on its images in turn; no gRPC, no gateway, no head, inputs already normalised"),
    }


def best_ceiling(student_files: list[Path], inputs: np.ndarray, *, images_per_worker: int,
                 batches=CEILING_BATCHES) -> dict:
    """The highest compute_ceiling over `batches`: the gateway batches images, so the bound it
    is held to is the best the students alone reach at any of those batch sizes."""
    tried = [compute_ceiling(student_files, inputs, images_per_worker=images_per_worker, batch=b) for b in batches]
    best = max(tried, key=lambda c: c["images_per_s"])
    return {**best, "by_batch": {str(c["batch"]): c["images_per_s"] for c in tried}}


def gateway_code_us(manifest: Path, images: np.ndarray, repeats: int = 2000) -> dict:
    """Microseconds per request of the gateway's own Python work, run in-process without gRPC:
    preprocessing, serialising K node requests, decoding K replies, the head, the Prediction.

    The node requests and replies are made and read as the gateway's node links do (edge/node_link.py): the
    image batch through ``to_tensor`` (``encode_array``) into a FeaturesRequest, each reply's features through
    ``from_tensor``, with the byte counts a link charges; the replies are made as a node makes them."""
    from nonn.edge import nonn_pb2 as pb
    from nonn.edge.client import to_message
    from nonn.edge.gateway import GatewayServicer
    from nonn.edge.manifest import load_manifest
    from nonn.edge.tensors import from_tensor, to_tensor

    m = load_manifest(manifest)
    servicer = GatewayServicer(m, ["127.0.0.1:9"] * len(m.students), deadline_s=1.0, degraded=False,
                               credentials=None, max_message_bytes=1 << 26, intra_op_threads=1)
    request = to_message(images[0], "HWC")
    features = [np.random.default_rng(k).random((1, n), dtype=np.float32) for k, n in enumerate(m.partition_sizes)]
    replies = [pb.FeaturesReply(id=1, features=to_tensor(f), compute_us=500).SerializeToString() for f in features]

    def one() -> bytes:
        start = time.perf_counter()
        x = servicer.preprocess(request)
        for _ in replies:  # NodeLink._send, once per node
            tensor = to_tensor(x)
            tensor.ByteSize()
            pb.FeaturesRequest(id=1, tensor=tensor, timeout_us=1000000).SerializeToString()
        parts = []
        for raw in replies:  # NodeLink._read and _answers
            reply = pb.FeaturesReply.FromString(raw)
            parts.append(from_tensor(reply.features, allowed=("float32",)))
            reply.features.ByteSize()
        timings = [pb.NodeTiming(index=k, address=a) for k, a in enumerate(servicer.nodes)]
        return servicer.predict(parts, timings, False, start).SerializeToString()

    for _ in range(100):
        one()
    begin = time.perf_counter()
    for _ in range(repeats):
        one()
    return {"per_request_us": (time.perf_counter() - begin) / repeats * 1e6, "repeats": repeats,
            "what": "preprocess + K node request serialisations + K reply decodes + head + Prediction, in-process"}


def teacher_rss(checkpoint: Path, input_shape) -> dict:
    """Peak RSS of a fresh process that loads the teacher in PyTorch and runs one inference."""
    code = [sys.executable, "-m", "nonn.bench.edge_bench", "teacher-probe", str(checkpoint),
            "x".join(map(str, input_shape))]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (str(Path(__file__).resolve().parents[2]), os.environ.get("PYTHONPATH", "")) if p))
    done = subprocess.run(code, capture_output=True, text=True, timeout=300, env=env, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the teacher probe failed: {done.stderr.strip()[-1000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _teacher_probe(checkpoint: str, shape: str) -> None:
    import torch

    from ..models import create_model

    torch.set_num_threads(1)  # like a node: one intra-op thread
    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=True)
    model = create_model(ckpt["arch"], num_classes=ckpt["num_classes"], in_channels=ckpt["in_channels"]).eval()
    model.load_state_dict(ckpt["state_dict"])
    start = time.perf_counter()
    with torch.no_grad():
        model(torch.zeros(1, *parse_input(shape)))
    infer_ms = (time.perf_counter() - start) * 1000.0
    print(json.dumps({"pid": os.getpid(), "peak_rss_bytes": peak_rss_bytes(), "infer_ms": infer_ms,
                      "torch": torch.__version__}))


def _breakdown(samples) -> dict:
    """Median of where the end-to-end time goes, per request, in ms."""
    def slowest(s):
        return int(np.argmax(s.compute_ms))

    return {
        "client_to_gateway_and_back": percentiles(s.e2e_ms - s.gateway_ms for s in samples),
        "gateway_outside_fan_out": percentiles(s.gateway_ms - max(s.round_trip_ms) for s in samples),
        "head": percentiles(s.head_ms for s in samples),
        "slowest_node_hop_minus_compute": percentiles(
            s.round_trip_ms[slowest(s)] - s.compute_ms[slowest(s)] for s in samples),
        "slowest_node_compute": percentiles(max(s.compute_ms) for s in samples),
    }


def bench_edge(*, teacher_arch: str = "wrn-40-4", student_arch: str = "wrn-16-1", k: int = 2,
               input_shape="3x32x32", requests: int = 1000, rounds: int = 3, out: str | Path = "runs/bench-edge",
               insecure: bool = False, int8: bool = False, log=print) -> dict:
    """Export untrained models, serve them as processes, then `rounds` times in turn: measure the
    compute ceiling, load at concurrency 1 and 8. Ratios are taken within a round and their
    median reported, so a busy moment on a shared machine moves a round, not the figure.
    Writes bench_edge.json."""
    input_shape = parse_input(input_shape)
    if k < 1:
        raise ConfigError(f"--k must be at least 1, got {k}")
    if requests < 1:
        raise ConfigError(f"--requests must be at least 1, got {requests}")
    if rounds < 1:
        raise ConfigError(f"--rounds must be at least 1, got {rounds}")
    out = Path(out)
    from nonn.edge.grpc_io import use_polling_io

    use_polling_io()  # this process is the client: the same gRPC I/O as the node and gateway processes
    load_before = os.getloadavg()
    log(f"[bench-edge] {UNTRAINED_NOTE}")
    models = export_untrained(teacher_arch, student_arch, k, input_shape, out, log=log)
    manifest = out / "onnx" / "manifest.json"
    rng = np.random.default_rng(0)
    c, h, w = input_shape
    images = rng.integers(0, 256, size=(DISTINCT_IMAGES, h, w, c), dtype=np.uint8)
    if int8:  # the same students quantized (static QDQ, per-channel int8), calibrated on other random images
        from nonn.edge.manifest import load_manifest

        from ..quantize import export_int8
        calibration = normalise(rng.integers(0, 256, size=(64, h, w, c), dtype=np.uint8),
                                (UNTRAINED_MEAN,) * c, (UNTRAINED_STD,) * c)[:, 0]
        manifest = export_int8(load_manifest(manifest), out / "onnx-int8", calibration, None,
                               calibration_info={"split": "random uint8 images (untrained models)", "seed": 0},
                               log=log).path
    students = [manifest.parent / s["file"] for s in json.loads(manifest.read_text())["students"]]
    code = gateway_code_us(manifest, images)
    inputs = normalise(images, (UNTRAINED_MEAN,) * c, (UNTRAINED_STD,) * c)  # what the nodes run on

    security = Security(None if insecure else ensure_certs(out / "certs", k))
    measured, floor_ms, floor_processes = [], [], []
    with interrupt_on_signals(), LocalCluster(manifest, security, out / "logs", log=log) as cluster:
        for r in range(rounds):
            log(f"[bench-edge] round {r + 1}/{rounds}: compute ceiling, {CEILING_WORKERS} workers x {requests} "
                "images (the served processes idle)")
            one = {"ceiling": best_ceiling(students, inputs, images_per_worker=requests),
                   "runs": {}, "cpu": {}}
            for conc in LOAD_CONCURRENCY:
                log(f"[bench-edge] round {r + 1}/{rounds}: {requests} requests at concurrency {conc}")
                before = cluster.cpu_seconds()
                one["runs"][conc] = drive(cluster.stream_client, images, requests=requests, concurrency=conc,
                                          warmup=5)
                after = cluster.cpu_seconds()
                one["cpu"][f"c{conc}"] = {name: (after[name] - before[name]) * 1000.0 / requests for name in before
                                          if before[name] is not None and after.get(name) is not None}
            log(f"[bench-edge] round {r + 1}/{rounds}: {requests} requests at concurrency 8 from 8 connections")
            one["separate"] = drive(cluster.stream_client, images, requests=requests, concurrency=8,
                                    connections=8, warmup=5)
            log(f"[bench-edge] round {r + 1}/{rounds}: {requests} messages through the transport floor")
            with TransportFloor(students, c * h * w, out / "logs" / "floor", certs=security.certs,
                                cores=node_cores()) as floor:  # its processes live only while measured
                one["floor_ms"] = floor.measure(requests)
                floor_processes = floor.describe()
            floor_ms += one["floor_ms"]
            measured.append(one)
        rss = cluster.peak_rss()
        processes = cluster.describe()
    for row in processes:
        row["peak_rss_bytes"] = rss.get("gateway" if row["role"] == "gateway" else f"node {row['index']}")
    log("[bench-edge] teacher memory probe")
    teacher = teacher_rss(out / "teacher_untrained.pt", input_shape)

    node_rss = [p["peak_rss_bytes"] for p in processes if p["role"] == "node"]
    runs = {conc: Run([smp for one in measured for smp in one["runs"][conc].samples],
                      sum(one["runs"][conc].wall_s for one in measured), conc) for conc in LOAD_CONCURRENCY}
    summaries = {conc: summarize(run) for conc, run in runs.items()}
    per_round = [{"ceiling_per_s": one["ceiling"]["images_per_s"],
                  "ceiling_by_batch": one["ceiling"]["by_batch"],
                  **{f"c{conc}_per_s": one["runs"][conc].throughput for conc in LOAD_CONCURRENCY},
                  "c8_over_ceiling": one["runs"][8].throughput / one["ceiling"]["images_per_s"],
                  "c8_separate_connections_per_s": one["separate"].throughput,
                  "c8_separate_connections_over_ceiling": one["separate"].throughput / one["ceiling"]["images_per_s"],
                  "cpu_ms_per_request": one["cpu"]} for one in measured]
    ratio = _median([row["c8_over_ceiling"] for row in per_round])
    overhead = {f"c{conc}": s["overhead_ms"] for conc, s in summaries.items()}
    node_max = max((r for r in node_rss if r), default=None)
    result = {
        "format": BENCH_FORMAT,
        "untrained": True,
        "note": UNTRAINED_NOTE,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "out": str(out),
        "config": {"teacher_arch": teacher_arch, "student_arch": student_arch, "k": k,
                   "students_dtype": "int8" if int8 else "float32",
                   "input_shape": list(input_shape), "requests": requests, "rounds": rounds,
                   "security": security.mode, "cpu_count": os.cpu_count(),
                   "grpc_experiments": os.environ.get("GRPC_EXPERIMENTS"),
                   "load_average_1m": {"start": load_before[0], "end": os.getloadavg()[0]}},
        "models": models,
        "gateway_overhead_ms": {**overhead, "target_p50_ms": OVERHEAD_TARGET_MS,
                                "met": overhead["c1"]["p50"] <= OVERHEAD_TARGET_MS,
                                "definition": "client-measured end-to-end latency minus the slowest node's "
                                              "reported compute time, per request, all rounds pooled"},
        "transport_floor_ms": {**percentiles(floor_ms),
                               "per_round_p50": [_median(one["floor_ms"]) for one in measured],
                               "method": "client -> relay -> K workers -> relay -> client on grpcio streams, same "
                                         "security and pinning, workers running the same student on a fixed "
                                         "input, raw bytes (no protobuf, no preprocessing, no head): end-to-end "
                                         "minus the slowest worker's compute, concurrency 1; the least overhead "
                                         "a gateway on grpcio pays here (bench/transport_floor.py)"},
        "breakdown_ms": {f"c{conc}": _breakdown(run.samples) for conc, run in runs.items()},
        "gateway_code": code,
        "latency": [summaries[conc] for conc in LOAD_CONCURRENCY],
        "throughput": {"c1_per_s": _median([row["c1_per_s"] for row in per_round]),
                       "c8_per_s": _median([row["c8_per_s"] for row in per_round]),
                       "ceiling_per_s": _median([row["ceiling_per_s"] for row in per_round]),
                       "c8_over_ceiling": ratio, "target_ratio": THROUGHPUT_TARGET,
                       "met": ratio >= THROUGHPUT_TARGET,
                       "c8_separate_connections_per_s": _median([row["c8_separate_connections_per_s"]
                                                                 for row in per_round]),
                       "c8_separate_connections_over_ceiling": _median([row["c8_separate_connections_over_ceiling"]
                                                                        for row in per_round]),
                       "load": "concurrency 8 = 8 closed-loop senders sharing one connection (as ghz does); "
                               "the images they send in the same turn of the loop leave in one message. "
                               "c8_separate_connections: the same 8 senders with a connection each",
                       "method": "medians over the rounds; the ratio is the median of each round's c=8 "
                                 "throughput over that round's ceiling",
                       "rounds": per_round},
        "ceiling": measured[len(measured) // 2]["ceiling"],
        "cpu_ms_per_request": {**{f"c{conc}": {name: _median([row["cpu_ms_per_request"][f"c{conc}"][name]
                                                               for row in per_round])
                                               for name in per_round[0]["cpu_ms_per_request"][f"c{conc}"]}
                                  for conc in LOAD_CONCURRENCY},
                               "note": "CPU time (user + system) each process spent per request, median over the "
                                       "rounds, warm-up included; client = this process's load generator"},
        "memory": {"node_peak_rss_bytes": node_rss,
                   "gateway_peak_rss_bytes": rss.get("gateway"),
                   "client_peak_rss_bytes": peak_rss_bytes(),
                   "teacher_process_peak_rss_bytes": teacher["peak_rss_bytes"],
                   "teacher_process": teacher,
                   "teacher_over_node": (teacher["peak_rss_bytes"] / node_max
                                         if node_max and teacher["peak_rss_bytes"] else None)},
        "bytes_per_inference": bytes_per_inference(runs[1].samples, request_bytes(images[0])),
        "processes": processes + floor_processes,
        "samples": {f"c{conc}": {"e2e_ms": [s.e2e_ms for s in run.samples],
                                 "slowest_compute_ms": [max(s.compute_ms) for s in run.samples],
                                 "overhead_ms": [s.overhead_ms for s in run.samples],
                                 "gateway_ms": [s.gateway_ms for s in run.samples]}
                    for conc, run in runs.items()},
    }
    atomic.write_json(out / "bench_edge.json", result)
    return result


def _median(values) -> float:
    return float(np.median(np.asarray(list(values), dtype=np.float64)))


def _mb(n) -> str:
    return "n/a" if n is None else f"{n / 2**20:.1f} MiB"


def format_table(result: dict) -> str:
    """A short human summary of bench_edge.json."""
    cfg, o, t, m = result["config"], result["gateway_overhead_ms"], result["throughput"], result["memory"]
    b, cpu8 = result["breakdown_ms"]["c1"], result["cpu_ms_per_request"]["c8"]
    load = cfg["load_average_1m"]
    lines = [(f"bench-edge  {cfg['teacher_arch']} -> {cfg['k']} x {cfg['student_arch']}, input "
              f"{'x'.join(map(str, cfg['input_shape']))}, {cfg['security']}, {cfg['requests']} requests per level "
              f"and round")]
    lines.append(f"  {result['note']}")
    lines.append(f"  machine: {cfg['cpu_count']} CPUs, 1-min load average {load['start']:.2f} at start, "
                 f"{load['end']:.2f} at end (other work on the machine inflates every figure)")
    lines.append(f"  gateway overhead  c=1 p50 {o['c1']['p50']:.3f} ms  p99 {o['c1']['p99']:.3f} ms   "
                 f"c=8 p50 {o['c8']['p50']:.3f} ms  p99 {o['c8']['p99']:.3f} ms   "
                 f"(target p50 <= {o['target_p50_ms']:g} ms: {'met' if o['met'] else 'MISSED'})")
    f = result["transport_floor_ms"]
    lines.append(f"    transport floor (a bare grpcio relay of the same shape, no application work): p50 "
                 f"{f['p50']:.3f} ms  p99 {f['p99']:.3f} ms")
    lines.append(f"    where it goes (c=1 p50): client<->gateway {b['client_to_gateway_and_back']['p50']:.3f}, "
                 f"gateway outside fan-out {b['gateway_outside_fan_out']['p50']:.3f} (head {b['head']['p50']:.3f}), "
                 f"node hop {b['slowest_node_hop_minus_compute']['p50']:.3f}, "
                 f"compute {b['slowest_node_compute']['p50']:.3f} ms; the gateway's own Python work is "
                 f"{result['gateway_code']['per_request_us']:.0f} us of it (in-process)")
    for row in result["latency"]:
        lat = row["latency_ms"]
        lines.append(f"  latency c={row['concurrency']}  p50 {lat['p50']:.3f} ms  p99 {lat['p99']:.3f} ms  "
                     f"{row['throughput_per_s']:.1f} req/s")
    lines.append(f"  throughput c=8 {t['c8_per_s']:.1f}/s vs ceiling {t['ceiling_per_s']:.1f}/s: "
                 f"{t['c8_over_ceiling']:.0%} (target {t['target_ratio']:.0%}: {'met' if t['met'] else 'MISSED'}); "
                 f"c=1 {t['c1_per_s']:.1f}/s; medians of {len(t['rounds'])} rounds")
    lines.append(f"    8 senders on 8 connections instead of one: {t['c8_separate_connections_per_s']:.1f}/s = "
                 f"{t['c8_separate_connections_over_ceiling']:.0%}")
    for i, row in enumerate(t["rounds"], 1):
        by_batch = ", ".join(f"batch {b} {v:.0f}/s" for b, v in row["ceiling_by_batch"].items())
        lines.append(f"    round {i}: c=8 {row['c8_per_s']:.0f}/s over ceiling {row['ceiling_per_s']:.0f}/s "
                     f"({by_batch}) = {row['c8_over_ceiling']:.0%}")
    per_process = ", ".join(f"{name} {v:.2f}" for name, v in cpu8.items())
    lines.append(f"  CPU ms/request at c=8: {per_process} (sum {sum(cpu8.values()):.2f}; the ceiling spends "
                 f"{result['ceiling']['serial_ms_per_image']['p50']:.2f} ms of compute per image)")
    ratio = f" ({m['teacher_over_node']:.1f}x a node)" if m["teacher_over_node"] else ""
    lines.append(f"  peak RSS  node {', '.join(_mb(r) for r in m['node_peak_rss_bytes'])}; gateway "
                 f"{_mb(m['gateway_peak_rss_bytes'])}; teacher in PyTorch "
                 f"{_mb(m['teacher_process_peak_rss_bytes'])}{ratio}")
    by = result["bytes_per_inference"]
    lines.append(f"  bytes/inference  client->gateway {by['client_to_gateway']}, gateway->nodes {by['gateway_to_nodes']}, "
                 f"nodes->gateway {by['nodes_to_gateway']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """`python -m nonn.bench.edge_bench teacher-probe CHECKPOINT CxHxW` (used by teacher_rss)."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 3 or argv[0] != "teacher-probe":
        print("usage: python -m nonn.bench.edge_bench teacher-probe CHECKPOINT CxHxW", file=sys.stderr)
        return 2
    _teacher_probe(argv[1], argv[2])
    return 0


if __name__ == "__main__":
    sys.exit(main())
