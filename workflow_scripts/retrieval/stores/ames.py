"""AMES's files: the database store (every database image prepared once for one model) and the logits file (every
(query, database) pair a protocol's shortlist needs, scored once). Formats only: what a payload is for a model (the
encode and decode) is ``methods/ames/payload.py``.

**Database store** (``results/ames_store/{dataset}/{v}/{method}.h5``, rule ``ames_store``):

================  ====================  ===========================================================
``count``         (N,) int32            valid descriptors per image (at most K, strongest first)
``codes``         (N, K, bits/8) uint8  ``ames_binary``: packed sign bits of the ITQ-initialised projection
                                        (x >= 0 -> 1, ``np.packbits`` big-endian bit order), zero padding
``tokens``        (N, K, 128) float16   ``ames``: the projected tokens after the LayerNorm, as AMES stores them
================  ====================  ===========================================================

Attributes: ``kind = "ames_db"``, ``method``, ``K``, ``bits`` / ``model_dim``, ``model_digest`` (of the model's
weights, checked against the model that reads it), ``bytes_per_image`` (payload + count), ``seconds`` (the time
spent preparing it: work done once per database and model, which the evaluation reports as such). One image per HDF5 chunk,
so re-ranking reads only the shortlisted rows (sorted, in blocks). A binary code is 16 bytes per descriptor for 128
bits: 600 descriptors are 9.6 KB per image; the full-precision tokens are 256 bytes per descriptor.

**Logits file** (``results/ames_logits/...``, rule ``ames_logits``): ``pair_db`` (Nq, W) int32, the database rows
scored for each query (the union of its protocols' top ``max_rerank``), -1 padding; ``logits`` (Nq, W) float32,
their logits, NaN padding. Attributes: ``kind = "ames_logits"``, the settings they were computed with (``q_desc``,
``db_desc``, ``max_rerank``, ``junk_mode``, ``device``, ``dtype``) and their cost (``seconds``, ``read_seconds``,
``n_pairs``, ``n_queries``).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Sequence

import h5py
import numpy as np

from retrieval import SCHEMA_VERSION
from retrieval.runtime import atomic_path, open_h5
from retrieval.stores.local_store import read_row_runs


def write_db_store(
    path: str | Path,
    local: Any,
    k: int,
    encode: Callable[[np.ndarray], np.ndarray],
    *,
    payload: str,
    width: int,
    method: str,
    model_digest: str,
    block: int = 256,
) -> dict[str, Any]:
    """The database store of an open local store ``local`` (``count`` (N,), ``descriptors`` (N, K0, D) float16):
    the first ``k`` descriptors of every image (at most K0), ``encode``\\ d a block of ``block`` images at a time
    ((n, k, D) -> (n, k, ``width``)), written to ``path`` (atomically: nothing is left at ``path`` on failure) as
    ``payload`` ("codes": uint8 packed bits, ``width`` bytes a descriptor; "tokens": float16, ``width`` values),
    padding zero. Returns {n, K, bytes_per_image, payload}. ValueError naming the local store and the rows when a
    descriptor is NaN or infinite."""
    if payload not in ("codes", "tokens"):
        raise ValueError(f"AMES store payload {payload!r}: 'codes' or 'tokens'")
    t0 = time.perf_counter()
    n = local["count"].shape[0]
    k = min(k, local["descriptors"].shape[1])
    dtype = np.uint8 if payload == "codes" else np.float16
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        counts = np.minimum(local["count"][:], k).astype(np.int32)
        f.create_dataset("count", data=counts)
        d = f.create_dataset(payload, shape=(n, k, width), dtype=dtype, chunks=(1, k, width) if n else None)
        for s in range(0, n, block):
            desc = local["descriptors"][s : s + block, :k]
            bad = np.flatnonzero(~np.isfinite(desc).all(axis=(1, 2)))
            if len(bad):  # a NaN descriptor gives NaN logits from any model
                raise ValueError(
                    f"{getattr(local, 'filename', 'local store')}: non-finite local descriptors in database row(s) "
                    f"{(bad + s)[:5].tolist()}"
                )
            x = encode(desc)
            x[~(np.arange(k)[None, :] < counts[s : s + block, None])] = 0
            d[s : s + len(x)] = x
        per_image = k * width * np.dtype(dtype).itemsize + 4
        f.attrs.update(
            {
                "schema_version": SCHEMA_VERSION,
                "kind": "ames_db",
                "method": method,
                "K": k,
                "bits" if payload == "codes" else "model_dim": width * 8 if payload == "codes" else width,
                "model_digest": model_digest,
                "bytes_per_image": per_image,
                "seconds": round(time.perf_counter() - t0, 3),  # the work done once per database and model
            }
        )
    return {"n": n, "K": k, "bytes_per_image": per_image, "payload": payload}


class DbStore:
    """An AMES database store opened for one model: ``read(rows, k)`` gives the stored payload of sorted ``rows``
    ((n, min(k, K), width), uint8 codes or float16 tokens) and their counts (n,) int32, reading only those rows.
    ValueError naming the file when it is not a store or was prepared for a model of another digest. A context
    manager (or ``close()``)."""

    def __init__(self, path: str | Path, model_digest: str, payload: str):
        self.path = Path(path)
        self.f = open_h5(self.path)
        try:
            if self.f.attrs.get("kind") != "ames_db":
                raise ValueError(f"{self.path}: not an AMES database store (kind={self.f.attrs.get('kind')!r})")
            if self.f.attrs["model_digest"] != model_digest:
                raise ValueError(
                    f"{self.path}: prepared for another model (digest {self.f.attrs['model_digest']}, "
                    f"this model {model_digest}); rebuild it"
                )
            if payload not in self.f:
                raise ValueError(f"{self.path}: no {payload!r} payload (a store of {self.f.attrs.get('method')})")
        except Exception:
            self.f.close()
            raise
        self.payload, self.K = payload, int(self.f.attrs["K"])
        self.seconds = float(self.f.attrs.get("seconds", 0.0))  # 0 in a store written before it was recorded

    def read(self, rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The payload of ``rows`` (sorted and unique: ValueError otherwise) cut to the first ``min(k, K)`` descriptors,
        (n, min(k, K), width) uint8 codes or float16 tokens, and their stored ``count`` (n,) int32 (not cut to ``k``);
        only those rows are read, as runs of consecutive rows."""
        return read_row_runs(self.f[self.payload], rows, min(k, self.K)), read_row_runs(self.f["count"], rows)

    def close(self) -> None:
        """Close the HDF5 file (what leaving a ``with`` block does)."""
        self.f.close()

    def __enter__(self) -> "DbStore":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def write_logits(path: str | Path, pairs: Sequence[np.ndarray], logits: Sequence[np.ndarray], **attrs: Any) -> None:
    """The logits file: per query, the database rows ``pairs[i]`` (m_i,) and their ``logits[i]`` (m_i,), padded to
    the longest (-1 / NaN), with ``attrs`` (the settings and cost; ``kind``, ``schema_version`` and ``n_pairs``,
    ``n_queries`` added). Written atomically."""
    width = max((len(p) for p in pairs), default=0)
    pair_db = np.full((len(pairs), width), -1, np.int32)
    pair_logit = np.full((len(pairs), width), np.nan, np.float32)
    for i, (p, lg) in enumerate(zip(pairs, logits)):
        pair_db[i, : len(p)], pair_logit[i, : len(p)] = p, lg
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as h:
        h.create_dataset("pair_db", data=pair_db)
        h.create_dataset("logits", data=pair_logit)
        h.attrs.update(
            {
                "schema_version": 1,
                "kind": "ames_logits",
                **attrs,
                "n_pairs": int(sum(len(p) for p in pairs)),
                "n_queries": len(pairs),
            }
        )


def read_logits(path: str | Path) -> tuple[list[np.ndarray], list[np.ndarray], dict[str, Any]]:
    """A logits file as written: per query the database rows (m_i,) int32 and their logits (m_i,) float32, and the
    attributes. ValueError naming the file when it is not a logits file or a scored pair's logit is NaN or
    infinite."""
    with open_h5(path) as h:
        if h.attrs.get("kind") != "ames_logits":
            raise ValueError(f"{path}: not an AMES logits file")
        pair_db, logit = h["pair_db"][:], h["logits"][:]
        attrs = dict(h.attrs)
    keep = pair_db >= 0
    if not np.isfinite(logit[keep]).all():
        raise ValueError(f"{path}: {int((~np.isfinite(logit[keep])).sum())} non-finite logit(s) among the scored pairs")
    return [r[k] for r, k in zip(pair_db, keep)], [r[k] for r, k in zip(logit, keep)], attrs
