"""Per-channel statistics of uint8 images and the normalisation that uses them."""

from __future__ import annotations

from typing import Sequence

import torch


def channel_stats(x: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and (population) std of uint8 images N×C×H×W in the [0, 1] scale."""
    values = torch.arange(256, dtype=torch.float64) / 255.0
    means, stds = [], []
    for c in range(x.shape[1]):
        # A 256-bin histogram gives exact moments without a float copy of the whole split.
        hist = torch.bincount(x[:, c].reshape(-1).cpu(), minlength=256).to(torch.float64)
        count = float(hist.sum())
        if count == 0:
            means.append(0.0)
            stds.append(1.0)
            continue
        mean = float((hist * values).sum()) / count
        var = max(float((hist * (values - mean) ** 2).sum()) / count, 0.0)
        std = var**0.5
        means.append(mean)
        stds.append(std if std > 1e-12 else 1.0)  # a constant channel stays unscaled
    return tuple(means), tuple(stds)


def normalize(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """float32 `(x/255 - mean) / std` per channel, for uint8 images N×C×H×W (or C×H×W)."""
    shape = (-1, 1, 1)
    m = torch.as_tensor(mean, dtype=torch.float32, device=x.device).view(shape)
    s = torch.as_tensor(std, dtype=torch.float32, device=x.device).view(shape)
    return (x.to(torch.float32) / 255.0 - m) / s
