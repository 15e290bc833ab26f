"""What a model costs: parameters, multiply-accumulates of one forward pass, and bytes of weights and tensors."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

FLOAT32_BYTES = 4
"""Bytes of one float32 value: a weight as exported, and one value of a feature vector or activation on the wire."""


def count_params(params: nn.Module | Iterable[torch.Tensor]) -> int:
    """Parameters of a module, or of an iterable of parameter tensors; a tensor listed twice counts once."""
    tensors = params.parameters() if isinstance(params, nn.Module) else params
    return sum({id(p): p.numel() for p in tensors}.values())


@torch.no_grad()
def count_macs(module: nn.Module, example: torch.Tensor | Sequence[int]) -> int:
    """Multiply-accumulates of one forward pass in eval mode on ``example``: a tensor, or the shape of one input
    (a batch of one zero input is made on the default device, so meta works)."""
    if not isinstance(example, torch.Tensor):
        example = torch.zeros(1, *example)
    module.eval()
    with FlopCounterMode(display=False) as counter:
        module(example)
    return int(counter.get_total_flops()) // 2  # the counter counts a multiply-accumulate as 2 flops


def weight_bytes(params: nn.Module | int, dtype_bytes: int = FLOAT32_BYTES) -> int:
    """Bytes of the weights of a module (or of ``params`` parameters) at ``dtype_bytes`` per weight."""
    return (count_params(params) if isinstance(params, nn.Module) else int(params)) * dtype_bytes


def tensor_bytes(shape: Sequence[int], dtype_bytes: int = FLOAT32_BYTES) -> int:
    """Payload bytes of one tensor of ``shape`` (no framing)."""
    return math.prod(shape) * dtype_bytes
