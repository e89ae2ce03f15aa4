"""Extraction of an image decoded at reduced size (a JPEG over ``max_image_pixels``, reduced by libjpeg while
decoding), its features mapped back to full-image pixels; shared by the positional chunks and the feature cache's
packs."""

from __future__ import annotations

import logging
from typing import Any, Callable

import numpy as np

from retrieval.data.images import DecodedImage
from retrieval.features.positions import pixel_centres_back

log = logging.getLogger(__name__)


def extract_reduced(
    run: Callable[[np.ndarray, dict[str, Any], list[int] | None], tuple[dict[str, np.ndarray], Any]],
    decoded: DecodedImage,
    entry: dict[str, Any],
    crop: list[int] | None,
    backbone: str,
) -> tuple[dict[str, np.ndarray], Any]:
    """Features of a JPEG reduced while decoding (``decoded.factor`` (fx, fy) < 1: libjpeg's DCT scaling under
    ``max_image_pixels``), in full-image pixels: the query box ``crop`` [x1, y1, x2, y2] (full-image pixels) is
    scaled to the reduced pixels for ``run(pixels, entry, box)`` (the backbone's extraction of one image), then the
    row's keypoint positions ``xy`` (K, 2) float32 (and SIFT's ``scale``, in pixels) are mapped back and its
    ``image_size`` is the full displayed (width, height); the second value ``run`` returns passes through. Logs a
    warning naming the file.

    Reduced pixel i is made from full-image pixels [i * s, (i + 1) * s) (libjpeg's scaled IDCT, s = 1 / factor).
    SIFT's and the ResNet's positions are pixel centres (OpenCV: pixel i at i), mapped to (i + 0.5) * s - 0.5 (SIFT's
    kept inside the image: the last reduced pixel of an odd size covers one full-image pixel beyond it); DINOv2's are
    continuous coordinates (pixel i spans [i, i + 1): a patch centre at 14 j + 7), mapped by s alone."""
    fx, fy = decoded.factor
    log.warning(
        "%s: %dx%d pixels over max_image_pixels, decoded at %dx%d (JPEG draft mode)",
        entry["path"],
        decoded.width,
        decoded.height,
        decoded.pixels.shape[1],
        decoded.pixels.shape[0],
    )
    small = None
    if crop is not None:
        x1, y1, x2, y2 = crop
        small = [
            int(x1 * fx),
            int(y1 * fy),
            max(int(x1 * fx) + 1, round(x2 * fx)),
            max(int(y1 * fy) + 1, round(y2 * fy)),
        ]
    row, g = run(decoded.pixels, entry, small)
    row = dict(row)
    f = np.array([fx, fy], np.float32)
    if backbone == "sift":
        top = np.array([decoded.width - 1, decoded.height - 1], np.float32)
        row["xy"] = np.minimum(pixel_centres_back(row["xy"], f), top)
    elif backbone == "resnet":  # pixel centres too (as the extraction maps them; not clamped there either)
        row["xy"] = pixel_centres_back(row["xy"], f)
    else:
        row["xy"] = (row["xy"] / f).astype(np.float32)
    if backbone == "sift":
        row["scale"] = (row["scale"] / fx).astype(np.float32)
    row["image_size"] = np.array([decoded.width, decoded.height], np.int32)
    return row, g
