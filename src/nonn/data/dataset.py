"""The dataset containers: a split of images and labels, and a dataset of three splits."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class AugmentSpec:
    """Training augmentation: random crop after zero padding by `pad`, optional horizontal flip."""

    pad: int = 0
    flip: bool = False


@dataclass
class Split:
    """Images `x` (uint8, N×C×H×W) and labels `y` (int64, N)."""

    x: torch.Tensor
    y: torch.Tensor

    def __post_init__(self) -> None:
        if self.x.dtype != torch.uint8 or self.x.dim() != 4:
            raise ValueError(
                f"x must be a uint8 N×C×H×W tensor, got {self.x.dtype} {tuple(self.x.shape)}"
            )
        if self.y.dtype != torch.int64 or self.y.shape != (self.x.shape[0],):
            raise ValueError(
                f"y must be an int64 tensor of length {self.x.shape[0]}, got {self.y.dtype} {tuple(self.y.shape)}"
            )

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def take(self, index: torch.Tensor) -> "Split":
        """The sub-split at the given indices (copies)."""
        return Split(self.x[index], self.y[index])


@dataclass
class Dataset:
    """Train/val/test splits with class names, train-split channel statistics and default augmentation."""

    name: str
    train: Split
    val: Split
    test: Split
    classes: list[str]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    input_shape: tuple[int, int, int]
    augment: AugmentSpec

    @property
    def num_classes(self) -> int:
        return len(self.classes)
