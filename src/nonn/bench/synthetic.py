"""Untrained models straight from architectures, for "what would this budget give me?" before any training."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..budget import balanced_sizes
from ..distill.nonn_model import NoNN, build_nonn
from ..errors import ConfigError
from ..models import create_model, probe_feature_shape


@dataclass
class SyntheticModels:
    teacher: nn.Module
    nonn: NoNN
    input_shape: tuple[int, int, int]
    teacher_arch: str
    student_archs: list[str]
    feature_shape: tuple[int, int, int]


def parse_input(text) -> tuple[int, int, int]:
    """"3x32x32" (or a sequence of three ints) -> (C, H, W); ConfigError naming the form otherwise."""
    if isinstance(text, (tuple, list)):
        return tuple(int(v) for v in text)
    try:
        shape = tuple(int(v) for v in str(text).lower().split("x"))
    except ValueError:
        shape = ()
    if len(shape) != 3 or min(shape) < 1:
        raise ConfigError(f"--input must be CxHxW with positive integers, like 3x32x32; got {text!r}")
    return shape


def untrained_models(teacher_arch: str, student_arch: str, k: int, input_shape: tuple[int, int, int], *,
                     num_classes: int = 10, feature_module: str = "act", seed: int = 0) -> SyntheticModels:
    """A teacher and a K-student NoNN with untrained (seeded) weights and balanced partition sizes."""
    torch.manual_seed(seed)
    teacher = create_model(teacher_arch, num_classes=num_classes, in_channels=input_shape[0]).eval()
    feature_shape = probe_feature_shape(teacher, feature_module, input_shape)
    sizes = balanced_sizes(feature_shape[0], k)
    net = build_nonn(lambda _k: create_model(student_arch, num_classes=num_classes, in_channels=input_shape[0]),
                     sizes, num_classes, feature_shape[1:]).eval()
    return SyntheticModels(teacher, net, tuple(input_shape), teacher_arch, [student_arch] * k, feature_shape)
