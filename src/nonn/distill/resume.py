"""Resume a training stage after a kill: a Lightning checkpoint at the end of every epoch, written atomically.

The checkpoint is Lightning's own (model, optimiser, schedule, loop state, callbacks' state such as the
best-on-validation weights) plus, under ``"nonn"``, the global RNG states and the hash of the inputs the
stage was started from, so a checkpoint of other inputs is never resumed.
"""

from __future__ import annotations

import os
import random
import shutil
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import numpy as np
import torch

CHECKPOINT_NAME = "last.ckpt"
KEY = "nonn"


def rng_states() -> dict:
    """The global RNG states (torch, numpy, Python) as tensors and plain types, loadable with weights_only=True."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, py_state, py_gauss = random.getstate()
    return {"torch": torch.get_rng_state(),
            "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(gauss)],
            "python": [version, list(py_state), py_gauss]}


def set_rng_states(states: dict) -> None:
    torch.set_rng_state(states["torch"])
    kind, keys, pos, has_gauss, gauss = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    version, py_state, py_gauss = states["python"]
    random.setstate((version, tuple(py_state), py_gauss))


class EpochCheckpoint(L.Callback):
    """Write ``path`` at the end of every training epoch (after validation): temporary name, then rename.

    Under DDP every rank takes part in the save (Lightning gathers what it needs); rank 0 writes. On resume
    the saved RNG states are put back just before the first resumed epoch, so its shuffling and augmentation
    are those the uninterrupted run would have drawn."""

    def __init__(self, path: Path, inputs_hash: str | None = None):
        self.path = Path(path)
        self.inputs_hash = inputs_hash
        self._rng_to_restore: dict | None = None

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        if trainer.is_global_zero:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        trainer.save_checkpoint(tmp, weights_only=False)  # collective: ends with a barrier
        if trainer.is_global_zero:
            os.replace(tmp, self.path)

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        checkpoint[KEY] = {"inputs_hash": self.inputs_hash, "rng": rng_states()}

    def on_load_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        self._rng_to_restore = checkpoint.get(KEY, {}).get("rng")

    def on_train_start(self, trainer, pl_module) -> None:
        if self._rng_to_restore is not None:
            set_rng_states(self._rng_to_restore)
            self._rng_to_restore = None


@dataclass
class ResumePoint:
    """A checkpoint to resume from: its path and how many epochs it completed."""

    path: Path
    epochs_done: int


def find_resume_point(checkpoint_dir: Path, inputs_hash: str | None, *,
                      tidy: bool = True) -> tuple[ResumePoint | None, str | None]:
    """(the checkpoint to resume, None) or (None, why an existing one is not used); (None, None) when there is none.

    With `tidy`, leftover temporary files of a save that was killed are removed."""
    checkpoint_dir = Path(checkpoint_dir)
    for leftover in checkpoint_dir.glob(f".{CHECKPOINT_NAME}.tmp*") if tidy else ():
        leftover.unlink(missing_ok=True)
    path = checkpoint_dir / CHECKPOINT_NAME
    if not path.exists():
        return None, None
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        saved_hash, epoch = ckpt[KEY]["inputs_hash"], int(ckpt["epoch"])
    except Exception as e:  # noqa: BLE001 - any unreadable checkpoint is started over, never trusted
        return None, f"it is unreadable ({type(e).__name__})"
    if saved_hash != inputs_hash:
        return None, "it was made from other inputs (configuration or input artifacts changed)"
    return ResumePoint(path, epoch + 1), None


def remove_checkpoints(checkpoint_dir: Path) -> None:
    """Delete a finished stage's checkpoints (and the checkpoints/ folder once it is empty)."""
    checkpoint_dir = Path(checkpoint_dir)
    shutil.rmtree(checkpoint_dir, ignore_errors=True)
    parent = checkpoint_dir.parent
    if parent.name == "checkpoints" and parent.is_dir() and not any(parent.iterdir()):
        parent.rmdir()
