"""Run the stages in order into a run directory, skipping those whose artifact is up to date."""

from __future__ import annotations

import importlib
import time
from pathlib import Path
from typing import Callable

from .config import Config
from .rundir import RunDir

STAGES = ("teacher", "partition", "students", "evaluate")
_ARTIFACT = {"teacher": "teacher", "partition": "partition", "students": "students", "evaluate": "metrics"}


def init_run(out: str | Path, cfg: Config) -> RunDir:
    """Create (or reuse) a run directory and write the fully resolved configuration into it."""
    rd = RunDir(Path(out))
    rd.path.mkdir(parents=True, exist_ok=True)
    rd.save_config(cfg)
    return rd


def run_stage(rd: RunDir, name: str, *, force: bool = False, log: Callable[[str], None] = print) -> bool:
    """Run one stage unless its artifact was made from the same inputs; True when it ran."""
    stage = importlib.import_module(f"nonn.stages.{name}")
    artifact = getattr(rd, _ARTIFACT[name])
    if not force and rd.up_to_date(artifact, stage.inputs_hash(rd)):
        log(f"[{name}] {artifact} is up to date; skipped (--force reruns it)")
        return False
    log(f"[{name}] running ...")
    start = time.perf_counter()
    stage.run(rd)
    log(f"[{name}] wrote {artifact} in {time.perf_counter() - start:.1f} s")
    return True


def run_all(rd: RunDir, *, force: bool = False, log: Callable[[str], None] = print) -> dict:
    """Every stage in order; returns the metrics."""
    import json
    for name in STAGES:
        run_stage(rd, name, force=force, log=log)
    return json.loads(rd.metrics.read_text())
