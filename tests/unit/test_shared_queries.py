"""One extraction per image: a query that is an uncropped database image gets the database row copied, not
extracted again, and the copy equals what extracting it gives."""

import json
import logging

import h5py
import numpy as np
import pytest
from PIL import Image

from retrieval.stages.extract import extract_local_chunk, shared_query_rows
from retrieval.stores.local_store import StoreError, rows_from_chunks

SIFT = {"k": 64}


def _photos(tmp_path, n):
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        x = (rng.random((96, 128)) * 255).astype(np.uint8)
        x = np.kron(x[::8, ::8], np.ones((8, 8), np.uint8))  # blocky texture: SIFT finds keypoints
        p = tmp_path / f"p{i}.png"
        Image.fromarray(x).save(p)
        paths.append(str(p))
    return paths


def _entry(p, crop=None):
    return {"name": p.rsplit("/", 1)[1], "path": p, "width": 128, "height": 96, "bbx": None, "crop": crop}


def _read(path):
    with h5py.File(path, "r") as f:
        return {k: f[k][:] for k in ("descriptors", "count", "xy", "image_size")}, dict(f.attrs)


def test_uncropped_database_queries_are_copied_and_equal_their_extraction(tmp_path, caplog):
    paths = _photos(tmp_path, 6)
    (tmp_path / "other").mkdir()
    extra = _photos(tmp_path / "other", 1)
    # queries: two database images, one cropped database image, one image outside the database
    queries = [_entry(paths[4]), _entry(paths[1]), _entry(paths[2], crop=[0, 0, 64, 64]), _entry(extra[0])]
    lists = {"dataset": "mine", "db": [_entry(p) for p in paths], "query": queries}
    lp = tmp_path / "lists.json"
    lp.write_text(json.dumps(lists))
    assert shared_query_rows(lists) == {0: 4, 1: 1}
    db = [tmp_path / f"db_{c}.h5" for c in range(2)]
    for c, p in enumerate(db):
        extract_local_chunk(lp, "db", c, 2, p, "sift", SIFT, "v")
    with caplog.at_level(logging.INFO):
        extract_local_chunk(lp, "query", 0, 1, tmp_path / "q_shared.h5", "sift", SIFT, "v", db_chunks=db)
    assert "2 of 4 queries are uncropped database images" in caplog.text
    extract_local_chunk(lp, "query", 0, 1, tmp_path / "q_all.h5", "sift", SIFT, "v")
    shared, attrs = _read(tmp_path / "q_shared.h5")
    alone, _ = _read(tmp_path / "q_all.h5")
    for k in shared:
        np.testing.assert_array_equal(shared[k], alone[k])  # the copy is exactly what extraction gives
    assert attrs["row_start"] == 0 and attrs["n_total"] == 4 and (shared["count"] > 0).all()
    rows, g = rows_from_chunks(db, [4, 1])
    assert g is None and len(rows[0]["descriptors"]) == shared["count"][0]


def test_rows_outside_every_chunk_are_named(tmp_path):
    paths = _photos(tmp_path, 2)
    lp = tmp_path / "lists.json"
    lp.write_text(json.dumps({"dataset": "mine", "db": [_entry(p) for p in paths], "query": []}))
    extract_local_chunk(lp, "db", 0, 2, tmp_path / "db_0.h5", "sift", SIFT, "v")
    with pytest.raises(StoreError, match=r"rows \[1\] are in none of the chunks"):
        rows_from_chunks([tmp_path / "db_0.h5"], [1])
