"""nonn: compress a large CNN into a Network of Neural Networks for distributed IoT inference.

The Python API (names load on first use, so `import nonn.edge` on a board never pulls in torch):
- `run(out_dir, config)`: every stage into a run directory, as `nonn run` does; returns the metrics;
- `load_config(path=None, overrides={...})`: the typed configuration;
- the stages' in-memory functions, for your own teacher module and DataLoaders: `train_teacher`,
  `partition_teacher`, `distill_students`, `evaluate_nonn`, `export_nonn`;
- `nonn.models` (create_model, list_models, register_model) and `nonn.data` (load_dataset, register_dataset).
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_API = {
    "run": "nonn.pipeline",
    "init_run": "nonn.pipeline",
    "run_stage": "nonn.pipeline",
    "load_config": "nonn.config",
    "Config": "nonn.config",
    "NonnError": "nonn.errors",
    "STAGES": "nonn.stages",
    "train_teacher": "nonn.stages.teacher",
    "partition_teacher": "nonn.stages.partition",
    "distill_students": "nonn.stages.students",
    "evaluate_nonn": "nonn.stages.evaluate",
    "export_nonn": "nonn.export",
    "export_checked": "nonn.export",
}

__all__ = ["__version__", *_API]


def __getattr__(name: str):
    if name in _API:
        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'nonn' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
