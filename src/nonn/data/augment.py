"""Batched tensor augmentation: random crop with zero padding and horizontal flip, no per-image loop."""

from __future__ import annotations

import torch

from nonn.data.dataset import AugmentSpec


def crop_and_flip(
    x: torch.Tensor, pad: int, top: torch.Tensor, left: torch.Tensor, flip: torch.Tensor
) -> torch.Tensor:
    """Zero-pad N×C×H×W images by `pad`, crop H×W at per-image (top, left), mirror where `flip`."""
    if pad < 0:
        raise ValueError(f"pad must be >= 0, got {pad}")
    n, c, h, w = x.shape
    padded = x.new_zeros((n, c, h + 2 * pad, w + 2 * pad))
    padded[:, :, pad : pad + h, pad : pad + w] = x
    rows = top.view(n, 1) + torch.arange(h, device=x.device)  # N×H
    cols = left.view(n, 1) + torch.arange(w, device=x.device)  # N×W
    # A flip is folded into the same gather by reading the crop's columns in reverse.
    cols = torch.where(flip.view(n, 1), cols.flip(1), cols)
    batch = torch.arange(n, device=x.device).view(n, 1, 1, 1)
    chan = torch.arange(c, device=x.device).view(1, c, 1, 1)
    return padded[batch, chan, rows.view(n, 1, h, 1), cols.view(n, 1, 1, w)]


def augment_batch(
    x: torch.Tensor, spec: AugmentSpec, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Random crop (offsets uniform in [0, 2·pad]) and, if `spec.flip`, a coin-flip mirror per image."""
    n = x.shape[0]
    span = 2 * spec.pad + 1
    # Draw on the generator's device (a CPU generator may drive a GPU batch), then move.
    where = generator.device if generator is not None else x.device
    top = torch.randint(0, span, (n,), generator=generator, device=where).to(x.device)
    left = torch.randint(0, span, (n,), generator=generator, device=where).to(x.device)
    if spec.flip:
        flip = (torch.rand(n, generator=generator, device=where) < 0.5).to(x.device)
    else:
        flip = torch.zeros(n, dtype=torch.bool, device=x.device)
    return crop_and_flip(x, spec.pad, top, left, flip)
