"""Global descriptors computed elsewhere: npy, HDF5 and revisitop .mat files, with errors that name the file."""

import h5py
import numpy as np
import pytest
from scipy.io import savemat

from retrieval.stores.imports import find_import, read_import


def test_formats_read_the_same_normalised_rows(tmp_path):
    rng = np.random.default_rng(0)
    x, q = rng.normal(size=(7, 5)).astype(np.float32), rng.normal(size=(3, 5)).astype(np.float32)
    d = tmp_path / "ds"
    d.mkdir()
    np.save(d / "db.npy", x)
    with h5py.File(d / "query.h5", "w") as f:
        f["features"] = q
    savemat(tmp_path / "ds.mat", {"X": x.T, "Q": q.T})  # revisitop: one image per column
    want_x = x / np.linalg.norm(x, axis=1, keepdims=True)
    want_q = q / np.linalg.norm(q, axis=1, keepdims=True)
    np.testing.assert_allclose(read_import(find_import(tmp_path, "ds", "db"), "db"), want_x, rtol=1e-6)
    np.testing.assert_allclose(read_import(find_import(tmp_path, "ds", "query"), "query"), want_q, rtol=1e-6)
    np.testing.assert_allclose(read_import(tmp_path / "ds.mat", "db"), want_x, rtol=1e-6)
    np.testing.assert_allclose(read_import(tmp_path / "ds.mat", "query"), want_q, rtol=1e-6)


def test_bad_files_name_themselves(tmp_path):
    with pytest.raises(FileNotFoundError, match="db.npy"):
        find_import(tmp_path, "nothing", "db")
    np.save(tmp_path / "nan.npy", np.array([[np.nan, 1.0]]))
    with pytest.raises(ValueError, match="nan.npy"):
        read_import(tmp_path / "nan.npy", "db")
    np.save(tmp_path / "flat.npy", np.zeros(4))
    with pytest.raises(ValueError, match="2-D"):
        read_import(tmp_path / "flat.npy", "db")
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["x"] = np.zeros((2, 2))
    with pytest.raises(KeyError, match="other.h5"):
        read_import(tmp_path / "other.h5", "db")
    savemat(tmp_path / "db_only.mat", {"X": np.zeros((3, 2))})
    with pytest.raises(KeyError, match="'Q'"):
        read_import(tmp_path / "db_only.mat", "query")
