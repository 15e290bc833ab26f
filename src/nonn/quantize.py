"""int8 students: static QDQ quantization of exported student graphs (per-channel int8 weights), and the check
of the int8 NoNN against the fp32 one on labelled images.

The in-memory layer of `nonn export --int8` (nonn.stages.quantize is its run-directory wrapper). The head stays
float32: it runs on the gateway, and it is one small Linear layer.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import tempfile
from pathlib import Path
from typing import Iterable

import numpy as np

from .edge.manifest import Manifest, Student, write_manifest
from .errors import NonnError
from .rundir import file_sha256

CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
DEFAULT_CALIBRATION_IMAGES = 400
DEFAULT_CALIBRATION_METHOD = "minmax"
DEFAULT_MAX_DROP_POINTS = 0.5
CALIBRATION_BATCH = 32


class QuantizationError(NonnError):
    """int8 students lose more accuracy than allowed, or cannot be quantized with the settings given."""


def calibration_sample(n_available: int, size: int, seed: int) -> np.ndarray:
    """Sorted indices of a seeded sample of ``size`` images (all of them when fewer are available)."""
    if size < 1:
        raise QuantizationError(f"--calibration-images must be at least 1, got {size}")
    if n_available < 1:
        raise QuantizationError("the validation split is empty, so there is nothing to calibrate int8 on; "
                                "set data.val_fraction above 0 and rerun `nonn run`")
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n_available, size=min(size, n_available), replace=False))


class _Reader:
    """onnxruntime's CalibrationDataReader protocol over one float32 array [N, C, H, W], in batches."""

    def __init__(self, input_name: str, images: np.ndarray, batch: int = CALIBRATION_BATCH):
        self.input_name, self.images, self.batch, self.i = input_name, images, batch, 0

    def get_next(self):
        if self.i >= len(self.images):
            return None
        x = np.ascontiguousarray(self.images[self.i:self.i + self.batch], dtype=np.float32)
        self.i += self.batch
        return {self.input_name: x}

    def rewind(self):
        self.i = 0


def quantize_model(src: Path, dst: Path, calibration: np.ndarray, *, input_name: str,
                   method: str = DEFAULT_CALIBRATION_METHOD) -> None:
    """``src`` (float32 ONNX) -> ``dst``: static QDQ, per-channel int8 weights, uint8 activations calibrated on
    ``calibration`` (float32 [N, C, H, W], what the model takes); the model's metadata_props are kept."""
    from onnxruntime.quantization import CalibrationMethod

    if method not in CALIBRATION_METHODS:
        raise QuantizationError(f"calibration method must be one of {', '.join(CALIBRATION_METHODS)}, got {method!r}")
    calibrate = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                 "percentile": CalibrationMethod.Percentile}[method]
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # the quantizer warns through the root logger about every 1-D BatchNorm weight
    try:
        _quantize(src, dst, calibration, input_name, calibrate)
    finally:
        root.setLevel(level)


def _quantize(src: Path, dst: Path, calibration: np.ndarray, input_name: str, calibrate) -> None:
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from . import atomic

    with tempfile.TemporaryDirectory(prefix="nonn-int8-") as tmp:
        pre, out = Path(tmp) / "pre.onnx", Path(tmp) / "int8.onnx"
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        # The first convolution, which reads the normalised image, stays float32: quantizing that input to uint8
        # per tensor cost 2.2-2.8 accuracy points on digits with every calibration method; its weights are a few
        # hundred parameters.
        first = next((n.name for n in onnx.load(str(pre), load_external_data=False).graph.node
                      if n.op_type == "Conv"), None)
        # histogram calibrators stack every batch's outputs, so their batches must all be the same size
        batch = CALIBRATION_BATCH if calibrate == CalibrationMethod.MinMax else 1
        quantize_static(str(pre), str(out), _Reader(input_name, calibration, batch), quant_format=QuantFormat.QDQ,
                        per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=calibrate, extra_options={"CalibTensorRangeSymmetric": False},
                        nodes_to_exclude=[first] if first else [])
        model = onnx.load(str(out))
        kept = {p.key for p in model.metadata_props}
        for prop in onnx.load(str(src), load_external_data=False).metadata_props:
            if prop.key not in kept:  # the pixel normalisation, so the node still takes uint8 pixels
                entry = model.metadata_props.add()
                entry.key, entry.value = prop.key, prop.value
        atomic.write_bytes(dst, model.SerializeToString())


def initializer_bytes(path: Path) -> int:
    """Bytes of the graph's stored constants (weights, biases, scales, zero points) in their own dtypes: what a
    node holds as weights once the model is loaded."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    total = sum(numpy_helper.to_array(t).nbytes for t in model.graph.initializer)
    for node in model.graph.node:  # constants folded into Constant nodes count too
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.HasField("t"):
                    total += numpy_helper.to_array(attr.t).nbytes
    return int(total)


def quantize_students(manifest: Manifest, out: Path, calibration: np.ndarray, *,
                      method: str = DEFAULT_CALIBRATION_METHOD, log=print) -> Manifest:
    """int8 copies of a float32 export's students (and its float32 head) in ``out``; the manifest that describes
    them, not yet written."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    students = []
    for k, s in enumerate(manifest.students):
        path = out / f"student_{k}.onnx"
        quantize_model(s.file, path, calibration, input_name=s.input, method=method)
        students.append(Student(path, file_sha256(path), s.input, s.output, s.features, s.arch))
        log(f"[export] {path} ({path.stat().st_size / 1e3:.1f} kB, fp32 {s.file.stat().st_size / 1e3:.1f} kB)")
    head = out / manifest.head_file.name
    shutil.copyfile(manifest.head_file, head)
    return dataclasses.replace(manifest, path=out / "manifest.json", students=tuple(students), head_file=head,
                               head_sha256=file_sha256(head), parity=None, inputs_hash=None)


def _sessions(manifest: Manifest):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    make = lambda p: ort.InferenceSession(str(p), opts, providers=["CPUExecutionProvider"])  # noqa: E731
    return [make(s.file) for s in manifest.students], make(manifest.head_file)


def logits_of(manifest: Manifest, x: np.ndarray, sessions=None) -> np.ndarray:
    """The NoNN's logits in ONNX Runtime for normalised float32 images [N, C, H, W]."""
    students, head = sessions or _sessions(manifest)
    feats = [s.run(None, {st.input: x})[0] for s, st in zip(students, manifest.students)]
    return head.run(None, {manifest.head_input: np.concatenate(feats, axis=1)})[0]


def compare_int8(fp32: Manifest, int8: Manifest, batches: Iterable[tuple[np.ndarray, np.ndarray]], *,
                 max_drop_points: float = DEFAULT_MAX_DROP_POINTS) -> dict:
    """int8 against fp32 on labelled batches (normalised float32 images, labels): accuracies, label agreement,
    largest logit change; QuantizationError when int8 accuracy is more than ``max_drop_points`` below fp32's."""
    a, b = _sessions(fp32), _sessions(int8)
    n = right32 = right8 = agree = 0
    worst = 0.0
    for x, y in batches:
        x = np.ascontiguousarray(x, dtype=np.float32)
        l32, l8 = logits_of(fp32, x, a), logits_of(int8, x, b)
        p32, p8 = l32.argmax(1), l8.argmax(1)
        n += len(y)
        right32 += int((p32 == y).sum())
        right8 += int((p8 == y).sum())
        agree += int((p32 == p8).sum())
        worst = max(worst, float(np.abs(l32 - l8).max()))
    if n == 0:
        raise QuantizationError("no test images to check the int8 students on")
    acc32, acc8 = 100.0 * right32 / n, 100.0 * right8 / n
    report = {"images": n, "fp32_accuracy": acc32, "int8_accuracy": acc8, "drop_points": acc32 - acc8,
              "label_agreement": agree / n, "max_abs_logit_change": worst, "max_drop_points": max_drop_points}
    if acc32 - acc8 > max_drop_points:
        raise QuantizationError(
            f"int8 students lose {acc32 - acc8:.2f} accuracy points on {n} test images ({acc32:.2f}% -> "
            f"{acc8:.2f}%), more than the {max_drop_points} allowed; calibrate on more images "
            f"(--calibration-images), try --calibration-method entropy or percentile, or allow it with --max-drop")
    return report


def export_int8(fp32: Manifest, out: Path, calibration: np.ndarray, test_batches, *, calibration_info: dict,
                method: str = DEFAULT_CALIBRATION_METHOD, max_drop_points: float = DEFAULT_MAX_DROP_POINTS,
                inputs_hash: str | None = None, budget_bytes: int | None = None, log=print) -> Manifest:
    """Quantize, check against fp32 on ``test_batches`` (None: no check), then write the manifest (last: a failed check leaves
    none), with the quantization settings and the check in it."""
    manifest = quantize_students(fp32, out, calibration, method=method, log=log)
    check = None  # untrained models (benchmarks) have no labels to check on
    if test_batches is not None:
        check = compare_int8(fp32, manifest, test_batches, max_drop_points=max_drop_points)
        log(f"[export] int8 on {check['images']} test images: {check['int8_accuracy']:.2f}% vs fp32 "
            f"{check['fp32_accuracy']:.2f}%, labels agree on {100 * check['label_agreement']:.2f}%, largest logit "
            f"change {check['max_abs_logit_change']:.3f}")
    quantization = {
        "dtype": "int8", "format": "QDQ (onnxruntime.quantization.quantize_static)",
        "weights": "int8, symmetric, per output channel", "activations": "uint8, per tensor",
        "float32": "the first convolution (reads the normalised image) and the head",
        "calibration": {**calibration_info, "images": int(len(calibration)), "method": method},
        "head": "float32 (runs on the gateway)",
        "fp32_manifest": str(fp32.path),
        "weight_bytes": {"int8": [initializer_bytes(s.file) for s in manifest.students],
                         "fp32": [initializer_bytes(s.file) for s in fp32.students]},
        "check": check,
    }
    if budget_bytes is not None:  # the run was sized for int8 devices (budget.dtype_bytes=1) or any memory budget
        held = quantization["weight_bytes"]["int8"]
        quantization["budget"] = {"memory_bytes": budget_bytes, "fits": [b <= budget_bytes for b in held],
                                  "note": "int8 weight bytes include the float scales, int32 biases and the "
                                          "float32 BatchNorm parameters that cannot be folded"}
        for k, b in enumerate(held):
            if b > budget_bytes:
                log(f"[export] warning: int8 student {k} holds {b:,} weight bytes, over the {budget_bytes:,}-byte "
                    f"budget (scales, biases and unfolded BatchNorm stay wider than int8)")
    manifest = dataclasses.replace(manifest, quantization=quantization, inputs_hash=inputs_hash,
                                   source={**fp32.source, "fp32_students_sha256": [s.sha256 for s in fp32.students]})
    write_manifest(manifest)
    return manifest
