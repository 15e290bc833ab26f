"""Teacher stage: train the teacher (best on validation) or load a user's state_dict, into teacher.pt."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from ..distill.classifier_module import ClassifierModule
from ..distill.training import BestState, build_trainer
from ..errors import CheckpointError
from ..models import create_model, probe_feature_shape
from ..rundir import RunDir, file_sha256, save_checkpoint
from .common import accuracy_on, batch_prep, dataset_for, loader, seed_everything


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


def run(rd: RunDir) -> None:
    cfg = rd.load_config()
    tc = cfg.teacher
    seed_everything(tc.seed)
    ds = dataset_for(cfg)
    model = create_model(tc.arch, num_classes=ds.num_classes, in_channels=ds.input_shape[0])
    feature_shape = probe_feature_shape(model, tc.feature_module, ds.input_shape)  # fails early on a bad path
    prep = batch_prep(ds, cfg)
    if tc.weights:
        _load_user_weights(model, tc.weights)
        source, best_epoch, world_size = "loaded", None, 1
    else:
        best = BestState()
        module = ClassifierModule(model, prep, lr=tc.lr, momentum=tc.momentum, weight_decay=tc.weight_decay)
        trainer = build_trainer(cfg.trainer, tc.epochs, [best], progress=cfg.trainer.show_progress)
        if tc.epochs > 0:
            trainer.fit(module, loader(ds.train, cfg.data.batch_size, shuffle=True),
                        loader(ds.val, cfg.data.batch_size, shuffle=False))
            if trainer.global_rank != 0:
                sys.exit(0)  # DDP workers end here; rank 0 writes the artifact and goes on
            model.load_state_dict(best.best_weights)
        source, best_epoch, world_size = "trained", best.best_epoch, trainer.world_size
    model = model.cpu().eval()
    save_checkpoint(rd.teacher, {
        "state_dict": model.state_dict(),
        "arch": tc.arch,
        "num_classes": ds.num_classes,
        "in_channels": ds.input_shape[0],
        "input_shape": list(ds.input_shape),
        "feature_module": tc.feature_module,
        "feature_shape": list(feature_shape),
        "val_acc": accuracy_on(model, ds.val, prep),
        "best_epoch": best_epoch,
        "source": source,
        "world_size": world_size,
        "inputs_hash": inputs_hash(rd),
    })
