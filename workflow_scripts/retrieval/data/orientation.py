"""EXIF orientation (tag 0x0112, values 1-8) applied to pixels: the mapping of ``PIL.ImageOps.exif_transpose``
(EXIF 2.3), shared by the readers of ordinary images and of camera raw files."""

from __future__ import annotations

import numpy as np
from PIL import Image

_T = Image.Transpose
# orientation -> the transpose that shows the stored pixels as a viewer does
TRANSPOSE = {
    2: _T.FLIP_LEFT_RIGHT,
    3: _T.ROTATE_180,
    4: _T.FLIP_TOP_BOTTOM,
    5: _T.TRANSPOSE,
    6: _T.ROTATE_270,
    7: _T.TRANSVERSE,
    8: _T.ROTATE_90,
}


def transposed(pixels: np.ndarray, orientation: int) -> np.ndarray:
    """``pixels`` (H, W[, 3]) uint8 turned as a viewer shows them for EXIF ``orientation`` (1: unchanged)."""
    if orientation == 1:
        return pixels
    return np.asarray(Image.fromarray(pixels).transpose(TRANSPOSE[orientation]))
