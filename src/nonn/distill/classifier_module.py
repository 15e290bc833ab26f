"""Lightning module that trains one classifier (the teacher) with cross-entropy."""

from __future__ import annotations

import lightning as L
import torch.nn.functional as F
from torch import nn

from .batches import BatchPrep
from .training import accuracy, sgd_cosine


class ClassifierModule(L.LightningModule):
    def __init__(self, net: nn.Module, prep: BatchPrep, *, lr: float, momentum: float, weight_decay: float):
        super().__init__()
        self.net, self.prep = net, prep
        self.lr, self.momentum, self.weight_decay = lr, momentum, weight_decay

    def training_step(self, batch, _idx):
        x, y = batch
        logits = self.net(self.prep(x, train=True))
        loss = F.cross_entropy(logits, y)
        # Epoch means go to the per-epoch record (EpochLog); step values only to the progress bar.
        self.log("loss", loss, prog_bar=True, on_step=True, on_epoch=True, logger=False, batch_size=len(y))
        self.log("train_acc", accuracy(logits.detach(), y), on_step=False, on_epoch=True, logger=False,
                 sync_dist=True, batch_size=len(y))
        return loss

    def validation_step(self, batch, _idx):
        x, y = batch
        logits = self.net(self.prep(x))
        self.log("val_acc", accuracy(logits, y), prog_bar=True, sync_dist=True, logger=False, batch_size=len(y))

    def configure_optimizers(self):
        return sgd_cosine(self, self.net.parameters(), self.lr, self.momentum, self.weight_decay)
