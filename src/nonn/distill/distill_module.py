"""Lightning module that trains the K NoNN students and head jointly against a frozen teacher.

Its forward for training returns ``(logits, {term: loss})`` so every term is logged.
"""

from __future__ import annotations

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import NonnError
from . import losses
from .batches import BatchPrep
from .nonn_model import NoNN
from .teacher_targets import TargetCache, TargetMaker
from .training import accuracy, frozen_copy, sgd_cosine


class TrainingCollapsed(NonnError):
    """A student's bridge output went to zero everywhere: it can never recover."""


class DistillModule(L.LightningModule):
    def __init__(self, net: NoNN, teacher: nn.Module, feature_module: str, groups: list[list[int]],
                 prep: BatchPrep, *, alpha: float, temperature: float, beta: float, at_form: str,
                 lr: float, momentum: float, weight_decay: float, teacher_views: int = 0,
                 train_images: torch.Tensor | None = None, view_seed: int = 0):
        """``teacher_views`` > 0 caches the teacher's targets for that many views of ``train_images`` before the
        first epoch (batches then carry dataset indices); 0 runs the teacher on every batch."""
        super().__init__()
        self.net, self.prep = net, prep
        self.teacher = frozen_copy(teacher)
        self.feature_module = feature_module
        if teacher_views > 0 and train_images is None:
            raise ValueError("teacher_views > 0 needs the training images")
        self.teacher_views, self.view_seed = teacher_views, view_seed
        self._train_images = train_images
        self.cache: TargetCache | None = None
        self._groups_list = [list(g) for g in groups]
        self._set_maker(None)
        self.k = len(groups)
        self.alpha, self.temperature, self.beta, self.at_form = alpha, temperature, beta, at_form
        self.lr, self.momentum, self.weight_decay = lr, momentum, weight_decay
        self._bridge_max: torch.Tensor | None = None

    def train(self, mode: bool = True):
        super().train(mode)
        self.teacher.eval()  # the teacher stays frozen, BN statistics included
        return self

    def _set_maker(self, maker: TargetMaker | None) -> None:
        # Kept out of the module tree: the teacher is already registered once, as self.teacher.
        object.__setattr__(self, "_maker", maker)

    @property
    def target_maker(self) -> TargetMaker:
        """The teacher with its feature hook, making (logits, AT target); exists between fit start and end."""
        if self._maker is None:
            raise RuntimeError("the teacher's targets are made while fitting; call trainer.fit or on_fit_start")
        return self._maker

    def on_fit_start(self) -> None:
        if self._maker is None:
            self._set_maker(TargetMaker(self.teacher, self.feature_module, self._groups_list, self.at_form,
                                        self.beta > 0))
        if self.teacher_views > 0 and self.cache is None:
            self.cache = TargetCache.build(self._maker, self._train_images, self.prep, self.teacher_views,
                                           self.view_seed, device=self.device)

    def on_fit_end(self) -> None:
        if self._maker is not None:
            self._maker.remove_hook()
            self._set_maker(None)

    def teacher_targets(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The teacher's logits and attention-transfer target for a normalised batch, computed now."""
        with torch.no_grad():
            return self.target_maker(x)

    def forward(self, x: torch.Tensor, y: torch.Tensor, targets: tuple[torch.Tensor, torch.Tensor] | None = None):
        """(logits, {term: loss}); ``targets`` are the teacher's (logits, AT target), computed here when None."""
        t_logits, t_at = self.teacher_targets(x) if targets is None else targets
        logits, maps = self.net(x, return_maps=True)
        terms = {
            "ce": (1 - self.alpha) * F.cross_entropy(logits, y),
            "kd": self.alpha * losses.kd_loss(logits, t_logits, self.temperature),
        }
        if self.beta > 0:
            if self.at_form == "spatial":
                at = losses.spatial_at_loss_to(maps, t_at)
            else:
                pooled = torch.cat([m.mean(dim=(2, 3)) for m in maps], dim=1)
                at = losses.at_distance(pooled, t_at)
            terms["at"] = self.beta / 2 * at
        return logits, terms

    def training_step(self, batch, _idx):
        if self.cache is not None:
            x, y, idx = batch
            x_in, t_logits, t_at = self.cache.lookup(x, idx, self.prep)
            logits, terms = self(x_in, y, (t_logits, t_at))
        else:
            x, y = batch[0], batch[1]
            logits, terms = self(self.prep(x, train=True), y)
        loss = sum(terms.values())
        n = len(y)
        # Epoch means go to the per-epoch record (EpochLog); step values only to the progress bar.
        for name, value in terms.items():
            self.log(f"loss_{name}", value, prog_bar=name != "ce", on_step=True, on_epoch=True, logger=False,
                     batch_size=n)
        self.log("loss", loss, on_step=False, on_epoch=True, logger=False, batch_size=n)
        self.log("train_acc", accuracy(logits.detach(), y), on_step=False, on_epoch=True, logger=False,
                 sync_dist=True, batch_size=n)
        return loss

    def on_validation_epoch_start(self) -> None:
        self._bridge_max = torch.zeros(self.k, device=self.device)

    def validation_step(self, batch, _idx):
        x, y = batch
        logits, maps = self.net(self.prep(x), return_maps=True)
        self._bridge_max = torch.maximum(self._bridge_max, torch.stack([m.detach().amax() for m in maps]))
        self.log("val_acc", accuracy(logits, y), prog_bar=True, sync_dist=True, logger=False, batch_size=len(y))

    def on_validation_epoch_end(self) -> None:
        bridge_max = self.trainer.strategy.reduce(self._bridge_max, reduce_op="max")
        dead = [k for k in range(self.k) if float(bridge_max[k]) == 0.0]
        if dead:
            raise TrainingCollapsed(
                f"student(s) {dead} collapsed: their bridge outputs are zero on every validation image "
                f"(the attention-transfer term dominated); lower students.beta (now {self.beta:g}) "
                f"or set students.at_form=pooled")

    def configure_optimizers(self):
        return sgd_cosine(self, self.net.parameters(), self.lr, self.momentum, self.weight_decay)
