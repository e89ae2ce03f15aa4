"""The AMES database store: every database image prepared once for a given model, never re-projected per pair.

================  ====================  ===========================================================
``count``         (N,) int32            valid descriptors per image (at most K, strongest first)
``codes``         (N, K, bits/8) uint8  ``ames_binary``: packed sign bits of the ITQ-initialised projection
                                        (x >= 0 -> 1, ``np.packbits`` big-endian bit order), zero padding
``tokens``        (N, K, 128) float16   ``ames``: the projected tokens after the LayerNorm, as AMES stores them
================  ====================  ===========================================================

Attributes: ``kind = "ames_db"``, ``method``, ``K``, ``bits`` / ``model_dim``, ``model_digest`` (of the model's
weights, checked against the model that reads it), ``bytes_per_image`` (payload + count). One image per HDF5 chunk,
so re-ranking reads only the shortlisted rows (sorted, in blocks).

A binary code is 16 bytes per descriptor for 128 bits: 600 descriptors are 9.6 KB per image; the full-precision
tokens are 256 bytes per descriptor.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch

from retrieval import SCHEMA_VERSION
from retrieval.runtime import atomic_path, open_h5, state_digest
from retrieval.stores.local_store import read_row_runs


def model_digest(model: torch.nn.Module) -> str:

    return state_digest(model)


@torch.no_grad()
def encode(model, desc: np.ndarray, device: str = "cpu") -> np.ndarray:
    """Database payload of a block of images (n, K, D): packed codes (binary model) or float16 tokens."""
    x = torch.from_numpy(np.ascontiguousarray(desc, np.float32)).to(device)
    if model.cfg.binarized:
        z = model.remap_local[0].project(torch.nn.functional.normalize(x, p=2, dim=-1))
        return np.packbits((z >= 0).cpu().numpy(), axis=-1)
    return model.project_db(x).cpu().numpy().astype(np.float16)


@torch.no_grad()
def decode(model, payload: np.ndarray, device: str = "cpu") -> torch.Tensor:
    """Tokens (n, K, 128) float32 from stored payload: unpacked +-1 codes through Linear + LayerNorm, or tokens."""
    if model.cfg.binarized:
        bits = model.remap_local[0].W.shape[1]
        signs = np.unpackbits(payload, axis=-1)[..., :bits].astype(np.float32) * 2.0 - 1.0
        t = torch.from_numpy(signs).to(device)
        return model.remap_local[2](model.remap_local[1](t)).float()
    return torch.from_numpy(payload.astype(np.float32)).to(device)


def write_store(
    path: str | Path, model, local, k: int, method: str, device: str = "cpu", block: int = 256
) -> dict[str, Any]:
    """Prepare the database side of an open local store ``local`` (first ``k`` descriptors of every image)."""
    n = local["count"].shape[0]
    k = min(k, local["descriptors"].shape[1])
    binary = model.cfg.binarized
    width = model.remap_local[0].W.shape[1] // 8 if binary else model.cfg.model_dim
    name, dtype = ("codes", np.uint8) if binary else ("tokens", np.float16)
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        counts = np.minimum(local["count"][:], k).astype(np.int32)
        f.create_dataset("count", data=counts)
        d = f.create_dataset(name, shape=(n, k, width), dtype=dtype, chunks=(1, k, width) if n else None)
        for s in range(0, n, block):
            desc = local["descriptors"][s : s + block, :k]
            payload = encode(model, desc, device)
            valid = np.arange(k)[None, :] < counts[s : s + block, None]
            payload[~valid] = 0
            d[s : s + len(desc)] = payload
        per_image = k * width * np.dtype(dtype).itemsize + 4
        f.attrs.update(
            {
                "schema_version": SCHEMA_VERSION,
                "kind": "ames_db",
                "method": method,
                "K": k,
                "bits" if binary else "model_dim": width * 8 if binary else width,
                "model_digest": model_digest(model),
                "bytes_per_image": per_image,
            }
        )
    return {"n": n, "K": k, "bytes_per_image": per_image, "payload": name}


class StoreReader:
    """Reads shortlisted rows of an AMES database store as tokens for one model."""

    def __init__(self, path: str | Path, model, device: str = "cpu"):
        self.path = Path(path)
        self.f = open_h5(self.path)
        if self.f.attrs.get("kind") != "ames_db":
            raise ValueError(f"{self.path}: not an AMES database store (kind={self.f.attrs.get('kind')!r})")
        if self.f.attrs["model_digest"] != model_digest(model):
            raise ValueError(
                f"{self.path}: prepared for another model (digest {self.f.attrs['model_digest']}, "
                f"this model {model_digest(model)}); rebuild it"
            )
        self.name = "codes" if model.cfg.binarized else "tokens"
        self.model, self.device = model, device
        self.K = int(self.f.attrs["K"])

    def read(self, rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Stored payload (first k descriptors) and counts of sorted ``rows``."""
        return read_row_runs(self.f[self.name], rows, min(k, self.K)), read_row_runs(self.f["count"], rows)

    def __call__(self, rows: np.ndarray, k: int) -> tuple[torch.Tensor, np.ndarray]:
        """Tokens (n, k, 128) and counts of sorted ``rows``."""
        payload, counts = self.read(rows, k)
        return decode(self.model, payload, self.device), counts

    def close(self) -> None:
        self.f.close()
