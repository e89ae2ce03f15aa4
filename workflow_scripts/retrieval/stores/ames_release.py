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
corrupt, and is refused. Positions become pixels of the full image (``positions: auto`` treats an image's positions
as fractions when all lie within [-1, 1]), so ``sv`` can use them too; valid descriptors are kept strongest weight
first.
"""

from __future__ import annotations

import collections
import io
import pickle
import warnings
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from retrieval.runtime import atomic_path, check_recorded, open_h5, torch_load_problem

SPLIT_FILES = {"db": "gallery", "query": "query"}


def release_file(directory: str | Path, dataset: str, desc: str, split: str) -> Path:
    """The release file of ``split`` (``db`` or ``query``; KeyError otherwise):
    ``{directory}/{dataset}/{desc}_gallery_local.hdf5`` or ``{desc}_query_local.hdf5``; not checked to exist."""
    return Path(directory) / dataset / f"{desc}_{SPLIT_FILES[split]}_local.hdf5"


def read_rows(path: str | Path, start: int, stop: int) -> tuple[np.ndarray, np.ndarray, bool]:
    """Metadata (n, K, 5) float32 and descriptors (n, K, D) float32 of rows [start, stop), and whether they were
    packed bits (whose zero padding unpacks to -1s, so it cannot be checked for zero norm)."""
    path = Path(path)
    with _open_release(path) as f:  # a truncated or non-HDF5 file is named (h5py's own error names none)
        d = _features(path, f)
        block = d[start:stop]
    if block.dtype.names:
        if not {"metadata", "descriptor"} <= set(block.dtype.names):
            raise KeyError(
                f"{path}: structured 'features' needs fields metadata and descriptor, has {block.dtype.names}"
            )
        meta = block["metadata"].astype(np.float32)
        desc = block["descriptor"]
        if desc.dtype == np.uint8:
            return meta, np.unpackbits(desc, axis=-1).astype(np.float32) * 2.0 - 1.0, True
        return meta, desc.astype(np.float32), False
    if block.ndim != 3 or block.shape[2] <= 5:
        raise ValueError(f"{path}: flat 'features' must be (N, K, 5 + D), got {block.shape}")
    return block[..., :5].astype(np.float32), block[..., 5:].astype(np.float32), False


def _open_release(path: str | Path) -> Any:
    """A release file opened read-only; ValueError naming an unreadable one (no rule writes it: copy or export it
    again)."""
    try:
        return open_h5(path)
    except ValueError as e:
        cause = e.__cause__ or e
        raise ValueError(
            f"{path}: unreadable HDF5 file (truncated, or not HDF5: {cause}); copy the release file again, or "
            "export it again (results/export/ames/{dataset})"
        ) from None  # open_h5's message, chained, said to run again with -R: no rule writes a release file


def _features(path: Path, f: Any) -> Any:
    """The ``features`` dataset of an open release file; KeyError naming the file when it has none."""
    if "features" not in f:
        raise KeyError(f"{path}: no dataset 'features' (AMES local-descriptor files hold one)")
    return f["features"]


def n_rows(path: str | Path) -> tuple[int, int, int]:
    """(N, K, D) of a release file. FileNotFoundError / ValueError naming a missing or unreadable (truncated, not
    HDF5) file, KeyError naming one without ``features``."""
    with _open_release(path) as f:
        d = _features(Path(path), f)
        if d.dtype.names:
            k, dim = d.dtype["descriptor"].shape
            return d.shape[0], k, dim * 8 if d.dtype["descriptor"].base == np.uint8 else dim
        return d.shape[0], d.shape[1], d.shape[2] - 5


def convert_rows(
    path: str | Path,
    meta: np.ndarray,
    desc: np.ndarray,
    entries: list[dict[str, Any]],
    k: int,
    positions: str,
    row_start: int,
    packed: bool = False,
) -> list[dict[str, np.ndarray]]:
    """Rows of the local store (the row dicts :func:`~retrieval.stores.local_store.write_local_chunk` takes) from
    release rows read from ``path``: ``meta`` (n, K, 5) float (x, y, scale index, mask, weight; the module
    docstring) and ``desc`` (n, K, D) float (unpacked to -1/+1 where the file held ``packed`` sign bits), for the
    images ``entries`` (their image-list entries: ``width``, ``height``, ``path``), store rows from
    ``row_start``. Per image: the valid entries (mask 0), strongest weight first, at most ``k``; positions in
    pixels of the full image, read as fractions of its size under ``positions: normalised``, or under ``auto``
    where every coordinate lies in [-1, 1], else as pixels; descriptors L2-normalised unless already unit norm,
    stored float16. ValueError naming the file, row and image where padded entries (mask 1) carry descriptors of
    non-zero norm (an inverted mask column, or a corrupt file; not checked for packed bits)."""
    rows = []
    for i, (m, x, e) in enumerate(zip(meta, desc, entries)):
        valid = m[:, 3] == 0
        if not packed and (np.linalg.norm(x[~valid], axis=1) > 1e-6).any():
            raise ValueError(
                f"{path}: row {row_start + i} ({e['path']}): padded entries (mask 1) carry descriptors; "
                "the mask column looks inverted or the file is corrupt"
            )
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
        rows.append(
            {
                "descriptors": x.astype(np.float16),
                "xy": xy.astype(np.float32),
                "scale": m[:, 2].astype(np.float32),
                "weight": m[:, 4].astype(np.float32),
                "orientation": np.zeros(len(m), np.float32),
                "image_size": np.array([w, h], np.int32),
            }
        )
    return rows


def nn_file(directory: str | Path, dataset: str, name: str) -> Path:
    """The path ``{directory}/{dataset}/{name}`` of an AMES nearest-neighbour file (``nn_*.pkl``, read by
    :func:`read_nn`); not checked to exist."""
    return Path(directory) / dataset / name


def read_nn(path: str | Path, n_queries: int, n_db: int) -> tuple[np.ndarray, np.ndarray]:
    """The shortlist of an AMES ``nn_*.pkl``: a pickled torch tensor ``(2, Nq, K)``, ``[0]`` similarities sorted
    descending, ``[1]`` database indices stored as floats. Read with ``weights_only=True``; validated against the
    dataset's query and database counts. Returns ids (Nq, K) int64 and similarities (Nq, K) float32.
    FileNotFoundError for a missing file; ValueError naming the file for: an export file changed since its
    export's record (``runtime.check_recorded``), a truncated pickle, a file that is neither a torch tensor nor a
    plainly pickled one, another object than a tensor, a shape other than (2, Nq, K), another query count than
    ``n_queries``, indices that are not whole numbers (the two rows swapped?) or outside ``0 .. n_db - 1``, an
    image listed twice for one query, similarities not in descending order."""

    import torch  # noqa: PLC0415

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"nn file not found: {path}")
    check_recorded(path)
    try:
        with warnings.catch_warnings():  # a plain pickle (AMES's, or this workflow's export) is not torch's zip format
            warnings.filterwarnings("ignore", message=".*pickle protocol.*", category=UserWarning)
            t = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # any unreadable content (a text file: KeyError; garbage: MemoryError)
        try:  # AMES writes them with pickle.dump and reads them with pickle.load (src/utils/utils.py: pickle_load)
            with open(path, "rb") as fh:
                t = _TensorUnpickler(fh).load()
        except Exception as e2:  # named below with the file, whatever the pickle's damage
            if isinstance(e2, EOFError) or "truncated" in str(e2):
                raise ValueError(
                    f"{path}: truncated ({path.stat().st_size} bytes; its pickle ends early: an interrupted copy or "
                    "download?): copy the release file again, or export it again (results/export/ames/{dataset})"
                ) from None
            raise ValueError(
                f"{path}: not a torch tensor that loads with weights_only=True ({torch_load_problem(path, e)}) nor a plainly "
                f"pickled one ({str(e2) or type(e2).__name__}); AMES nn files are pickled torch tensors of shape (2, Nq, K)"
            ) from e2
    if not torch.is_tensor(t):
        raise ValueError(f"{path}: holds a {type(t).__name__}, expected a torch tensor of shape (2, Nq, K)")
    arr = t.detach().to(torch.float64).numpy()
    if arr.ndim != 3 or arr.shape[0] != 2:
        raise ValueError(f"{path}: shape {tuple(arr.shape)}, expected (2, Nq, K): similarities, then indices")
    if arr.shape[1] != n_queries:
        raise ValueError(f"{path}: {arr.shape[1]} query rows but the dataset has {n_queries} queries")
    sims, raw_ids = arr[0], arr[1]
    ids = np.rint(raw_ids)
    if not np.array_equal(ids, raw_ids):
        raise ValueError(f"{path}: [1] must hold database indices (whole numbers); is [0] / [1] swapped?")
    ids = ids.astype(np.int64)
    if ids.size and (ids.min() < 0 or ids.max() >= n_db):
        raise ValueError(
            f"{path}: indices {int(ids.min())}..{int(ids.max())} outside the database (0..{n_db - 1}); "
            "a shortlist of another database (e.g. the +1m one)?"
        )
    srt = np.sort(ids, axis=1)
    dup = np.flatnonzero((srt[:, 1:] == srt[:, :-1]).any(axis=1)) if ids.shape[1] > 1 else np.array([], int)
    if dup.size:
        raise ValueError(f"{path}: query rows {dup[:5].tolist()} list a database image twice")
    if ids.shape[1] > 1 and (np.diff(sims, axis=1) > 1e-6).any():
        bad = np.flatnonzero((np.diff(sims, axis=1) > 1e-6).any(axis=1))
        raise ValueError(f"{path}: similarities of query rows {bad[:5].tolist()} are not sorted in descending order")
    return ids, sims.astype(np.float32)


class _TensorUnpickler(pickle.Unpickler):
    """Unpickles a plainly pickled torch tensor (``pickle.dump(tensor)``, as AMES writes its nn files) and nothing
    else: the only globals allowed are the tensor's rebuild function, its storage's loader (whose bytes are read with
    ``torch.load(..., weights_only=True)``) and ``OrderedDict`` (its empty backward hooks)."""

    def find_class(self, module: str, name: str):
        import torch  # noqa: PLC0415

        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return torch._utils._rebuild_tensor_v2
        if (module, name) == ("torch.storage", "_load_from_bytes"):
            return lambda b: torch.load(io.BytesIO(b), map_location="cpu", weights_only=True)
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        raise pickle.UnpicklingError(f"{module}.{name} is not allowed in an nn file")


def write_nn(path: str | Path, ids: np.ndarray, sims: np.ndarray) -> None:
    """An AMES ``nn_*.pkl``: torch tensor (2, Nq, K), float32 (float64 when indices exceed float32's exact range),
    written with ``pickle.dump`` as AMES writes them, so that AMES's ``pickle.load`` reads it (``torch.save``'s zip
    archive it cannot); :func:`read_nn` reads both."""
    import torch  # noqa: PLC0415

    dtype = np.float32 if ids.size == 0 or ids.max() < 2**24 else np.float64
    t = torch.from_numpy(np.stack([np.asarray(sims, dtype), np.asarray(ids, dtype)]))
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        pickle.dump(t, fh, protocol=4)


def write_release_local(store: h5py.File, out_path: str | Path, block: int = 1024) -> dict[str, int]:
    """Our local store in AMES's structured layout: ``features`` (N,) with ``metadata`` float32 (K, 5) = x, y (pixels),
    scale, mask (1 = padding), weight, and ``descriptor`` float16 (K, D), padding rows zero. The scale column is the
    store's ``scale`` (SIFT's keypoint size in pixels, a deep backbone's scale factor), not the pyramid-level index
    AMES's extraction writes there; AMES's model reads only the mask column, and :func:`convert_rows` reads
    this one back as written."""

    n, k, d = store["descriptors"].shape
    dtype = np.dtype([("metadata", np.float32, (k, 5)), ("descriptor", np.float16, (k, d))])
    with atomic_path(out_path) as tmp, h5py.File(tmp, "w") as f:
        out = f.create_dataset("features", shape=(n,), dtype=dtype, chunks=(1,))
        for s in range(0, n, block):
            e = min(n, s + block)
            desc = store["descriptors"][s:e]
            count = store["count"][s:e]
            rec = np.zeros(e - s, dtype)
            valid = np.arange(k)[None, :] < count[:, None]
            rec["descriptor"] = np.where(valid[..., None], desc, 0)
            meta = rec["metadata"]
            meta[..., :2] = store["xy"][s:e]
            meta[..., 2] = store["scale"][s:e]
            meta[..., 3] = (~valid).astype(np.float32)
            meta[..., 4] = store["weight"][s:e]
            meta[~valid] = np.where(np.arange(5) == 3, 1.0, 0.0)
            out[s:e] = rec
    return {"n": int(n), "K": int(k), "D": int(d)}


def write_release_list(path: str | Path, entries: list[dict[str, Any]], root: str) -> None:
    """``test_gallery.txt`` / ``test_query.txt``: one image per line, ``relative path,width,height``."""

    lines = []
    for e in entries:
        p = Path(e["path"])
        rel = p.relative_to(root) if p.is_relative_to(root) else p
        if "," in str(rel):
            raise ValueError(f"{e['path']}: a comma in an image path cannot be written to a comma-separated list")
        lines.append(f"{rel},{int(e['width'])},{int(e['height'])}")
    with atomic_path(path) as tmp:
        Path(tmp).write_text("\n".join(lines) + "\n")


def read_release_list(path: str | Path) -> list[tuple[str, int, int]]:
    """(relative path, width, height) per line of ``test_gallery.txt`` / ``test_query.txt`` (first field the path,
    last two the size). ValueError naming the file and line for a malformed line, or where an exported folder's
    manifest records other bytes for it (:func:`~retrieval.runtime.check_recorded`)."""
    check_recorded(path)
    out = []
    for i, line in enumerate(Path(path).read_text().splitlines()):
        if not line.strip():
            continue
        fields = line.strip().split(",")
        try:
            out.append((fields[0], int(float(fields[-2])), int(float(fields[-1]))))
        except (IndexError, ValueError) as e:
            raise ValueError(f"{path}: line {i + 1} {line!r}: expected 'path,...,width,height'") from e
    return out
