"""timm's classifier contract, shared by the architectures whose head is ``pool`` then ``fc``."""

from __future__ import annotations

from torch import nn


class PooledClassifier:
    """``num_classes``, ``get_classifier()``, ``reset_classifier(n)`` and ``remove_classifier()`` for an nn.Module
    that sets ``num_features`` and ``fc`` (a Linear, or Identity when removed)."""

    num_features: int
    num_classes: int
    fc: nn.Module

    def get_classifier(self) -> nn.Module:
        """The final Linear layer (nn.Identity once removed)."""
        return self.fc

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """A new ``num_classes``-way classifier; 0 removes it, so that forward returns the pooled N x num_features."""
        if global_pool not in (None, "avg"):
            raise ValueError(f"only average pooling is supported, got global_pool={global_pool!r}")
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 0:
            raise ValueError(f"num_classes must be a whole number >= 0 (0 removes the classifier), got {num_classes!r}")
        self.num_classes = num_classes
        if num_classes == 0:
            self.fc = nn.Identity()
        else:
            like = next(self.parameters())
            self.fc = nn.Linear(self.num_features, num_classes, device=like.device, dtype=like.dtype)

    def remove_classifier(self) -> None:
        """Drop the fc layer, for use as a feature extractor (a NoNN student has its own head)."""
        self.reset_classifier(0)
