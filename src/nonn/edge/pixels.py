"""Pixels to what a student takes, with the same float32 arithmetic on the gateway and the node.

`nonn export` writes the normalisation into every student model's metadata, so a node can
take raw uint8 pixels: a quarter of the bytes of normalised float32 on each link.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from nonn.edge.errors import EdgeError

SCALE_KEY, MEAN_KEY, STD_KEY = "nonn.pixel_scale", "nonn.pixel_mean", "nonn.pixel_std"


@dataclass(frozen=True, eq=False)
class Normalisation:
    """x = (pixels / scale - mean) / std, per channel, in float32."""

    scale: np.float32
    mean: np.ndarray  # [C, 1, 1] float32
    std: np.ndarray  # [C, 1, 1] float32

    @classmethod
    def of(cls, scale: float, mean, std) -> Normalisation:
        mean = np.asarray(mean, dtype=np.float32).reshape(-1, 1, 1)
        std = np.asarray(std, dtype=np.float32).reshape(-1, 1, 1)
        if not scale > 0 or mean.shape != std.shape or mean.size < 1 or (std <= 0).any():
            raise ValueError("normalisation needs a positive scale and one mean and one positive std per channel")
        return cls(np.float32(scale), mean, std)

    @property
    def channels(self) -> int:
        return int(self.mean.shape[0])

    def apply(self, pixels: np.ndarray) -> np.ndarray:
        """float32 [..., C, H, W], C-contiguous, from uint8 or float32 pixels in 0..scale."""
        x = np.array(pixels, dtype=np.float32, order="C", copy=True)
        x /= self.scale
        x -= self.mean
        x /= self.std
        return x

    def metadata(self) -> dict[str, str]:
        """What `nonn export` stores in a student model's metadata_props."""
        return {SCALE_KEY: json.dumps(float(self.scale)), MEAN_KEY: json.dumps(self.mean.ravel().tolist()),
                STD_KEY: json.dumps(self.std.ravel().tolist())}

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, str]) -> Normalisation | None:
        """The normalisation a model carries, None when it carries none."""
        if SCALE_KEY not in metadata:
            return None
        try:
            return cls.of(float(json.loads(metadata[SCALE_KEY])), json.loads(metadata[MEAN_KEY]),
                          json.loads(metadata[STD_KEY]))
        except (KeyError, TypeError, ValueError) as exc:
            raise EdgeError(f"the model's pixel normalisation metadata is invalid ({exc}); "
                            "re-export it with `nonn export`") from None
