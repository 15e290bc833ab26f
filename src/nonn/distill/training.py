"""What both training stages share: the optimiser and schedule, the best-on-validation state, the Trainer."""

from __future__ import annotations

import copy
import logging
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import lightning as L
import torch
from torch import nn

from .epoch_log import EpochLog, stage_loggers
from .resume import CHECKPOINT_NAME, EpochCheckpoint, find_resume_point, remove_checkpoints


def sgd_cosine(module: L.LightningModule, params, lr: float, momentum: float, weight_decay: float):
    """SGD with Nesterov momentum and a per-step cosine schedule to zero, over the whole fit."""
    opt = torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=momentum > 0)
    total = max(1, int(module.trainer.estimated_stepping_batches))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 0.5 * (1 + math.cos(math.pi * min(step, total) / total)))
    return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


class BestState(L.Callback):
    """Keep a CPU copy of ``pl_module.net``'s weights at its best validation accuracy (ties: the later epoch)."""

    def __init__(self, monitor: str = "val_acc"):
        self.monitor = monitor
        self.best_score = -math.inf
        self.best_epoch = -1
        self.best_weights: dict[str, torch.Tensor] | None = None  # not state_dict: that is Callback's checkpoint hook

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        score = float(trainer.callback_metrics[self.monitor])
        if score >= self.best_score:
            self.best_score, self.best_epoch = score, trainer.current_epoch
            self.best_weights = {k: v.detach().to("cpu", copy=True) for k, v in pl_module.net.state_dict().items()}

    def state_dict(self) -> dict:
        """What a resumed stage needs to keep the best epoch it had already seen (saved in Lightning checkpoints)."""
        return {"monitor": self.monitor, "best_score": self.best_score, "best_epoch": self.best_epoch,
                "best_weights": self.best_weights}

    def load_state_dict(self, state: dict) -> None:
        self.best_score, self.best_epoch = float(state["best_score"]), int(state["best_epoch"])
        self.best_weights = state["best_weights"]


def quiet_lightning() -> None:
    """Lightning's start-up chatter (accelerator lines, tips, worker hints) says nothing a nonn user can act on."""
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero",
                 "lightning.pytorch.accelerators.cuda", "lightning.fabric.utilities.distributed"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for pattern in (".*does not have many workers.*", ".*GPU available but not used.*", ".*module\\(s\\) in eval mode.*",
                    ".*LeafSpec.*", ".*litlogger.*", ".*Experiment logs directory.*"):
        warnings.filterwarnings("ignore", pattern)


def build_trainer(trainer_cfg, max_epochs: int, callbacks: list[L.Callback], *, progress: bool = True,
                  logger: list | bool = False) -> L.Trainer:
    """A Lightning Trainer from the ``trainer`` config section: accelerator, devices, nodes and strategy."""
    quiet_lightning()
    return L.Trainer(
        accelerator=trainer_cfg.accelerator,
        devices=trainer_cfg.devices,
        num_nodes=trainer_cfg.num_nodes,
        strategy=trainer_cfg.strategy,
        precision=trainer_cfg.precision,
        max_epochs=max_epochs,
        callbacks=callbacks,
        logger=logger,
        enable_checkpointing=False,  # nonn's own EpochCheckpoint writes the resume checkpoint, atomically
        enable_model_summary=False,
        enable_progress_bar=progress,
        num_sanity_val_steps=0,
        log_every_n_steps=1,
        deterministic=False,
        use_distributed_sampler=True,
    )


@dataclass
class StageFiles:
    """Where a training stage keeps its resume checkpoint and its per-epoch logs, and how it says things."""

    name: str  # the stage, e.g. "teacher"
    checkpoint_dir: Path
    log_dir: Path
    inputs_hash: str | None = None  # a checkpoint made from other inputs is never resumed
    logger: str = "csv"  # or "tensorboard" (CSV as well)
    log: Callable[[str], None] = print


def is_rank_zero() -> bool:
    """Whether this process is rank 0 (or alone); known from the environment before any Trainer exists."""
    from lightning.pytorch.utilities.rank_zero import rank_zero_only
    return getattr(rank_zero_only, "rank", 0) == 0


def _echo(line: str) -> None:
    print(line, flush=True)  # beside the stages' own lines; progress bars, which these replace, draw on stderr


def fit(module: L.LightningModule, train, val, trainer_cfg, max_epochs: int, best: BestState,
        files: StageFiles | None = None, *, progress: bool = True) -> L.Trainer:
    """Fit `module`, keeping the best weights in `best`. With `files`: log every epoch (a printed line too
    when there is no progress bar), checkpoint every epoch, and resume from a checkpoint of the same inputs."""
    callbacks: list[L.Callback] = [best]
    loggers: list | bool = False
    ckpt_path = None
    if files is not None:
        rank_zero = is_rank_zero()  # a DDP worker starts after rank 0 has decided, and only reads
        point, why_not = find_resume_point(files.checkpoint_dir, files.inputs_hash, tidy=rank_zero)
        if rank_zero and point is not None:
            files.log(f"[{files.name}] resuming after epoch {point.epochs_done}/{max_epochs} from {point.path}")
        elif rank_zero and why_not is not None:
            files.log(f"[{files.name}] not resuming from {files.checkpoint_dir / CHECKPOINT_NAME}: {why_not}; "
                      f"starting at epoch 1")
            remove_checkpoints(files.checkpoint_dir)
        resume_epochs = point.epochs_done if point is not None else None
        loggers = stage_loggers(files.logger, files.log_dir, resume_epochs) if rank_zero else False
        callbacks += [EpochLog(files.name, echo=None if progress else _echo),
                      EpochCheckpoint(files.checkpoint_dir / CHECKPOINT_NAME, files.inputs_hash)]
        ckpt_path = str(point.path) if point is not None else None
    trainer = build_trainer(trainer_cfg, max_epochs, callbacks, progress=progress, logger=loggers)
    trainer.fit(module, train, val, ckpt_path=ckpt_path)
    return trainer


def accuracy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (logits.argmax(dim=1) == y).float().mean()


def frozen_copy(model: nn.Module) -> nn.Module:
    m = copy.deepcopy(model).eval()
    for p in m.parameters():
        p.requires_grad_(False)
    return m
