"""The frozen teacher's loss targets: computed live on every batch, or once for a few fixed augmentation views.

The student stage needs from the teacher only its logits and the attention-transfer targets (K spatial maps of
H·W values, or the pooled channels in partition order): a few hundred numbers per image. With
``students.teacher_views = V`` each training image gets V augmentation views drawn once (seeded; every distinct
view when there are at most V, which is then exactly the live distribution). The teacher runs over the V views
before the first epoch; every epoch then draws one of the V views per image and reads its targets. So the
teacher's forward pass, about 60 % of a student epoch's time on CPU, is paid V times in all instead of once
per epoch.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from ..data import AugmentSpec
from ..data.augment import crop_and_flip
from ..models import FeatureHook
from . import losses


class TargetMaker(nn.Module):
    """Teacher forward -> (logits, attention-transfer target); the target is an empty tensor when beta is 0."""

    def __init__(self, teacher: nn.Module, feature_module: str, groups: list[list[int]], at_form: str,
                 with_at: bool):
        super().__init__()
        self.teacher = teacher
        self.hook = FeatureHook(teacher, feature_module)
        self.groups = [torch.tensor(g, dtype=torch.long) for g in groups]
        self.order = torch.tensor([i for g in groups for i in g], dtype=torch.long)
        self.at_form, self.with_at = at_form, with_at

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.teacher(x)
        t_map = self.hook.output
        if not self.with_at:
            return logits, logits.new_zeros((x.shape[0], 0))
        if self.at_form == "spatial":
            return logits, losses.spatial_at_targets(t_map, [g.to(x.device) for g in self.groups])
        return logits, losses.pooled_at_targets(t_map, self.order.to(x.device))

    def remove_hook(self) -> None:
        self.hook.remove()


def fast_inference(maker: TargetMaker, example: torch.Tensor):
    """On CPU, the maker traced and frozen (BN folded into the convolutions): about 1.4x eager here.

    A teacher that cannot be traced (Python control flow on values) runs eagerly, with a warning.
    """
    if example.device.type != "cpu":
        return maker
    try:
        with torch.no_grad():
            traced = torch.jit.trace(maker, example, check_trace=False)
            return torch.jit.optimize_for_inference(torch.jit.freeze(traced.eval()))
    except Exception as err:  # noqa: BLE001 - any tracing failure only costs speed
        warnings.warn(f"the teacher could not be traced ({type(err).__name__}: {err}); its targets are made "
                      "eagerly, which is slower", stacklevel=2)
        return maker


class TargetCache:
    """Teacher targets for V fixed augmentation views of every training image, made once."""

    def __init__(self, top: torch.Tensor, left: torch.Tensor, flip: torch.Tensor, logits: torch.Tensor,
                 at: torch.Tensor, pad: int):
        self.top, self.left, self.flip = top, left, flip  # N x V each
        self.logits, self.at = logits, at  # N x V x classes, N x V x (K x HW | C | 0)
        self.pad = pad

    @property
    def views(self) -> int:
        return self.top.shape[1]

    @classmethod
    @torch.no_grad()
    def build(cls, maker: TargetMaker, images: torch.Tensor, prep, views: int, seed: int,
              batch_size: int = 128, device: torch.device | str = "cpu") -> "TargetCache":
        """Run the teacher over ``views`` seeded views of every uint8 image in ``images`` (N x C x H x W)."""
        spec: AugmentSpec | None = prep.augment
        n = images.shape[0]
        pad = 0 if spec is None else spec.pad  # no augmentation: one view, the image itself
        span = 2 * pad + 1
        flips = 2 if spec is not None and spec.flip else 1
        if views >= span * span * flips:  # every distinct view: the same distribution as the live teacher's
            grid = torch.cartesian_prod(torch.arange(span), torch.arange(span), torch.arange(flips))
            views = grid.shape[0]
            top, left = grid[:, 0].expand(n, views), grid[:, 1].expand(n, views)
            flip = grid[:, 2].bool().expand(n, views)
        else:
            gen = torch.Generator().manual_seed(int(seed) * 1_000_003 + 17)
            top = torch.randint(0, span, (n, views), generator=gen)
            left = torch.randint(0, span, (n, views), generator=gen)
            flip = (torch.rand((n, views), generator=gen) < 0.5) if flips == 2 \
                else torch.zeros((n, views), dtype=torch.bool)
        maker = maker.eval()
        first = prep(images[:min(batch_size, n)].to(device))
        run = fast_inference(maker, first)
        logits_out, at_out = [], []
        for v in range(views):
            lv, av = [], []
            for i in range(0, n, batch_size):
                sl = slice(i, i + batch_size)
                x = crop_and_flip(images[sl].to(device), pad, top[sl, v].to(device), left[sl, v].to(device),
                                  flip[sl, v].to(device))
                logits, at = run(prep(x))
                lv.append(logits.float().cpu())
                av.append(at.float().cpu())
            logits_out.append(torch.cat(lv))
            at_out.append(torch.cat(av))
        return cls(top, left, flip, torch.stack(logits_out, 1), torch.stack(at_out, 1), pad)

    def lookup(self, x: torch.Tensor, idx: torch.Tensor, prep) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """For a uint8 batch and its dataset indices: one random cached view per image, normalised, and its targets."""
        idx_cpu = idx.cpu()
        v = torch.randint(0, self.views, (idx_cpu.shape[0],))
        top, left, flip = self.top[idx_cpu, v], self.left[idx_cpu, v], self.flip[idx_cpu, v]
        dev = x.device
        x = crop_and_flip(x, self.pad, top.to(dev), left.to(dev), flip.to(dev))
        return prep(x), self.logits[idx_cpu, v].to(dev), self.at[idx_cpu, v].to(dev)
