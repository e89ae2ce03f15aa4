"""Local descriptors from the AMES release files, as the ``ames_import`` extraction backbone.

``{dir}/{dataset}/{desc}_gallery_local.hdf5`` (database) and ``{desc}_query_local.hdf5`` (queries), dataset
``features``, in any of the three layouts the AMES loader accepts:

1. flat ``(N, K, 5 + D)`` float32/float16: five metadata columns, then the descriptor;
2. structured ``(N,)`` with fields ``metadata (K, 5)`` float32 and ``descriptor (K, D)`` float16 (the released files);
3. the same with ``descriptor (K, D/8)`` uint8: packed sign bits, unpacked to -1/+1.

Metadata columns: x, y (DINOv2: patch centre as a fraction of the image size; CVNet: pixels), scale index,
mask (1 = padding, the only column the model reads), detector weight. Rows are in the order of the dataset's image
lists (``test_gallery.txt`` / ``test_query.txt``, the order of revisitop's ``imlist`` / ``qimlist``). Padded rows
must have zero-norm descriptors: a file whose padding carries descriptors has its mask column inverted or is
corrupt, and is refused. Positions become pixels of the full image (``positions: auto`` treats values within
[0, 1] as fractions), so ``sv`` can use them too; valid descriptors are kept strongest weight first.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import h5py
import numpy as np

SPLIT_FILES = {"db": "gallery", "query": "query"}


def release_file(directory: str | Path, dataset: str, desc: str, split: str) -> Path:
    return Path(directory) / dataset / f"{desc}_{SPLIT_FILES[split]}_local.hdf5"


def read_rows(path: str | Path, start: int, stop: int) -> tuple[np.ndarray, np.ndarray, bool]:
    """Metadata (n, K, 5) float32 and descriptors (n, K, D) float32 of rows [start, stop), and whether they were
    packed bits (whose zero padding unpacks to -1s, so it cannot be checked for zero norm)."""
    path = Path(path)
    with h5py.File(path, "r") as f:
        if "features" not in f:
            raise KeyError(f"{path}: no dataset 'features' (AMES local-descriptor files hold one)")
        d = f["features"]
        block = d[start:stop]
    if block.dtype.names:
        if not {"metadata", "descriptor"} <= set(block.dtype.names):
            raise KeyError(f"{path}: structured 'features' needs fields metadata and descriptor, has {block.dtype.names}")
        meta = block["metadata"].astype(np.float32)
        desc = block["descriptor"]
        if desc.dtype == np.uint8:
            return meta, np.unpackbits(desc, axis=-1).astype(np.float32) * 2.0 - 1.0, True
        return meta, desc.astype(np.float32), False
    if block.ndim != 3 or block.shape[2] <= 5:
        raise ValueError(f"{path}: flat 'features' must be (N, K, 5 + D), got {block.shape}")
    return block[..., :5].astype(np.float32), block[..., 5:].astype(np.float32), False


def n_rows(path: str | Path) -> tuple[int, int, int]:
    """(N, K, D) of a release file."""
    with h5py.File(path, "r") as f:
        d = f["features"]
        if d.dtype.names:
            k, dim = d.dtype["descriptor"].shape
            return d.shape[0], k, dim * 8 if d.dtype["descriptor"].base == np.uint8 else dim
        return d.shape[0], d.shape[1], d.shape[2] - 5


def convert_rows(path: str | Path, meta: np.ndarray, desc: np.ndarray, entries: list[dict[str, Any]], k: int,
                 positions: str, row_start: int, packed: bool = False) -> list[dict[str, np.ndarray]]:
    """Rows of the local store from release rows (entries: the image-list entries of the same images)."""
    rows = []
    for i, (m, x, e) in enumerate(zip(meta, desc, entries)):
        valid = m[:, 3] == 0
        if not packed and (np.linalg.norm(x[~valid], axis=1) > 1e-6).any():
            raise ValueError(f"{path}: row {row_start + i} ({e['path']}): padded entries (mask 1) carry descriptors; "
                             "the mask column looks inverted or the file is corrupt")
        m, x = m[valid], x[valid]
        order = np.argsort(-m[:, 4], kind="stable")[:k]
        m, x = m[order], x[order]
        xy = m[:, :2].copy()
        w, h = e.get("width", 0), e.get("height", 0)
        fractions = positions == "normalised" or (positions == "auto" and len(xy) and np.abs(xy).max() <= 1.0)
        if fractions:
            xy *= np.array([w, h], np.float32)
        norms = np.linalg.norm(x, axis=1, keepdims=True)
        if not (np.abs(norms - 1) < 1e-3).all():  # already unit norm (detector output): kept exactly as released
            x = x / np.maximum(norms, 1e-12)
        rows.append({"descriptors": x.astype(np.float16), "xy": xy.astype(np.float32),
                     "scale": m[:, 2].astype(np.float32), "weight": m[:, 4].astype(np.float32),
                     "orientation": np.zeros(len(m), np.float32), "image_size": np.array([w, h], np.int32)})
    return rows
