"""Global descriptors (one vector per image) and neighbour lists, as small HDF5 files with a schema version."""

from __future__ import annotations

import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import h5py
import numpy as np

from retrieval import SCHEMA_VERSION
from retrieval.featureless import featureless_rows
from retrieval.runtime import atomic_path, open_h5
from retrieval.stores.local_store import read_row_runs

# A block of database rows is held as float32 (the search converts it), so a fixed row count grows with the
# dimension: 100,000 rows are 400 MB at 1024-d and 3.3 GB at the 8192-d VLAD. Blocks are capped at this many bytes.
BLOCK_BYTES = 256 * 2**20


def block_rows(block: int, dim: int) -> int:
    """Database rows read at a time: at most ``block`` (``knn.block``, ``benchmark.scale.block``) and at most
    :data:`BLOCK_BYTES` (256 MiB) of float32 rows of ``dim`` values: 65,536 rows at 1024-d, 8,192 at 8192-d, so
    memory follows the block at any dimension. Results do not depend on it (exact search's blocks only stream)."""
    return max(1, min(int(block), BLOCK_BYTES // (4 * max(1, int(dim)))))


def write_global(path: str | Path, x: np.ndarray, **attrs: Any) -> None:
    """Write global descriptors ``x`` (N, D), as float32, to dataset ``descriptors`` of a new file at ``path``
    (atomically), with attributes ``schema_version``, ``kind = "global"``, ``dim`` and ``attrs``. Nothing is checked: an
    array that is not 2-D is written as it is, with ``dim`` 0."""
    x = np.asarray(x, np.float32)
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        f.create_dataset("descriptors", data=x)
        f.attrs.update(
            {"schema_version": SCHEMA_VERSION, "kind": "global", "dim": x.shape[1] if x.ndim == 2 else 0, **attrs}
        )


@contextmanager
def global_writer(path: str | Path, n: int, dim: int, **attrs: Any) -> Iterator[h5py.Dataset]:
    """The ``descriptors`` dataset (n, dim) float32 of a new global-descriptor file, to be written in row blocks
    (``ds[s:e] = rows``), so memory follows the block, not n (a million 8192-d VLADs are 32 GB). The file is
    written under a temporary name and renamed into place only when the block succeeds."""
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        ds = f.create_dataset("descriptors", shape=(n, dim), dtype=np.float32)
        f.attrs.update({"schema_version": SCHEMA_VERSION, "kind": "global", "dim": dim, **attrs})
        yield ds


def finite_rows(path: str | Path, x: np.ndarray) -> np.ndarray:
    """``x`` as read from ``path``; ValueError naming the file if it holds NaN or infinite values."""
    if not np.isfinite(x).all():
        raise ValueError(f"{path}: global descriptors contain NaN or infinite values")
    return x


def open_global(path: str | Path) -> h5py.File:
    """A global-descriptor file opened for reading in blocks (``f["descriptors"][s:e]``, (N, D)); ValueError naming
    the file if it is not one."""
    f = open_h5(path)
    if f.attrs.get("kind") != "global":
        kind = f.attrs.get("kind")
        f.close()
        raise ValueError(f"{path}: not a global-descriptor file (kind={kind!r})")
    return f


def read_global(path: str | Path) -> np.ndarray:
    """All global descriptors of a file (N, D) float32; ValueError naming the file for another kind of file or
    non-finite values."""
    with open_global(path) as f:
        x = f["descriptors"][:]
    return finite_rows(path, x)


def read_global_rows(path: str | Path, rows: np.ndarray) -> np.ndarray:
    """Global descriptors of the given database rows, shape ``rows.shape + (D,)`` float32, in the order asked
    (repeats allowed), read as runs of consecutive rows: a re-ranker that needs only its shortlist's rows need not
    hold a million 8192-d descriptors (32 GB). Sorted unique rows are returned without a second copy. ValueError
    naming the file for another kind of file, rows beyond it, or non-finite values."""
    rows = np.asarray(rows, np.int64)
    uniq, inverse = np.unique(rows, return_inverse=True)
    with open_global(path) as f:
        d = f["descriptors"]
        if len(uniq) and (uniq[0] < 0 or uniq[-1] >= len(d)):
            raise ValueError(f"{path}: row {int(uniq[-1] if uniq[-1] >= len(d) else uniq[0])} asked of {len(d)}")
        x = finite_rows(path, read_row_runs(d, uniq))
    if rows.ndim == 1 and len(uniq) == len(rows) and bool((uniq == rows).all()):
        return x
    return x[inverse.reshape(rows.shape)]


class BlockReader:
    """The database side of a streamed search over an open global-descriptor file (``descriptors``, the file's
    (N, D) dataset): ``reader(s, e)`` returns rows ``s:e`` float32, checked finite (ValueError naming the file), as
    :func:`~retrieval.search.exact.stream_topk` and the IVF-PQ search ask for them; ``reader.rows(ids)`` the rows of
    any ids (``ids.shape + (D,)``). Counted as they pass: ``seconds``, the wall seconds spent reading (a method's
    cost report), and ``featureless``, (N,) bool, the all-zero rows (images without features, ``featureless.py``)
    among the blocks read so far (all of them once a search has passed over the file)."""

    def __init__(self, path: str | Path, descriptors: Any):
        self.path, self.descriptors, self.seconds = path, descriptors, 0.0
        self.featureless = np.zeros(len(descriptors), bool)

    def __call__(self, s: int, e: int) -> np.ndarray:
        t0 = time.perf_counter()
        x = finite_rows(self.path, self.descriptors[s:e])
        self.seconds += time.perf_counter() - t0
        self.featureless[s : s + len(x)] = featureless_rows(x)
        return x

    def rows(self, ids: np.ndarray) -> np.ndarray:
        """The rows ``ids`` (any shape, repeats allowed) as ``ids.shape + (D,)`` float32, through
        :func:`read_global_rows` (which opens the file at ``path`` again); ValueError naming the file for rows beyond it
        or non-finite values. Counted in ``seconds``; ``featureless`` is not updated."""
        t0 = time.perf_counter()
        x = read_global_rows(self.path, ids)
        self.seconds += time.perf_counter() - t0
        return x


def _named(path: str | Path) -> str:
    """A global-descriptor file as an error names it: with the file it was imported from (its ``source``), which is
    the one the user gave (helper-101: the workflow's copies alone were named)."""
    try:
        with open_h5(path) as f:
            source = f.attrs.get("source")
    except (OSError, ValueError):
        source = None
    return f"{path} (imported from {source})" if source else str(path)


def check_dim(path: str | Path, file_dim: int, query_dim: int, query_path: str | Path | None = None) -> None:
    """ValueError naming the database file (and ``query_path``, when given), each with the file it was imported from
    where it was, when the queries' dimension differs from its descriptors'."""
    if file_dim != query_dim:
        of = f" ({_named(query_path)})" if query_path is not None else ""
        raise ValueError(
            f"{_named(path)}: database descriptors of dimension {file_dim}, queries{of} of dimension {query_dim}"
        )


def global_shape(path: str | Path) -> tuple[int, int]:
    """(N, D) of a global-descriptor file, without reading it."""
    with open_global(path) as f:
        n, d = f["descriptors"].shape
    return int(n), int(d)


def _check_ids(where: str, ids: np.ndarray, n_db: Any) -> None:
    """Every neighbour id is a database row: ``0 <= id < n_db`` (no padding sentinel exists in this format)."""
    if ids.size and ids.min() < 0:
        raise ValueError(
            f"{where}: neighbour id {int(ids.min())} is not a database image (ids are rows 0..n_db-1; a "
            "shortlist is never padded)"
        )
    if n_db is not None and ids.size and ids.max() >= int(n_db):
        raise ValueError(f"{where}: neighbour id {int(ids.max())} is beyond the database's {int(n_db)} images")


def write_neighbours(
    path: str | Path,
    ids: np.ndarray,
    sims: np.ndarray,
    featureless: tuple[np.ndarray, np.ndarray] | None = None,
    **attrs: Any,
) -> None:
    """``ids (Nq, k)`` int32 database rows and ``sims (Nq, k)`` float32, best first (-inf: no match, see
    featureless.py); every id must lie in ``[0, attrs["n_db"])`` (ValueError otherwise), so every reader can index
    the database with them. Optional ``featureless = (query (Nq,) bool, db (n_db,) bool)``: the images without
    features, stored as ``query_featureless`` / ``db_featureless``."""
    if ids.shape != sims.shape:
        raise ValueError(f"ids {ids.shape} and sims {sims.shape} differ in shape")
    _check_ids(str(path), np.asarray(ids), attrs.get("n_db"))
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        f.create_dataset("ids", data=np.asarray(ids, np.int32))
        f.create_dataset("sims", data=np.asarray(sims, np.float32))
        if featureless is not None:
            f.create_dataset("query_featureless", data=np.asarray(featureless[0], bool))
            f.create_dataset("db_featureless", data=np.asarray(featureless[1], bool))
        f.attrs.update({"schema_version": SCHEMA_VERSION, "kind": "neighbours", **attrs})


def read_neighbours(path: str | Path) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """``ids`` (Nq, k) int32, ``sims`` (Nq, k) float32 and the attributes of a neighbours file
    (:func:`write_neighbours`). ValueError naming the file when its ``kind`` is not ``neighbours`` or an id is outside
    [0, ``n_db``); FileNotFoundError / ValueError from :func:`~retrieval.runtime.open_h5` for a missing or unreadable
    file."""
    path = Path(path)
    with open_h5(path) as f:
        if f.attrs.get("kind") != "neighbours":
            raise ValueError(f"{path}: not a neighbours file (kind={f.attrs.get('kind')!r})")
        ids, sims, attrs = f["ids"][:], f["sims"][:], dict(f.attrs)
    _check_ids(str(path), ids, attrs.get("n_db"))
    return ids, sims, attrs


FIRST_STAGE_ATTRS = ("codebook_size", "db_multiple_assignment", "query_multiple_assignment")


def read_first_stage(path: str | Path) -> dict[str, Any] | None:
    """What ranked a neighbours file when it is not a search of global descriptors: for an ASMK ranking (attribute
    ``search`` = ``"asmk"``, written by ``asmk_search``) ``{"method": "asmk", "knn": path, "codebook_size",
    "db_multiple_assignment", "query_multiple_assignment"}`` (ints: the words and assignments used, which can be
    fewer than configured); ``None`` for any other file. FileNotFoundError / ValueError from
    :func:`~retrieval.runtime.open_h5` for a missing or unreadable file; KeyError naming the file when an ASMK ranking
    lacks one of these attributes."""
    with open_h5(path) as f:
        attrs = dict(f.attrs)
    if attrs.get("search") != "asmk":
        return None
    missing = [a for a in FIRST_STAGE_ATTRS if a not in attrs]
    if missing:
        raise KeyError(f"{path}: an ASMK ranking without {', '.join(missing)}")
    return {"method": "asmk", "knn": str(path), **{a: int(attrs[a]) for a in FIRST_STAGE_ATTRS}}


def read_featureless(path: str | Path, n_queries: int, n_db: int) -> tuple[np.ndarray, np.ndarray]:
    """(query (Nq,) bool, db (n_db,) bool): the images without features a neighbours file records; none recorded
    (an imported shortlist, an older file) reads as all False."""
    path = Path(path)
    with open_h5(path) as f:
        if "query_featureless" not in f:
            return np.zeros(n_queries, bool), np.zeros(n_db, bool)
        q, d = f["query_featureless"][:].astype(bool), f["db_featureless"][:].astype(bool)
    if q.shape != (n_queries,) or d.shape != (n_db,):
        raise ValueError(
            f"{path}: featureless flags for {q.shape[0]} queries / {d.shape[0]} images, expected {n_queries} / {n_db}"
        )
    return q, d


def featureless_queries(path: str | Path, n_queries: int, n_db: int) -> np.ndarray | None:
    """(Nq,) bool, the queries a neighbours file records as without features, or None when there are none (what
    the metrics take as ``retrieved_nothing``)."""
    q_none = read_featureless(path, n_queries, n_db)[0]
    return q_none if q_none.any() else None
