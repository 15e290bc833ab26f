"""Every stage of a run, declared once: its name, the artifact it writes, and what the CLI says of it.

Each stage is a module `nonn.stages.<name>` with two layers:
- a pure in-memory function (`train_teacher`, `partition_teacher`, `distill_students`, `evaluate_nonn`;
  for export, `nonn.export.export_checked`) that takes modules and loaders and returns objects;
- `inputs_hash(rd)` and `run(rd, log)`, the run-directory wrapper that loads the inputs, calls it, and
  saves the artifact with the hash of what it was made from (`nonn.pipeline.run_stage` skips a stage
  whose artifact holds the current hash; a module may define its own `stale_reason(rd)`, as export
  does to check its files' SHA-256 too).

Nothing here imports torch: the CLI builds its parser from this table.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType


@dataclass(frozen=True)
class Stage:
    name: str
    artifact: str  # the file it writes, relative to the run directory
    help: str
    trains: bool = False  # a training stage: under DDP it runs in a process of its own
    in_run: bool = True  # part of `nonn run`

    @property
    def module(self) -> ModuleType:
        return importlib.import_module(f"nonn.stages.{self.name}")


STAGES: tuple[Stage, ...] = (
    Stage("teacher", "teacher.pt", "train or load the teacher", trains=True),
    Stage("partition", "partition.json", "build the filter graph and partition it"),
    Stage("students", "students.pt", "train the K students jointly", trains=True),
    Stage("evaluate", "metrics.json", "test accuracy, params, MACs, bytes sent"),
    Stage("export", "onnx/manifest.json", "export the students and head to ONNX with a manifest (parity-checked)",
          in_run=False),
)

_BY_NAME = {s.name: s for s in STAGES}


def stage(name: str) -> Stage:
    """The stage called `name`; KeyError names the stages there are."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(f"no stage {name!r}; stages are {', '.join(_BY_NAME)}") from None


def maker_of(artifact: str) -> Stage | None:
    """The stage that writes `artifact` (a path relative to the run directory), if any."""
    return next((s for s in STAGES if s.artifact == artifact), None)
