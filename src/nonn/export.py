"""Export the K students (image -> pooled n_k vector) and the head (features -> logits) to ONNX, with a manifest.

The in-memory layer of the export stage (nonn.stages.export is its run-directory wrapper).

The manifest is what the edge runtime reads: input shape and dtype, normalisation, partition sizes in
order, class names, and the SHA-256 of every file. A parity check runs ONNX Runtime against PyTorch.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import warnings
from pathlib import Path
from typing import Iterable

import numpy as np
import torch
from torch import nn

from . import atomic
from .edge.manifest import Manifest, Student, write_manifest
from .edge.pixels import Normalisation
from .errors import NonnError
from .rundir import file_sha256

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
                node_pixels: bool = True) -> Manifest:
    """Write student_<k>.onnx, head.onnx and manifest.json for a NoNN into ``out``; return the manifest.

    With `node_pixels` the gateway sends the nodes uint8 pixels, which they normalise with the
    constants stored in each student model; without it, normalised float32."""
    manifest = _export_models(net, Path(out), input_shape=input_shape, mean=mean, std=std, classes=classes,
                              archs=archs, log=log, source=source, node_pixels=node_pixels)
    write_manifest(manifest)
    return manifest


def _export_models(net, out: Path, *, input_shape, mean, std, classes, archs, log, source, node_pixels) -> Manifest:
    """The ONNX files written into ``out``, and the (not yet written) manifest that describes them."""
    out.mkdir(parents=True, exist_ok=True)
    net = net.eval()
    example = torch.zeros(2, *input_shape)
    pixels = Normalisation.of(PIXEL_SCALE, mean, std).metadata()  # lets a node take uint8 pixels
    students = []
    for k, node in enumerate(net.students):
        path = out / f"student_{k}.onnx"
        atomic.write_bytes(path, onnx_bytes(node, example, "image", "features", pixels))
        students.append(Student(path, file_sha256(path), "image", "features", node.num_filters, archs[k]))
        log(f"[export] {path} ({path.stat().st_size / 1e3:.1f} kB)")
    head_path = out / "head.onnx"
    atomic.write_bytes(head_path, onnx_bytes(_Head(net.head), torch.zeros(2, sum(net.partition_sizes)),
                                             "features", "logits"))
    return Manifest(path=out / "manifest.json", input_shape=tuple(input_shape), scale=PIXEL_SCALE,
                    mean=tuple(mean), std=tuple(std), classes=tuple(classes),
                    partition_sizes=tuple(net.partition_sizes), students=tuple(students), head_file=head_path,
                    head_sha256=file_sha256(head_path), head_input="features", head_output="logits",
                    node_pixels=bool(node_pixels), source=source or {})


def export_checked(net, out: Path, test_batches: Iterable[torch.Tensor], *, input_shape, mean, std, classes,
                   archs, log=print, source=None, check: bool = True, inputs_hash: str | None = None) -> Manifest:
    """export_nonn, then (with `check`) ONNX Runtime against PyTorch on every normalised batch of
    `test_batches`, recorded in the manifest; the manifest is written last, so a failed check leaves none."""
    manifest = _export_models(net, Path(out), input_shape=input_shape, mean=mean, std=std, classes=classes,
                              archs=archs, log=log, source=source, node_pixels=True)
    parity = None
    if check:
        parity = parity_check(net, manifest, test_batches)
        log(f"[export] parity on {parity['images']} test images: max |diff| {parity['max_abs_diff']:.2e}, "
            f"labels identical")
    manifest = dataclasses.replace(manifest, parity=parity, inputs_hash=inputs_hash)
    write_manifest(manifest)
    return manifest


def compare_logits(onnx_logits: np.ndarray, torch_logits: np.ndarray, atol: float = PARITY_ATOL) -> float:
    """max |diff| of two batches of logits; ExportError when it exceeds `atol` or the labels differ."""
    diff = float(np.abs(onnx_logits - torch_logits).max()) if onnx_logits.size else 0.0
    if diff > atol:
        raise ExportError(f"ONNX Runtime disagrees with PyTorch (max |diff| {diff:.2e} > {atol}); "
                          f"report this with the run's config.yaml")
    flipped = int((onnx_logits.argmax(1) != torch_logits.argmax(1)).sum())
    if flipped:
        raise ExportError(f"ONNX Runtime and PyTorch predict different labels for {flipped} of "
                          f"{len(torch_logits)} images although their logits agree within {atol} (max |diff| "
                          f"{diff:.2e}): near-ties; report this with the run's config.yaml")
    return diff


@torch.no_grad()
def parity_check(net, manifest: Manifest, test_batches: Iterable[torch.Tensor]) -> dict:
    """ONNX Runtime vs PyTorch on every normalised batch: logits within PARITY_ATOL and identical labels."""
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sessions = [ort.InferenceSession(str(s.file), opts, providers=["CPUExecutionProvider"])
                for s in manifest.students]
    head = ort.InferenceSession(str(manifest.head_file), opts, providers=["CPUExecutionProvider"])
    net = net.eval()
    worst, images = 0.0, 0
    for x in test_batches:
        ref = net(x).numpy()
        feats = [s.run(None, {"image": x.numpy()})[0] for s in sessions]
        logits = head.run(None, {"features": np.concatenate(feats, axis=1)})[0]
        worst = max(worst, compare_logits(logits, ref))
        images += len(x)
    return {"images": images, "max_abs_diff": worst, "atol": PARITY_ATOL}
