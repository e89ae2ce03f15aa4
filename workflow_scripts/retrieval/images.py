"""Strict image decoding: a missing, truncated or non-image file is an error that names it."""

from __future__ import annotations

from pathlib import Path

import numpy as np


class BadImageError(ValueError):
    pass


def _decode(path: str | Path, mode: str) -> np.ndarray:
    """Decode with Pillow, which refuses truncated files (OpenCV pads them), to a uint8 array in ``mode``."""
    from PIL import Image, UnidentifiedImageError  # noqa: PLC0415

    path = Path(path)
    if not path.is_file():
        raise BadImageError(f"image not found: {path}")
    try:
        with Image.open(path) as im:
            im.load()
            return np.asarray(im.convert(mode))
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise BadImageError(f"{path}: cannot decode image ({e})") from e


def load_gray(path: str | Path) -> np.ndarray:
    """Decode an image to uint8 grayscale (H, W)."""
    return _decode(path, "L")


def load_bgr(path: str | Path) -> np.ndarray:
    """Decode an image to uint8 BGR (H, W, 3), as OpenCV would give it, with the same strictness as load_gray."""
    return np.ascontiguousarray(_decode(path, "RGB")[:, :, ::-1])
