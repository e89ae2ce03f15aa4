"""Local-descriptor store: chunk round trip, virtual merge, and the failures it must catch."""

import h5py
import numpy as np
import pytest

from retrieval.stores.local_store import (
    StoreError,
    merge_local_chunks,
    missing_sources,
    open_local,
    read_row_runs,
    read_rows,
    write_local_chunk,
)

K, D = 6, 4


def fake_rows(n, rng):
    rows = []
    for _ in range(n):
        m = int(rng.integers(0, K + 1))
        rows.append(
            {
                "descriptors": rng.normal(size=(m, D)).astype(np.float16),
                "xy": rng.uniform(0, 100, (m, 2)),
                "scale": rng.uniform(1, 5, m),
                "weight": np.sort(rng.uniform(0, 1, m))[::-1],
                "orientation": rng.uniform(0, 360, m),
                "image_size": np.array([640, 480]),
            }
        )
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


def test_row_runs_read_what_a_list_index_reads(tmp_path):
    """read_row_runs (slices over runs of consecutive rows) returns exactly h5py's list-index read, across chunk
    boundaries of a virtual store, with a column limit, for one row, no rows, and the whole store."""
    paths, _ = make_chunks(tmp_path, [3, 0, 4, 2])
    out = tmp_path / "local.h5"
    merge_local_chunks(paths, out, 9)
    with open_local(out) as f:
        d, xy, count = f["descriptors"], f["xy"], f["count"]
        for rows in ([0, 1, 2, 5, 6, 8], [4], [2, 3], list(range(9)), [0, 8]):
            np.testing.assert_array_equal(read_row_runs(d, rows), d[rows])
            np.testing.assert_array_equal(read_row_runs(d, rows, 3), d[rows, :3])
            np.testing.assert_array_equal(read_row_runs(xy, rows, 2), xy[rows, :2])
            np.testing.assert_array_equal(read_row_runs(count, rows), count[rows])
        assert read_row_runs(d, [], 3).shape == (0, 3, d.shape[2])
        assert read_row_runs(count, np.zeros(0, np.int64)).shape == (0,)
        for bad in ([3, 1], [2, 2]):
            with pytest.raises(ValueError, match="sorted and unique"):
                read_row_runs(d, bad)


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


def test_missing_sources_names_the_deleted_chunks_of_a_merged_store(tmp_path):
    """What the workflow checks before it keeps a merged store (rules/common.smk drop_broken_store): the deleted
    chunks, sorted and each once although every row field maps it; none for an intact store, a chunk (not virtual)
    or a store whose folder moved with its chunks."""
    (tmp_path / "a").mkdir()
    paths, _ = make_chunks(tmp_path / "a", [2, 3, 2])
    out = tmp_path / "a" / "local.h5"
    merge_local_chunks(paths, out, 7)
    assert missing_sources(out) == [] and missing_sources(paths[0]) == []
    (tmp_path / "a").rename(tmp_path / "b")
    out, paths = tmp_path / "b" / "local.h5", [tmp_path / "b" / p.name for p in paths]
    assert missing_sources(out) == []
    paths[2].unlink()
    paths[0].unlink()
    assert missing_sources(out) == [paths[0], paths[2]]
    out.write_bytes(b"not HDF5")
    with pytest.raises(OSError):
        missing_sources(out)


def test_merge_stacks_parts_extracted_from_separate_lists(tmp_path):
    """'{dataset}+1m': the dataset's chunks (rows 0..5 of its own list) then the distractors' (rows 0..4 of theirs)."""
    (tmp_path / "base").mkdir()
    (tmp_path / "r1m").mkdir()
    (tmp_path / "plus").mkdir()
    base, base_rows = make_chunks(tmp_path / "base", [2, 3], seed=1)
    dist, dist_rows = make_chunks(tmp_path / "r1m", [4, 0], seed=2)
    out = tmp_path / "plus" / "local.h5"
    info = merge_local_chunks(base + dist, out, 9, groups=[2, 2])
    assert info["parts"] == [5, 4]
    with open_local(out) as f:
        assert list(f["count"][:]) == [len(r["descriptors"]) for r in base_rows + dist_rows]
        for name in ("descriptors", "xy", "image_size"):
            cat = np.concatenate([h5py.File(p, "r")[name][:] for p in base + dist])
            np.testing.assert_array_equal(f[name][:], cat)
    # sources are named relative to the merged file, so the whole results folder can move
    tmp_path.rename(tmp_path.with_name(tmp_path.name + "_moved"))
    with open_local(tmp_path.with_name(tmp_path.name + "_moved") / "plus" / "local.h5") as f:
        assert f["count"].shape == (9,)


def test_merge_refuses_parts_that_do_not_tile_their_own_lists(tmp_path):
    base, _ = make_chunks(tmp_path, [2, 3], seed=1)
    # without groups the second list's chunk does not belong: its n_total differs
    (tmp_path / "r").mkdir()
    dist, _ = make_chunks(tmp_path / "r", [4], seed=2)
    with pytest.raises(StoreError, match="n_total=4 differs"):
        merge_local_chunks(base + dist, tmp_path / "x.h5", 9)
    # a part missing its last chunk
    with pytest.raises(StoreError, match="hold 2 rows but n_total=5"):
        merge_local_chunks(base[:1] + dist, tmp_path / "y.h5", 6, groups=[1, 1])
    with pytest.raises(StoreError, match="parts of"):
        merge_local_chunks(base + dist, tmp_path / "z.h5", 9, groups=[2, 2])
