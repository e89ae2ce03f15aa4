"""The content-addressed feature cache (retrieval/feature_cache.py): keying, planning, pack extraction and the
assembled store, checked against a fresh positional extraction."""

import json
import logging
import os
import shutil

import h5py
import numpy as np
import pytest
from PIL import Image

from retrieval.stages import extract_pack as extract_pack_module
from retrieval.stages.extract import extract_local_chunk
from retrieval.stages.extract_pack import extract_pack
from retrieval.stores import feature_cache as fc
from retrieval.stores.local_store import StoreError, open_local, write_local_chunk

SIFT = {"k": 64}
XV = fc.extraction_key("sift", SIFT, "2", 10**8)
FIELDS = ("descriptors", "count", "xy", "scale", "weight", "orientation", "image_size")


def _photo(path, seed):
    rng = np.random.default_rng(seed)
    x = (rng.random((96, 128)) * 255).astype(np.uint8)
    Image.fromarray(np.kron(x[::8, ::8], np.ones((8, 8), np.uint8))).save(path)  # blocky: SIFT finds keypoints


def _folder(root, seeds):
    (root / "jpg").mkdir(parents=True, exist_ok=True)
    for s in seeds:
        _photo(root / "jpg" / f"p{s:02d}.png", s)


def _lists(root, query_crops=None):
    """A plain folder's lists as image_lists writes them: every image a database image and an uncropped query,
    plus optional cropped queries {name: box}."""
    db = [
        {"name": f"jpg/{p.name}", "path": str(p), "width": 128, "height": 96} for p in sorted((root / "jpg").iterdir())
    ]
    q = [{**e, "bbx": None, "crop": None} for e in db]
    for name, box in (query_crops or {}).items():
        q.append({"name": name, "path": str(root / name), "width": 128, "height": 96, "bbx": box, "crop": box})
    return {"dataset": "mine", "root": str(root), "db": db, "query": q}


def _run_plan(cache, lists, n_chunks=2, min_chunk=1):
    """Plan, extract the new packs, return the plan and what the jobs reported."""
    plan = fc.plan_extraction(lists, fc.load_index(cache), XV, n_chunks, min_chunk)
    metas = [
        extract_pack(items, cache / f"{pack}.h5", cache / f"{pack}.json", XV, "sift", SIFT)
        for pack, items in plan.new_packs.items()
    ]
    return plan, metas


def _assemble(cache, lists, split, out, on_bad_image="error"):
    plan = fc.plan_extraction(lists, fc.load_index(cache), XV, 1, 1)
    assert not plan.new_packs
    return fc.assemble_store(lists, split, cache, [cache / f"{p}.h5" for p in plan.packs(split)], out, XV, on_bad_image)


def _read(path):
    with open_local(path) as f:
        return {k: f[k][:] for k in FIELDS}


def test_extraction_key_is_the_configuration_only():
    assert fc.extraction_key("sift", {"k": 64}, "2", 100) == fc.extraction_key("sift", {"k": 64}, "2", 100)
    others = {
        fc.extraction_key("sift", {"k": 65}, "2", 100),
        fc.extraction_key("sift", {"k": 64}, "3", 100),
        fc.extraction_key("sift", {"k": 64}, "2", 101),
        fc.extraction_key("dinov2", {"k": 64}, "2", 100),
    }
    assert fc.extraction_key("sift", {"k": 64}, "2", 100) not in others and len(others) == 4


def test_runs_are_maximal_contiguous_pack_rows():
    m = [("a", 0), ("a", 1), ("a", 2), ("b", 0), ("a", 3), ("a", 5), ("a", 6)]
    assert fc.runs(m) == [(0, "a", 0, 3), (3, "b", 0, 1), (4, "a", 3, 1), (5, "a", 5, 2)]


def test_first_plan_groups_new_images_and_shares_uncropped_queries(tmp_path):
    root = tmp_path / "mine"
    _folder(root, range(10))
    lists = _lists(root, {"jpg/p03.png": [0, 0, 64, 48]})
    plan = fc.plan_extraction(lists, fc.load_index(tmp_path / "cache"), XV, n_chunks=4, min_chunk_images=3)
    # 10 database images + 1 cropped query = 11 items; at least 3 per job -> 3 jobs (not n_chunks=4)
    assert plan.n_new == 11 and len(plan.new_packs) == 3
    assert plan.rows["query"][:10] == plan.rows["db"]  # the uncropped queries are the database items
    assert plan.rows["query"][10] not in plan.rows["db"]
    # pack names depend on what they extract, not on when: planning again gives the same names
    again = fc.plan_extraction(lists, fc.load_index(tmp_path / "cache"), XV, 4, 3)
    assert again.new_packs.keys() == plan.new_packs.keys()
    few = fc.plan_extraction(lists, fc.load_index(tmp_path / "cache"), XV, 4, 100)
    assert len(few.new_packs) == 1
    # a large collection: more jobs than n_chunks, none above max_chunk_images (a job holds its pack in memory;
    # a fixed 4 jobs put 6,500 photos in one job from a 26,000-photo folder, over the job's 2000 MB)
    capped = fc.plan_extraction(lists, fc.load_index(tmp_path / "cache"), XV, 2, 1, max_chunk_images=4)
    sizes = sorted(len(items) for items in capped.new_packs.values())
    assert sizes == [3, 4, 4] and sum(sizes) == 11
    assert capped.rows["query"][:10] == capped.rows["db"]
    assert len(fc.plan_extraction(lists, fc.load_index(tmp_path / "cache"), XV, 2, 1).new_packs) == 2  # no cap


def test_adding_removing_replacing_and_moving_photos(tmp_path):
    cache, root = tmp_path / "features", tmp_path / "mine"
    _folder(root, range(8))
    plan, metas = _run_plan(cache, _lists(root))
    assert sum(m["extracted"] for m in metas) == 8 and len(plan.new_packs) == 2
    assert all(len(s) == 64 for m in metas for s in m["rows"]["sha256"])  # SHA-256 of the bytes

    # nothing changed: nothing to extract, and no file is read to know it (the stat memo)
    assert fc.plan_extraction(_lists(root), fc.load_index(cache), XV, 2, 1).n_new == 0

    # add two photos: exactly those are planned
    _folder(root, [20, 21])
    plan, metas = _run_plan(cache, _lists(root))
    assert [it["name"] for v in plan.new_packs.values() for it in v] == ["jpg/p20.png", "jpg/p21.png"]
    assert sum(m["extracted"] for m in metas) == 2

    # remove one: nothing to extract, the remaining rows still resolve
    (root / "jpg" / "p02.png").unlink()
    assert fc.plan_extraction(_lists(root), fc.load_index(cache), XV, 2, 1).n_new == 0

    # replace one in place (other pixels, same name): that one only
    _photo(root / "jpg" / "p05.png", 99)
    plan = fc.plan_extraction(_lists(root), fc.load_index(cache), XV, 2, 1)
    assert [it["name"] for v in plan.new_packs.values() for it in v] == ["jpg/p05.png"]
    _run_plan(cache, _lists(root))

    # move (rename) the folder: names, sizes and mtimes are kept, nothing is extracted again
    moved = tmp_path / "renamed" / "mine2"
    moved.parent.mkdir()
    shutil.move(root, moved)
    lists = _lists(moved)
    assert fc.plan_extraction(lists, fc.load_index(cache), XV, 2, 1).n_new == 0
    out = _assemble(cache, lists, "db", tmp_path / "db.h5")
    assert out["n_rows"] == 9 and not out["skipped"]

    # a copy under a new name (new mtime: the memo does not know it) is planned, then found by its hash and copied
    shutil.copyfile(moved / "jpg" / "p00.png", moved / "jpg" / "q00.png")
    plan, metas = _run_plan(cache, _lists(moved))
    assert plan.n_new == 1 and metas[0]["extracted"] == 0 and metas[0]["copied"] == 1
    # a new name and a new mtime: the plan cannot tell it from a new photo
    assert plan.n_renamed == 0 and plan.n_copied == 0

    # the folder copied as `cp -r` copies it (new mtimes): planned, counted as probably copied (helper-93's trial read
    # "16 of 16 images to extract" as extracting them again), then copied from the cache by their jobs
    _run_plan(cache, _lists(moved, {"jpg/p00.png": [8, 8, 64, 64]}))  # a query crop, cached too
    copy = tmp_path / "copy" / "mine3"
    shutil.copytree(moved, copy, copy_function=shutil.copyfile)
    # a crop counts where the same crop is cached (helper-94: crops were left out though their jobs copy them); one
    # cached only uncropped, or only as another crop, is extracted and not counted
    crops = {"jpg/p00.png": [8, 8, 64, 64], "jpg/p01.png": [0, 0, 32, 32]}
    plan, metas = _run_plan(cache, _lists(copy, crops))
    assert plan.n_new == 12 and plan.n_copied == 11 and plan.n_renamed == 0
    assert sum(m["extracted"] for m in metas) == 1 and sum(m["copied"] for m in metas) == 11

    # a photo renamed within the collection (size and mtime kept): planned, counted as probably renamed, copied
    (moved / "jpg" / "p06.png").rename(moved / "jpg" / "r06.png")
    _folder(moved, [50])  # and one truly new photo
    plan, metas = _run_plan(cache, _lists(moved))
    assert plan.n_new == 2 and plan.n_renamed == 1
    assert sum(m["extracted"] for m in metas) == 1 and sum(m["copied"] for m in metas) == 1


def test_assembled_store_equals_a_fresh_positional_extraction(tmp_path):
    cache, root = tmp_path / "features", tmp_path / "mine"
    _folder(root, range(7))
    _run_plan(cache, _lists(root), n_chunks=3)
    _folder(root, [30, 31, 4 + 40])  # new photos interleave with cached ones in list order
    crops = {"jpg/p01.png": [8, 8, 100, 80], "jpg/p31.png": [0, 0, 64, 64]}
    lists = _lists(root, crops)
    _run_plan(cache, lists, n_chunks=2)
    lp = tmp_path / "lists.json"
    lp.write_text(json.dumps(lists))
    for split in ("db", "query"):
        info = _assemble(cache, lists, split, tmp_path / f"{split}.h5")
        extract_local_chunk(lp, split, 0, 1, tmp_path / f"fresh_{split}.h5", "sift", SIFT, "v")
        with h5py.File(tmp_path / f"fresh_{split}.h5", "r") as f:
            fresh = {k: f[k][:] for k in FIELDS}
        got = _read(tmp_path / f"{split}.h5")
        for k in FIELDS:
            np.testing.assert_array_equal(got[k], fresh[k], err_msg=f"{split} {k}")
        assert info["n_runs"] >= 2 and (got["count"] > 0).all()
    with h5py.File(tmp_path / "db.h5", "r") as f:
        assert f.attrs["layout"] == "cache" and f["descriptors"].is_virtual


def test_bad_input_names_the_file(tmp_path, caplog):
    cache, root = tmp_path / "features", tmp_path / "mine"
    _folder(root, range(3))
    lists = _lists(root)
    plan = fc.plan_extraction(lists, fc.load_index(cache), XV, 1, 1)
    ((pack, items),) = plan.new_packs.items()
    # a photo changed between the plan and the job
    _photo(root / "jpg" / "p01.png", 50)
    os.utime(root / "jpg" / "p01.png", ns=(1, 1))
    with pytest.raises(fc.CacheError, match=r"(?s)p01.png changed after the workflow planned this job .*other 2 "):
        extract_pack(items, cache / f"{pack}.h5", cache / f"{pack}.json", XV, "sift", SIFT)
    assert not (cache / f"{pack}.json").exists()  # no sidecar: the pack is not part of the cache
    # the other two are (the job stopped at the changed photo, losing them)
    assert [m["rows"]["name"] for m in fc.load_index(cache).packs.values()] == [["jpg/p00.png", "jpg/p02.png"]]
    # a listed photo that is missing: an error naming it, or under on_bad_image: skip an empty row
    (root / "jpg" / "p02.png").unlink()
    plan = fc.plan_extraction(lists, fc.load_index(cache), XV, 1, 1)
    ((pack, items),) = plan.new_packs.items()
    with pytest.raises(FileNotFoundError, match="p02.png"):
        extract_pack(items, cache / f"{pack}.h5", cache / f"{pack}.json", XV, "sift", SIFT)
    with caplog.at_level(logging.INFO, logger="retrieval"):
        meta = extract_pack(items, cache / f"{pack}.h5", cache / f"{pack}.json", XV, "sift", SIFT, on_bad_image="skip")
    assert dict(zip(meta["rows"]["name"], meta["rows"]["sha256"]))["jpg/p02.png"] == "missing:jpg/p02.png"
    # the job's summary does not count the skipped photo as extracted (it read "1 images, 1 extracted": helper-174)
    assert f"pack {pack}: 2 images, 0 extracted, 1 found in the cache" in caplog.text
    assert "1 without features (unreadable or missing; on_bad_image: skip)" in caplog.text
    info = _assemble(cache, lists, "db", tmp_path / "db.h5", "skip")
    assert [s["path"] for s in info["skipped"]] == [str(root / "jpg" / "p02.png")]
    assert _read(tmp_path / "db.h5")["count"][2] == 0
    # an unreadable sidecar, a truncated pack
    (cache / "0123456789abcdef.json").write_text("{not json")
    with pytest.raises(fc.CacheError, match="0123456789abcdef.json"):
        fc.load_index(cache)
    (cache / "0123456789abcdef.json").unlink()
    with open(cache / f"{pack}.h5", "r+b") as f:
        f.truncate(2000)
    # the remedy names the store to make again: deleting the pack and running again found nothing to do while what
    # used the store was up to date (helper-119's trial)
    with pytest.raises(
        StoreError, match=rf"{pack}\.h5 .* and run again with -R {tmp_path / 'db2.h5'} after your target"
    ):
        _assemble(cache, lists, "db", tmp_path / "db2.h5", "skip")


def test_a_cached_unreadable_image_is_refused_under_on_bad_image_error(tmp_path):
    cache, root = tmp_path / "features", tmp_path / "mine"
    _folder(root, range(2))
    (root / "jpg" / "p01.png").write_bytes(b"not an image")
    lists = _lists(root)
    plan = fc.plan_extraction(lists, fc.load_index(cache), XV, 1, 1)
    ((pack, items),) = plan.new_packs.items()
    with pytest.raises(ValueError, match="p01.png"):
        extract_pack(items, cache / f"{pack}.h5", cache / f"{pack}.json", XV, "sift", SIFT)
    extract_pack(items, cache / f"{pack}.h5", cache / f"{pack}.json", XV, "sift", SIFT, on_bad_image="skip")
    packs = [cache / f"{pack}.h5"]
    info = fc.assemble_store(lists, "db", cache, packs, tmp_path / "db.h5", XV, on_bad_image="skip")
    assert [s["path"] for s in info["skipped"]] == [str(root / "jpg" / "p01.png")]
    with pytest.raises(StoreError, match="p01.png"):
        fc.assemble_store(lists, "db", cache, packs, tmp_path / "db2.h5", XV, on_bad_image="error")


def test_the_same_unreadable_bytes_under_another_name_stay_unreadable(tmp_path):
    """A file found unreadable under on_bad_image: skip, copied under another name into another folder: its cached
    row is not copied as if it had features. Under error the pack job refuses it, naming the new path; under skip
    the new pack records it as skipped, so merge_local and the manifests say it has no features."""
    cache, first, second = tmp_path / "features", tmp_path / "first", tmp_path / "second"
    _folder(first, range(2))
    data = (first / "jpg" / "p01.png").read_bytes()
    (first / "jpg" / "p01.png").write_bytes(data[: len(data) // 3])  # truncated
    plan = fc.plan_extraction(_lists(first), fc.load_index(cache), XV, 1, 1)
    ((pack, items),) = plan.new_packs.items()
    extract_pack(items, cache / f"{pack}.h5", cache / f"{pack}.json", XV, "sift", SIFT, on_bad_image="skip")
    _folder(second, [5])
    shutil.copy(first / "jpg" / "p01.png", second / "jpg" / "bad.png")
    lists = _lists(second)
    plan = fc.plan_extraction(lists, fc.load_index(cache), XV, 1, 1)
    ((pack, items),) = plan.new_packs.items()  # new names: hashed in the job, where the bytes are found cached
    with pytest.raises(ValueError, match=r"second/jpg/bad\.png: the same bytes were found unreadable before"):
        extract_pack(items, cache / f"{pack}.h5", cache / f"{pack}.json", XV, "sift", SIFT)
    meta = extract_pack(items, cache / f"{pack}.h5", cache / f"{pack}.json", XV, "sift", SIFT, on_bad_image="skip")
    assert meta["copied"] == 2 and list(meta["skipped"]) == ["0"]  # p05 was kept by the job that failed
    packs = [cache / f"{p}.h5" for p in fc.plan_extraction(lists, fc.load_index(cache), XV, 1, 1).packs("db")]
    info = fc.assemble_store(lists, "db", cache, packs, tmp_path / "db.h5", XV, on_bad_image="skip")
    assert [s["path"] for s in info["skipped"]] == [str(second / "jpg" / "bad.png")]
    with pytest.raises(StoreError) as refused:
        fc.assemble_store(lists, "db", cache, packs, tmp_path / "db2.h5", XV, on_bad_image="error")
    # told of the new file, with the one its bytes were found unreadable under named as such (a user's trial read
    # "[('.../second/jpg/bad.png', '.../first/jpg/p01.png: image file is truncated')]", blaming the other folder)
    bad, first_bad = str(second / "jpg" / "bad.png"), str(first / "jpg" / "p01.png")
    message = str(refused.value)
    assert f"{tmp_path / 'db2.h5'}: 1 image(s) listed for it (db side) have no features" in message
    assert f"): {bad}: " in message and f"(the same bytes as {first_bad}, found unreadable there)" in message
    assert f"{first_bad}: " not in message
    # a copy keeping name, size and time (cp -a) has another inode: its job hashes it and copies the row, and its
    # store tells of it the same way (it was matched without a job, by name, size and mtime)
    third = tmp_path / "third"
    shutil.copytree(first, third, copy_function=shutil.copy2)
    lists3 = _lists(third)
    plan = fc.plan_extraction(lists3, fc.load_index(cache), XV, 1, 1)
    ((pack, items),) = plan.new_packs.items()
    meta = extract_pack(items, cache / f"{pack}.h5", cache / f"{pack}.json", XV, "sift", SIFT, on_bad_image="skip")
    assert meta["copied"] == 2 and meta["extracted"] == 0
    packs3 = [cache / f"{p}.h5" for p in fc.plan_extraction(lists3, fc.load_index(cache), XV, 1, 1).packs("db")]
    with pytest.raises(StoreError) as refused:
        fc.assemble_store(lists3, "db", cache, packs3, tmp_path / "db3.h5", XV, on_bad_image="error")
    third_bad = str(third / "jpg" / "p01.png")
    assert f"): {third_bad}: " in str(refused.value) and f"{first_bad}: " not in str(refused.value)


def test_a_skipped_reason_is_told_of_its_file_naming_the_first_it_was_found_under():
    first = fc.skipped_reason_for("/a/x.jpg", "/a/x.jpg: image file is truncated", "/a/x.jpg")
    assert first == "/a/x.jpg: image file is truncated"
    copy = fc.skipped_reason_for("/b/y.jpg", first, "/a/x.jpg")
    assert copy == "/b/y.jpg: image file is truncated (the same bytes as /a/x.jpg, found unreadable there)"
    # a copy of that copy names the first file once; the file itself again, no note at all
    assert fc.skipped_reason_for("/c/z.jpg", copy, "/b/y.jpg") == copy.replace("/b/y.jpg", "/c/z.jpg")
    assert fc.skipped_reason_for("/a/x.jpg", copy, "/b/y.jpg") == first
    # a reason without a path (a file listed but gone) is prefixed
    assert fc.skipped_reason_for("/b/y.jpg", "image listed but not found", "/b/y.jpg") == (
        "/b/y.jpg: image listed but not found"
    )


def test_a_bad_image_keeps_the_rest_of_its_job_in_the_cache(tmp_path):
    """Under on_bad_image: error a bad image fails the job after the others are extracted, naming every bad file;
    the others are a pack of their own, so the next plan (after the user removes or fixes the file) extracts only
    what is left, and the result equals an uninterrupted extraction."""
    cache, root = tmp_path / "features", tmp_path / "mine"
    _folder(root, range(5))
    (root / "jpg" / "p01.png").write_bytes(b"not an image")
    data = (root / "jpg" / "p03.png").read_bytes()
    (root / "jpg" / "p03.png").write_bytes(data[: len(data) // 3])  # truncated
    lists = _lists(root)
    plan = fc.plan_extraction(lists, fc.load_index(cache), XV, 1, 1)
    ((pack, items),) = plan.new_packs.items()
    with pytest.raises(ValueError, match=r"(?s)^\S*p01\.png: .*p03\.png: .*2 bad image\(s\) of 5.*other 3 image"):
        extract_pack(items, cache / f"{pack}.h5", cache / f"{pack}.json", XV, "sift", SIFT)
    assert not (cache / f"{pack}.json").exists()  # the job's own pack is not written
    index = fc.load_index(cache)
    ((kept, meta),) = index.packs.items()
    assert meta["rows"]["name"] == ["jpg/p00.png", "jpg/p02.png", "jpg/p04.png"] and meta["extracted"] == 3
    # the user fixes one file and removes the other: only the fixed one is extracted again
    _photo(root / "jpg" / "p01.png", 1)
    (root / "jpg" / "p03.png").unlink()
    lists = _lists(root)
    plan, metas = _run_plan(cache, lists)
    assert [it["name"] for v in plan.new_packs.values() for it in v] == ["jpg/p01.png"]
    assert [m["extracted"] for m in metas] == [1]
    _assemble(cache, lists, "db", tmp_path / "db.h5")
    fresh = tmp_path / "fresh"
    _run_plan(fresh, lists)
    _assemble(fresh, lists, "db", tmp_path / "fresh.h5")
    a, b = _read(tmp_path / "db.h5"), _read(tmp_path / "fresh.h5")
    for k in FIELDS:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    # every image bad: nothing to keep, and the message says so
    bad_root = tmp_path / "bad"
    (bad_root / "jpg").mkdir(parents=True)
    (bad_root / "jpg" / "x.png").write_bytes(b"")
    plan = fc.plan_extraction(_lists(bad_root), fc.load_index(tmp_path / "c2"), XV, 1, 1)
    ((pack, items),) = plan.new_packs.items()
    with pytest.raises(ValueError, match="no other image of this job was extracted"):
        extract_pack(items, tmp_path / "c2" / f"{pack}.h5", tmp_path / "c2" / f"{pack}.json", XV, "sift", SIFT)


def _same_stats(root, names, seeds, ns=10**18):
    """BMP photos (size fixed by their dimensions) of the given seeds, every one with the same mtime."""
    (root / "jpg").mkdir(parents=True, exist_ok=True)
    for name, seed in zip(names, seeds):
        _photo(root / "jpg" / name, seed)
        os.utime(root / "jpg" / name, ns=(ns, ns))


def _fresh_store(tmp_path, lists, tag):
    _run_plan(tmp_path / f"fresh_{tag}", lists)
    _assemble(tmp_path / f"fresh_{tag}", lists, "db", tmp_path / f"fresh_{tag}.h5")
    return _read(tmp_path / f"fresh_{tag}.h5")


def test_photos_sharing_name_size_and_mtime_keep_their_own_features(tmp_path):
    """helper-115's trial: frames of two clips under the same names, sizes and times were served the first clip's
    features (the stat memo was name, size and mtime), and two photos that swapped names kept each other's."""
    cache, clip_a, clip_b = tmp_path / "features", tmp_path / "clipA", tmp_path / "clipB"
    names = ["frame_0.bmp", "frame_1.bmp", "frame_2.bmp"]
    _same_stats(clip_a, names, [1, 2, 3])
    _same_stats(clip_b, names, [7, 8, 9])
    _run_plan(cache, _lists(clip_a))
    plan, metas = _run_plan(cache, _lists(clip_b))
    assert plan.n_new == 3 and plan.n_same_stat == 3 and sum(m["extracted"] for m in metas) == 3
    _assemble(cache, _lists(clip_b), "db", tmp_path / "b.h5")
    got, want = _read(tmp_path / "b.h5"), _fresh_store(tmp_path, _lists(clip_b), "b")
    for k in FIELDS:
        np.testing.assert_array_equal(got[k], want[k], err_msg=k)
    # two photos of one folder swap names (rename keeps size and mtime): both planned, hashed, copied from the cache
    jpg = clip_a / "jpg"
    jpg.joinpath("frame_0.bmp").rename(jpg / "t.bmp")
    jpg.joinpath("frame_1.bmp").rename(jpg / "frame_0.bmp")
    jpg.joinpath("t.bmp").rename(jpg / "frame_1.bmp")
    plan, metas = _run_plan(cache, _lists(clip_a))
    assert plan.n_new == 2 and sum(m["copied"] for m in metas) == 2 and sum(m["extracted"] for m in metas) == 0
    _assemble(cache, _lists(clip_a), "db", tmp_path / "a.h5")
    got, want = _read(tmp_path / "a.h5"), _fresh_store(tmp_path, _lists(clip_a), "a")
    for k in FIELDS:
        np.testing.assert_array_equal(got[k], want[k], err_msg=k)
    # nothing changed since: nothing planned
    assert fc.plan_extraction(_lists(clip_a), fc.load_index(cache), XV, 2, 1).n_new == 0
    # what moves only the ctime is not a change: permissions, a hard link (a cp -al backup); it would re-hash the
    # photo, copy its row into a new pack and re-run everything after the store (helper-116's review)
    os.chmod(jpg / "frame_2.bmp", 0o600)
    os.link(jpg / "frame_1.bmp", tmp_path / "backup.bmp")
    assert fc.plan_extraction(_lists(clip_a), fc.load_index(cache), XV, 2, 1).n_new == 0


def _overwrite_in_place(dst, src):
    """Write ``src``'s bytes over ``dst`` (same length) in the same inode, and set ``dst``'s old mtime back: what
    ``cp -p src dst`` onto an existing file, ``unzip -o`` or ``shutil.copy2`` leave."""
    before = os.stat(dst)
    data = src.read_bytes()
    assert len(data) == before.st_size
    with open(dst, "r+b") as f:
        f.write(data)
    os.utime(dst, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = os.stat(dst)
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == (before.st_ino, before.st_size, before.st_mtime_ns)


def test_a_photo_overwritten_in_place_with_its_size_time_and_inode_is_extracted_again(tmp_path, monkeypatch):
    """helper-121's trial: a second clip's frame copied with ``cp -p`` over the first clip's (same name, size, mtime
    and inode) was searched with the old frame's features. Its ctime moved: the plan hashes it, finds other bytes
    and extracts it; the hash is kept, so the next plan reads no file."""
    cache, clip_a, clip_b = tmp_path / "features", tmp_path / "clipA", tmp_path / "clipB"
    names = ["frame_0.bmp", "frame_1.bmp", "frame_2.bmp"]
    _same_stats(clip_a, names, [1, 2, 3])
    _same_stats(clip_b, names, [7, 8, 9])
    first, _ = _run_plan(cache, _lists(clip_a))
    original = tmp_path / "frame_1.orig"
    shutil.copyfile(clip_a / "jpg" / "frame_1.bmp", original)
    _overwrite_in_place(clip_a / "jpg" / "frame_1.bmp", clip_b / "jpg" / "frame_1.bmp")
    index = fc.load_index(cache)
    plan = fc.plan_extraction(_lists(clip_a), index, XV, 2, 1)
    assert plan.n_new == 1 and plan.n_rewritten == 1 and plan.n_same_stat == plan.n_renamed == plan.n_copied == 0
    ((pack, items),) = plan.new_packs.items()
    assert [it["name"] for it in items] == ["jpg/frame_1.bmp"]
    assert fc.record_verified(cache, index) == 1 and fc.record_verified(cache, index) == 0
    with monkeypatch.context() as m:  # a pack job does not parse the planning's memo (a large one, at every job)
        m.setattr(fc, "read_verified", lambda *a, **k: pytest.fail("the memo read by a pack job"))
        meta = extract_pack(items, cache / f"{pack}.h5", cache / f"{pack}.json", XV, "sift", SIFT)
    assert meta["extracted"] == 1 and meta["rows"]["ctime_ns"] == [os.stat(items[0]["path"]).st_ctime_ns]
    _assemble(cache, _lists(clip_a), "db", tmp_path / "a.h5")
    got, want = _read(tmp_path / "a.h5"), _fresh_store(tmp_path, _lists(clip_a), "a")
    for k in FIELDS:
        np.testing.assert_array_equal(got[k], want[k], err_msg=k)
    # planned again: the new row's ctime is the file's, so nothing is read (no hashing) and nothing planned
    real = fc.file_sha256
    monkeypatch.setattr(fc, "file_sha256", lambda path: pytest.fail(f"hashed {path}"))
    again = fc.plan_extraction(_lists(clip_a), fc.load_index(cache), XV, 2, 1)
    assert again.n_new == 0 and again.rows["db"][1][0] == pack and again.rows["db"][::2] == first.rows["db"][::2]
    # the old bytes written back in place: hashed, found in the pack first made for this file, nothing extracted
    monkeypatch.setattr(fc, "file_sha256", real)
    _overwrite_in_place(clip_a / "jpg" / "frame_1.bmp", original)
    back = fc.plan_extraction(_lists(clip_a), fc.load_index(cache), XV, 2, 1)
    assert back.n_new == 0 and back.rows == first.rows and back.n_verified == 1
    # served a row that is not the file's newest own one: the merge's parameters change though its packs may not
    # (helper-123's trial: the store kept the overwritten bytes' features), and stay so on the next plan
    assert back.displaced == {s: [(1, first.rows[s][1])] for s in ("db", "query")} and again.displaced == {}
    assert fc.plan_extraction(_lists(clip_a), fc.load_index(cache), XV, 2, 1).displaced == back.displaced
    # overwritten with the bytes of another photo of the same folder (cached in the packs its store already reads):
    # nothing to extract, and that row is served, as displaced
    _overwrite_in_place(clip_a / "jpg" / "frame_0.bmp", clip_a / "jpg" / "frame_2.bmp")
    same = fc.plan_extraction(_lists(clip_a), fc.load_index(cache), XV, 2, 1)
    assert same.n_new == 0 and same.rows["db"][0] == first.rows["db"][2]
    assert same.displaced["db"] == [(0, first.rows["db"][2]), (1, first.rows["db"][1])]
    # photos overwritten in place stay named while they hold rows of several ctimes (their lists may keep an old
    # pixel size: the planning checks them; helper-125 saw the warning once, then never again), and only they
    folder = [str(clip_a / "jpg" / n) for n in names]
    assert same.overwritten == folder[:2] and again.overwritten == back.overwritten == [folder[1]]
    assert fc.plan_extraction(_lists(clip_b), fc.load_index(cache), XV, 2, 1).overwritten == []


def test_what_moves_only_the_ctime_is_hashed_once_and_keeps_the_rows(tmp_path, monkeypatch, caplog):
    """chmod, chown, an ACL, a hard link (a ``cp -al`` backup) move the ctime and nothing else: hashed by the plan,
    the same bytes keep the same pack rows (a ctime *key* copied them into a new pack and re-ran everything after
    the store: helper-116); the hashes are kept in the memo, so the next plan hashes nothing, and a memo line cut
    short only costs its file a hash. Rows recorded before the ctime was are trusted by their stat key, as before."""
    cache, root = tmp_path / "features", tmp_path / "mine"
    _folder(root, range(4))
    first, _ = _run_plan(cache, _lists(root))
    jpg = root / "jpg"
    os.chmod(jpg / "p00.png", 0o600)
    os.link(jpg / "p01.png", tmp_path / "backup.png")
    hashed: list[str] = []
    real = fc.file_sha256
    monkeypatch.setattr(fc, "file_sha256", lambda path: hashed.append(os.path.basename(path)) or real(path))
    index = fc.load_index(cache)
    plan = fc.plan_extraction(_lists(root), index, XV, 2, 1)
    assert plan.n_new == plan.n_rewritten == 0 and plan.rows == first.rows and sorted(hashed) == ["p00.png", "p01.png"]
    assert plan.displaced == {} and plan.n_verified == 2  # the stores are not merged again
    assert fc.record_verified(cache, index) == 2
    hashed.clear()
    assert fc.plan_extraction(_lists(root), fc.load_index(cache), XV, 2, 1).rows == first.rows and hashed == []
    # a memo whose last line was cut short (a plan killed while appending): that file alone is hashed again
    memo = cache / fc.VERIFIED
    memo.write_text(memo.read_text()[:-20])
    assert len(fc.read_verified(cache)) == 1
    index = fc.load_index(cache)
    assert fc.plan_extraction(_lists(root), index, XV, 2, 1).rows == first.rows and len(hashed) == 1
    assert fc.record_verified(cache, index) == 1 and len(fc.read_verified(cache)) == 2
    # the ctime moved again: hashed again, and the memo keeps the newest ctime's entry only (an older one never
    # matches again); a memo that cannot be written (a read-only shared cache) is a warning, not a failed plan
    old = os.stat(jpg / "p00.png").st_ctime_ns
    while os.stat(jpg / "p00.png").st_ctime_ns == old:  # the ctime's tick is the kernel's (a few ms)
        os.chmod(jpg / "p00.png", 0o644 if os.stat(jpg / "p00.png").st_mode & 0o044 == 0 else 0o600)
    index = fc.load_index(cache)
    hashed.clear()
    assert fc.plan_extraction(_lists(root), index, XV, 2, 1).rows == first.rows and hashed == ["p00.png"]
    assert fc.record_verified(cache, index) == 1 and len(memo.read_text().splitlines()) == 2
    assert fc.read_verified(cache)[("jpg/p00.png", *fc.stat_of(jpg / "p00.png"))] == real(jpg / "p00.png")

    def refused(path):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(fc, "atomic_path", refused)
    index.fresh = {("jpg/p02.png", 1, 2, 3, 4): "x"}
    with caplog.at_level("WARNING"):
        assert fc.record_verified(cache, index) == 0
    assert "cannot record the photos hashed while planning in " in caplog.text and "Permission denied" in caplog.text
    # a memo that cannot be read or parsed never fails a plan (a failed plan let Snakemake find "nothing to be done"
    # with the photos' changes unseen, helper-123): a folder in its place, a number JSON reads as inf, deep nesting
    monkeypatch.undo()
    monkeypatch.setattr(fc, "file_sha256", lambda path: hashed.append(os.path.basename(path)) or real(path))
    kept = memo.read_text()
    memo.write_text(kept + '["a",1,2,3,1e400,"x"]\nInfinity\n' + "[" * 100000 + "\n")
    assert len(fc.read_verified(cache)) == 2
    memo.unlink()
    memo.mkdir()
    caplog.clear()
    with caplog.at_level("WARNING"):
        index = fc.load_index(cache)
        assert fc.plan_extraction(_lists(root), index, XV, 2, 1).rows == first.rows
        assert fc.record_verified(cache, index) == 0
    assert caplog.text.count(f"memo {memo} unreadable (") == 1 and "cannot record the photos hashed" in caplog.text
    memo.rmdir()
    memo.write_text(kept + json.dumps(["jpg/gone.png", 1, 2, 3, 4, "x"]) + "\n")
    index = fc.load_index(cache)
    index.fresh = {("jpg/p03.png", *fc.stat_of(jpg / "p03.png")): real(jpg / "p03.png")}
    assert fc.record_verified(cache, index) == 1  # and the entry of a stat key no pack holds is dropped
    assert sorted(k[0] for k in fc.read_verified(cache)) == ["jpg/p00.png", "jpg/p01.png", "jpg/p03.png"]
    # a pack recorded before the ctime was: its rows are trusted by name, size, mtime and inode (nothing hashed)
    memo.unlink()
    for sidecar in cache.glob("*.json"):
        meta = json.loads(sidecar.read_text())
        del meta["rows"]["ctime_ns"]
        sidecar.write_text(json.dumps(meta))
    hashed.clear()
    assert fc.plan_extraction(_lists(root), fc.load_index(cache), XV, 2, 1).rows == first.rows and hashed == []


def test_a_new_query_box_cached_under_a_copy_is_no_overwrite(tmp_path):
    """A box added to a photo whose (bytes, box) row is cached under a copy of it: served that row, but the photo was
    not overwritten (its ctime is its row's): not displaced, not named as overwritten (helper-125's probe: it was
    said overwritten, and given a merge parameter, at every plan)."""
    cache, root = tmp_path / "features", tmp_path / "mine"
    _folder(root, range(2))
    shutil.copyfile(root / "jpg" / "p00.png", root / "jpg" / "dup.png")
    _run_plan(cache, _lists(root, {"jpg/dup.png": [8, 8, 80, 64]}))
    plan = fc.plan_extraction(
        _lists(root, {"jpg/dup.png": [8, 8, 80, 64], "jpg/p00.png": [8, 8, 80, 64]}), fc.load_index(cache), XV, 2, 1
    )
    assert plan.n_new == 0 and plan.rows["query"][-1] == plan.rows["query"][-2]
    assert plan.displaced == {} and plan.overwritten == [] and plan.n_verified == 0


def test_rows_recorded_before_the_ctime_are_trusted_only_without_a_newer_row(tmp_path, monkeypatch):
    """A stat key with a row recorded before the ctime was (trusted) and one recorded with it (the same photo cached
    again, as a cropped query): where the ctime moved the file is hashed (the older row alone let an overwrite
    through: helper-123's reading)."""
    photo = tmp_path / "p.png"
    _photo(photo, 0)
    size, mtime, ino, ctime = fc.stat_of(photo)
    row = {"sha256": ["a"], "crop": [None], "name": ["p.png"], "size": [size], "mtime_ns": [mtime], "ino": [ino]}
    index = fc.CacheIndex()
    index.add_stats(row)
    assert index.sha_of(("p.png", size, mtime, ino), ctime + 1, str(photo)) == ("a", "recorded")  # trusted, not read
    index.add_stats({**row, "crop": [[0, 0, 8, 8]], "ctime_ns": [ctime]})
    assert index.sha_of(("p.png", size, mtime, ino), ctime, str(photo)) == ("a", "recorded")
    assert index.sha_of(("p.png", size, mtime, ino), ctime + 1, str(photo)) == (fc.file_sha256(photo), "rewritten")


def test_a_sidecar_without_inodes_serves_no_stat_lookup(tmp_path):
    """Packs written before the inode was recorded: their photos are hashed once more by a job, which copies their
    rows (nothing extracted), and planned from the new pack after that."""
    cache, root = tmp_path / "features", tmp_path / "mine"
    _folder(root, range(3))
    _run_plan(cache, _lists(root))
    sidecars = sorted(cache.glob("*.json"))
    for sidecar in sidecars:
        meta = json.loads(sidecar.read_text())
        assert all(isinstance(v, int) for v in meta["rows"]["ino"])
        del meta["rows"]["ino"]
        sidecar.write_text(json.dumps(meta))
    assert fc.pack_job(meta)["items"][0].keys() == {"path", "name", "crop", "size", "mtime_ns", "width", "height"}
    plan, metas = _run_plan(cache, _lists(root))
    assert plan.n_new == 3 and plan.n_same_stat == 3 and plan.n_renamed == 0 and plan.n_copied == 0
    assert sum(m["copied"] for m in metas) == 3 and sum(m["extracted"] for m in metas) == 0
    assert fc.plan_extraction(_lists(root), fc.load_index(cache), XV, 2, 1).n_new == 0
    # a pack planned before (its recorded plan's items without an inode, or with one and no ctime) and run now: its
    # sidecar gives back the items as planned, the parameters Snakemake recorded, and its id is the one that plan
    # named (helper-116)
    plan = fc.plan_extraction(_lists(root), fc.load_index(tmp_path / "empty"), XV, 1, 1)
    ((pack, items),) = plan.new_packs.items()
    assert list(items[0]) == ["path", "name", "crop", "size", "mtime_ns", "ino", "ctime_ns", "width", "height"]
    ids = {fc.pack_id(XV, items)}
    for i, gone in enumerate([("ino", "ctime_ns"), ("ctime_ns",)]):
        old = [{k: v for k, v in it.items() if k not in gone} for it in items]
        meta = extract_pack(old, tmp_path / f"old{i}.h5", tmp_path / f"old{i}.json", XV, "sift", SIFT)
        assert not set(gone) & set(meta["rows"]) and fc.pack_job(meta)["items"] == old
        ids.add(fc.pack_id(XV, old))
    assert fc.pack_job(fc.pack_sidecar(items, ["x"] * 3, XV, pack, "sift", SIFT, {}))["items"] == items
    assert len(ids) == 3 and pack == fc.pack_id(XV, items)
    # one file that another dataset names otherwise (its own folder's `q2.jpg`, a collection's `queries/q2.jpg`) is
    # another pack: a pack records its items' names, and one id with two contents was rewritten by each (helper-135)
    other = [{**it, "name": f"queries/{it['name']}"} for it in items]
    assert fc.pack_id(XV, other) != pack


def test_a_photo_gone_since_the_plan_keeps_the_rest_of_its_pack(tmp_path):
    """helper-115's trial: an interrupted pack re-run by --rerun-incomplete after a photo was renamed stopped at the
    old name ("removed while the workflow ran?") and lost the pack; the next run extracted every photo again."""
    cache, root = tmp_path / "features", tmp_path / "mine"
    _folder(root, range(4))
    plan = fc.plan_extraction(_lists(root), fc.load_index(cache), XV, 1, 1)
    ((pack, items),) = plan.new_packs.items()
    (root / "jpg" / "p02.png").rename(root / "jpg" / "r02.png")
    pattern = r"(?s)^image listed but not found: \S+p02\.png \(there when the workflow planned this job: .*"
    pattern += (
        r"--rerun-incomplete.*1 image\(s\) of 4 in this job changed since .*other 3 image\(s\).*run snakemake again"
    )
    for mode in ("error", "skip"):
        with pytest.raises(FileNotFoundError, match=pattern):
            extract_pack(items, cache / f"{pack}.h5", cache / f"{pack}.json", XV, "sift", SIFT, on_bad_image=mode)
    plan, metas = _run_plan(cache, _lists(root))
    # the other three are kept: only the renamed photo is extracted (its old name's bytes were never hashed)
    assert [it["name"] for v in plan.new_packs.values() for it in v] == ["jpg/r02.png"]
    assert [m["extracted"] for m in metas] == [1]
    # a job that sees another inode for the same bytes, size and mtime (another mount's numbering: CIFS noserverino,
    # FUSE without use_ino) is not refused: its rows are keyed by the bytes it hashes
    plan = fc.plan_extraction(_lists(root), fc.load_index(tmp_path / "other"), XV, 1, 1)
    ((other, planned),) = plan.new_packs.items()
    shutil.copy2(root / "jpg" / "p03.png", tmp_path / "p03.png")
    os.replace(tmp_path / "p03.png", root / "jpg" / "p03.png")  # same bytes and mtime, a new inode
    meta = extract_pack(
        planned, tmp_path / "other" / f"{other}.h5", tmp_path / "other" / f"{other}.json", XV, "sift", SIFT
    )
    assert meta["extracted"] == 4


def test_a_copy_keeps_reading_the_pack_made_for_it(tmp_path):
    """Two folders holding the same photo: each plans against its own pack once made, so its store's inputs stay put
    (no re-run of the merge when the other folder's older pack holds the same bytes)."""
    cache = tmp_path / "features"
    a, b = tmp_path / "a", tmp_path / "b"
    _folder(a, range(3))
    _run_plan(cache, _lists(a))
    (b / "jpg").mkdir(parents=True)
    shutil.copyfile(a / "jpg" / "p01.png", b / "jpg" / "p01.png")  # same bytes, new mtime
    plan, metas = _run_plan(cache, _lists(b))
    assert metas[0]["copied"] == 1 and metas[0]["extracted"] == 0
    again = fc.plan_extraction(_lists(b), fc.load_index(cache), XV, 2, 1)
    assert again.n_new == 0 and again.rows["db"] == plan.rows["db"]


def test_readers_refuse_a_store_whose_pack_lost_rows(tmp_path):
    cache, root = tmp_path / "features", tmp_path / "mine"
    _folder(root, range(4))
    plan, _ = _run_plan(cache, _lists(root), n_chunks=1)
    _assemble(cache, _lists(root), "db", tmp_path / "db.h5")
    open_local(tmp_path / "db.h5").close()
    (pack,) = plan.new_packs
    with h5py.File(cache / f"{pack}.h5", "r") as f:
        row = {k: f[k][0, : int(f["count"][0])] for k in ("descriptors", "xy", "scale", "weight", "orientation")}
        row["image_size"] = f["image_size"][0]
    write_local_chunk(cache / f"{pack}.h5", [row], k=64, dim=128, backbone="sift", row_start=0, n_total=1)
    with pytest.raises(StoreError, match=rf"{pack}.h5 has 1 rows, row 3 is mapped"):
        open_local(tmp_path / "db.h5")
    # a truncated store: named with the way to make it again (helper-119's trial was given no remedy)
    with open(tmp_path / "db.h5", "r+b") as fh:
        fh.truncate(2000)
    with pytest.raises(StoreError, match=rf"db\.h5: not a readable HDF5 file .*add -R {tmp_path / 'db.h5'} after"):
        open_local(tmp_path / "db.h5")


@pytest.mark.parametrize("damage", ["truncated", "deleted"])
def test_a_copy_from_a_damaged_pack_is_extracted_again_with_a_warning(tmp_path, caplog, damage):
    """A photo copied under a new name is found by its hash in an earlier pack; when that pack's .h5 was damaged
    after its job (a copy cut short, a file deleted by hand) the new pack's job extracts the photo instead of
    failing with h5py's error, which names no file, and the row equals the extraction. The damaged pack itself is
    named, with the remedy, where it is read: copying (read_pack_row) and assembling a store."""
    cache, root = tmp_path / "features", tmp_path / "mine"
    _folder(root, range(3))
    plan, _ = _run_plan(cache, _lists(root), n_chunks=1)
    (old,) = plan.new_packs
    shutil.copyfile(root / "jpg" / "p01.png", root / "jpg" / "q01.png")
    if damage == "truncated":
        with open(cache / f"{old}.h5", "r+b") as f:
            f.truncate(2000)
    else:
        (cache / f"{old}.h5").unlink()
    with pytest.raises(fc.CacheError, match=rf"{old}\.h5 .*delete .*{old}\.h5 and .*{old}\.json"):
        fc.read_pack_row(cache / f"{old}.h5", 1)
    with caplog.at_level("WARNING"):
        plan, metas = _run_plan(cache, _lists(root))
    assert plan.n_new == 1 and metas[0]["copied"] == 0 and metas[0]["extracted"] == 1
    assert "q01.png: extracted instead of copied: feature cache: pack unreadable" in caplog.text
    (new,) = plan.new_packs
    lp = tmp_path / "lists.json"
    lists = _lists(root)
    lp.write_text(json.dumps({**lists, "db": [e for e in lists["db"] if e["name"] == "jpg/p01.png"]}))
    extract_local_chunk(lp, "db", 0, 1, tmp_path / "fresh.h5", "sift", SIFT, "v")
    with h5py.File(tmp_path / "fresh.h5", "r") as f:
        m = int(f["count"][0])
        row, _ = fc.read_pack_row(cache / f"{new}.h5", 0)
        np.testing.assert_array_equal(row["descriptors"], f["descriptors"][0, :m])
        np.testing.assert_array_equal(row["xy"], f["xy"][0, :m])
    with pytest.raises(StoreError, match=rf"{old}\.h5 .*delete"):
        _assemble(cache, _lists(root), "db", tmp_path / "db.h5")
    # the remedy works: without the damaged pack, its photos are planned again and the store assembles
    (cache / f"{old}.h5").unlink(missing_ok=True)
    (cache / f"{old}.json").unlink()
    plan, metas = _run_plan(cache, _lists(root), n_chunks=1)
    assert plan.n_new == 3
    assert _assemble(cache, _lists(root), "db", tmp_path / "db.h5")["n_rows"] == 4


def test_a_photo_without_read_permission_is_planned_as_missing_and_again_once_readable(tmp_path, monkeypatch):
    """A photo this process may not read (a shared drive's permissions; ``os.access`` stands in for it, since tests
    may run as root): under error its job names it and why, under skip it gets an empty row whose reason says why,
    and once readable (chmod keeps the mtime) it is planned and extracted again, not served its empty row."""
    cache, root = tmp_path / "features", tmp_path / "mine"
    _folder(root, range(3))
    locked = str(root / "jpg" / "p01.png")
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: str(p) != locked and real_access(p, mode, **kw))
    lists = _lists(root)
    plan = fc.plan_extraction(lists, fc.load_index(cache), XV, 1, 1)
    ((pack, items),) = plan.new_packs.items()
    assert [it["size"] for it in items][1] == -1
    with pytest.raises(ValueError, match=rf"{locked}: no permission to read it"):
        extract_pack(items, cache / f"{pack}.h5", cache / f"{pack}.json", XV, "sift", SIFT)
    for p in cache.glob("*"):  # the other photos' pack, kept by the failed job: start again without it
        p.unlink()
    meta = extract_pack(items, cache / f"{pack}.h5", cache / f"{pack}.json", XV, "sift", SIFT, on_bad_image="skip")
    assert meta["skipped"] == {"1": "no permission to read it"}
    info = _assemble(cache, lists, "db", tmp_path / "db.h5", "skip")
    assert info["skipped"] == [{"path": locked, "reason": "no permission to read it"}]
    monkeypatch.setattr(os, "access", real_access)  # chmod a+r: same size and mtime
    plan, metas = _run_plan(cache, _lists(root))
    assert [it["path"] for v in plan.new_packs.values() for it in v] == [locked] and metas[0]["extracted"] == 1
    assert not _assemble(cache, _lists(root), "db", tmp_path / "db2.h5")["skipped"]
    assert _read(tmp_path / "db2.h5")["count"][1] > 0


def test_a_photo_unreadable_since_the_plan_is_named_and_the_rest_kept(tmp_path, monkeypatch):
    """A file system that says "readable" at the plan and refuses the read in the job (root-squashed mounts), or a
    photo whose permission was taken after the plan: named, under skip too, and the pack's other photos kept (the
    job stopped at once, losing them)."""
    cache, root = tmp_path / "features", tmp_path / "mine"
    _folder(root, range(3))
    plan = fc.plan_extraction(_lists(root), fc.load_index(cache), XV, 1, 1)
    ((pack, items),) = plan.new_packs.items()
    refused = str(root / "jpg" / "p01.png")

    def sha(path):
        if str(path) == refused:
            raise PermissionError(13, "Permission denied")
        return fc.file_sha256(path)

    monkeypatch.setattr(extract_pack_module, "file_sha256", sha)
    for mode in ("error", "skip"):
        with pytest.raises(
            ValueError, match=r"(?s)p01\.png: no permission to read it \(Permission denied\), though .*other 2"
        ):
            extract_pack(items, cache / f"{pack}.h5", cache / f"{pack}.json", XV, "sift", SIFT, on_bad_image=mode)
    assert [m["rows"]["name"] for m in fc.load_index(cache).packs.values()] == [["jpg/p00.png", "jpg/p02.png"]]


def test_a_new_query_box_on_a_cached_photo_is_new_not_a_copy(tmp_path):
    """A query box added to a cached photo: a crop the cache does not hold, extracted. The plan's log line counted it
    as a file with another inode (a copy made with cp -a), hashed first to be copied (helper-137)."""
    cache, root = tmp_path / "features", tmp_path / "mine"
    _folder(root, [1, 2])
    _run_plan(cache, _lists(root))
    plan, metas = _run_plan(cache, _lists(root, {"jpg/p01.png": [8, 8, 100, 80]}))
    assert plan.n_new == 1 and plan.n_same_stat == plan.n_renamed == plan.n_copied == 0
    assert sum(m["extracted"] for m in metas) == 1
    # the same box again: nothing new
    assert fc.plan_extraction(_lists(root, {"jpg/p01.png": [8, 8, 100, 80]}), fc.load_index(cache), XV, 1, 1).n_new == 0


def test_two_copies_new_in_one_pack_are_extracted_once(tmp_path):
    """Two copies (or hard links) of one photo, both new: the job extracted each (helper-137). The second is copied
    from the first's row; a copy of a file skipped as unreadable is skipped with the same reason."""
    cache, root = tmp_path / "features", tmp_path / "mine"
    _folder(root, [1, 2])
    shutil.copy(root / "jpg" / "p01.png", root / "jpg" / "p03.png")
    os.link(root / "jpg" / "p02.png", root / "jpg" / "p04.png")
    plan, metas = _run_plan(cache, _lists(root), n_chunks=1)
    assert plan.n_new == 4 and [(m["extracted"], m["copied"]) for m in metas] == [(2, 2)]
    _assemble(cache, _lists(root), "db", tmp_path / "db.h5")
    got = _read(tmp_path / "db.h5")
    assert got["count"][0] > 0 and got["count"][1] > 0
    for k in FIELDS:  # p03 is p01's row, p04 p02's
        np.testing.assert_array_equal(got[k][2], got[k][0], err_msg=k)
        np.testing.assert_array_equal(got[k][3], got[k][1], err_msg=k)
    bad = tmp_path / "bad"
    (bad / "jpg").mkdir(parents=True)
    (bad / "jpg" / "a.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    shutil.copy(bad / "jpg" / "a.jpg", bad / "jpg" / "b.jpg")
    plan = fc.plan_extraction(_lists(bad), fc.load_index(cache), XV, 1, 1)
    ((pack, items),) = plan.new_packs.items()
    meta = extract_pack(items, cache / f"{pack}.h5", cache / f"{pack}.json", XV, "sift", SIFT, on_bad_image="skip")
    assert (meta["extracted"], meta["copied"]) == (1, 1)
    assert sorted(meta["skipped"]) == ["0", "1"] and meta["skipped"]["0"] == meta["skipped"]["1"]
