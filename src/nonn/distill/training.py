"""What both training stages share: the optimiser and schedule, the best-on-validation state, the Trainer."""

from __future__ import annotations

import copy
import logging
import math
import warnings

import lightning as L
import torch
from torch import nn


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


def quiet_lightning() -> None:
    """Lightning's start-up chatter (accelerator lines, tips, worker hints) says nothing a nonn user can act on."""
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero",
                 "lightning.pytorch.accelerators.cuda", "lightning.fabric.utilities.distributed"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for pattern in (".*does not have many workers.*", ".*GPU available but not used.*", ".*module\\(s\\) in eval mode.*",
                    ".*LeafSpec.*", ".*litlogger.*"):
        warnings.filterwarnings("ignore", pattern)


def build_trainer(trainer_cfg, max_epochs: int, callbacks: list[L.Callback], *, progress: bool = True) -> L.Trainer:
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
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        enable_progress_bar=progress,
        num_sanity_val_steps=0,
        log_every_n_steps=1,
        deterministic=False,
        use_distributed_sampler=True,
    )


def accuracy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (logits.argmax(dim=1) == y).float().mean()


def frozen_copy(model: nn.Module) -> nn.Module:
    m = copy.deepcopy(model).eval()
    for p in m.parameters():
        p.requires_grad_(False)
    return m
