"""`nonn deploy-local RUN_DIR`: serve a trained run as K node processes plus a gateway on this
machine, stream its test split through them, and measure accuracy, latency, bytes and memory.

RUN_DIR/deploy.json holds: format; run; created; security ("mtls" | "insecure"); deadline_ms;
machine (cpu_count, load_average_1m); export (manifest, exported_now, students_sha256);
processes (role node|gateway|client, index, pid, address, peak_rss_bytes = VmHWM read just before
shutdown); accuracy (images, deployed, in_process, label_agreement, degraded, match); stream (the
accuracy pass: concurrency, wall_s, throughput_per_s); latency (one entry per concurrency level:
requests, wall_s, throughput_per_s and p50/p90/p99/mean of latency_ms, gateway_ms,
slowest_node_compute_ms, overhead_ms); bytes_per_inference (client_to_gateway, gateway_to_nodes,
nodes_to_gateway, per_node); logs (the servers' stdout/stderr).
"""

from __future__ import annotations

import datetime as _dt
import os
from pathlib import Path

import numpy as np

from nonn.edge.manifest import load_manifest

from .. import atomic
from ..rundir import RunDir, file_sha256
from .cluster import LocalCluster, Security, ensure_certs
from .errors import DeployError
from .load import drive, summarize
from .processes import STARTUP_TIMEOUT_S, interrupt_on_signals
from .procfs import peak_rss_bytes

DEPLOY_FORMAT = 1
ACCURACY_CONCURRENCY = 8


def ensure_export(rd: RunDir, log=print) -> tuple[Path, bool]:
    """RUN_DIR/onnx/manifest.json, exported anew (the export stage) when it is not up to date and whole.

    Returns (manifest path, whether it was exported now).
    """
    from ..pipeline import run_stage, stale_reason
    from ..stages import stage

    reason = stale_reason(rd, stage("export"))
    if reason is None:
        return rd.manifest, False
    log(f"[deploy] exporting to {rd.onnx_dir}: {reason}")
    run_stage(rd, "export", force=True, log=log)
    return rd.manifest, True


def in_process_labels(rd: RunDir, limit: int | None, int8: Path | None = None
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(images HWC uint8, true labels, labels of the PyTorch NoNN) for the first `limit` test images; with `int8`
    (an int8 manifest) the reference is that int8 NoNN in ONNX Runtime instead, since int8 is not PyTorch's."""
    import torch

    from ..stages.common import batch_prep, dataset_for, load_students, predict

    cfg = rd.load_config()
    ds = dataset_for(cfg)
    split = ds.test
    if limit is not None:
        if limit < 1:
            raise DeployError(f"--limit must be at least 1, got {limit}")
        split = split.take(torch.arange(min(limit, len(split))))
    if int8 is not None:
        from ..quantize import logits_of
        prep = batch_prep(ds, cfg)
        manifest = load_manifest(int8, verify=True)
        predicted = np.concatenate([logits_of(manifest, prep(split.x[i:i + 256]).numpy()).argmax(1)
                                    for i in range(0, len(split.y), 256)])
    else:
        net, _ = load_students(rd)
        predicted = predict(net, split, batch_prep(ds, cfg)).numpy()
    images = np.ascontiguousarray(split.x.permute(0, 2, 3, 1).numpy())
    return images, split.y.numpy(), predicted


def parse_concurrency(text: str) -> list[int]:
    try:
        levels = [int(v) for v in str(text).split(",") if v.strip()]
    except ValueError:
        levels = []
    if not levels or min(levels) < 1:
        raise DeployError(f"--concurrency takes positive integers separated by commas, like 1,8; got {text!r}")
    return levels


def bytes_per_inference(samples, request_bytes: int) -> dict:
    """Application payload of one inference: the image in, the tensors between gateway and nodes."""
    first = samples[0]
    per_node = [{"index": k, "gateway_to_node": int(np.median([s.bytes_sent[k] for s in samples])),
                 "node_to_gateway": int(np.median([s.bytes_received[k] for s in samples]))}
                for k in range(len(first.bytes_sent))]
    return {
        "client_to_gateway": int(request_bytes),
        "gateway_to_nodes": sum(n["gateway_to_node"] for n in per_node),
        "nodes_to_gateway": sum(n["node_to_gateway"] for n in per_node),
        "per_node": per_node,
    }


def request_bytes(image: np.ndarray, layout: str = "HWC") -> int:
    from nonn.edge.client import to_message

    return to_message(image, layout).ByteSize()


def deploy_local(run_dir: str | Path, *, insecure: bool = False, deadline_ms: float = 1000.0,
                 limit: int | None = None, concurrency: str | list[int] = "1,8", requests: int = 200,
                 startup_timeout_s: float = STARTUP_TIMEOUT_S, int8: bool = False, log=print) -> dict:
    """Deploy, measure, stop everything, write RUN_DIR/deploy.json (deploy-int8.json with `int8`: the int8
    students of RUN_DIR/onnx-int8, made first when stale) and return what it holds."""
    rd = RunDir(Path(run_dir))
    rd.load_config()
    levels = parse_concurrency(",".join(map(str, concurrency)) if isinstance(concurrency, list) else concurrency)
    if requests < 1:
        raise DeployError(f"--requests must be at least 1, got {requests}")
    with interrupt_on_signals():
        manifest_path, exported = ensure_export(rd, log)
        if int8:
            from ..stages.quantize import run as run_int8
            manifest_path = run_int8(rd, log=log)
        k = len(load_manifest(manifest_path, verify=False).students)
        security = Security(None if insecure else ensure_certs(rd.path / "certs", k))
        images, truth, reference = in_process_labels(rd, limit, manifest_path if int8 else None)
        timeout_s = deadline_ms / 1000.0 + 10.0
        with LocalCluster(manifest_path, security, rd.path / "logs" / "deploy", deadline_ms=deadline_ms,
                          startup_timeout_s=startup_timeout_s, log=log) as cluster:
            log(f"[deploy] streaming {len(images)} test images through {cluster.address}")
            stream = drive(cluster.stream_client, images, requests=len(images), concurrency=ACCURACY_CONCURRENCY,
                           timeout_s=timeout_s)
            loads = []
            for c in levels:
                log(f"[deploy] {requests} requests at concurrency {c}")
                loads.append(summarize(drive(cluster.stream_client, images, requests=requests, concurrency=c,
                                             warmup=2, timeout_s=timeout_s)))
            rss = cluster.peak_rss()
            processes = cluster.describe()
    for row in processes:
        row["peak_rss_bytes"] = rss.get("gateway" if row["role"] == "gateway" else f"node {row['index']}")
    processes.append({"role": "client", "index": None, "pid": os.getpid(), "address": None,
                      "peak_rss_bytes": peak_rss_bytes(),
                      "note": "this process: also holds PyTorch and the dataset for the in-process reference"})
    deployed = np.array([s.label for s in stream.samples])
    result = {
        "format": DEPLOY_FORMAT,
        "run": str(rd.path),
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "security": security.mode,
        "deadline_ms": deadline_ms,
        "machine": {"cpu_count": os.cpu_count(), "load_average_1m": os.getloadavg()[0]},
        "export": {"manifest": str(manifest_path), "exported_now": exported, "dtype": "int8" if int8 else "float32",
                   "students_sha256": file_sha256(rd.students)},
        "processes": processes,
        "accuracy": {
            "images": len(truth),
            "deployed": float((deployed == truth).mean()),
            "in_process": float((reference == truth).mean()),
            "in_process_is": "the int8 NoNN in ONNX Runtime" if int8 else "the NoNN in PyTorch",
            "label_agreement": float((deployed == reference).mean()),
            "degraded": sum(s.degraded for s in stream.samples),
        },
        "stream": {"concurrency": ACCURACY_CONCURRENCY, "wall_s": stream.wall_s,
                   "throughput_per_s": stream.throughput},
        "latency": loads,
        "bytes_per_inference": bytes_per_inference(stream.samples, request_bytes(images[0])),
        "logs": str(rd.path / "logs" / "deploy"),
    }
    acc = result["accuracy"]
    acc["match"] = acc["deployed"] == acc["in_process"] and acc["label_agreement"] == 1.0
    atomic.write_json(rd.path / ("deploy-int8.json" if int8 else "deploy.json"), result)
    return result


def _mb(n: int | None) -> str:
    return "n/a" if n is None else f"{n / 2**20:.1f} MiB"


def format_table(result: dict) -> str:
    """A short human summary of deploy.json."""
    acc, b = result["accuracy"], result["bytes_per_inference"]
    nodes = [p for p in result["processes"] if p["role"] == "node"]
    lines = [(f"deployed {result['run']}: {len(nodes)} nodes + gateway, {result['security']}, "
              f"{acc['images']} test images")]
    lines.append(f"  accuracy      deployed {acc['deployed']:.4f}   in-process {acc['in_process']:.4f}   "
                 f"labels agree {acc['label_agreement']:.4f}   {'OK' if acc['match'] else 'MISMATCH'}")
    lines.append(f"  {'concurrency':>11}  {'p50 ms':>8}  {'p99 ms':>8}  {'overhead p50':>12}  {'req/s':>8}")
    for row in result["latency"]:
        lat = row["latency_ms"]
        lines.append(f"  {row['concurrency']:>11}  {lat['p50']:>8.2f}  {lat['p99']:>8.2f}  "
                     f"{row['overhead_ms']['p50']:>9.2f} ms  {row['throughput_per_s']:>8.1f}")
    per_node = ", ".join(f"node {n['index']} {n['node_to_gateway']}" for n in b["per_node"])
    lines.append(f"  bytes/inference  client->gateway {b['client_to_gateway']}, gateway->nodes {b['gateway_to_nodes']}, "
                 f"nodes->gateway {b['nodes_to_gateway']} ({per_node})")
    rss = ", ".join(f"{p['role']}{'' if p['index'] is None else ' ' + str(p['index'])} {_mb(p['peak_rss_bytes'])}"
                    for p in result["processes"])
    lines.append(f"  peak RSS      {rss}")
    return "\n".join(lines)
