"""The run directory: where each stage reads its inputs and writes its artifact, and how staleness is told."""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from . import atomic
from .config import Config, load_config
from .errors import CheckpointError, ConfigError
from .stages import maker_of, stage


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_checkpoint(path: Path, obj: dict[str, Any]) -> None:
    """torch.save to a temporary name, then rename: a killed stage never leaves a complete-looking file."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic.write_bytes(path, buf.getvalue())


def load_checkpoint(path: Path, stage: str) -> dict[str, Any]:
    """torch.load with weights_only=True; missing or corrupt files name the stage that remakes them."""
    if not path.exists():
        raise CheckpointError(f"{path} does not exist; run `nonn {stage} {path.parent}` first")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for corrupt files
        raise CheckpointError(f"{path} is corrupt or not a nonn checkpoint ({type(e).__name__}); delete it and "
                              f"rerun `nonn {stage} {path.parent}`") from None
    if not isinstance(obj, dict) or "state_dict" not in obj:
        raise CheckpointError(f"{path} is not a nonn checkpoint (no state_dict); delete it and rerun "
                              f"`nonn {stage} {path.parent}`")
    return obj


@dataclass
class RunDir:
    path: Path

    @property
    def config_path(self) -> Path:
        return self.path / "config.yaml"

    def artifact(self, name: str) -> Path:
        """The artifact of the stage called `name` (see nonn.stages.STAGES)."""
        return self.path / stage(name).artifact

    @property
    def teacher(self) -> Path:
        return self.artifact("teacher")

    @property
    def filter_graph(self) -> Path:
        return self.path / "filter_graph.npz"

    @property
    def partition(self) -> Path:
        return self.artifact("partition")

    @property
    def partition_plot(self) -> Path:
        return self.path / "plots" / "partition.png"

    @property
    def students(self) -> Path:
        return self.artifact("students")

    @property
    def metrics(self) -> Path:
        return self.artifact("evaluate")

    @property
    def onnx_dir(self) -> Path:
        return self.artifact("export").parent

    @property
    def manifest(self) -> Path:
        return self.artifact("export")

    def checkpoint_dir(self, stage_name: str) -> Path:
        """Where a training stage keeps its resume checkpoint while it runs."""
        return self.path / "checkpoints" / stage_name

    def log_dir(self, stage_name: str) -> Path:
        """A training stage's per-epoch logs (metrics.csv; TensorBoard events when asked)."""
        return self.path / "logs" / stage_name

    def curves_plot(self, stage_name: str) -> Path:
        return self.path / "plots" / f"training_{stage_name}.png"

    @property
    def report(self) -> Path:
        return self.path / "report.html"

    def load_config(self) -> Config:
        if not self.config_path.exists():
            raise ConfigError(f"{self.path} is not a run directory (no config.yaml); create one with "
                              f"`nonn run --out {self.path}`")
        return load_config(self.config_path)

    def save_config(self, cfg: Config) -> None:
        atomic.write_text(self.config_path, cfg.to_yaml())

    def stored_hash(self, artifact: Path) -> str | None:
        """The inputs hash stored inside an artifact, or None when it is missing or unreadable."""
        if not artifact.exists():
            return None
        try:
            if artifact.suffix == ".pt":
                return torch.load(artifact, map_location="cpu", weights_only=True).get("inputs_hash")
            if artifact.suffix == ".json":
                return json.loads(artifact.read_text()).get("inputs_hash")
        except Exception:
            return None
        return None

    def input_sha256(self, artifact: Path) -> str:
        """The hash of a stage's input artifact; a missing one names the stage that makes it."""
        if not artifact.exists():
            maker = maker_of(artifact.relative_to(self.path).as_posix()) if artifact.is_relative_to(self.path) else None
            raise CheckpointError(f"{artifact} does not exist; run `nonn {maker.name if maker else 'run'} "
                                  f"{self.path}` first")
        return file_sha256(artifact)

    def up_to_date(self, artifact: Path, inputs_hash: str) -> bool:
        return self.stored_hash(artifact) == inputs_hash
