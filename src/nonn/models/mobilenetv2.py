"""MobileNetV2 (Sandler et al., 2018) with a width multiplier, CIFAR style: stride-1 stem, overall stride 4.

Registry names:

- ``mbv2-<width>``: the full network at width multiplier ``<width>``, a decimal (``mbv2-1.0``, ``mbv2-0.5``,
  ``mbv2-0.35``).
- ``mbv2-<width>-d<n>``: the same with at most ``n`` inverted-residual blocks per stage (``n`` = 1..4;
  ``d4`` is the full network, ``d1`` keeps one block in each of the seven stages), for very small devices.

Channel counts are the reference counts times the multiplier, rounded to a multiple of 8 (at least 8); the
final 1x1 conv (1280 wide at 1.0) shrinks with the multiplier too, because on a memory-limited device a
1280-wide layer that the NoNN bridge immediately projects down would dominate the weights.
Only two stages downsample, so the final map is ceil(H/4) x ceil(W/4), the same as a WRN teacher's
(32x32 -> 8x8, 28x28 -> 7x7, 8x8 -> 2x2) and no resampling is needed.
"""

from __future__ import annotations

import re

import torch
from torch import nn

from .classifier import PooledClassifier

# expansion t, reference channels c, blocks n, stride of the first block s
STAGES = (
    (1, 16, 1, 1),
    (6, 24, 2, 1),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 1),
    (6, 320, 1, 1),
)
STEM_CHANNELS = 32
LAST_CHANNELS = 1280
MAX_BLOCKS_PER_STAGE = max(n for _, _, n, _ in STAGES)

# The sizes a budget search ranks; at most 4 blocks per stage is the full network (3 differs from it by one block).
WIDTHS = ("1.0", "0.75", "0.5", "0.35", "0.25")
BLOCKS = (4, 2, 1)
SIZES = tuple(f"mbv2-{w}" if b == MAX_BLOCKS_PER_STAGE else f"mbv2-{w}-d{b}" for w in WIDTHS for b in BLOCKS)

_PARAMETERS = re.compile(r"(\d+(?:\.\d+)?)(?:-d(\d+))?")


def parse_name(parameters: str) -> dict:
    """The constructor arguments of ``mbv2-<parameters>``: "0.35-d2" -> {"width": 0.35, "max_blocks": 2}."""
    m = _PARAMETERS.fullmatch(parameters)
    if m is None:
        raise ValueError(f"expected <width>[-d<blocks per stage>], e.g. 0.35-d2, got '{parameters}'")
    return {"width": float(m.group(1)), "max_blocks": None if m.group(2) is None else int(m.group(2))}


def scaled_channels(channels: float, divisor: int = 8) -> int:
    """``channels`` rounded to the nearest multiple of ``divisor`` (at least ``divisor``), never 10% below."""
    rounded = max(divisor, int(channels + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * channels:
        rounded += divisor
    return rounded


def _conv_bn(in_planes: int, out_planes: int, kernel: int, stride: int = 1, groups: int = 1,
             activation: bool = True) -> list[nn.Module]:
    layers = [nn.Conv2d(in_planes, out_planes, kernel, stride, kernel // 2, groups=groups, bias=False),
              nn.BatchNorm2d(out_planes)]
    if activation:
        layers.append(nn.ReLU6(inplace=False))
    return layers


class InvertedResidual(nn.Module):
    """1x1 expand (skipped when t = 1), 3x3 depthwise, linear 1x1 project; identity shortcut when shapes match."""

    def __init__(self, in_planes: int, out_planes: int, stride: int, expansion: int):
        super().__init__()
        hidden = in_planes * expansion
        layers: list[nn.Module] = []
        if expansion != 1:
            layers += _conv_bn(in_planes, hidden, 1)
        layers += _conv_bn(hidden, hidden, 3, stride, groups=hidden)
        layers += _conv_bn(hidden, out_planes, 1, activation=False)
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and in_planes == out_planes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(x)
        return x + out if self.residual else out


class MobileNetV2(PooledClassifier, nn.Module):
    """MobileNetV2 at ``width``, at most ``max_blocks`` blocks per stage (None: all), then 1x1 conv, BN, ReLU6.

    The final feature map (after the last BN and activation) is the output of module ``act``. timm's contract holds:
    ``num_features``, ``in_chans``, ``forward_features``, ``forward_head`` and ``reset_classifier(0)``.
    """

    feature_module = "act"

    def __init__(self, width: float = 1.0, max_blocks: int | None = None, num_classes: int = 10,
                 in_channels: int = 3, dropout: float = 0.0):
        super().__init__()
        if not width > 0:
            raise ValueError(f"the MobileNetV2 width multiplier must be positive, got {width}")
        if max_blocks is not None and not 1 <= max_blocks <= MAX_BLOCKS_PER_STAGE:
            raise ValueError(f"blocks per stage must be 1..{MAX_BLOCKS_PER_STAGE}, got {max_blocks}")
        self.width, self.max_blocks = width, max_blocks
        self.in_chans, self.num_classes = in_channels, num_classes
        planes = scaled_channels(STEM_CHANNELS * width)
        self.stem = nn.Sequential(*_conv_bn(in_channels, planes, 3))
        blocks = []
        for expansion, channels, n, stride in STAGES:
            out_planes = scaled_channels(channels * width)
            for i in range(n if max_blocks is None else min(n, max_blocks)):
                blocks.append(InvertedResidual(planes, out_planes, stride if i == 0 else 1, expansion))
                planes = out_planes
        self.blocks = nn.Sequential(*blocks)
        self.num_features = scaled_channels(LAST_CHANNELS * width)
        self.conv = nn.Conv2d(planes, self.num_features, 1, bias=False)
        self.norm = nn.BatchNorm2d(self.num_features)
        self.act = nn.ReLU6(inplace=False)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(self.num_features, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                # torch's fan_out of a depthwise conv counts every channel, which shrinks its weights by the
                # channel count; fan_in (the 3x3 window) keeps the signal's scale, so no layer underflows.
                depthwise = m.groups > 1 and m.groups == m.in_channels
                nn.init.kaiming_normal_(m.weight, mode="fan_in" if depthwise else "fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, 0.01)
                nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The final feature map, N x num_features x ceil(H/4) x ceil(W/4)."""
        return self.act(self.norm(self.conv(self.blocks(self.stem(x)))))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """The final feature map -> logits (the pooled N x num_features vector when ``pre_logits``)."""
        x = self.dropout(torch.flatten(self.pool(x), 1))
        return x if pre_logits else self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))
