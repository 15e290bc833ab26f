"""`nonn export RUN_DIR --int8`: int8 students in RUN_DIR/onnx-int8, beside the fp32 export they are made from.

The quantization mechanics are `nonn.quantize`; this is the run-directory wrapper. It is not a pipeline stage of
its own: it follows the fp32 export (run first when stale) and has its own staleness rule, the fp32 files it was
quantized from plus its own settings, so a new fp32 export makes the int8 one stale too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..edge.errors import EdgeError
from ..edge.manifest import FORMAT, Manifest, load_manifest
from ..quantize import (DEFAULT_CALIBRATION_IMAGES, DEFAULT_CALIBRATION_METHOD, DEFAULT_MAX_DROP_POINTS,
                        QuantizationError, calibration_sample, export_int8)
from ..rundir import RunDir
from .common import batch_prep, dataset_for
from .sizing import budget_of

INT8_DIR = "onnx-int8"
CHECK_BATCH = 256


@dataclass(frozen=True)
class Int8Settings:
    calibration_images: int = DEFAULT_CALIBRATION_IMAGES
    calibration_method: str = DEFAULT_CALIBRATION_METHOD
    calibration_seed: int = 0
    max_drop_points: float = DEFAULT_MAX_DROP_POINTS

    def __post_init__(self):
        if self.calibration_images < 1:
            raise QuantizationError(f"--calibration-images must be at least 1, got {self.calibration_images}")
        if not self.max_drop_points >= 0:
            raise QuantizationError(f"--max-drop must be a number of accuracy points >= 0, got {self.max_drop_points}")


def int8_manifest_path(rd: RunDir) -> Path:
    return rd.path / INT8_DIR / "manifest.json"


def inputs_hash(rd: RunDir, fp32: Manifest, settings: Int8Settings) -> str:
    """The fp32 files quantized (students and head), the manifest format and the int8 settings."""
    files = [s.sha256 for s in fp32.students] + [fp32.head_sha256]
    return rd.load_config().slice_hash(extra={"fp32": files, "format": FORMAT, "int8": vars(settings)})


def stale_reason(rd: RunDir, settings: Int8Settings) -> str | None:
    """Why RUN_DIR/onnx-int8 must be made again, or None when it is up to date and whole."""
    path = int8_manifest_path(rd)
    try:
        fp32 = load_manifest(rd.manifest, verify=False)
        raw = json.loads(path.read_text())
        if raw.get("inputs_hash") != inputs_hash(rd, fp32, settings):
            return "it was made from other fp32 files or with other int8 settings"
        load_manifest(path, verify=True)
    except (OSError, ValueError, AttributeError):
        return "there is no readable int8 manifest"
    except EdgeError as exc:
        return f"it does not verify ({exc})"
    return None


def run(rd: RunDir, settings: Int8Settings = Int8Settings(), *, force: bool = False, log=print) -> Path:
    """Quantize the run's fp32 students (export them first with `nonn export`), calibrated on a seeded sample of
    the validation split, checked on the test split; the int8 manifest's path."""
    fp32 = load_manifest(rd.manifest, verify=True)
    reason = stale_reason(rd, settings)
    path = int8_manifest_path(rd)
    if not force and reason is None:
        log(f"[export] int8: {path} is up to date")
        return path
    cfg = rd.load_config()
    ds = dataset_for(cfg)
    prep = batch_prep(ds, cfg)
    index = calibration_sample(len(ds.val.y), settings.calibration_images, settings.calibration_seed)
    calibration = prep(ds.val.x[index]).numpy()
    log(f"[export] int8: calibrating on {len(index)} validation images (seed {settings.calibration_seed}, "
        f"{settings.calibration_method})")
    test = ((prep(ds.test.x[i:i + CHECK_BATCH]).numpy(), ds.test.y[i:i + CHECK_BATCH].numpy())
            for i in range(0, len(ds.test.y), CHECK_BATCH))
    info = {"split": "validation", "seed": settings.calibration_seed, "of": len(ds.val.y),
            "rule": "numpy default_rng(seed).choice without replacement, sorted"}
    export_int8(fp32, path.parent, calibration, test, calibration_info=info, method=settings.calibration_method,
                max_drop_points=settings.max_drop_points, inputs_hash=inputs_hash(rd, fp32, settings),
                budget_bytes=cfg.budget.memory and budget_of(cfg).memory_bytes, log=log)
    return path
