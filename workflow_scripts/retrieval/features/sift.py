"""The ``sift`` backbone: OpenCV SIFT keypoints with RootSIFT descriptors, the strongest K by response.

Positions and scales are returned in pixels of the full original image: a query cropped to its box gets the
box offset added back, and any resize is undone (positions as pixel centres: resized pixel i at (i + 0.5) / f - 0.5,
f the axis's resize factor).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from retrieval.features.positions import pixel_centres_back

DIM = 128


@dataclass(frozen=True)
class SiftConfig:
    """SIFT extraction (config ``extract.sift``): ``k`` keypoints kept per image, strongest response first; ``max_side``
    the long side in pixels images are downscaled to at most (after the query crop); OpenCV's ``contrast_threshold`` and
    ``edge_threshold``; ``scale`` a further resize factor. ValueError when ``k`` < 1 (OpenCV reads 0 as "keep all")."""

    k: int = 1000  # descriptors kept per image, strongest response first (config.yaml extract.sift.k)
    max_side: int = 1024  # images (after the query crop) are downscaled so the long side is at most this
    contrast_threshold: float = 0.02
    edge_threshold: float = 10.0
    scale: float = 1.0  # a further resize factor of every image (SSP's light query model: 0.5)

    def __post_init__(self) -> None:
        if self.k < 1:  # OpenCV reads nfeatures=0 as "keep all"
            raise ValueError(f"SIFT: k must be at least 1, got {self.k}")


def rootsift(desc: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """RootSIFT (Arandjelović & Zisserman, CVPR 2012) of SIFT descriptors ``desc`` (n, 128), any numeric dtype:
    (n, 128) float32, each row L1-normalised (plus ``eps``), then square-rooted element-wise, so unit L2 norm (an
    all-zero row stays zero)."""
    desc = np.asarray(desc, dtype=np.float32)
    desc = desc / (np.abs(desc).sum(axis=1, keepdims=True) + eps)
    return np.sqrt(np.maximum(desc, 0.0))


def empty_features(cfg: SiftConfig, entry: dict) -> dict[str, np.ndarray]:
    """No features: the row of an image that could not be read (``on_bad_image: skip``)."""
    empty = np.zeros((0,), np.float32)
    return {
        "descriptors": np.zeros((0, DIM), np.float16),
        "xy": np.zeros((0, 2), np.float32),
        "scale": empty,
        "weight": empty,
        "orientation": empty,
        "image_size": np.array([entry.get("width", 0), entry.get("height", 0)], np.int32),
    }


def extract_sift(gray: np.ndarray, cfg: SiftConfig, crop: list[int] | None = None) -> dict[str, np.ndarray]:
    """Local features of one grayscale image ``gray`` (H, W) uint8, optionally cropped to ``crop = [x1, y1, x2, y2]``
    (pixels of ``gray``, x2 and y2 exclusive), reduced by ``min(1, max_side / longer side) * scale`` (INTER_AREA)
    before OpenCV's SIFT. Returns at most ``cfg.k`` (K) keypoints, strongest response first (ties by y, x, then
    orientation): ``descriptors`` (K, 128) float16 RootSIFT, ``xy`` (K, 2) float32 positions in pixels of the
    full, uncropped image (pixel centres mapped back through the reduction), ``scale`` (K,) float32 SIFT size in
    those pixels, ``weight`` (K,) float32 response, ``orientation`` (K,) float32 degrees, ``image_size`` (2,) int32
    (width, height) of the full image. No keypoint: K = 0."""
    full_h, full_w = gray.shape[:2]
    x0 = y0 = 0
    if crop is not None:
        x1, y1, x2, y2 = crop
        gray = gray[y1:y2, x1:x2]
        x0, y0 = x1, y1
    h, w = gray.shape[:2]
    s = min(1.0, cfg.max_side / max(h, w)) * cfg.scale
    if s != 1.0:
        gray = cv2.resize(gray, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
    # the factors the resize applied per axis (the size was rounded)
    f = np.array([gray.shape[1] / w, gray.shape[0] / h], np.float32)
    # nfeatures=k: OpenCV keeps the k strongest keypoints (and every keypoint tied with the k-th response) before
    # computing descriptors, so only those are described (21% less time per demo image, 33% per real photo); the
    # selection below is then the same as over all keypoints
    detector = cv2.SIFT_create(
        nfeatures=cfg.k, contrastThreshold=cfg.contrast_threshold, edgeThreshold=cfg.edge_threshold
    )
    keypoints, desc = detector.detectAndCompute(gray, None)
    n = len(keypoints)
    if n == 0 or desc is None:
        empty = np.zeros((0,), np.float32)
        return {
            "descriptors": np.zeros((0, DIM), np.float16),
            "xy": np.zeros((0, 2), np.float32),
            "scale": empty,
            "weight": empty,
            "orientation": empty,
            "image_size": np.array([full_w, full_h], np.int32),
        }
    response = np.array([kp.response for kp in keypoints], np.float32)
    pts = np.array([kp.pt for kp in keypoints], np.float32)
    angle = np.array([kp.angle for kp in keypoints], np.float32)
    # strongest first; ties broken by position, then by orientation (SIFT gives a keypoint with several dominant
    # orientations one entry per orientation, same position and response), so the order does not depend on the
    # order OpenCV returns keypoints in (its k-best filter reorders them)
    order = np.lexsort((angle, pts[:, 0], pts[:, 1], -response))[: cfg.k]
    xy = pts[order] if s == 1.0 else pixel_centres_back(pts[order], f)  # (x / s until SIFT 2; helper-106)
    xy = xy + np.array([x0, y0], np.float32)
    return {
        "descriptors": rootsift(desc[order]).astype(np.float16),
        "xy": xy.astype(np.float32),
        "scale": (np.array([keypoints[i].size for i in order], np.float32) / s),
        "weight": response[order],
        "orientation": angle[order],
        "image_size": np.array([full_w, full_h], np.int32),
    }
