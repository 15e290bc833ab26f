"""Turn a uint8 batch into the network's input: optional augmentation, then normalisation, on the batch's device."""

from __future__ import annotations

import torch
from torch import nn

from ..data import AugmentSpec, augment_batch


class BatchPrep(nn.Module):
    """Normalise with per-channel mean/std (in the [0,1] scale); augment only when training and asked to."""

    def __init__(self, mean, std, augment: AugmentSpec | None):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self.augment = augment

    def forward(self, x: torch.Tensor, train: bool = False) -> torch.Tensor:
        if train and self.augment is not None:
            x = augment_batch(x, self.augment)
        return (x.float() / 255.0 - self.mean) / self.std


class IdentityPrep(nn.Module):
    """For loaders whose batches are already the network's input (a user's own, normalised DataLoaders)."""

    def forward(self, x: torch.Tensor, train: bool = False) -> torch.Tensor:
        return x
