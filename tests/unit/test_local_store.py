"""Local-descriptor store: chunk round trip, virtual merge, and the failures it must catch."""

import h5py
import numpy as np
import pytest

from retrieval.local_store import StoreError, merge_local_chunks, open_local, read_rows, write_local_chunk

K, D = 6, 4


def fake_rows(n, rng):
    rows = []
    for _ in range(n):
        m = int(rng.integers(0, K + 1))
        rows.append({"descriptors": rng.normal(size=(m, D)).astype(np.float16), "xy": rng.uniform(0, 100, (m, 2)),
                     "scale": rng.uniform(1, 5, m), "weight": np.sort(rng.uniform(0, 1, m))[::-1],
                     "orientation": rng.uniform(0, 360, m), "image_size": np.array([640, 480])})
    return rows


def make_chunks(tmp_path, sizes, seed=0):
    rng = np.random.default_rng(seed)
    paths, all_rows, start = [], [], 0
    for i, n in enumerate(sizes):
        rows = fake_rows(n, rng)
        p = tmp_path / f"chunk_{i}.h5"
        write_local_chunk(p, rows, k=K, dim=D, backbone="test", row_start=start, n_total=sum(sizes))
        paths.append(p)
        all_rows += rows
        start += n
    return paths, all_rows


def test_virtual_merge_equals_concatenation(tmp_path):
    paths, rows = make_chunks(tmp_path, [3, 0, 4, 2])
    out = tmp_path / "local.h5"
    info = merge_local_chunks(paths, out, 9)
    assert info["n_rows"] == 9
    with open_local(out) as f:
        for name in ("descriptors", "count", "xy", "scale", "weight", "orientation", "image_size"):
            cat = np.concatenate([h5py.File(p, "r")[name][:] for p in paths])
            np.testing.assert_array_equal(f[name][:], cat)
        assert list(f["count"][:]) == [len(r["descriptors"]) for r in rows]
        # padding is a zero suffix
        for i, r in enumerate(rows):
            m = len(r["descriptors"])
            assert not f["descriptors"][i, m:].any()
        got = read_rows(f, [5, 1, 5])
        np.testing.assert_array_equal(got["count"], f["count"][:][[5, 1, 5]])


def test_merge_survives_moving_the_folder(tmp_path):
    (tmp_path / "a").mkdir()
    paths, _ = make_chunks(tmp_path / "a", [2, 2])
    merge_local_chunks(paths, tmp_path / "a" / "local.h5", 4)
    (tmp_path / "a").rename(tmp_path / "b")
    with open_local(tmp_path / "b" / "local.h5") as f:
        assert f["count"].shape == (4,)


def test_missing_chunk_raises(tmp_path):
    paths, _ = make_chunks(tmp_path, [2, 3, 2])
    with pytest.raises(StoreError, match="next expected row"):
        merge_local_chunks([paths[0], paths[2]], tmp_path / "local.h5", 7)
    paths[1].unlink()
    with pytest.raises(StoreError, match="chunk_1.h5"):
        merge_local_chunks(paths, tmp_path / "local.h5", 7)
    assert not (tmp_path / "local.h5").exists()


def test_row_count_must_match_the_list(tmp_path):
    paths, _ = make_chunks(tmp_path, [2, 3])
    with pytest.raises(StoreError, match="image list has 6"):
        merge_local_chunks(paths, tmp_path / "local.h5", 6)


def test_chunk_deleted_or_truncated_after_merge_is_detected(tmp_path):
    paths, _ = make_chunks(tmp_path, [2, 3])
    out = tmp_path / "local.h5"
    merge_local_chunks(paths, out, 5)
    data = paths[1].read_bytes()
    paths[1].write_bytes(data[: len(data) // 2])
    with pytest.raises(StoreError, match="chunk_1.h5"):
        open_local(out)
    paths[1].unlink()
    with pytest.raises(StoreError, match="missing"):
        open_local(out)
