"""Pre-activation Wide ResNet WRN-d-k (Zagoruyko & Komodakis, 2016), CIFAR style, any input size.

Registry names: ``wrn-<depth>-<width>``, depth 6n+4 (10, 16, 22, 28, 40), width a whole number or a decimal
(``wrn-16-1``, ``wrn-40-4``, ``wrn-16-0.5``).
"""

from __future__ import annotations

import re

import torch
import torch.nn.functional as F
from torch import nn

from .classifier import PooledClassifier

# The sizes a budget search ranks; widths below 1 are for tight budgets (thinner groups, same stem).
DEPTHS = (10, 16, 22, 28, 40)
WIDTHS = ("0.25", "0.5", "0.75", 1, 2, 4, 8)
SIZES = tuple(f"wrn-{d}-{w}" for d in DEPTHS for w in WIDTHS)

_PARAMETERS = re.compile(r"(\d+)-(\d+(?:\.\d+)?)")


def _width(text: str) -> float | int:
    """"4" -> 4, "0.5" -> 0.5: whole widths stay integers."""
    value = float(text)
    return int(value) if value.is_integer() else value


def parse_name(parameters: str) -> dict:
    """The constructor arguments of ``wrn-<parameters>``: "16-0.5" -> {"depth": 16, "width": 0.5}."""
    m = _PARAMETERS.fullmatch(parameters)
    if m is None:
        raise ValueError(f"expected <depth>-<width>, e.g. 16-1, got '{parameters}'")
    return {"depth": int(m.group(1)), "width": _width(m.group(2))}


class PreActBlock(nn.Module):
    """BN-ReLU-conv3x3-BN-ReLU-conv3x3 with a 1x1 projection shortcut when the shape changes."""

    def __init__(self, in_planes: int, out_planes: int, stride: int, dropout: float = 0.0):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, out_planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_planes)
        self.conv2 = nn.Conv2d(out_planes, out_planes, 3, 1, 1, bias=False)
        self.dropout = dropout
        self.shortcut = None
        if stride != 1 or in_planes != out_planes:
            self.shortcut = nn.Conv2d(in_planes, out_planes, 1, stride, 0, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        o = F.relu(self.bn1(x))
        # The projection shares the pre-activation, as in the reference WRN.
        residual = x if self.shortcut is None else self.shortcut(o)
        o = self.conv1(o)
        o = F.relu(self.bn2(o))
        if self.dropout > 0:
            o = F.dropout(o, p=self.dropout, training=self.training)
        return self.conv2(o) + residual


class WideResNet(PooledClassifier, nn.Module):
    """WRN-depth-width: a 3x3 stem, three groups of pre-activation blocks (strides 1, 2, 2), BN-ReLU, pool, fc.

    The final feature map (after the last BN+ReLU) is the output of module ``act``. timm's contract holds:
    ``num_features``, ``in_chans``, ``forward_features``, ``forward_head`` and ``reset_classifier(0)``.
    """

    feature_module = "act"

    def __init__(self, depth: int = 16, width: float = 1, num_classes: int = 10, in_channels: int = 3,
                 dropout: float = 0.0):
        super().__init__()
        if depth < 10 or (depth - 4) % 6 != 0:
            raise ValueError(f"WRN depth must be 6n+4 with n >= 1, got {depth}")
        if not width > 0:
            raise ValueError(f"WRN width must be positive, got {width}")
        n = (depth - 4) // 6
        # A width below 1 thins the groups (16, 32, 64 channels times the width), not the 16-channel stem.
        widths = [16, *(max(1, round(c * width)) for c in (16, 32, 64))]
        self.depth, self.width = depth, width
        self.in_chans, self.num_classes = in_channels, num_classes
        self.stem = nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)
        self.group1 = self._group(widths[0], widths[1], n, 1, dropout)
        self.group2 = self._group(widths[1], widths[2], n, 2, dropout)
        self.group3 = self._group(widths[2], widths[3], n, 2, dropout)
        self.norm = nn.BatchNorm2d(widths[3])
        self.act = nn.ReLU(inplace=False)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(widths[3], num_classes)
        self.num_features = widths[3]
        self._init_weights()

    @staticmethod
    def _group(in_planes: int, out_planes: int, n: int, stride: int, dropout: float) -> nn.Sequential:
        blocks = [PreActBlock(in_planes, out_planes, stride, dropout)]
        blocks += [PreActBlock(out_planes, out_planes, 1, dropout) for _ in range(n - 1)]
        return nn.Sequential(*blocks)

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The final feature map, N x num_features x H/4 x W/4."""
        x = self.stem(x)
        x = self.group3(self.group2(self.group1(x)))
        return self.act(self.norm(x))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """The final feature map -> logits (the pooled N x num_features vector when ``pre_logits``)."""
        x = torch.flatten(self.pool(x), 1)
        return x if pre_logits else self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))
