"""`nonn bench`: the NoNN paper's case study (memory, compute, energy per node; total latency), measured here.

Five deployments of the same models and inputs run in one process set per link profile:

- ``nonn``: K student nodes and the gateway (the hub), which fans the image out and runs the head;
- ``teacher``: the teacher whole on one node;
- ``compressed``: one student trained with KD+AT (a one-student NoNN) with about as many
  parameters as the K NoNN students together, whole on one node;
- ``teacher_split`` and ``compressed_split``: the same two models cut into K ranges of
  consecutive layers, one range per node, driven node after node by the hub (the one-device
  models are these K exported pieces merged back into one ONNX graph).

Every node is ``python -m nonn.edge node`` (ONNX Runtime, one intra-op thread), pinned to a
core when there are enough, inside its own network namespace behind a tbf-shaped veth when
namespaces work here (else on loopback with the modelled transfer time added); the link's
propagation delay is added by the node runtime per message. The hub (this process and the
gateway) sits in the root namespace, like the access point of an infrastructure Wi-Fi: the
image starts there, answers end there, and a layer-split activation map goes node -> hub -> node.
Deployments are measured in interleaved rounds, so drift hits all alike; medians are reported.
A probe node on the same kind of link measures what one message of each size costs one way.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .. import atomic
from ..errors import ConfigError
from .energy import node_energy_j
from .links import (
    DEFAULT_PREFIX,
    SHAPING_NETNS,
    EmulatedLinks,
    choose_shaping_mode,
    transfer_time_s,
)
from .profiles import DeviceProfile, LinkProfile, get_device, get_link
from .synthetic import parse_input

BENCH_FORMAT = 1
DEFAULT_LINKS = ("wifi",)
DEFAULT_DEVICES = ("rpi3b_plus", "nrf52840")
DEFAULT_REQUESTS = 100
DEFAULT_WARMUP = 3
DEFAULT_MAX_SECONDS = 60.0
MIN_SAMPLES = 3
DISTINCT_IMAGES = 16
RAPL_INFERENCES = 20
DTYPE_BYTES = 4
SHAPING_IN_PROCESS = "in-process-transfer-time"
# tbf bucket depth: one full Ethernet frame. EmulatedLinks' default (5 ms of traffic, at least 4 KB) would let a
# whole 12 KB CIFAR image through an emulated 20 Mbit/s Wi-Fi link at once, and 4 KB through BLE for free.
TBF_BURST_BYTES = 1600
SHAPING_CHOICES = ("auto", "netns", "in-process")
TARGETS = {"weight_memory": 24.0, "compute": 12.0, "energy": 14.0, "total_latency": 33.0}
UNTRAINED_NOTE = ("UNTRAINED weights (architecture form): memory, latency, bytes and energy are real; "
                  "predictions and accuracy are meaningless")
DEPLOYMENT_TITLES = {
    "nonn": "NoNN (K students + gateway)",
    "teacher": "teacher, one device",
    "compressed": "compressed model, one device",
    "teacher_split": "teacher, layer-split over K devices",
    "compressed_split": "compressed model, layer-split over K devices",
}
_PROXY_VARS = {"http_proxy", "https_proxy", "grpc_proxy", "all_proxy"}


# -- preparation: models, exports, parity -------------------------------------------------

@dataclass
class Deployment:
    """One way of serving the models: the node ONNX files in order and what each node holds."""

    name: str
    kind: str                      # "gateway" (NoNN fan-out) or "chain" (node after node)
    files: list[Path]
    nodes: list[dict]              # per node: params, weight_bytes, macs, onnx_bytes, ...
    manifest: Path | None = None   # NoNN only
    reference: np.ndarray | None = field(default=None, repr=False)  # in-process ORT logits per image

    @property
    def title(self) -> str:
        return DEPLOYMENT_TITLES[self.name]


@dataclass
class Prepared:
    """Everything `measure_link` needs: exported deployments, the inputs, and what was found on the way."""

    work: Path
    untrained: bool
    k: int
    input_shape: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    images: np.ndarray             # uint8 [N, H, W, C], what the client sends
    inputs: np.ndarray             # float32 [N, 1, C, H, W], normalised as the gateway does
    deployments: list[Deployment]
    models: dict
    layer_split: dict
    parity: dict
    source: dict


def _count_params(module) -> int:
    return sum(p.numel() for p in module.parameters())


def _count_macs(module, input_shape) -> int:
    import torch

    from ..stages.evaluate import count_macs
    return count_macs(module, torch.zeros(1, *input_shape))


def family_of(arch: str) -> str:
    return "mbv2" if arch.startswith("mbv2") else "wrn"


def choose_compressed_arch(family: str, target_params: int, *, in_shape, num_classes: int, num_filters: int,
                           map_size) -> tuple[str, dict]:
    """The family's architecture whose one-student NoNN (bridge to all ``num_filters`` teacher filters) has the
    most parameters not above ``target_params``; the smallest one when none is that small."""
    import torch

    from ..budget import candidates
    from ..distill.nonn_model import StudentNode
    from ..models import create_model

    def params(arch: str) -> int:  # what budget.student_cost counts, without running a forward pass
        with torch.device("meta"):
            node = StudentNode(create_model(arch, num_classes=num_classes, in_channels=in_shape[0]), num_filters,
                               map_size)
        return _count_params(node)

    rows = [{"arch": a, "params": params(a)} for a in candidates(family)]
    rows.sort(key=lambda r: r["params"])
    fitting = [r for r in rows if r["params"] <= target_params]
    chosen = fitting[-1] if fitting else rows[0]
    rule = ("most parameters <= the NoNN students' total" if fitting else
            "no architecture is that small; took the smallest of the family")
    return chosen["arch"], {"family": family, "target_params": int(target_params), "rule": rule,
                            "chosen": chosen["arch"], "chosen_params": chosen["params"], "candidates": rows,
                            "note": "parameters of backbone + bridge; the head (teacher filters x classes) is the "
                                    "same size in NoNN and in the compressed model and is left out of both"}


def normalise(images: np.ndarray, mean, std) -> np.ndarray:
    """uint8 [N, H, W, C] -> float32 [N, 1, C, H, W], with the gateway's (and the nodes') arithmetic."""
    from nonn.edge.pixels import Normalisation

    return Normalisation.of(255.0, mean, std).apply(images.transpose(0, 3, 1, 2))[:, None]


def prepare_architecture(teacher_arch: str, student_arch: str, k: int, input_shape, work: Path, *,
                         seed: int = 0, log=print) -> Prepared:
    """Untrained teacher, K-student NoNN and compressed model from architecture names, exported into ``work``."""
    import torch

    from ..distill.nonn_model import build_nonn
    from ..models import create_model
    from .synthetic import untrained_models

    if k < 1:
        raise ConfigError(f"--k must be at least 1, got {k}")
    syn = untrained_models(teacher_arch, student_arch, k, tuple(input_shape), seed=seed)
    c, h, w = syn.feature_shape
    target = sum(_count_params(s) for s in syn.nonn.students)
    arch, choice = choose_compressed_arch(family_of(student_arch), target, in_shape=tuple(input_shape),
                                          num_classes=10, num_filters=c, map_size=(h, w))
    torch.manual_seed(seed + 1)
    compressed = build_nonn(lambda _k: create_model(arch, num_classes=10, in_channels=input_shape[0]), [c], 10,
                            (h, w)).eval()
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(DISTINCT_IMAGES, input_shape[1], input_shape[2], input_shape[0]),
                          dtype=np.uint8)
    channels = input_shape[0]
    return _prepare(work, teacher=syn.teacher, teacher_arch=teacher_arch, nonn=syn.nonn,
                    student_archs=syn.student_archs, compressed=compressed, compressed_arch=arch, choice=choice,
                    input_shape=tuple(input_shape), mean=(0.5,) * channels, std=(0.25,) * channels,
                    classes=[str(i) for i in range(10)], images=images, untrained=True, accuracy={},
                    source={"form": "architecture", "untrained": True, "seed": seed}, log=log)


def train_compressed(rd, arch: str, out: Path, log=print):
    """The compressed baseline of a run: the same data, teacher and training settings with students.k=1 and
    students.arch=``arch`` (no device budget), trained through the pipeline into the run directory ``out``."""
    from ..config import load_config
    from ..pipeline import init_run, run_stage
    from ..rundir import file_sha256

    cfg = rd.load_config()
    flat = {f"{s}.{k}": v for s, section in cfg.to_dict().items() for k, v in section.items()}
    flat.update({"students.k": 1, "students.arch": arch, "budget.memory": None, "budget.macs": None})
    out.mkdir(parents=True, exist_ok=True)
    teacher = out / "teacher.pt"
    if not teacher.exists() or file_sha256(teacher) != file_sha256(rd.teacher):
        shutil.copyfile(rd.teacher, teacher)
    crd = init_run(out, load_config(overrides=flat))
    for stage in ("partition", "students", "evaluate"):
        run_stage(crd, stage, log=log)
    return crd


def prepare_run(run_dir: str | Path, work: Path, *, log=print) -> Prepared:
    """A trained run's teacher and NoNN, plus its compressed baseline trained now (or reused), exported."""
    from ..rundir import RunDir, file_sha256
    from ..stages.common import dataset_for, load_students, load_teacher

    rd = RunDir(Path(run_dir))
    cfg = rd.load_config()
    ds = dataset_for(cfg)
    teacher, tckpt = load_teacher(rd)
    net, sckpt = load_students(rd)
    c, h, w = tckpt["feature_shape"]
    in_shape = tuple(ds.input_shape)
    target = sum(_count_params(s) for s in net.students)
    arch, choice = choose_compressed_arch(cfg.students.family, target, in_shape=in_shape,
                                          num_classes=ds.num_classes, num_filters=c, map_size=(h, w))
    log(f"[bench] compressed baseline: {arch} ({choice['chosen_params']:,} parameters; NoNN students "
        f"{target:,}), trained with KD+AT as a one-student NoNN")
    crd = train_compressed(rd, arch, work / "compressed-run", log=log)
    compressed, _ = load_students(crd)
    accuracy = {"compressed": json.loads(crd.metrics.read_text())["nonn"]["accuracy"]}
    if rd.metrics.exists():
        metrics = json.loads(rd.metrics.read_text())
        accuracy.update(teacher=metrics["teacher"]["accuracy"], nonn=metrics["nonn"]["accuracy"],
                        test_images=metrics["test_images"], dataset=metrics["dataset"])
    split = ds.test
    count = min(DISTINCT_IMAGES, len(split.y))
    images = np.ascontiguousarray(split.x[:count].permute(0, 2, 3, 1).numpy().astype(np.uint8))
    return _prepare(work, teacher=teacher, teacher_arch=tckpt["arch"], nonn=net, student_archs=list(sckpt["archs"]),
                    compressed=compressed, compressed_arch=arch, choice=choice, input_shape=in_shape,
                    mean=tuple(ds.mean), std=tuple(ds.std), classes=list(ds.classes), images=images,
                    untrained=False, accuracy=accuracy,
                    source={"form": "run", "run": str(rd.path), "students_sha256": file_sha256(rd.students),
                            "teacher_sha256": file_sha256(rd.teacher), "compressed_run": str(crd.path)},
                    log=log)


def _ort_session(path: Path):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def _prepare(work: Path, *, teacher, teacher_arch, nonn, student_archs, compressed, compressed_arch, choice,
             input_shape, mean, std, classes, images, untrained, accuracy, source, log) -> Prepared:
    import torch

    from ..export import PARITY_ATOL, ExportError, export_nonn
    from .layer_split import export_split, merge_pieces, plan_split, run_chain

    k = len(nonn.students)
    models_dir = work / "models"
    # Every deployment's first hop carries the normalised float32 image, so the comparison is like for like;
    # the NoNN runtime's own uint8 pixels (a quarter of the bytes) would favour NoNN further.
    manifest = export_nonn(nonn, models_dir / "nonn", input_shape=input_shape, mean=mean, std=std, classes=classes,
                           archs=student_archs, log=lambda m: log(m.replace("[export]", "[bench]")), source=source,
                           node_pixels=False)
    inputs = normalise(images, mean, std)
    batch = torch.from_numpy(inputs[:, 0])

    deployments, parity = [], {"atol": PARITY_ATOL, "images": len(inputs)}
    # NoNN: students in ONNX Runtime, concatenated, the head; against PyTorch.
    files = [models_dir / "nonn" / s["file"] for s in manifest["students"]]
    head = _ort_session(models_dir / "nonn" / manifest["head"]["file"])
    sessions = [_ort_session(f) for f in files]
    feats = np.concatenate([s.run(None, {"image": inputs[:, 0]})[0] for s in sessions], axis=1)
    reference = head.run(None, {"features": feats})[0]
    with torch.no_grad():
        parity["nonn"] = float(np.abs(reference - nonn(batch).numpy()).max())
    nodes = []
    for i, (student, path) in enumerate(zip(nonn.students, files)):
        params = _count_params(student)
        nodes.append({"role": f"student {i}", "arch": student_archs[i], "filters": student.num_filters,
                      "params": params, "weight_bytes": params * DTYPE_BYTES,
                      "macs": _count_macs(student, input_shape), "onnx_bytes": path.stat().st_size,
                      "file": str(path.relative_to(work))})
    deployments.append(Deployment("nonn", "gateway", files, nodes, models_dir / "nonn" / "manifest.json",
                                  reference))
    head_params = _count_params(nonn.head)

    plans = {}
    for base, model in (("teacher", teacher), ("compressed", compressed)):
        # The model is exported once, as its K layer-split pieces; the one-device model is those pieces merged.
        plan = plan_split(model, input_shape, k)
        split_paths = export_split(plan, models_dir / f"{base}_split", log=log)
        whole = plan_split(model, input_shape, 1)
        whole_path = merge_pieces(split_paths, models_dir / f"{base}.onnx")
        whole.pieces[0].file, whole.pieces[0].onnx_bytes = whole_path.name, whole_path.stat().st_size
        for name, pl, paths in ((base, whole, [whole_path]), (f"{base}_split", plan, split_paths)):
            reference = run_chain(paths, inputs[:, 0])
            with torch.no_grad():
                parity[name] = float(np.abs(reference - model(batch).numpy()).max())
            nodes = [{"role": f"piece {q.index}", "layers": [q.start, q.end], "layer_names": q.layers,
                      "params": q.params, "weight_bytes": q.weight_bytes, "macs": q.macs, "onnx_bytes": q.onnx_bytes,
                      "in_shape": list(q.in_shape), "out_shape": list(q.out_shape), "in_bytes": q.in_bytes,
                      "out_bytes": q.out_bytes, "file": str(path.relative_to(work))}
                     for q, path in zip(pl.pieces, paths)]
            deployments.append(Deployment(name, "chain", paths, nodes, None, reference))
            plans[name] = pl
    worst = max(v for key, v in parity.items() if key not in ("atol", "images"))
    if worst > PARITY_ATOL:
        raise ExportError(f"exported pieces disagree with PyTorch (max |diff| {worst:.2e} > {PARITY_ATOL}); "
                          "report this with the architectures used")
    log(f"[bench] parity: every deployment's ONNX Runtime logits within {worst:.1e} of PyTorch")
    order = {n: i for i, n in enumerate(DEPLOYMENT_TITLES)}
    deployments.sort(key=lambda d: order[d.name])

    teacher_params = _count_params(teacher)
    compressed_params = _count_params(compressed)
    models = {
        "teacher": {"arch": teacher_arch, "params": teacher_params, "weight_bytes": teacher_params * DTYPE_BYTES,
                    "macs": _count_macs(teacher, input_shape), "accuracy": accuracy.get("teacher")},
        "nonn": {"k": k, "student_archs": list(student_archs), "partition_sizes": list(nonn.partition_sizes),
                 "students_params_total": sum(n["params"] for n in deployments[0].nodes),
                 "head": {"params": head_params, "weight_bytes": head_params * DTYPE_BYTES,
                          "where": "gateway (the hub)"},
                 "accuracy": accuracy.get("nonn")},
        "compressed": {"arch": compressed_arch, "params": compressed_params,
                       "weight_bytes": compressed_params * DTYPE_BYTES,
                       "macs": _count_macs(compressed, input_shape), "trained": not untrained,
                       "training": "KD+AT as a one-student NoNN (students.k=1)" if not untrained else "untrained",
                       "choice": choice, "accuracy": accuracy.get("compressed")},
    }
    if accuracy.get("test_images"):
        models["accuracy_on"] = f"{accuracy.get('dataset')} test split, {accuracy['test_images']} images"
    split = {"teacher": plans["teacher_split"].to_dict(), "compressed": plans["compressed_split"].to_dict(),
             "rule": "consecutive top-level layers; minimise the largest piece's weights, then the bytes over cuts"}
    return Prepared(work, untrained, k, tuple(input_shape), tuple(mean), tuple(std), images, inputs, deployments,
                    models, split, parity, source)


# -- measurement ------------------------------------------------------------------------------

def _node_processes(logdir: Path, startup_timeout_s: float):
    """ChildProcesses for nodes that may start inside a namespace and pinned to a core (an argv prefix)."""
    from ..deploy.processes import ChildProcesses

    return ChildProcesses(logdir, startup_timeout_s=startup_timeout_s)


def _node_env() -> dict[str, str]:
    """The children's environment without proxies: their gRPC connects straight to the links."""
    from ..deploy.processes import child_env

    return {k: v for k, v in child_env().items() if k.lower() not in _PROXY_VARS}


@dataclass
class Sample:
    total_ms: float
    compute_ms: list[float]
    bytes_in: list[int]     # hub -> node, serialized request
    bytes_out: list[int]    # node -> hub, serialized reply
    logits: np.ndarray
    hub_ms: float = 0.0       # total minus the node round trips: gateway or driver work, client hop
    modelled_ms: float = 0.0  # serialization time added in in-process mode


class _Runner:
    """One inference of one deployment, as the hub runs it."""

    def __init__(self, deployment: Deployment, addresses: list[str], gateway: str | None, prep: Prepared,
                 link: LinkProfile, in_process: bool, timeout_s: float):
        self.deployment, self.prep, self.link, self.in_process = deployment, prep, link, in_process
        self.timeout_s = timeout_s
        if deployment.kind == "gateway":
            from nonn.edge.client import GatewayClient
            self.client = GatewayClient(gateway, insecure=True)
        else:
            from .chain import ChainClient
            self.client = ChainClient(addresses, timeout_s=timeout_s)
        self.worst_diff = 0.0

    def _wire_ms(self, nbytes: int) -> float:
        return (nbytes + self.link.overhead_bytes) * 8 / self.link.rate_bps * 1000.0

    def __call__(self, i: int) -> Sample:
        n = len(self.prep.images)
        if self.deployment.kind == "gateway":
            r = self.client.classify(self.prep.images[i % n], timeout_s=self.timeout_s, layout="HWC")
            s = Sample(r["client_ms"], [x["compute_ms"] for x in r["nodes"]], [x["bytes_sent"] for x in r["nodes"]],
                       [x["bytes_received"] for x in r["nodes"]], np.asarray(r["logits"], dtype=np.float32),
                       r["client_ms"] - max(x["round_trip_ms"] for x in r["nodes"]))
            if self.in_process:  # the K links carry their messages at the same time
                s.modelled_ms = max(self._wire_ms(a) + self._wire_ms(b) for a, b in zip(s.bytes_in, s.bytes_out))
        else:
            out, total, hops = self.client.infer(self.prep.inputs[i % n])
            s = Sample(total, [h.compute_ms for h in hops], [h.bytes_sent for h in hops],
                       [h.bytes_received for h in hops], out[0], total - sum(h.round_trip_ms for h in hops))
            if self.in_process:  # one node after the other
                s.modelled_ms = sum(self._wire_ms(h.bytes_sent) + self._wire_ms(h.bytes_received) for h in hops)
        s.total_ms += s.modelled_ms
        ref = self.deployment.reference[i % n]
        self.worst_diff = max(self.worst_diff, float(np.abs(s.logits.reshape(ref.shape) - ref).max()))
        return s

    def close(self) -> None:
        self.client.close()


def _queue_ms(prep: Prepared, link: LinkProfile) -> float:
    """tbf queue bound: room for the largest message a few times over, so TCP sees a slow link, not drops."""
    biggest = max(max(n.get("in_bytes", 0), n.get("out_bytes", 0)) for d in prep.deployments for n in d.nodes)
    biggest = max(biggest, int(np.prod(prep.input_shape)) * 4)
    return max(200.0, 4 * biggest * 8 / link.rate_bps * 1000.0)


def _modelled_s(prep: Prepared, link: LinkProfile) -> float:
    """A generous estimate of the slowest inference, for deadlines: every message over the link in turn."""
    total = 0.0
    image = int(np.prod(prep.input_shape)) * 4
    for d in prep.deployments:
        total = max(total, sum(transfer_time_s(n.get("in_bytes", image), link)
                               + transfer_time_s(n.get("out_bytes", 4096), link) for n in d.nodes))
    return total


class _ProbeRunner:
    """A zero tensor of one shape sent to the probe node (a sink model): what that message costs on the link."""

    def __init__(self, address: str, shape: tuple[int, ...], link: LinkProfile, in_process: bool,
                 timeout_s: float):
        from .chain import ChainClient

        self.client = ChainClient([address], timeout_s=timeout_s)
        self.x = np.zeros(shape, dtype=np.float32)
        self.link, self.in_process = link, in_process

    def __call__(self, _i: int) -> Sample:
        out, total, hops = self.client.infer(self.x)
        h = hops[0]
        modelled = 0.0
        if self.in_process:
            modelled = sum((n + self.link.overhead_bytes) * 8 / self.link.rate_bps * 1000.0
                           for n in (h.bytes_sent, h.bytes_received))
        return Sample(total + modelled, [h.compute_ms], [h.bytes_sent], [h.bytes_received], out.ravel(),
                      total - h.round_trip_ms, modelled)

    def close(self) -> None:
        self.client.close()


def _probe_shapes(prep: Prepared) -> dict[str, tuple[int, ...]]:
    """The messages worth calibrating: a tiny one, the input image and every activation crossing a cut."""
    shapes = {"tiny": (1, 1, 1, 1), "image": (1, *prep.input_shape)}
    for d in prep.deployments:
        if d.kind == "chain":
            for node in d.nodes[:-1]:
                shape = tuple(node["out_shape"])
                shapes.setdefault("x".join(map(str, shape)), shape)
    return shapes


def _interleave(runners: dict, requests: int, warmup: int, max_seconds: float) -> tuple[dict, int]:
    """Rounds of one call per runner; a runner stops after ``requests`` samples, or after ``max_seconds`` of its
    own time once it has MIN_SAMPLES. Returns (samples by name, rounds)."""
    names = list(runners)
    for i in range(warmup):
        for name in names:
            runners[name](i)
    samples: dict[str, list[Sample]] = {n: [] for n in names}
    spent = dict.fromkeys(names, 0.0)
    active, rounds = list(names), 0
    while active:
        for name in list(active):
            t0 = time.perf_counter()
            samples[name].append(runners[name](rounds))
            spent[name] += time.perf_counter() - t0
            got = len(samples[name])
            if got >= requests or (spent[name] >= max_seconds and got >= MIN_SAMPLES):
                active.remove(name)
        rounds += 1
    return samples, rounds


def measure_link(prep: Prepared, link: LinkProfile, devices: list[DeviceProfile], *, mode: str, requests: int,
                 warmup: int, max_seconds: float, link_prefix: str = DEFAULT_PREFIX, log=print) -> dict:
    """Serve every deployment over ``link`` and measure them in interleaved rounds; the link's record."""
    from ..deploy.load import percentiles
    from .chain import write_sink_model
    from .rapl import RaplMeter
    from .rapl import available as rapl_available

    cpus = os.cpu_count() or 1
    widest = max(len(d.files) for d in prep.deployments)
    pin = cpus >= widest
    taskset = shutil.which("taskset")
    sink = prep.work / "models" / "probe_sink.onnx"
    if not sink.exists():
        write_sink_model(sink)
    slots = [(d.name, i, d.files[i]) for d in prep.deployments for i in range(len(d.files))]
    slots.append(("probe", 0, sink))
    in_process = mode != SHAPING_NETNS
    timeout_s = 60.0 + 20.0 * _modelled_s(prep, link)
    logdir = prep.work / "logs" / link.name
    load_before = os.getloadavg()
    with contextlib.ExitStack() as stack:
        if in_process:
            hosts, prefixes = ["127.0.0.1"] * len(slots), [[] for _ in slots]
        else:
            links = stack.enter_context(EmulatedLinks(len(slots), link, burst_bytes=TBF_BURST_BYTES,
                                                      latency_ms=_queue_ms(prep, link), prefix=link_prefix))
            hosts = [n.address for n in links.nodes]
            prefixes = [n.exec_prefix() for n in links.nodes]
        procs = stack.enter_context(_node_processes(logdir, startup_timeout_s=120.0))
        env = _node_env()
        children, cores = {}, {}
        for j, (name, i, model) in enumerate(slots):
            core = i % cpus if pin else None
            prefix = list(prefixes[j])
            if core is not None and taskset:
                prefix += [taskset, "-c", str(core)]
            child = procs.spawn(f"{name} node {i}", [
                "node", "--model", str(model), "--listen", f"{hosts[j]}:0", "--insecure", "--threads", "1",
                "--delay-ms", f"{link.delay_ms:g}"], prefix=prefix, env=env)
            if core is not None and not taskset:
                with contextlib.suppress(OSError):
                    os.sched_setaffinity(child.pid, {core})
            children[(name, i)], cores[(name, i)] = child, core
        procs.await_ready(list(children.values()))
        nonn = next(d for d in prep.deployments if d.kind == "gateway")
        gateway = procs.spawn("nonn gateway", [
            "gateway", "--manifest", str(nonn.manifest), "--nodes",
            ",".join(children[("nonn", i)].address for i in range(len(nonn.files))),
            "--listen", "127.0.0.1:0", "--insecure", "--threads", "1",
            "--deadline-ms", f"{timeout_s * 1000:.0f}"], env=env)
        procs.await_ready([gateway])
        log(f"[bench] {link.name}: {len(slots)} node processes + gateway up ("
            f"{'namespaces + tbf' if not in_process else 'loopback, transfer time added'}"
            f"{', pinned' if pin else ''})")
        runners = {d.name: stack.enter_context(contextlib.closing(_Runner(
            d, [children[(d.name, i)].address for i in range(len(d.files))], gateway.address, prep, link,
            in_process, timeout_s))) for d in prep.deployments}
        shapes = _probe_shapes(prep)
        for key, shape in shapes.items():
            runners[f"probe {key}"] = stack.enter_context(contextlib.closing(_ProbeRunner(
                children[("probe", 0)].address, shape, link, in_process, timeout_s)))

        started = time.perf_counter()
        samples, rounds = _interleave(runners, requests, warmup, max_seconds)
        log(f"[bench] {link.name}: {rounds} rounds in {time.perf_counter() - started:.1f} s")
        names = [d.name for d in prep.deployments]

        rapl_ok, rapl_reason = rapl_available()
        rapl = {"available": rapl_ok, "reason": rapl_reason}
        if rapl_ok:
            rapl["joules_per_inference"] = {}
            for name in names:
                count = min(RAPL_INFERENCES, max(MIN_SAMPLES, len(samples[name])))
                with RaplMeter() as meter:
                    for j in range(count):
                        runners[name](j)
                if meter.joules is not None:
                    rapl["joules_per_inference"][name] = meter.joules / count
            rapl["note"] = ("CPU package energy of this whole machine (all processes, the hub included) per "
                            "inference, each deployment measured alone in a block")
        procs.check_alive()
        rss = procs.peak_rss()
        info = {key: {"pid": c.pid, "address": c.address, "core": cores[key], "peak_rss_bytes": rss.get(c.name)}
                for key, c in children.items()}
        gateway_rss = rss.get(gateway.name)
        diffs = {name: runners[name].worst_diff for name in names}

    calibration = _calibrate(shapes, samples, link)
    result = {"link": asdict(link), "shaping": mode,
              "requests_measured": {n: len(samples[n]) for n in names}, "rounds": rounds,
              "tbf_queue_ms": None if in_process else _queue_ms(prep, link),
              "tbf_burst_bytes": None if in_process else TBF_BURST_BYTES,
              "load_average": {"before": list(load_before), "after": list(os.getloadavg()),
                               "note": "1, 5, 15 min load averages of this machine; work of other processes "
                                       "during the run perturbs every figure"},
              "timeout_s": timeout_s, "gateway_peak_rss_bytes": gateway_rss, "rapl": rapl,
              "runtime_parity_max_abs_diff": diffs, "link_calibration": calibration, "deployments": {}}
    for d in prep.deployments:
        result["deployments"][d.name] = _summarise(d, samples[d.name], info, link, devices, calibration,
                                                   percentiles)
    result["ratios"] = ratios(result["deployments"], [dev.name for dev in devices])
    return result


def _calibrate(shapes: dict, samples: dict, link: LinkProfile) -> dict:
    """One-way cost of each probed message over the link: median round trip of (message -> tiny reply) minus half
    the median round trip of (tiny -> tiny); beside it what transfer_time_s models."""
    tiny = float(np.median([s.total_ms for s in samples["probe tiny"]]))
    out = {"method": "one way = median probe round trip (message up, 1-float reply down) - median tiny round "
                     "trip / 2; the probe node runs a sink model (no real compute)"}
    for key, shape in shapes.items():
        got = samples[f"probe {key}"]
        nbytes = int(np.median([s.bytes_in[0] for s in got]))
        round_trip = float(np.median([s.total_ms for s in got]))
        out[key] = {"shape": list(shape), "message_bytes": nbytes, "samples": len(got), "round_trip_ms": round_trip,
                    "one_way_ms": round_trip - tiny / 2,
                    "modelled_one_way_ms": transfer_time_s(nbytes, link) * 1000.0}
    return out


def _summarise(d: Deployment, samples: list[Sample], info: dict, link: LinkProfile, devices, calibration: dict,
               percentiles) -> dict:
    nodes = []
    for i, static in enumerate(d.nodes):
        compute = [s.compute_ms[i] for s in samples]
        bytes_in = int(np.median([s.bytes_in[i] for s in samples]))
        bytes_out = int(np.median([s.bytes_out[i] for s in samples]))
        compute_s = float(np.median(compute)) / 1000.0
        bits_in = (bytes_in + link.overhead_bytes) * 8
        bits_out = (bytes_out + link.overhead_bytes) * 8
        gets_input = d.kind == "gateway" or i == 0
        nodes.append({
            **static, **info[(d.name, i)],
            "compute_ms": percentiles(compute),
            "bytes_in": bytes_in, "bytes_out": bytes_out,
            "energy_j": {dev.name: node_energy_j(dev, compute_s, bits_out, bits_in, link) for dev in devices},
            "energy_j_input_local": {dev.name: node_energy_j(dev, compute_s, bits_out, 0 if gets_input else bits_in,
                                                             link) for dev in devices},
        })
    totals = [s.total_ms for s in samples]
    p50 = float(np.median(totals))
    image_ms = calibration["image"]["one_way_ms"]
    cut_ms = (sum(calibration["x".join(map(str, n["out_shape"]))]["one_way_ms"] for n in nodes[:-1])
              if d.kind == "chain" else 0.0)
    return {
        "title": d.title, "kind": d.kind, "k": len(nodes), "samples": len(samples),
        "total_ms": percentiles(totals),
        "modelled_transfer_ms": float(np.median([s.modelled_ms for s in samples])),
        "hub_overhead_ms": percentiles(s.hub_ms for s in samples),
        "messages_per_inference": 2 * len(nodes),
        "link_bytes_per_inference": sum(n["bytes_in"] + n["bytes_out"] + 2 * link.overhead_bytes for n in nodes),
        "derived_total_ms": {
            "measured": p50,
            "input_local": p50 - image_ms,
            "direct_chain": p50 - cut_ms,
            "direct_chain_input_local": p50 - cut_ms - image_ms,
        },
        "nodes": nodes,
        "samples_total_ms": totals,
    }


LATENCY_VARIANTS = {
    "measured": "as measured: the image starts at the hub; a layer-split activation goes node -> hub -> node",
    "input_local": "measured minus one measured one-way transfer of the input image (link_calibration): the "
                   "input is already on the device(s)",
    "direct_chain": "measured minus one measured one-way transfer per cut (link_calibration): activations go "
                    "node -> node directly instead of through the hub",
    "direct_chain_input_local": "both corrections",
}


def _ratio(numerator: float | None, denominator: float | None, of: str) -> dict:
    value = numerator / denominator if numerator is not None and denominator else None
    return {"value": value, "numerator": numerator, "denominator": denominator, "of": of}


def ratios(deps: dict, device_names: list[str]) -> dict:
    """The paper's comparisons from the figures of one link's run (every value is numerator / denominator)."""
    teacher = deps["teacher"]["nodes"][0]
    students = deps["nonn"]["nodes"]
    rss = [s["peak_rss_bytes"] for s in students]
    out = {
        "weight_memory": _ratio(teacher["weight_bytes"], max(s["weight_bytes"] for s in students),
                                "teacher node weight bytes / largest NoNN student's weight bytes"),
        "peak_rss": _ratio(teacher["peak_rss_bytes"], max(rss) if all(rss) else None,
                           "teacher node process peak RSS / largest NoNN node process peak RSS"),
        "compute": _ratio(teacher["compute_ms"]["p50"], max(s["compute_ms"]["p50"] for s in students),
                          "teacher node median compute ms / slowest NoNN student's median compute ms"),
        "energy": {}, "energy_input_local": {}, "total_latency": {},
    }
    for dev in device_names:
        for key in ("energy_j", "energy_j_input_local"):
            out[key.replace("_j", "")][dev] = _ratio(
                teacher[key][dev]["total_j"], max(s[key][dev]["total_j"] for s in students),
                f"teacher node energy / largest NoNN node energy ({dev}, {key})")
    for baseline in ("compressed_split", "teacher_split", "teacher", "compressed"):
        out["total_latency"][baseline] = {
            variant: _ratio(deps[baseline]["derived_total_ms"][variant], deps["nonn"]["derived_total_ms"][variant],
                            f"{baseline} / nonn median total ms ({variant})")
            for variant in LATENCY_VARIANTS}
    return out


def headline(result: dict) -> dict:
    """The paper's four claims against this run, per link: value, target, met."""
    rows = {}
    first_device = result["config"]["devices"][0]
    for name, run in result["runs"].items():
        r = run["ratios"]
        lat = r["total_latency"]["compressed_split"]

        def row(ratio, target):
            return {"value": ratio["value"], "target": target,
                    "met": ratio["value"] is not None and ratio["value"] >= target}

        rows[name] = {
            "weight_memory": row(r["weight_memory"], TARGETS["weight_memory"]),
            "compute": row(r["compute"], TARGETS["compute"]),
            f"energy_{first_device}": row(r["energy"][first_device], TARGETS["energy"]),
            f"energy_{first_device}_input_local": row(r["energy_input_local"][first_device], TARGETS["energy"]),
            "total_latency_vs_compressed_split": row(lat["measured"], TARGETS["total_latency"]),
            "total_latency_vs_compressed_split_input_local": row(lat["input_local"], TARGETS["total_latency"]),
        }
    return rows


# -- the command ------------------------------------------------------------------------------

def resolve_shaping(shaping: str) -> tuple[str, str]:
    """(mode, why) for --shaping auto|netns|in-process."""
    if shaping not in SHAPING_CHOICES:
        raise ConfigError(f"--shaping must be one of {', '.join(SHAPING_CHOICES)}, got {shaping!r}")
    if shaping == "in-process":
        return SHAPING_IN_PROCESS, "asked for with --shaping in-process"
    mode, why = choose_shaping_mode(prefer_netns=True)
    if mode != SHAPING_NETNS:
        if shaping == "netns":
            raise ConfigError(f"--shaping netns is not possible here ({why}); use --shaping auto or in-process")
        return SHAPING_IN_PROCESS, why
    return mode, why


SHAPING_DESCRIPTIONS = {
    SHAPING_NETNS: "each node process in its own network namespace behind a veth pair shaped with tbf to the "
                   "link's rate in both directions; propagation delay added per message by the node runtime",
    SHAPING_IN_PROCESS: "nodes on loopback; per message the node runtime adds the link's delay and the hub adds "
                        "the modelled serialization time (bytes + overhead) x 8 / rate",
}


def bench(run_dir: str | Path | None = None, *, teacher_arch: str | None = None, student_arch: str | None = None,
          k: int | None = None, input_shape=None, links=DEFAULT_LINKS, devices=DEFAULT_DEVICES,
          requests: int = DEFAULT_REQUESTS, warmup: int = DEFAULT_WARMUP, max_seconds: float = DEFAULT_MAX_SECONDS,
          shaping: str = "auto", out: str | Path | None = None, log=print) -> dict:
    """Prepare the deployments, measure them over every link, write bench.json, bench.md and plots."""
    from ..deploy.processes import interrupt_on_signals

    arch_form = teacher_arch is not None or student_arch is not None
    if run_dir is not None and arch_form:
        raise ConfigError("give either RUN_DIR or --teacher-arch/--student-arch, not both")
    if run_dir is None and not (teacher_arch and student_arch):
        raise ConfigError("give a RUN_DIR, or --teacher-arch and --student-arch for untrained models")
    if run_dir is not None and (k is not None or input_shape is not None):
        raise ConfigError("--k and --input belong to the architecture form; a run directory has its own")
    if requests < 1 or warmup < 0 or not max_seconds > 0:
        raise ConfigError("--requests must be >= 1, --warmup >= 0 and --max-seconds > 0")
    link_profiles = [get_link(name) for name in dict.fromkeys(links or DEFAULT_LINKS)]
    device_profiles = [get_device(name) for name in dict.fromkeys(devices or DEFAULT_DEVICES)]
    mode, why = resolve_shaping(shaping)
    if arch_form:
        k = 2 if k is None else int(k)
        input_shape = parse_input(input_shape or "3x32x32")
        out = Path(out) if out else Path("runs") / f"bench-{teacher_arch}-{student_arch}-k{k}"
    else:
        out = Path(out) if out else Path(run_dir)
    work = out / "bench"
    log(f"[bench] shaping: {mode} ({why})")
    with interrupt_on_signals():
        if arch_form:
            log(f"[bench] {UNTRAINED_NOTE}")
            prep = prepare_architecture(teacher_arch, student_arch, k, input_shape, work, log=log)
        else:
            prep = prepare_run(run_dir, work, log=log)
        runs = {}
        for link in link_profiles:
            runs[link.name] = measure_link(prep, link, device_profiles, mode=mode, requests=requests, warmup=warmup,
                                           max_seconds=max_seconds, log=log)
    result = assemble(prep, runs, form="architecture" if arch_form else "run", links=link_profiles,
                      devices=device_profiles, requests=requests, warmup=warmup, max_seconds=max_seconds,
                      shaping=(mode, why), out=out)
    write_outputs(result, out)
    return result


def assemble(prep: Prepared, runs: dict, *, form: str, links: list[LinkProfile], devices: list[DeviceProfile],
             requests: int, warmup: int, max_seconds: float, shaping: tuple[str, str], out: Path) -> dict:
    """bench.json's content from the prepared deployments and the per-link runs."""
    mode, why = shaping
    link_profiles, device_profiles = links, devices
    cpus = os.cpu_count() or 1
    widest = max(len(d.files) for d in prep.deployments)
    result = {
        "format": BENCH_FORMAT,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "untrained": prep.untrained,
        "note": UNTRAINED_NOTE if prep.untrained else "trained models from the run directory",
        "out": str(out),
        "source": prep.source,
        "config": {
            "form": form,
            "teacher_arch": prep.models["teacher"]["arch"], "student_archs": prep.models["nonn"]["student_archs"],
            "compressed_arch": prep.models["compressed"]["arch"], "k": prep.k, "input_shape": list(prep.input_shape),
            "links": [p.name for p in link_profiles], "devices": [p.name for p in device_profiles],
            "requests": requests, "warmup": warmup, "max_seconds": max_seconds, "min_samples": MIN_SAMPLES,
            "distinct_images": len(prep.images), "cpu_count": cpus,
            "pinning": (f"node i of every deployment pinned to core i mod {cpus} (taskset)" if cpus >= widest
                        else f"not pinned: {cpus} cores for up to {widest} nodes of one deployment"),
            "ort_threads": 1, "security": "plaintext gRPC for every deployment alike",
            "shaping": {"mode": mode, "reason": why, "description": SHAPING_DESCRIPTIONS[mode]},
        },
        "links": {p.name: asdict(p) for p in link_profiles},
        "devices": {p.name: asdict(p) for p in device_profiles},
        "models": prep.models,
        "layer_split": prep.layer_split,
        "parity": prep.parity,
        "latency_variants": LATENCY_VARIANTS,
        "method": [
            "Every deployment is served by separate `python -m nonn.edge node` processes (ONNX Runtime, 1 intra-op "
            "thread); NoNN also by `nonn.edge gateway`, which normalises the image, sends it to the K nodes at once "
            "and runs the head.",
            "The hub (this process and the gateway) is the access point: the input starts there and answers end "
            "there. A layer-split pipeline is driven node after node; each activation crosses two links.",
            "Deployments are measured in interleaved rounds in one process set per link; each stops after "
            "--requests samples, or after --max-seconds of its own time once it has at least "
            f"{MIN_SAMPLES}. Figures are medians.",
            "Per-node compute is the node's own ONNX Runtime time (reported by the node). Per-node energy = device "
            "active power x median compute time + energy per bit x bits sent and received (message bytes plus the "
            "link's per-message overhead); idle power while waiting is not counted. The device profiles' powers "
            "are multiplied by compute times measured on THIS machine, not on those devices.",
            "Weight memory is parameters x 4 bytes (float32) per node; peak RSS is the node process's VmHWM "
            "(Python, gRPC and ONNX Runtime included).",
            "hub_overhead_ms is the total minus the node round trips: for NoNN the client -> gateway hop and the "
            "gateway's own work (decode, normalise, fan out, gather, head), for a chain the driver's work between "
            "hops. It is part of every total.",
            "A probe node on the same kind of link, serving a sink model, calibrates what one message of each size "
            "costs one way (link_calibration); the input_local and direct_chain variants subtract those measured "
            "costs.",
            f"tbf passes up to {TBF_BURST_BYTES} bytes at line rate after the link was idle, so a message smaller "
            "than that costs little more than the delay; on a slow link (BLE, 100 kbit/s: 128 ms worth) this makes "
            "small messages such as NoNN's features nearly free and the input_local ratios there very large "
            "(a small remainder after subtracting the image's transfer). The in-process mode has no burst.",
            "Each node has its own link (no shared medium): NoNN's K image transfers run in parallel, as they would "
            "with K radios or one broadcast, not one after the other as on one shared Wi-Fi channel.",
        ],
        "runs": runs,
    }
    result["headline"] = headline(result)
    return result


def write_outputs(result: dict, out: Path) -> None:
    """bench.json, plots/bench_*.png and bench.md (which shows the plots) into ``out``."""
    from . import report

    out.mkdir(parents=True, exist_ok=True)
    result["plots"] = [str(p) for p in report.write_plots(result, out / "plots")]
    atomic.write_text(out / "bench.md", report.format_markdown(result))
    atomic.write_json(out / "bench.json", result)
