"""Global descriptors computed elsewhere, imported as the shortlist's (shortlist.source: import).

Accepted files, looked up in ``{import_dir}/{dataset}/``:

- ``{split}.npy``: (N, D) float array, one row per image of the split's list (``db`` or ``query``), in list order;
- ``{split}.h5`` / ``{split}.hdf5``: the same array as dataset ``descriptors``, ``global`` or ``features``;
- ``{dataset}.mat`` (revisitop's feature files): ``X`` (D, N_db) and ``Q`` (D, N_query), columns in the order of
  the dataset's ``gnd`` image lists.

Rows are L2-normalised on import (the shortlist is an inner-product search); the row count must equal the list's.
"""

from __future__ import annotations

import logging
from pathlib import Path

import h5py
import numpy as np

SUFFIXES = (".npy", ".h5", ".hdf5")

log = logging.getLogger(__name__)
_WARNED: set[Path] = set()


def find_import(import_dir: str | Path, dataset: str, split: str) -> Path:
    """The file holding ``split`` of ``dataset`` under ``import_dir``; a clear error lists what was looked for."""
    d = Path(import_dir) / dataset
    tried = [d / f"{split}{s}" for s in SUFFIXES] + [d / f"{dataset}.mat"]
    found = [p for p in tried if p.is_file()]
    if found:
        if len(found) > 1 and found[0] not in _WARNED:  # used without a word (a user's trial: db.npy beside db.h5)
            _WARNED.add(found[0])  # the plan asks once per job: said once per process
            log.warning(
                "%s is read; %s ignored (the order: %s)",
                found[0],
                ", ".join(map(str, found[1:])),
                " ".join(SUFFIXES + (".mat",)),
            )
        return found[0]
    raise FileNotFoundError(
        f"shortlist.source import: no global descriptors for {dataset} {split}; looked for "
        + ", ".join(str(p) for p in tried)
    )


def read_import(path: str | Path, split: str) -> np.ndarray:
    """Global descriptors of one split from an imported file (:func:`find_import`): ``.npy``; ``.h5`` / ``.hdf5`` (the
    first of the datasets ``descriptors``, ``global``, ``features``); revisitop's ``.mat`` (``Q`` when ``split`` is
    ``query``, else ``X``, one image per column; MATLAB v7.3 files through h5py). Returns (N, D) float32, every non-zero
    row L2-normalised (all-zero rows stay zero). KeyError naming the file for a missing dataset or variable; ValueError
    naming it for another suffix, an array that is not 2-D, or NaN / infinite values."""
    path = Path(path)
    if path.suffix == ".npy":
        try:
            x = np.load(path, allow_pickle=False)
        except (ValueError, EOFError) as e:  # numpy's words name no file, and one of them suggests an unsafe load
            raise ValueError(
                f"{path}: not a numeric .npy array (it holds Python objects, or is not a .npy file: {e.__class__.__name__});"
                " save a 2-D float array, np.save(path, np.asarray(x, np.float32))"
            ) from None
    elif path.suffix in (".h5", ".hdf5"):
        with h5py.File(path, "r") as f:
            name = next((n for n in ("descriptors", "global", "features") if n in f), None)
            if name is None:
                raise KeyError(f"{path}: no dataset named descriptors, global or features (found {list(f)})")
            x = f[name][:]
    elif path.suffix == ".mat":
        from scipy.io import loadmat  # noqa: PLC0415

        key = "Q" if split == "query" else "X"
        try:
            m = loadmat(path)
        except NotImplementedError:  # MATLAB v7.3 files are HDF5, stored transposed
            with h5py.File(path, "r") as f:
                if key not in f:
                    raise KeyError(
                        f"{path}: no variable {key!r} (revisitop files hold X: database, Q: queries)"
                    ) from None
                x = f[key][:]
            return _check(x, path)
        if key not in m:
            raise KeyError(f"{path}: no variable {key!r} (revisitop files hold X: database, Q: queries)")
        x = m[key].T  # revisitop stores one image per column
    else:
        raise ValueError(f"{path}: unsupported global-descriptor file (use .npy, .h5 or revisitop .mat)")
    return _check(x, path)


def _check(x: np.ndarray, path: Path) -> np.ndarray:
    kind = np.asarray(x).dtype.kind
    if kind in "bc":  # booleans read as 0/1, complex numbers lost their imaginary part without a word (helper-101)
        raise ValueError(f"{path}: descriptors must be real numbers, got an array of {np.asarray(x).dtype}")
    try:
        x = np.asarray(x, np.float32)
    except (TypeError, ValueError):
        raise ValueError(f"{path}: descriptors must be numbers, got an array of {np.asarray(x).dtype}") from None
    if x.ndim != 2:
        raise ValueError(f"{path}: expected a 2-D array of descriptors, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"{path}: descriptors contain NaN or infinite values")
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.where(norms > 0, x / np.maximum(norms, 1e-12), 0.0).astype(np.float32)
