"""The case study's deployments: the teacher, the K-student NoNN and the compressed baseline, whole and layer-split,
made (from architectures or a trained run), exported to ONNX and checked against PyTorch."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import ConfigError
from ..models.cost import count_macs, count_params, weight_bytes
from .synthetic import UNTRAINED_CLASSES, untrained_models

DISTINCT_IMAGES = 16
DEPLOYMENT_TITLES = {
    "nonn": "NoNN (K students + gateway)",
    "teacher": "teacher, one device",
    "compressed": "compressed model, one device",
    "teacher_split": "teacher, layer-split over K devices",
    "compressed_split": "compressed model, layer-split over K devices",
    "nonn_int8": "NoNN, int8 students (uint8 pixels)",
}
# The same deployments with uint8 pixels on the first hop (the first node normalises them): what a camera sends.
PIXELS = "_pixels"
for _name in ("nonn", "teacher", "compressed", "teacher_split", "compressed_split"):
    DEPLOYMENT_TITLES[_name + PIXELS] = DEPLOYMENT_TITLES[_name] + ", uint8 pixels"
CALIBRATION_IMAGES = 64  # int8 students in the bench: calibration images (validation split, or random when untrained)


@dataclass
class Deployment:
    """One way of serving the models: the node ONNX files in order and what each node holds."""

    name: str
    kind: str                      # "gateway" (NoNN fan-out) or "chain" (node after node)
    files: list[Path]
    nodes: list[dict]              # per node: params, weight_bytes, macs, onnx_bytes, ...
    manifest: Path | None = None   # NoNN only
    reference: np.ndarray | None = field(default=None, repr=False)  # in-process ORT logits per image
    first_hop: str = "float32"     # what the hub sends the first node(s): normalised float32, or uint8 pixels
    shares: str | None = None      # served by this other deployment's node processes (the same models)

    @property
    def title(self) -> str:
        return DEPLOYMENT_TITLES[self.name]

    @property
    def processes(self) -> str:
        """The deployment whose node processes serve this one."""
        return self.shares or self.name


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


def family_of(arch: str) -> str:
    return "mbv2" if arch.startswith("mbv2") else "wrn"


def choose_compressed_arch(family: str, target_params: int, *, in_shape, num_classes: int, num_filters: int,
                           map_size, min_layers: int = 1) -> tuple[str, dict]:
    """The family's architecture whose one-student NoNN (bridge to all ``num_filters`` teacher filters) has the
    most parameters not above ``target_params``; the smallest one when none is that small. Only architectures
    with at least ``min_layers`` top-level layers count, so that the compressed model can be split over K nodes."""
    import torch

    from ..budget import candidates
    from ..distill.nonn_model import StudentNode
    from ..models import create_model

    def params(arch: str) -> int:  # what budget.student_cost counts, without running a forward pass
        with torch.device("meta"):
            node = StudentNode(create_model(arch, num_classes=num_classes, in_channels=in_shape[0]), num_filters,
                               map_size)
        return count_params(node)

    def layers(arch: str) -> int:
        from .layer_split import _backbone_parts
        with torch.device("meta"):
            return len(_backbone_parts(create_model(arch, num_classes=num_classes, in_channels=in_shape[0]))[0]) + 1

    rows = [{"arch": a, "params": params(a), "layers": layers(a)}
            for a in candidates(family, in_shape=in_shape, num_classes=num_classes, map_size=map_size)]
    rows = [r for r in rows if r["layers"] >= min_layers] or rows
    rows.sort(key=lambda r: r["params"])
    fitting = [r for r in rows if r["params"] <= target_params]
    chosen = fitting[-1] if fitting else rows[0]
    rule = ("most parameters <= the NoNN students' total" if fitting else
            "no architecture is that small; took the smallest of the family")
    if min_layers > 1:
        rule += f", among those with at least {min_layers} layers (one per node of its layer split)"
    return chosen["arch"], {"family": family, "target_params": int(target_params), "rule": rule,
                            "chosen": chosen["arch"], "chosen_params": chosen["params"], "candidates": rows,
                            "note": "parameters of backbone + bridge; the head (teacher filters x classes) is the "
                                    "same size in NoNN and in the compressed model and is left out of both"}


def normalise(images: np.ndarray, mean, std) -> np.ndarray:
    """uint8 [N, H, W, C] -> float32 [N, 1, C, H, W], with the gateway's (and the nodes') arithmetic."""
    from nonn.edge.pixels import Normalisation

    return Normalisation.of(255.0, mean, std).apply(images.transpose(0, 3, 1, 2))[:, None]


def prepare_architecture(teacher_arch: str, student_arch: str, k: int, input_shape, work: Path, *,
                         num_classes: int = UNTRAINED_CLASSES, seed: int = 0, log=print) -> Prepared:
    """Untrained teacher, K-student NoNN and compressed model from architecture names, exported into ``work``."""
    import torch

    from ..distill.nonn_model import build_nonn
    from ..models import create_model

    if k < 1:
        raise ConfigError(f"--k must be at least 1, got {k}")
    syn = untrained_models(teacher_arch, student_arch, k, tuple(input_shape), num_classes=num_classes, seed=seed)
    c, h, w = syn.feature_shape
    target = sum(count_params(s) for s in syn.nonn.students)
    arch, choice = choose_compressed_arch(family_of(student_arch), target, in_shape=tuple(input_shape),
                                          num_classes=num_classes, num_filters=c, map_size=(h, w), min_layers=k)
    torch.manual_seed(seed + 1)
    compressed = build_nonn(lambda _k: create_model(arch, num_classes=num_classes, in_channels=input_shape[0]), [c],
                            num_classes, (h, w)).eval()
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(DISTINCT_IMAGES, input_shape[1], input_shape[2], input_shape[0]),
                          dtype=np.uint8)
    calibration = rng.integers(0, 256, size=(CALIBRATION_IMAGES, input_shape[1], input_shape[2], input_shape[0]),
                               dtype=np.uint8)
    return _prepare(work, teacher=syn.teacher, teacher_arch=teacher_arch, nonn=syn.nonn,
                    student_archs=syn.student_archs, compressed=compressed, compressed_arch=arch, choice=choice,
                    input_shape=tuple(input_shape), mean=syn.mean, std=syn.std, classes=syn.classes, images=images,
                    untrained=True, accuracy={}, source={"form": "architecture", "untrained": True, "seed": seed},
                    calibration=(calibration, {"split": "random uint8 images (untrained models)", "seed": seed}),
                    log=log)


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
    target = sum(count_params(s) for s in net.students)
    arch, choice = choose_compressed_arch(cfg.students.family, target, in_shape=in_shape,
                                          num_classes=ds.num_classes, num_filters=c, map_size=(h, w),
                                          min_layers=len(net.students))
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
    from ..quantize import calibration_sample
    index = calibration_sample(len(ds.val.y), CALIBRATION_IMAGES, 0)
    calibration = np.ascontiguousarray(ds.val.x[index].permute(0, 2, 3, 1).numpy().astype(np.uint8))
    accuracy["test_split"] = (ds.test.x, ds.test.y.numpy())  # for the int8 students' accuracy
    return _prepare(work, teacher=teacher, teacher_arch=tckpt["arch"], nonn=net, student_archs=list(sckpt["archs"]),
                    compressed=compressed, compressed_arch=arch, choice=choice, input_shape=in_shape,
                    mean=tuple(ds.mean), std=tuple(ds.std), classes=list(ds.classes), images=images,
                    untrained=False, accuracy=accuracy,
                    source={"form": "run", "run": str(rd.path), "students_sha256": file_sha256(rd.students),
                            "teacher_sha256": file_sha256(rd.teacher), "compressed_run": str(crd.path)},
                    calibration=(calibration, {"split": "validation", "seed": 0, "of": len(ds.val.y)}), log=log)


def _int8_accuracy(fp32, int8, x, y, mean, std, batch: int = 256) -> dict:
    """Test accuracy (fractions) of the float32 and int8 NoNN in ONNX Runtime, on uint8 images [N, C, H, W]."""
    from ..quantize import logits_of

    right32 = right8 = 0
    for i in range(0, len(y), batch):
        xb = normalise(x[i:i + batch].permute(0, 2, 3, 1).numpy(), mean, std)[:, 0]
        right32 += int((logits_of(fp32, xb).argmax(1) == y[i:i + batch]).sum())
        right8 += int((logits_of(int8, xb).argmax(1) == y[i:i + batch]).sum())
    return {"nonn_fp32_onnx": right32 / len(y), "nonn_int8": right8 / len(y)}


def _prepare(work: Path, *, teacher, teacher_arch, nonn, student_archs, compressed, compressed_arch, choice,
             input_shape, mean, std, classes, images, untrained, accuracy, source, calibration, log) -> Prepared:
    import torch

    from ..export import PARITY_ATOL, ExportError, export_nonn
    from .layer_split import export_split, merge_pieces, plan_split, run_chain

    import dataclasses

    from ..edge.manifest import write_manifest
    from ..edge.pixels import Normalisation
    from ..quantize import initializer_bytes, logits_of, quantize_students

    k = len(nonn.students)
    models_dir = work / "models"
    # Every deployment is measured twice: with the normalised float32 image on the first hop, and with uint8
    # pixels that the first node normalises (a quarter of the bytes; what a camera produces). Both use the same
    # node processes: a node whose model carries its normalisation takes either.
    manifest = export_nonn(nonn, models_dir / "nonn", input_shape=input_shape, mean=mean, std=std, classes=classes,
                           archs=student_archs, log=lambda m: log(m.replace("[export]", "[bench]")), source=source,
                           node_pixels=False)
    pixels_manifest = dataclasses.replace(manifest, path=manifest.path.with_name("manifest_pixels.json"),
                                          node_pixels=True)
    write_manifest(pixels_manifest)
    pixel_metadata = Normalisation.of(255.0, mean, std).metadata()
    inputs = normalise(images, mean, std)
    batch = torch.from_numpy(inputs[:, 0])

    deployments, parity = [], {"atol": PARITY_ATOL, "images": len(inputs)}
    # NoNN: students in ONNX Runtime, concatenated, the head; against PyTorch.
    files = [s.file for s in manifest.students]
    reference = logits_of(manifest, inputs[:, 0])
    with torch.no_grad():
        parity["nonn"] = float(np.abs(reference - nonn(batch).numpy()).max())
    nodes = []
    for i, (student, path) in enumerate(zip(nonn.students, files)):
        params = count_params(student)
        nodes.append({"role": f"student {i}", "arch": student_archs[i], "filters": student.num_filters,
                      "params": params, "weight_bytes": weight_bytes(params), "dtype": "float32",
                      "initializer_bytes": initializer_bytes(path),
                      "macs": count_macs(student, input_shape), "onnx_bytes": path.stat().st_size,
                      "file": str(path.relative_to(work))})
    deployments.append(Deployment("nonn", "gateway", files, nodes, manifest.path, reference))
    deployments.append(Deployment("nonn" + PIXELS, "gateway", files, nodes, pixels_manifest.path, reference,
                                  first_hop="uint8", shares="nonn"))

    # int8 students: static QDQ, per-channel weights, calibrated on `calibration`; uint8 pixels on the first hop.
    cal_images, cal_info = calibration
    int8 = quantize_students(manifest, models_dir / "nonn_int8", normalise(cal_images, mean, std)[:, 0],
                             log=lambda m: log(m.replace("[export]", "[bench]")))
    int8 = dataclasses.replace(int8, node_pixels=True, quantization={
        "dtype": "int8", "format": "QDQ", "weights": "int8 per output channel", "activations": "uint8 per tensor",
        "calibration": {**cal_info, "images": len(cal_images), "method": "minmax"}})
    write_manifest(int8)
    int8_reference = logits_of(int8, inputs[:, 0])
    int8_nodes = [{**node, "dtype": "int8", "weight_bytes": initializer_bytes(s.file),
                   "initializer_bytes": initializer_bytes(s.file), "onnx_bytes": s.file.stat().st_size,
                   "file": str(s.file.relative_to(work))} for node, s in zip(nodes, int8.students)]
    deployments.append(Deployment("nonn_int8", "gateway", [s.file for s in int8.students], int8_nodes, int8.path,
                                  int8_reference, first_hop="uint8"))
    parity["nonn_int8_vs_fp32"] = {
        "max_abs_logit_change": float(np.abs(int8_reference - reference).max()),
        "label_agreement": float((int8_reference.argmax(1) == reference.argmax(1)).mean()),
        "note": "int8 is not held to the float32 tolerance; its accuracy is measured on the test split"}
    if "test_split" in accuracy:
        accuracy.update(_int8_accuracy(manifest, int8, *accuracy.pop("test_split"), mean, std))
    head_params = count_params(nonn.head)

    plans = {}
    for base, model in (("teacher", teacher), ("compressed", compressed)):
        # The model is exported once, as its K layer-split pieces; the one-device model is those pieces merged.
        plan = plan_split(model, input_shape, k)
        split_paths = export_split(plan, models_dir / f"{base}_split", log=log, pixels=pixel_metadata)
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
            deployments.append(Deployment(name + PIXELS, "chain", paths, nodes, None, reference, first_hop="uint8",
                                          shares=name))
            plans[name] = pl
    worst = max(v for key, v in parity.items() if isinstance(v, float) and key != "atol")
    if worst > PARITY_ATOL:
        raise ExportError(f"exported pieces disagree with PyTorch (max |diff| {worst:.2e} > {PARITY_ATOL}); "
                          "report this with the architectures used")
    log(f"[bench] parity: every deployment's ONNX Runtime logits within {worst:.1e} of PyTorch")
    order = {n: i for i, n in enumerate(DEPLOYMENT_TITLES)}
    deployments.sort(key=lambda d: order[d.name])

    teacher_params = count_params(teacher)
    compressed_params = count_params(compressed)
    models = {
        "teacher": {"arch": teacher_arch, "params": teacher_params, "weight_bytes": weight_bytes(teacher_params),
                    "macs": count_macs(teacher, input_shape), "accuracy": accuracy.get("teacher")},
        "nonn": {"k": k, "student_archs": list(student_archs), "partition_sizes": list(nonn.partition_sizes),
                 "students_params_total": sum(n["params"] for n in deployments[0].nodes),
                 "head": {"params": head_params, "weight_bytes": weight_bytes(head_params),
                          "where": "gateway (the hub)"},
                 "accuracy": accuracy.get("nonn"), "accuracy_int8": accuracy.get("nonn_int8"),
                 "accuracy_fp32_onnx": accuracy.get("nonn_fp32_onnx"), "int8": int8.quantization},
        "compressed": {"arch": compressed_arch, "params": compressed_params,
                       "weight_bytes": weight_bytes(compressed_params),
                       "macs": count_macs(compressed, input_shape), "trained": not untrained,
                       "training": "KD+AT as a one-student NoNN (students.k=1)" if not untrained else "untrained",
                       "choice": choice, "accuracy": accuracy.get("compressed")},
    }
    if accuracy.get("test_images"):
        models["accuracy_on"] = f"{accuracy.get('dataset')} test split, {accuracy['test_images']} images"
    split = {"teacher": plans["teacher_split"].to_dict(), "compressed": plans["compressed_split"].to_dict(),
             "rule": "consecutive top-level layers; minimise the largest piece's weights, then the bytes over cuts"}
    return Prepared(work, untrained, k, tuple(input_shape), tuple(mean), tuple(std), images, inputs, deployments,
                    models, split, parity, source)

