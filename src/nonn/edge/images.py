"""Photos as a camera takes them -> the model's input size: resize the short side, centre-crop,
convert to grayscale or RGB as the model's channels say (Pillow, loaded lazily).

The gateway still takes only images of the model's size on the wire; this runs on the client."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nonn.edge.errors import EdgeError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def _pil():
    try:
        from PIL import Image
    except ImportError:
        raise EdgeError("reading PNG/JPEG needs Pillow; pip install pillow (or nonn-edge[images]), "
                        "or send a .npy file") from None
    return Image


def open_image(path: str | Path):
    """The decoded PIL image of a PNG or JPEG file, or EdgeError naming the fix."""
    Image = _pil()
    from PIL import UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise EdgeError(f"image {path} does not exist; pass a .npy, .png or .jpg file")
    try:
        with Image.open(path) as img:
            img.load()
            return img.copy()
    except (UnidentifiedImageError, OSError) as exc:
        raise EdgeError(f"cannot decode {path}: {exc}; pass a valid PNG or JPEG") from None


def as_pixels(img) -> np.ndarray:
    """HWC uint8 pixels of a PIL image, as they are (grayscale stays one channel)."""
    img = img.convert("L" if img.mode in ("1", "L", "LA", "I", "I;16", "F") else "RGB")
    array = np.asarray(img, dtype=np.uint8)
    return array[:, :, None] if array.ndim == 2 else array


def fit(img, channels: int, height: int, width: int) -> np.ndarray:
    """Scale so that the image covers height x width (the short side fits), crop the centre,
    convert to `channels` (1: luma, 3: RGB); HWC uint8."""
    Image = _pil()
    if channels not in (1, 3):
        raise EdgeError(f"the model takes {channels} channels; only 1 (grayscale) and 3 (RGB) images "
                        "can be converted, send a .npy file of the right shape instead")
    img = img.convert("L" if channels == 1 else "RGB")
    w, h = img.size
    if (w, h) != (width, height):
        scale = max(width / w, height / h)
        size = (max(width, round(w * scale)), max(height, round(h * scale)))
        img = img.resize(size, Image.Resampling.BILINEAR)
        left, top = (size[0] - width) // 2, (size[1] - height) // 2
        img = img.crop((left, top, left + width, top + height))
    array = np.asarray(img, dtype=np.uint8)
    return array[:, :, None] if array.ndim == 2 else array


def expand(paths, suffixes=(*IMAGE_SUFFIXES, ".npy")) -> list[Path]:
    """Files as given, and the image files of each folder (sorted, not recursive)."""
    files = []
    for path in map(Path, paths):
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in suffixes)
            if not found:
                raise EdgeError(f"folder {path} holds no {', '.join(suffixes)} files; pass images or another folder")
            files += found
        else:
            files.append(path)
    return files
