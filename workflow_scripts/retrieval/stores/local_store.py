"""The local-descriptor store: one HDF5 schema for chunks and for their merged virtual view.

Datasets (N images, K descriptors per image, strongest first, padding a suffix):

================  ===============  =====================================================
``descriptors``   (N, K, D) f16    L2-normalised local descriptors, zero rows as padding
``count``         (N,) int32       valid descriptors per image (masks derive from it)
``xy``            (N, K, 2) f32    positions in pixels of the full original image
``scale``         (N, K) f32       SIFT size, or the pyramid scale of a deep feature
``weight``        (N, K) f32       detector weight (SIFT response), descending
``orientation``   (N, K) f32       degrees (optional)
``image_size``    (N, 2) int32     (width, height) of the original image
``global``        (N, G) f32       optional: the backbone's global descriptor (deep backbones)
================  ===============  =====================================================

Attributes: ``schema_version``, ``kind = "local"``, ``backbone``, ``dim``, ``K``, ``row_start``,
``row_stop`` (rows of the full list this file holds) and ``n_total``. HDF5 chunks are one image per
chunk so row reads stay cheap; no heavy compression.

The merged file is a virtual dataset over the chunk files, with sources named relative to its own folder.
A missing source would silently read as fill values, so ``open_local`` verifies every source first.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import h5py
import numpy as np

from retrieval import SCHEMA_VERSION
from retrieval.runtime import atomic_path, fault_point, make_again

ROW_FIELDS = ("descriptors", "count", "xy", "scale", "weight", "orientation", "image_size")


COUNT_FILL = -1  # a virtual 'count' reading -1 means a source was missing


class StoreError(ValueError):
    """A local-descriptor file or chunk set that cannot be used, the message naming the file: another kind or schema
    version, missing datasets, missing or unreadable chunks and sources, row counts that do not agree, a row with more
    than K descriptors."""

    pass


def _layouts(n: int, k: int, d: int) -> dict[str, tuple[tuple[int, ...], Any]]:
    return {
        "descriptors": ((n, k, d), np.float16),
        "count": ((n,), np.int32),
        "xy": ((n, k, 2), np.float32),
        "scale": ((n, k), np.float32),
        "weight": ((n, k), np.float32),
        "orientation": ((n, k), np.float32),
        "image_size": ((n, 2), np.int32),
    }


def write_local_chunk(
    path: str | Path,
    rows: Sequence[dict[str, np.ndarray]],
    *,
    k: int,
    dim: int,
    backbone: str,
    row_start: int,
    n_total: int,
    extra_attrs: dict[str, Any] | None = None,
    global_desc: np.ndarray | None = None,
) -> None:
    """Write one chunk atomically (a temporary name, renamed when complete): rows ``row_start`` to ``row_start + len(rows)``
    of a store of ``n_total`` images, in the layout the module docstring gives (padded to ``k`` per image, float16
    descriptors of width ``dim``, one image per HDF5 chunk). Each row: ``descriptors`` (n_i, D), ``xy`` (n_i, 2)
    pixels, ``scale``, ``weight``, ``orientation`` (n_i,), ``image_size`` (2,) (width, height), with n_i <= K
    already sorted strongest first; ``global_desc`` (n, G) float32 for a deep backbone; ``extra_attrs`` more file
    attributes. StoreError naming the file for a row with more than ``k`` descriptors, or global descriptors
    whose row count is not the rows'."""
    n = len(rows)
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        dsets = {}
        for name, (shape, dtype) in _layouts(n, k, dim).items():
            chunks = (1,) + shape[1:] if n and len(shape) > 1 else None
            dsets[name] = f.create_dataset(name, shape=shape, dtype=dtype, chunks=chunks)
        for i, r in enumerate(rows):
            m = int(len(r["descriptors"]))
            if m > k:
                raise StoreError(f"{path}: row {i} has {m} descriptors, more than K={k}")
            desc = np.zeros((k, dim), np.float16)
            desc[:m] = r["descriptors"]
            dsets["descriptors"][i] = desc
            dsets["count"][i] = m
            for name, width in (("xy", 2), ("scale", 0), ("weight", 0), ("orientation", 0)):
                buf = np.zeros((k, width) if width else (k,), np.float32)
                buf[:m] = r[name]
                dsets[name][i] = buf
            dsets["image_size"][i] = r["image_size"]
        if global_desc is not None:
            g = np.asarray(global_desc, np.float32)
            if g.ndim != 2 or len(g) != n:
                raise StoreError(f"{path}: global descriptors {g.shape} do not match {n} rows")
            f.create_dataset("global", data=g)
        f.attrs.update(
            {
                "schema_version": SCHEMA_VERSION,
                "kind": "local",
                "backbone": backbone,
                "dim": dim,
                "K": k,
                "row_start": row_start,
                "row_stop": row_start + n,
                "n_total": n_total,
                "virtual": False,
                "global_dim": 0 if global_desc is None else int(np.asarray(global_desc).shape[1]),
                **(extra_attrs or {}),
            }
        )


def _check_attrs(f: h5py.File, path: str) -> None:
    if f.attrs.get("kind") != "local":
        raise StoreError(f"{path}: not a local-descriptor file (attribute kind={f.attrs.get('kind')!r})")
    if int(f.attrs.get("schema_version", -1)) != SCHEMA_VERSION:
        raise StoreError(f"{path}: schema version {f.attrs.get('schema_version')} != {SCHEMA_VERSION}")
    missing = [n for n in ROW_FIELDS if n not in f]
    if missing:
        raise StoreError(f"{path}: missing datasets {missing}")
    n = f["count"].shape[0]
    for name in ROW_FIELDS:
        if f[name].shape[0] != n:
            raise StoreError(f"{path}: dataset '{name}' has {f[name].shape[0]} rows, 'count' has {n}")


def merge_local_chunks(
    chunk_paths: Sequence[str | Path], out_path: str | Path, n_expected: int, groups: Sequence[int] | None = None
) -> dict[str, Any]:
    """Write a virtual HDF5 over the chunks (in the given order) after checking they tile 0..n_expected, and return
    ``{n_rows, n_chunks, parts, K, dim, global_dim, backbone, extract_seconds, descriptors_total}`` (rows, chunks,
    rows per part, descriptors per image, their width, the global width (0: none), the backbone, the chunks'
    summed extraction seconds, the descriptors over all rows). StoreError naming the file for: no chunk, a chunk
    missing, unreadable or of another kind or schema, chunks that do not tile their part's rows (a gap, an
    overlap, another total), chunks of different K, width, global width or backbone, or a virtual view that
    reads fill values.

    ``groups``: the chunks come in consecutive parts of these many chunks, each part extracted from its own image
    list (``{dataset}+1m``: the dataset's chunks, then the distractors'); each part tiles its own rows and the
    parts are stacked in order."""
    out_path = Path(out_path)
    if not chunk_paths:
        raise StoreError(f"{out_path}: no chunk files to merge")
    groups = list(groups) if groups is not None else [len(chunk_paths)]
    if sum(groups) != len(chunk_paths):
        raise StoreError(f"{out_path}: {len(chunk_paths)} chunk files given for parts of {groups} chunks")
    infos = []
    for p in chunk_paths:
        p = Path(p)
        if not p.is_file():
            raise StoreError(f"chunk file missing: {p}")
        try:
            with h5py.File(p, "r") as f:
                _check_attrs(f, str(p))
                infos.append(
                    {
                        "path": p,
                        **{k: f.attrs[k] for k in ("backbone", "dim", "K", "row_start", "row_stop", "n_total")},
                        "global_dim": int(f.attrs.get("global_dim", 0)),
                        "n": f["count"].shape[0],
                        "seconds": float(f.attrs.get("seconds", np.nan)),
                    }
                )
        except OSError as e:
            raise StoreError(f"chunk file unreadable (truncated or not HDF5): {p} ({e})") from e
    first = infos[0]
    offset, at = 0, 0
    part_rows = []
    for size in groups:
        part = infos[at : at + size]
        at += size
        row = 0
        for info in part:
            for key in ("backbone", "dim", "K", "global_dim"):
                if info[key] != first[key]:
                    raise StoreError(
                        f"{info['path']}: attribute {key}={info[key]!r} differs from {first['path']} ({first[key]!r})"
                    )
            if info["n_total"] != part[0]["n_total"]:
                raise StoreError(
                    f"{info['path']}: n_total={info['n_total']} differs from {part[0]['path']} ({part[0]['n_total']})"
                )
            if info["row_start"] != row or info["row_stop"] - info["row_start"] != info["n"]:
                raise StoreError(
                    f"{info['path']}: holds rows {info['row_start']}..{info['row_stop']} ({info['n']} rows) "
                    f"but the next expected row is {row}: a chunk is missing, short or out of order"
                )
            row = int(info["row_stop"])
            info["offset"] = offset
        if row != int(part[0]["n_total"]):
            raise StoreError(
                f"{out_path}: chunks from {part[0]['path']} on hold {row} rows but n_total={part[0]['n_total']}"
            )
        part_rows.append(row)
        offset += row
    if offset != n_expected:
        raise StoreError(
            f"{out_path}: chunks hold {offset} rows (parts {part_rows}) but the image list has {n_expected}"
        )

    k, d, gd = int(first["K"]), int(first["dim"]), int(first["global_dim"])
    layouts = _layouts(n_expected, k, d)
    if gd:
        layouts["global"] = ((n_expected, gd), np.float32)
    with atomic_path(out_path) as tmp:
        with h5py.File(tmp, "w") as f:
            for name, (shape, dtype) in layouts.items():
                layout = h5py.VirtualLayout(shape=shape, dtype=dtype)
                for info in infos:
                    # relative to the merged file (HDF5 looks there first), so the results folder can move
                    rel = os.path.relpath(Path(info["path"]).resolve(), out_path.parent.resolve())
                    src = h5py.VirtualSource(rel, name, shape=(info["n"],) + shape[1:])
                    start = int(info["offset"] + info["row_start"])
                    layout[start : start + int(info["n"])] = src
                fill = COUNT_FILL if name == "count" else 0
                f.create_virtual_dataset(name, layout, fillvalue=fill)
            f.attrs.update(
                {
                    "schema_version": SCHEMA_VERSION,
                    "kind": "local",
                    "backbone": first["backbone"],
                    "dim": d,
                    "K": k,
                    "row_start": 0,
                    "row_stop": n_expected,
                    "n_total": n_expected,
                    "virtual": True,
                    "n_chunks": len(infos),
                    "global_dim": gd,
                    "extract_seconds": float(sum(i["seconds"] for i in infos)),
                }
            )
        # verify through the virtual view before the file gets its final name
        with h5py.File(tmp, "r") as f:
            _verify_sources(f, Path(out_path))
            counts = f["count"][:]
        if (counts == COUNT_FILL).any():
            raise StoreError(
                f"{out_path}: virtual 'count' reads fill values at rows {np.flatnonzero(counts == COUNT_FILL)[:5]}"
            )
        fault_point("merge")  # the merged file is complete under its temporary name
    return {
        "n_rows": n_expected,
        "n_chunks": len(infos),
        "parts": part_rows,
        "K": k,
        "dim": d,
        "global_dim": gd,
        "backbone": first["backbone"],
        "extract_seconds": round(float(sum(i["seconds"] for i in infos)), 3),
        "descriptors_total": int(counts.sum()),
    }


def _verify_sources(f: h5py.File, path: Path) -> None:
    """Every source of every virtual dataset exists, is readable and has the rows it is mapped to."""
    checked: dict[str, int] = {}
    for name in ROW_FIELDS + (("global",) if "global" in f else ()):
        dset = f[name]
        if not dset.is_virtual:
            continue
        for vs in dset.virtual_sources():
            src = _source_path(vs.file_name, path)
            key = str(src)
            if key not in checked:
                if not src.is_file():
                    raise StoreError(f"{path}: source chunk missing: {src}")
                try:
                    with h5py.File(src, "r") as s:
                        _check_attrs(s, key)
                        checked[key] = s["count"].shape[0]
                        # a truncated file can still open: touch the last row of every dataset
                        for n in ROW_FIELDS:
                            if s[n].shape[0]:
                                s[n][-1]
                except (OSError, KeyError) as e:
                    raise StoreError(f"{path}: source chunk unreadable (truncated?): {src} ({e})") from e
            if f.attrs.get("layout") == "cache":
                # a feature-cache store maps runs of a pack's rows (feature_cache.py): each run lies inside its pack
                sb = vs.src_space.get_select_bounds()
                if sb is not None and int(sb[1][0]) >= checked[key]:
                    raise StoreError(f"{path}: source {src} has {checked[key]} rows, row {int(sb[1][0])} is mapped")
                continue
            bounds = vs.vspace.get_select_bounds()  # None for an empty chunk
            n_mapped = 0 if bounds is None else int(bounds[1][0]) - int(bounds[0][0]) + 1
            if n_mapped != checked[key]:
                raise StoreError(f"{path}: source {src} has {checked[key]} rows, {n_mapped} are mapped")


def missing_sources(path: str | Path) -> list[Path]:
    """The files a merged store's virtual datasets read from that no longer exist, sorted (a deleted extraction
    chunk or feature-cache pack leaves the store unreadable); [] when every source exists or the store is not
    virtual. Relative source names are resolved against the store's folder, as HDF5 does. Reads only the metadata
    of ``count`` (every row field maps the same files). Raises OSError when ``path`` is not a readable HDF5 file."""
    path = Path(path)
    with h5py.File(path, "r") as f:
        if "count" not in f or not f["count"].is_virtual:
            return []
        plist = f["count"].id.get_create_plist()  # file names only: 3x faster than virtual_sources() at 20k runs
        names = {plist.get_virtual_filename(i) for i in range(plist.get_virtual_count())}
    return sorted(src for src in (_source_path(n, path) for n in names) if not src.is_file())


def _source_path(name: str, store: Path) -> Path:
    """A virtual dataset's source file: an absolute name as it is, a relative one against the store's folder (as
    HDF5 resolves it)."""
    return Path(name) if Path(name).is_absolute() else store.parent / name


def open_local(path: str | Path) -> h5py.File:
    """Open a chunk or a merged store for reading, after checking its schema and (for virtual files) sources."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"local-descriptor store not found: {path}")
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise StoreError(f"{path}: not a readable HDF5 file ({e}); {make_again(path)}") from e
    try:
        _check_attrs(f, str(path))
        if f.attrs.get("virtual"):
            _verify_sources(f, path)
    except Exception:
        f.close()
        raise
    return f


def read_row_runs(dataset: h5py.Dataset, rows: np.ndarray | Sequence[int], cols: int | None = None) -> np.ndarray:
    """``dataset[rows]`` (``dataset[rows, :cols]`` with ``cols``) for sorted, unique ``rows``, read as one slice per
    run of consecutive rows.

    h5py turns a list index into an element selection that costs milliseconds per row on a virtual dataset (a
    merged store): 256 of 1,330 demo rows took 3.2 s that way and 0.1 s as slices (README, "Speed"). The result
    is the same array, shape (len(rows), ...) and the dataset's dtype. Raises ValueError when ``rows`` are not
    sorted and unique."""
    rows = np.asarray(rows, dtype=np.int64)
    if len(rows) > 1 and not bool((np.diff(rows) > 0).all()):
        raise ValueError("read_row_runs: rows must be sorted and unique")
    tail = () if cols is None else (slice(0, cols),)
    if len(rows) == 0:
        return dataset[(slice(0, 0), *tail)]
    breaks = np.flatnonzero(np.diff(rows) != 1) + 1
    runs = np.split(rows, breaks)
    parts = [dataset[(slice(int(r[0]), int(r[-1]) + 1), *tail)] for r in runs]
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def read_rows(
    f: h5py.File, rows: np.ndarray | Sequence[int], fields: Sequence[str] = ("descriptors", "count")
) -> dict[str, np.ndarray]:
    """``fields`` of ``rows`` (n,) int of an open local store ``f``, read in sorted order as runs of consecutive rows
    (:func:`read_row_runs`) and returned in the requested order (repeats allowed): per field an array (n, ...) of
    the store's dtype and trailing shape (``descriptors`` (n, K, D) float16, ``count`` (n,) int32, ``xy`` (n, K, 2)
    float32, ...)."""
    rows = np.asarray(rows, dtype=np.int64)
    uniq, inverse = np.unique(rows, return_inverse=True)
    return {name: read_row_runs(f[name], uniq)[inverse] for name in fields}


def row_of(f: h5py.File, r: int) -> dict[str, np.ndarray]:
    """Row ``r`` of an open local store, chunk or pack as the row dict write_local_chunk takes: its descriptors,
    ``xy``, ``scale``, ``weight`` and ``orientation`` trimmed to its ``count``, and its ``image_size``."""
    m = int(f["count"][r])
    return {
        "descriptors": f["descriptors"][r, :m],
        "xy": f["xy"][r, :m],
        "scale": f["scale"][r, :m],
        "weight": f["weight"][r, :m],
        "orientation": f["orientation"][r, :m],
        "image_size": f["image_size"][r],
    }


def rows_from_chunks(
    chunk_paths: Sequence[str | Path], rows: Sequence[int]
) -> tuple[list[dict[str, np.ndarray]], np.ndarray | None]:
    """Rows of a split's store read back from its chunk files (before any merge), in the order asked, as the row
    dicts :func:`write_local_chunk` takes (descriptors trimmed to their count) plus the ``global`` rows (None for
    SIFT). Raises StoreError naming the chunk when a row is held by no chunk or a chunk is unreadable."""
    infos = []
    for p in chunk_paths:
        try:
            with h5py.File(p, "r") as f:
                _check_attrs(f, str(p))
                infos.append((int(f.attrs["row_start"]), int(f.attrs["row_stop"]), str(p)))
        except OSError as e:
            raise StoreError(f"chunk file unreadable (truncated or not HDF5): {p} ({e})") from e
    out: list[dict[str, np.ndarray] | None] = [None] * len(rows)
    globals_: list[np.ndarray | None] = [None] * len(rows)
    wanted = np.asarray(rows, np.int64)
    for start, stop, path in infos:
        here = np.flatnonzero((wanted >= start) & (wanted < stop))
        if not len(here):
            continue
        with h5py.File(path, "r") as f:
            has_global = "global" in f
            for i in here:
                r = int(wanted[i]) - start
                out[i] = row_of(f, r)
                globals_[i] = f["global"][r] if has_global else None
    missing = [int(wanted[i]) for i, o in enumerate(out) if o is None]
    if missing:
        raise StoreError(f"rows {missing[:5]} are in none of the chunks {[str(p) for p in chunk_paths][:3]}...")
    g = None if any(x is None for x in globals_) else np.stack(globals_) if globals_ else None
    return out, g
