"""Export the K students (image -> pooled n_k vector) and the head (features -> logits) to ONNX, with a manifest.

The manifest is what the edge runtime reads: input shape and dtype, normalisation, partition sizes in
order, class names, and the SHA-256 of every file. A parity check runs ONNX Runtime against PyTorch.
"""

from __future__ import annotations

import io
import logging
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from . import atomic
from .edge.pixels import Normalisation
from .errors import NonnError
from .rundir import RunDir, file_sha256
from .stages.common import batch_prep, dataset_for, load_students

MANIFEST_FORMAT = 1
PIXEL_SCALE = 255.0
PARITY_ATOL = 1e-4


class ExportError(NonnError):
    """The exported graphs disagree with PyTorch."""


def onnx_bytes(module: nn.Module, example: torch.Tensor, input_name: str, output_name: str,
                metadata: dict[str, str] | None = None) -> bytes:
    """One module to ONNX with the dynamo exporter and a dynamic batch dimension; `metadata`
    goes into the model's metadata_props."""
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    module = module.eval()
    batch = torch.export.Dim("batch", min=1, max=4096)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(module, (example,), input_names=[input_name], output_names=[output_name],
                                    dynamic_shapes=({0: batch},), dynamo=True, verbose=False, optimize=True)
    buf = io.BytesIO()
    program.save(buf)
    if not metadata:
        return buf.getvalue()
    import onnx

    model = onnx.load_from_string(buf.getvalue())
    for key, value in metadata.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    return model.SerializeToString()


class _Head(nn.Module):
    def __init__(self, linear: nn.Linear):
        super().__init__()
        self.linear = linear

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear(features)


def export_nonn(net, out: Path, *, input_shape, mean, std, classes, archs, log=print, source=None,
                node_pixels: bool = True) -> dict:
    """Write student_<k>.onnx, head.onnx and manifest.json for a NoNN into ``out``; return the manifest.

    With `node_pixels` the gateway sends the nodes uint8 pixels, which they normalise with the
    constants stored in each student model; without it, normalised float32."""
    out.mkdir(parents=True, exist_ok=True)
    net = net.eval()
    example = torch.zeros(2, *input_shape)
    pixels = Normalisation.of(PIXEL_SCALE, mean, std).metadata()  # lets a node take uint8 pixels
    students = []
    for k, node in enumerate(net.students):
        path = out / f"student_{k}.onnx"
        atomic.write_bytes(path, onnx_bytes(node, example, "image", "features", pixels))
        students.append({"file": path.name, "sha256": file_sha256(path), "input": "image", "output": "features",
                         "features": node.num_filters, "arch": archs[k]})
        log(f"[export] {path} ({path.stat().st_size / 1e3:.1f} kB)")
    head_path = out / "head.onnx"
    atomic.write_bytes(head_path, onnx_bytes(_Head(net.head), torch.zeros(2, sum(net.partition_sizes)),
                                              "features", "logits"))
    manifest = {
        "format": MANIFEST_FORMAT,
        "input": {"shape": list(input_shape), "dtype": "float32", "layout": "NCHW", "name": "image"},
        "normalization": {"scale": PIXEL_SCALE, "mean": list(mean), "std": list(std)},
        "node_pixels": bool(node_pixels),  # the nodes take uint8 pixels and normalise them (student metadata)
        "classes": list(classes),
        "partition_sizes": list(net.partition_sizes),
        "students": students,
        "head": {"file": head_path.name, "sha256": file_sha256(head_path), "input": "features", "output": "logits"},
        "source": source or {},
    }
    atomic.write_json(out / "manifest.json", manifest)
    return manifest


def export_run(rd: RunDir, *, check: bool = True, log=print) -> dict:
    """Export a run's students into RUN_DIR/onnx, parity-checked on the test split; return the manifest."""
    cfg = rd.load_config()
    ds = dataset_for(cfg)
    net, ckpt = load_students(rd)
    out = rd.path / "onnx"
    manifest = export_nonn(net, out, input_shape=ds.input_shape, mean=ds.mean, std=ds.std, classes=ds.classes,
                           archs=ckpt["archs"], log=log,
                           source={"run": str(rd.path), "students_sha256": file_sha256(rd.students)})
    if check:
        manifest["parity"] = parity_check(rd, manifest)
        log(f"[export] parity on {manifest['parity']['images']} test images: max |diff| "
            f"{manifest['parity']['max_abs_diff']:.2e}, labels identical")
        atomic.write_json(out / "manifest.json", manifest)
    return manifest


@torch.no_grad()
def parity_check(rd: RunDir, manifest: dict, *, batch_size: int = 256) -> dict:
    """ONNX Runtime vs PyTorch on the whole test split: logits within PARITY_ATOL and identical labels."""
    import onnxruntime as ort
    cfg = rd.load_config()
    ds = dataset_for(cfg)
    prep = batch_prep(ds, cfg)
    net, _ = load_students(rd)
    out = rd.path / "onnx"
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sessions = [ort.InferenceSession(str(out / s["file"]), opts, providers=["CPUExecutionProvider"])
                for s in manifest["students"]]
    head = ort.InferenceSession(str(out / manifest["head"]["file"]), opts, providers=["CPUExecutionProvider"])
    worst = 0.0
    for i in range(0, len(ds.test.y), batch_size):
        x = prep(ds.test.x[i:i + batch_size])
        ref = net(x).numpy()
        feats = [s.run(None, {"image": x.numpy()})[0] for s in sessions]
        logits = head.run(None, {"features": np.concatenate(feats, axis=1)})[0]
        worst = max(worst, float(np.abs(logits - ref).max()))
        if worst > PARITY_ATOL or not np.array_equal(logits.argmax(1), ref.argmax(1)):
            raise ExportError(f"ONNX Runtime disagrees with PyTorch (max |diff| {worst:.2e} > {PARITY_ATOL}); "
                              f"report this with the run's config.yaml")
    return {"images": int(len(ds.test.y)), "max_abs_diff": worst, "atol": PARITY_ATOL}
