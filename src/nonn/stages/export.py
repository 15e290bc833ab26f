"""Export stage: the students and head to ONNX in RUN_DIR/onnx, with a manifest, parity-checked on the test split.

The ONNX mechanics are `nonn.export` (the in-memory layer); this is the run-directory wrapper.
"""

from __future__ import annotations

import json

from ..edge.errors import EdgeError
from ..edge.manifest import FORMAT, load_manifest
from ..rundir import RunDir, file_sha256
from .common import batch_prep, dataset_for, load_students

PARITY_BATCH = 256


def inputs_hash(rd: RunDir, check: bool = True, students_sha256: str | None = None) -> str:
    """The students' SHA-256, the manifest format, that nodes take uint8 pixels, and whether parity was checked."""
    students = students_sha256 or rd.input_sha256(rd.students)
    return rd.load_config().slice_hash(extra={"students": students, "format": FORMAT, "node_pixels": True,
                                              "check": check})


def stale_reason(rd: RunDir, check: bool = True) -> str | None:
    """Why RUN_DIR/onnx must be exported again, or None when it is up to date and whole (the pipeline asks
    this instead of comparing inputs hashes alone, since the ONNX files beside the manifest can change)."""
    students = rd.input_sha256(rd.students)
    try:
        raw = json.loads(rd.manifest.read_text())
        if (raw.get("source") or {}).get("students_sha256") != students:
            return "it was made from another students.pt"
        if "node_pixels" not in raw:
            return "it predates nodes that take uint8 pixels (a quarter of the bytes on each link)"
        if raw.get("inputs_hash") != inputs_hash(rd, check, students):
            return "it was made with other export settings"
        load_manifest(rd.manifest, verify=True)
    except (OSError, ValueError, AttributeError):
        return "there is no readable manifest"
    except EdgeError as exc:
        return f"it does not verify ({exc})"
    return None



def run(rd: RunDir, log=print, check: bool = True) -> None:
    cfg = rd.load_config()
    net, ckpt = load_students(rd)
    ds = dataset_for(cfg)
    prep = batch_prep(ds, cfg)
    batches = (prep(ds.test.x[i:i + PARITY_BATCH]) for i in range(0, len(ds.test.y), PARITY_BATCH))
    from ..export import export_checked
    export_checked(net, rd.onnx_dir, batches, input_shape=ds.input_shape, mean=ds.mean, std=ds.std,
                   classes=ds.classes, archs=ckpt["archs"], log=log, check=check,
                   source={"run": str(rd.path), "students_sha256": file_sha256(rd.students)},
                   inputs_hash=inputs_hash(rd, check))
