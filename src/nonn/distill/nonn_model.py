"""The NoNN assembly: K student backbones, each with a bridge to its share of teacher filters, and one head."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class StudentNode(nn.Module):
    """One device's network: backbone -> bridge (1x1 conv to n_k channels, BN, ReLU) at the teacher's map size."""

    def __init__(self, backbone: nn.Module, num_filters: int, map_size: tuple[int, int]):
        super().__init__()
        if not hasattr(backbone, "forward_features") or not hasattr(backbone, "num_features"):
            raise TypeError("a student backbone needs forward_features() and num_features")
        if hasattr(backbone, "remove_classifier"):
            backbone.remove_classifier()  # unused here; DDP also rejects parameters without gradients
        self.backbone = backbone
        self.map_size = tuple(map_size)
        self.bridge = nn.Sequential(
            nn.Conv2d(backbone.num_features, num_filters, 1, bias=False),
            nn.BatchNorm2d(num_filters),
            nn.ReLU(inplace=False),
        )
        self.num_filters = num_filters

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        f = self.backbone.forward_features(x)
        if tuple(f.shape[-2:]) != self.map_size:
            f = F.adaptive_avg_pool2d(f, self.map_size)
        return self.bridge(f)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The pooled n_k vector this device sends: N x n_k."""
        return self.feature_map(x).mean(dim=(2, 3))


class NoNN(nn.Module):
    """K disjoint students whose pooled outputs, concatenated in partition order, feed one Linear head."""

    def __init__(self, students: list[StudentNode], num_classes: int, *, drop_prob: float = 0.0):
        super().__init__()
        self.students = nn.ModuleList(students)
        self.partition_sizes = [s.num_filters for s in students]
        self.head = nn.Linear(sum(self.partition_sizes), num_classes)
        self.drop_prob = drop_prob

    def _training_keep(self, device) -> torch.Tensor | None:
        """Student dropout, in training only: with probability drop_prob, one random student's features are zeroed.

        It teaches the head to cope with a missing node (the gateway's degraded mode).
        """
        k = len(self.students)
        if not self.training or self.drop_prob <= 0 or k < 2 or float(torch.rand(())) >= self.drop_prob:
            return None
        keep = torch.ones(k, device=device)
        keep[int(torch.randint(k, ()))] = 0.0
        return keep

    def forward(self, x: torch.Tensor, *, keep: torch.Tensor | None = None,
                return_maps: bool = False):
        """Logits; ``keep`` (K floats, 0 drops a student) zeroes missing students' features.

        With ``return_maps``, also the K bridge maps (for attention transfer).
        """
        maps = [s.feature_map(x) for s in self.students]
        pooled = [m.mean(dim=(2, 3)) for m in maps]
        if keep is None:
            keep = self._training_keep(x.device)
        if keep is not None:
            pooled = [p * keep[i] for i, p in enumerate(pooled)]
        logits = self.head(torch.cat(pooled, dim=1))
        return (logits, maps) if return_maps else logits


def build_nonn(create_backbone, partition_sizes: list[int], num_classes: int, map_size: tuple[int, int]) -> NoNN:
    """``create_backbone(k)`` returns student k's backbone."""
    students = [StudentNode(create_backbone(k), n, map_size) for k, n in enumerate(partition_sizes)]
    return NoNN(students, num_classes)
