"""Run the stages in order into a run directory, skipping those whose artifact is up to date."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

from .config import Config
from .errors import ReportedError
from .rundir import RunDir
from .stages import STAGES, Stage, stage

_IN_STAGE_PROCESS = "NONN_STAGE_PROCESS"


def init_run(out: str | Path, cfg: Config) -> RunDir:
    """Create (or reuse) a run directory and write the fully resolved configuration into it.

    Names that can be checked without work (dataset, architectures) are checked first, so a typo writes nothing.
    """
    from .data.registry import get_entry
    from .models import validate_name
    get_entry(cfg.data.name)
    validate_name(cfg.teacher.arch)
    validate_name(cfg.students.arch)
    rd = RunDir(Path(out))
    rd.path.mkdir(parents=True, exist_ok=True)
    rd.save_config(cfg)
    return rd


def stale_reason(rd: RunDir, st: Stage, **options) -> str | None:
    """Why the stage must run, or None when its artifact holds the hash of its current inputs. A stage module
    may answer this itself with its own `stale_reason(rd, **options)` (export also checks its files)."""
    own = getattr(st.module, "stale_reason", None)
    if own is not None:
        return own(rd, **options)
    return None if rd.up_to_date(rd.artifact(st.name), st.module.inputs_hash(rd, **options)) else "inputs changed"


def run_stage(rd: RunDir, name: str, *, force: bool = False, log: Callable[[str], None] = print, **options) -> bool:
    """Run one stage unless its artifact was made from the same inputs; True when it ran.

    `options` go to the stage's run function (export takes check=False)."""
    st = stage(name)
    artifact = rd.artifact(name)
    if not force and stale_reason(rd, st, **options) is None:
        log(f"[{name}] {artifact} is up to date; skipped (--force reruns it)")
        return False
    log(f"[{name}] running ...")
    start = time.perf_counter()
    if st.trains and may_launch_processes(rd.load_config()) and _IN_STAGE_PROCESS not in os.environ:
        _run_in_own_process(rd, name)
    elif st.module.run(rd, log=log, **options) is False:
        return False  # a DDP worker process of a training stage: rank 0 writes the artifact
    log(f"[{name}] wrote {artifact} in {time.perf_counter() - start:.1f} s")
    return True


def may_launch_processes(cfg: Config) -> bool:
    """Whether Lightning may start worker processes (DDP and friends) for this trainer configuration."""
    t = cfg.trainer
    return t.strategy != "auto" or t.num_nodes != 1 or str(t.devices) not in ("1", "auto")


def _run_in_own_process(rd: RunDir, name: str) -> None:
    """Lightning's DDP launcher re-runs the current command once per extra rank, and only once per process.

    So each distributed training stage gets a process of its own, `nonn <stage> RUN_DIR --force`, whose
    workers exit after fit while rank 0 writes the artifact.
    """
    cmd = [sys.executable, "-m", "nonn.cli", name, str(rd.path), "--force"]
    proc = subprocess.run(cmd, env={**os.environ, _IN_STAGE_PROCESS: "1"})
    if proc.returncode == 2:
        raise ReportedError(f"stage {name} failed in its own process; its error is printed above")
    if proc.returncode != 0:
        raise RuntimeError(f"stage {name} failed with exit code {proc.returncode}: {' '.join(cmd)}")


def run_all(rd: RunDir, *, force: bool = False, log: Callable[[str], None] = print) -> dict:
    """Every stage in order, then the run's report.html; returns the metrics."""
    import json

    from .report import write_report
    for st in STAGES:
        if st.in_run:
            run_stage(rd, st.name, force=force, log=log)
    log(f"[report] wrote {write_report(rd.path)}")
    return json.loads(rd.metrics.read_text())


def run(out_dir: str | Path, config: Config | None = None, *, force: bool = False,
        log: Callable[[str], None] = print) -> dict:
    """`nonn run` from Python: every stage of `config` (defaults when None) into `out_dir`; returns the metrics."""
    from .config import load_config
    return run_all(init_run(out_dir, config if config is not None else load_config()), force=force, log=log)
