"""Helpers for the edge tests: tiny ONNX artifacts and server processes that are always killed."""

from __future__ import annotations

import hashlib
import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

SHAPE = (3, 8, 8)
SIZES = (4, 6)
CLASSES = tuple(str(i) for i in range(5))
MEAN = (0.5, 0.4, 0.3)
STD = (0.2, 0.25, 0.3)
SRC = Path(__file__).resolve().parents[2] / "src"
STARTUP_TIMEOUT_S = 30.0
# Runs `python -m nonn.edge ...` in a process where `import torch` raises ImportError.
NO_TORCH = ("import runpy, sys; sys.modules['torch'] = None; sys.argv[0] = 'nonn.edge'; "
            "runpy.run_module('nonn.edge', run_name='__main__', alter_sys=True)")


def _save(model, path: Path) -> str:
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.write_bytes(model.SerializeToString())
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _student(k: int, n: int, rng: np.random.Generator):
    c = SHAPE[0]
    weight = numpy_helper.from_array(rng.normal(0, 0.5, (n, c, 3, 3)).astype(np.float32), "w")
    bias = numpy_helper.from_array(rng.normal(0, 0.1, (n,)).astype(np.float32), "b")
    nodes = [
        helper.make_node("Conv", ["image", "w", "b"], ["conv"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["conv"], ["relu"]),
        helper.make_node("GlobalAveragePool", ["relu"], ["pool"]),
        helper.make_node("Flatten", ["pool"], ["features"], axis=1),
    ]
    graph = helper.make_graph(
        nodes, f"student_{k}",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", *SHAPE])],
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", n])],
        [weight, bias],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _head(rng: np.random.Generator):
    total = sum(SIZES)
    weight = numpy_helper.from_array(rng.normal(0, 1.0, (total, len(CLASSES))).astype(np.float32), "w")
    bias = numpy_helper.from_array(rng.normal(0, 0.1, (len(CLASSES),)).astype(np.float32), "b")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["features", "w"], ["mm"]), helper.make_node("Add", ["mm", "b"], ["logits"])],
        "head",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", total])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", len(CLASSES)])],
        [weight, bias],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@dataclass
class Artifacts:
    dir: Path
    manifest: Path
    students: list[Path]
    head: Path

    def normalise(self, hwc_uint8: np.ndarray) -> np.ndarray:
        """The reference preprocessing: [1, C, H, W] float32."""
        x = hwc_uint8.transpose(2, 0, 1).astype(np.float32) / np.float32(255.0)
        x = (x - np.asarray(MEAN, np.float32).reshape(3, 1, 1)) / np.asarray(STD, np.float32).reshape(3, 1, 1)
        return x[None].astype(np.float32)

    def features(self, x: np.ndarray) -> list[np.ndarray]:
        return [ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]).run(None, {"image": x})[0]
                for p in self.students]

    def head_logits(self, features: np.ndarray) -> np.ndarray:
        session = ort.InferenceSession(str(self.head), providers=["CPUExecutionProvider"])
        return session.run(None, {"features": features.astype(np.float32)})[0]


# One test image, HWC uint8.
IMAGE = np.random.default_rng(7).integers(0, 256, size=(SHAPE[1], SHAPE[2], SHAPE[0]), dtype=np.uint8)


def reference(artifacts: Artifacts, image: np.ndarray = IMAGE, missing=()) -> np.ndarray:
    """Logits computed straight with ONNX Runtime; the students in `missing` give zeros."""
    parts = artifacts.features(artifacts.normalise(image))
    for k in missing:
        parts[k] = np.zeros_like(parts[k])
    return artifacts.head_logits(np.concatenate(parts, axis=1))[0]


def build_artifacts(out: Path, *, node_pixels: bool = False, seed: int = 0) -> Artifacts:
    """Two students and a head with random weights (from `seed`), and their manifest, in `out`; with
    `node_pixels` the students carry their normalisation and the nodes take uint8 pixels."""
    from nonn.edge.pixels import Normalisation

    rng = np.random.default_rng(seed)
    students, entries = [], []
    for k, n in enumerate(SIZES):
        path = out / f"student_{k}.onnx"
        model = _student(k, n, rng)
        if node_pixels:
            onnx.helper.set_model_props(model, Normalisation.of(255.0, MEAN, STD).metadata())
        digest = _save(model, path)
        students.append(path)
        entries.append({"file": path.name, "sha256": digest, "input": "image", "output": "features", "features": n})
    head = out / "head.onnx"
    manifest = {
        "format": 1,
        "input": {"shape": list(SHAPE), "dtype": "float32", "layout": "NCHW", "name": "image"},
        "normalization": {"scale": 255.0, "mean": list(MEAN), "std": list(STD)},
        "classes": list(CLASSES),
        "partition_sizes": list(SIZES),
        "students": entries,
        "head": {"file": head.name, "sha256": _save(_head(rng), head), "input": "features", "output": "logits"},
        "node_pixels": node_pixels,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return Artifacts(out, out / "manifest.json", students, head)


def edge_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Processes:
    """Starts `python -m nonn.edge` servers and kills every one of them on close()."""

    def __init__(self, logdir: Path):
        self.logdir = logdir
        self.procs: list[subprocess.Popen] = []

    def start(self, *args: str, block_torch: bool = True, command: list[str] | None = None,
              env: dict | None = None, cwd: Path | None = None) -> tuple[subprocess.Popen, str]:
        """Start a server and wait for its banner; return (process, "host:port"). `command`
        replaces `python -m nonn.edge` (an installed `nonn-edge`, say), run with `env` in `cwd`."""
        if command is not None:
            cmd = [*command, *args]
        else:
            cmd = [sys.executable, "-c", NO_TORCH, *args] if block_torch else [sys.executable, "-m", "nonn.edge", *args]
        with open(self.logdir / f"server_{len(self.procs)}.log", "wb") as log:
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, env=env or edge_env(), cwd=cwd)
        self.procs.append(proc)
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            remaining = deadline - time.monotonic()
            ready, _, _ = select.select([proc.stdout], [], [], max(0.0, min(remaining, 0.2)))
            if ready:
                line = proc.stdout.readline().decode()
                if line.startswith("nonn "):
                    proc.banner = line.rstrip("\n")
                    return proc, line.split(" on ", 1)[1].split(" ", 1)[0]
                if line.startswith("{"):  # --log-format json: the start event names the address
                    event = json.loads(line)
                    if event.get("event") == "start":
                        proc.banner, proc.start_event = event["message"], event
                        return proc, event["address"]
            if proc.poll() is not None or remaining <= 0:
                err = (self.logdir / f"server_{len(self.procs) - 1}.log").read_text()
                self.kill(proc)
                raise AssertionError(f"server {args} did not start (rc={proc.returncode}): {err[-2000:]}")

    def node(self, model: Path, *extra: str, listen: str = "127.0.0.1:0", insecure: bool = True,
             **kwargs) -> tuple[subprocess.Popen, str]:
        args = ["node", "--model", str(model), "--listen", listen, *extra]
        return self.start(*args, *(["--insecure"] if insecure else []), **kwargs)

    @staticmethod
    def kill(proc: subprocess.Popen) -> None:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
        if proc.stdout:
            proc.stdout.close()

    def close(self) -> None:
        for proc in self.procs:
            try:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
                    proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
            finally:
                self.kill(proc)
        self.procs.clear()


