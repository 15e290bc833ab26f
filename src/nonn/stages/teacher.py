"""Teacher stage: train the teacher (best on validation) or load a user's state_dict, into teacher.pt.

`train_teacher` is the in-memory layer (any module, any loaders); `run` the run-directory wrapper."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from ..config import Config
from ..distill.batches import IdentityPrep
from ..distill.classifier_module import ClassifierModule
from ..distill.training import BestState, StageFiles, fit
from ..errors import CheckpointError
from ..models import create_model, probe_feature_shape
from ..rundir import RunDir, file_sha256, save_checkpoint
from .common import accuracy_on, batch_prep, dataset_for, finish_training_files, loader, seed_everything, training_files


def inputs_hash(rd: RunDir) -> str:
    cfg = rd.load_config()
    weights = cfg.teacher.weights
    extra = file_sha256(Path(weights)) if weights and Path(weights).exists() else weights
    return cfg.slice_hash("data", "teacher", extra={"weights": extra, "trainer": cfg.trainer.training_settings()})


def _load_user_weights(model: torch.nn.Module, path: str) -> None:
    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"teacher weights {p} do not exist; fix teacher.weights or leave it null to train")
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointError(f"teacher weights {p} are corrupt or not a state_dict ({type(e).__name__}); "
                              f"save them with torch.save(model.state_dict(), path)") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"teacher weights {p} do not fit teacher.arch ({first}); set teacher.arch to the "
                              f"architecture they were saved from") from None


@dataclass
class TrainedTeacher:
    """A trained (or loaded) teacher: the module in eval mode on the CPU, and how it was made."""

    model: torch.nn.Module
    best_epoch: int | None
    world_size: int = 1
    is_worker: bool = False  # a DDP rank other than 0: its copy is not the one to keep


def train_teacher(model: torch.nn.Module, train: DataLoader, val: DataLoader, cfg: Config | None = None, *,
                  prep=None, files: StageFiles | None = None) -> TrainedTeacher:
    """Train `model` with cross-entropy (SGD, cosine schedule, cfg.teacher's settings) on batches of (x, y),
    keeping its weights at the best validation accuracy.

    `prep(x, train=...)` turns a batch into the model's input (default: the batch as it comes); `files`
    (optional) is where per-epoch logs and the resume checkpoint go."""
    cfg = cfg or Config()
    tc = cfg.teacher
    if tc.epochs == 0:
        return TrainedTeacher(model.cpu().eval(), None)
    best = BestState()
    module = ClassifierModule(model, prep or IdentityPrep(), lr=tc.lr, momentum=tc.momentum,
                              weight_decay=tc.weight_decay)
    trainer = fit(module, train, val, cfg.trainer, tc.epochs, best, files, progress=cfg.trainer.show_progress)
    if trainer.global_rank != 0:
        return TrainedTeacher(model, None, trainer.world_size, is_worker=True)
    model.load_state_dict(best.best_weights)
    return TrainedTeacher(model.cpu().eval(), best.best_epoch, trainer.world_size)


def run(rd: RunDir, log=print) -> bool:
    """Train and write the artifact; False in a DDP worker process, which writes nothing."""
    cfg = rd.load_config()
    tc = cfg.teacher
    seed_everything(tc.seed)
    ds = dataset_for(cfg)
    model = create_model(tc.arch, num_classes=ds.num_classes, in_channels=ds.input_shape[0])
    feature_shape = probe_feature_shape(model, tc.feature_module, ds.input_shape)  # fails early on a bad path
    prep = batch_prep(ds, cfg)
    if tc.weights:
        _load_user_weights(model, tc.weights)
        trained, source = TrainedTeacher(model.eval(), None), "loaded"
    else:
        files = training_files(rd, "teacher", inputs_hash(rd), log)
        trained = train_teacher(model, loader(ds.train, cfg.data.batch_size, shuffle=True, seed=tc.seed),
                                loader(ds.val, cfg.data.batch_size, shuffle=False), cfg, prep=prep, files=files)
        source = "trained"
        if trained.is_worker:
            return False  # a DDP worker: rank 0 writes the artifact
    model = trained.model
    save_checkpoint(rd.teacher, {
        "state_dict": model.state_dict(),
        "arch": tc.arch,
        "num_classes": ds.num_classes,
        "in_channels": ds.input_shape[0],
        "input_shape": list(ds.input_shape),
        "feature_module": tc.feature_module,
        "feature_shape": list(feature_shape),
        "val_acc": accuracy_on(model, ds.val, prep),
        "best_epoch": trained.best_epoch,
        "source": source,
        "world_size": trained.world_size,
        "inputs_hash": inputs_hash(rd),
    })
    if source == "trained":
        finish_training_files(rd, files, cfg)
    return True
