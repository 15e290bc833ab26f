"""Pre-activation Wide ResNet WRN-d-k (Zagoruyko & Komodakis, 2016), CIFAR style, any input size."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


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


class WideResNet(nn.Module):
    """WRN-depth-width: a 3x3 stem, three groups of pre-activation blocks (strides 1, 2, 2), BN-ReLU, pool, fc.

    The final feature map (after the last BN+ReLU) is the output of module ``act``.
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

    def remove_classifier(self) -> None:
        """Drop the fc layer, for use as a feature extractor (a NoNN student has its own head)."""
        self.fc = nn.Identity()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The final feature map, N x num_features x H/4 x W/4."""
        x = self.stem(x)
        x = self.group3(self.group2(self.group1(x)))
        return self.act(self.norm(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.forward_features(x)), 1))
