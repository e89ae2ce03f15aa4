"""Keypoint positions mapped back through a resize, in one convention for SIFT's and the ResNet's features."""

from __future__ import annotations

import numpy as np


def pixel_centres_back(xy: np.ndarray, f: np.ndarray | float) -> np.ndarray:
    """Positions ``xy`` (..., 2) (or one axis) in pixels of an image resized by ``f`` (per axis (2,), or a scalar;
    below 1 when reduced), as pixels of the image before the resize: pixel centres, pixel i at i (OpenCV's
    convention), so resized pixel i, which covers pixels [i / f, (i + 1) / f), maps to (i + 0.5) / f - 0.5. Same
    shape, float32. (``xy / f`` was up to 0.5 / f - 0.5 px off: 1.5 px on a 4032-px photo reduced to 1024.)"""
    return ((np.asarray(xy, np.float32) + np.float32(0.5)) / np.asarray(f, np.float32) - np.float32(0.5)).astype(
        np.float32
    )
