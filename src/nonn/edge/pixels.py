"""Pixels to what a student takes, with the same float32 arithmetic on the gateway and the node.

`nonn export` writes the normalisation into every student model's metadata, so a node can
take raw uint8 pixels: a quarter of the bytes of normalised float32 on each link.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from nonn.edge.errors import EdgeError, TensorError

SCALE_KEY, MEAN_KEY, STD_KEY = "nonn.pixel_scale", "nonn.pixel_mean", "nonn.pixel_std"
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32).reshape(3, 1, 1)  # ITU-R BT.601


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


def image_layout(shape: tuple[int, ...], layout: str, height: int, width: int) -> str:
    """HW, HWC or CHW: `layout` checked against `shape`, or the one layout an image of
    height x width pixels fits; TensorError says what was expected."""
    fits = {
        "HW": len(shape) == 2 and shape == (height, width),
        "HWC": len(shape) == 3 and shape[:2] == (height, width) and shape[2] in (1, 3, 4),
        "CHW": len(shape) == 3 and shape[1:] == (height, width) and shape[0] in (1, 3, 4),
    }
    expected = (f"expected an image of {height}x{width} pixels as [H, W], [H, W, C] or [C, H, W] "
                f"with C in 1, 3, 4 (resize it first), got shape {list(shape)}")
    if layout:
        if layout not in fits:
            raise TensorError(f"image layout {layout!r} is unknown; expected HWC, CHW, HW or empty")
        if not fits[layout]:
            raise TensorError(f"{expected} with layout {layout}")
        return layout
    matches = [name for name, ok in fits.items() if ok]
    if not matches:
        raise TensorError(expected)
    if len(matches) > 1:
        raise TensorError(f"image shape {list(shape)} is ambiguous; set the layout field to HWC or CHW")
    return matches[0]


def model_input(pixels: np.ndarray, layout: str, input_shape: tuple[int, int, int], norm: Normalisation,
                node_pixels: bool) -> np.ndarray:
    """An image's pixels -> what the nodes take: [1, C, H, W] uint8 pixels when `node_pixels`
    (the nodes normalise them), normalised float32 otherwise (C-contiguous either way).
    Alpha is dropped; RGB becomes luma, or gray RGB, when the model wants the other."""
    if pixels.ndim == 4 and pixels.shape[0] == 1:
        pixels = pixels[0]
    if pixels.dtype == np.float32 and pixels.size and (pixels.min() < 0 or pixels.max() > 255):
        raise TensorError("float32 pixels must lie in [0, 255]; send uint8 or scale them to 0..255")
    want, height, width = input_shape
    layout = image_layout(tuple(pixels.shape), layout, height, width)
    if layout == "HW":
        chw = pixels[None]
    elif layout == "HWC":
        chw = pixels.transpose(2, 0, 1)
    else:
        chw = pixels
    if chw.shape[0] == 4:  # drop alpha
        chw = chw[:3]
    shape = (1, want, height, width)
    if chw.shape[0] == want:
        if chw.dtype == np.uint8 and node_pixels:
            return np.ascontiguousarray(chw).reshape(shape)
        x = chw
    elif chw.shape[0] == 3 and want == 1:
        x = (chw.astype(np.float32) * LUMA).sum(axis=0, keepdims=True, dtype=np.float32)
    elif chw.shape[0] == 1 and want == 3:
        x = np.repeat(chw.astype(np.float32), 3, axis=0)
    else:
        raise TensorError(f"the model takes {want} channels, the image has {chw.shape[0]}")
    return norm.apply(x).reshape(shape)
