"""Engineers' collections: a folder whose name holds underscores and ends like a method, searched with IVF-PQ
settings that used to emit faiss's -1 ids (nprobe 1 over few images), re-ranked by every shortlist reader."""

import csv
import json
import os
import re
import shutil

import h5py
import numpy as np
import pytest
import yaml
from PIL import Image

from conftest import SHARED, TINY, copy_tree, load_json, snakemake
from retrieval.data.datasets import build_image_lists

pytestmark = pytest.mark.workflow


def _folder(tiny_run, root, name, n):
    photos = root / name / "jpg"
    photos.mkdir(parents=True)
    jpgs = sorted((tiny_run / "results" / "demo_data").glob("*/demo/jpg/*.jpg"))[:n]
    assert len(jpgs) == n
    for p in jpgs:
        shutil.copy(p, photos / p.name)
    return jpgs


def test_underscored_folder_with_a_short_ivfpq_shortlist_through_every_reader(tiny_run, tmp_path):
    """(AMES is not run here: the ivfpq setting changes demo-val's shortlist, which would train it again; its logits
    on a short shortlist are covered by tests/unit/test_ivfpq_safety.py, a collection without ground truth by
    tests/unit/test_ames_without_gnd.py.)"""
    wd = copy_tree(tiny_run, tmp_path / "wd")
    cached = set((wd / "results" / "features").glob("*/packs/*.json"))  # other folders' (landmarks-mini's) packs
    first = _folder(tiny_run, tmp_path / "mine", "x_ames", 40)[0].name
    # a name Snakemake 9 would read as a path variable (<b>) if the photo were declared as an input: it used to fail
    # merge_local with UndefinedPathvarException
    odd = tmp_path / "mine" / "x_ames" / "jpg" / "Tom & Jerry <b>bold.jpg"
    (tmp_path / "mine" / "x_ames" / "jpg" / first).rename(odd)
    # braces, which Snakemake reads as a wildcard in an input function's paths (WildcardError, naming no file), in a
    # photo's name and a subfolder's
    second = sorted(p for p in (tmp_path / "mine" / "x_ames" / "jpg").iterdir() if p != odd)[0]
    braced = tmp_path / "mine" / "x_ames" / "jpg" / "set {1}" / "view{{2}}.jpg"
    braced.parent.mkdir()
    second.rename(braced)
    cfg = tmp_path / "ivf.yaml"
    # 40 images in 8 lists, 1 probed: about 5 images per probe for k = 12 (faiss pads with -1 where lists run out);
    # sv (100) and superglobal (400) ask for more than the 12 the shortlist holds
    cfg.write_text(
        yaml.safe_dump(
            {
                "data_root": str(tmp_path / "mine"),
                "knn": {
                    "k": 12,
                    "search": "ivfpq",
                    "ivfpq": {"nlist": 8, "m": 8, "nbits": 4, "nprobe": 1, "train": 40},
                },
            }
        )
    )
    methods = ("global", "sv", "superglobal", "aqe")
    targets = [f"results/x_ames_{m}.json" for m in methods]
    run = snakemake(wd, *targets, "--configfile", str(TINY), str(cfg), timeout=2400)
    assert f"{odd}: its name holds <...>, which Snakemake reads as a path variable" in run.stderr
    assert f"{braced}: its name holds {{ or }}, which Snakemake reads as a wildcard" in run.stderr
    assert f"{braced.parent}: its name holds {{ or }}" in run.stderr
    knn = load_json(wd / "results" / "x_ames_global.json")["artifacts"]["knn"]
    with h5py.File(wd / knn, "r") as f:
        ids = f["ids"][:]
        assert f.attrs["search"] == "ivfpq" and ids.shape == (40, 12)
        assert ids.min() >= 0 and ids.max() < 40 and all(len(set(r)) == 12 for r in ids)
    # one extraction per image: every query is an uncropped database image, so the feature cache holds each once and
    # the query store maps the database's pack rows
    assert not (wd / "logs" / "extract_local" / "x_ames").exists()
    packs = [load_json(p) for p in set((wd / "results" / "features").glob("*/packs/*.json")) - cached]
    assert sum(len(m["rows"]["sha256"]) for m in packs) == 40 and sum(m["extracted"] for m in packs) == 40
    db_store, q_store = (next((wd / "results" / "local" / "x_ames").glob(f"*/{s}/local.h5")) for s in ("db", "query"))
    with h5py.File(db_store, "r") as fd, h5py.File(q_store, "r") as fq:
        np.testing.assert_array_equal(fd["descriptors"][:], fq["descriptors"][:])
        np.testing.assert_array_equal(fd["xy"][:], fq["xy"][:])
    photos = {str(p) for p in (tmp_path / "mine" / "x_ames" / "jpg").rglob("*.jpg")}
    assert str(braced) in photos and len(photos) == 40
    for m in methods:
        res = load_json(wd / "results" / f"x_ames_{m}.json")
        assert res["dataset"] == "x_ames" and res["method"] == m and res["metrics"] is None
        with open(wd / res["artifacts"]["neighbours_csv"]) as fh:
            rows = list(csv.DictReader(fh))
        # every query keeps its 12 shortlisted images, nothing padded; aqe searches the database again with the
        # expanded query, as deep as the shortlist (its top 12 of the 40: it wrote the full 40 x 40 whatever knn.k,
        # a new user's trial)
        width = 12
        assert len(rows) == 40 * width, m
        assert all(r["image"] in photos and np.isfinite(float(r["score"])) for r in rows), m
        per_query = {}
        for r in rows:
            per_query.setdefault(r["query"], []).append(r["image"])
        assert all(len(set(v)) == width for v in per_query.values()), m


def test_new_photos_searched_against_an_indexed_collection(tiny_run, tmp_path):
    """results/search/demo/newpics.{csv,html,json}: only the new photos are extracted (from a folder outside
    data_root, named in dataset_dirs); each photo that is a copy of a collection image finds it first; with
    search.rerank: sv the score is the inlier count."""
    wd = copy_tree(tiny_run, tmp_path / "wd")
    lists = load_json(next((tiny_run / "results" / "lists" / "demo").glob("*/lists.json")))
    names = [e["path"] for e in lists["db"]]
    # the new photos are not under data_root: dataset_dirs names their folder
    photos = tmp_path / "camera" / "DCIM" / "jpg"
    photos.mkdir(parents=True)
    picked = names[:3]  # copies of collection images (paths as the collection lists them), under new names
    for i, p in enumerate(picked):
        shutil.copy(wd / p, photos / f"new_{i}.jpg")
    dirs = tmp_path / "dirs.yaml"
    dirs.write_text(yaml.safe_dump({"dataset_dirs": {"newpics": str(photos.parent)}}))
    base = ("--configfile", str(TINY), str(dirs), "--config", f"data_root={tmp_path / 'mine'}")
    plan = snakemake(wd, "-n", "results/search/demo/newpics.html", *base).stdout
    planned = [line.split("output: ")[1] for line in plan.splitlines() if "output: results/local/" in line]
    assert planned and all("/newpics/" in p for p in planned), planned  # the collection is not extracted again
    # without re-ranking the search job only writes files: one thread (a dry run lists threads above 1)
    assert "threads:" not in plan.split("rule search_photos:")[1].split("rule ")[0]
    assert not any("/query/" in p for p in planned)  # new photos are queries only through their database split
    snakemake(wd, "results/search/demo/newpics.html", *base, timeout=1800)
    res = load_json(wd / "results" / "search" / "demo" / "newpics.json")
    assert res["n_photos"] == 3 and res["n_collection"] == len(names) and res["score"] == "similarity"
    assert res["photos_without_features"] == []
    with open(wd / "results" / "search" / "demo" / "newpics.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 3 * min(20, len(names))
    global_rows = rows
    firsts = {r["photo"].rsplit("/", 1)[1]: r for r in rows if r["rank"] == "1"}
    for i, p in enumerate(picked):
        assert firsts[f"new_{i}.jpg"]["image"] == p and float(firsts[f"new_{i}.jpg"]["similarity"]) > 0.99
    page = (wd / "results" / "search" / "demo" / "newpics.html").read_text()
    assert page.count("data:image/png;base64,") == 3 and picked[0] in page
    # an sv setting leaves a search that does not verify alone (it used to re-run search_photos)
    svt = tmp_path / "svt.yaml"
    svt.write_text(yaml.safe_dump({"sv": {"threshold": 12.0}}))
    out = snakemake(wd, "-n", "results/search/demo/newpics.html", *base[:3], str(svt), *base[3:]).stdout
    assert "Nothing to be done" in out, out
    # re-ranked by spatial verification: the copies keep rank 1, now by inlier count
    sv = tmp_path / "sv.yaml"
    sv.write_text(yaml.safe_dump({"search": {"k": 10, "rerank": "sv", "sheet_top": 8, "sheet_photos": 50}}))
    plan = snakemake(wd, "-n", "results/search/demo/newpics.csv", *base[:2], str(dirs), str(sv), *base[3:]).stdout
    assert "threads: 2" in plan.split("rule search_photos:")[1].split("rule ")[0]  # the matching on every core
    snakemake(
        wd,
        "results/search/demo/newpics.csv",
        "--configfile",
        str(TINY),
        str(dirs),
        str(sv),
        "--config",
        f"data_root={tmp_path / 'mine'}",
        timeout=1800,
    )
    with open(wd / "results" / "search" / "demo" / "newpics.csv") as fh:
        rows = list(csv.DictReader(fh))
    global_similarity = {(r["photo"], r["image"]): r["similarity"] for r in global_rows}
    assert list(rows[0]) == ["photo", "rank", "image", "similarity", "inliers"] and len(rows) == 30
    # sv verified its top sv.num_rerank (100, capped at the collection), not only the 10 listed
    res = load_json(wd / "results" / "search" / "demo" / "newpics.json")
    assert res["k"] == 10 and res["sv"]["pairs"] == 3 * min(100, len(names)) > 30
    # both sides' lists are named, so a later run that lists the collection again says this search is stale
    assert (wd / res["artifacts"]["photos_lists"]).name == "db.json"  # a folder: its database list
    assert (wd / res["artifacts"]["collection_lists"]).name == "lists.json"  # the demo's lists
    assert all(isinstance(t["inliers"], int) for n in res["neighbours"] for t in n["top"])
    # the JSON keeps the global similarity beside the inliers, as the CSV does (it held the inliers only)
    csv_top = {(r["photo"], r["image"]): float(r["similarity"]) for r in rows}
    for n in res["neighbours"]:
        for t in n["top"]:
            assert abs(t["similarity"] - csv_top[(n["photo"], t["image"])]) < 1e-6
    for i, p in enumerate(picked):
        mine = [r for r in rows if r["photo"].endswith(f"new_{i}.jpg")]
        assert mine[0]["image"] == p and int(mine[0]["inliers"]) == max(int(r["inliers"]) for r in mine)
    # each listed image keeps its global similarity next to its inlier count; this search's 100 neighbours are the
    # whole collection, a full ranking that numpy's BLAS multiplies out, where the first search's top 20 came from
    # faiss's kernels (stream_topk): on some CPUs (an AMD EPYC with AVX2) the two sum the dot product in another
    # order, and the printed sixth decimal may differ by one (-0.012725 against -0.012726 seen)
    for r in rows:
        if (r["photo"], r["image"]) in global_similarity:
            assert abs(float(r["similarity"]) - float(global_similarity[(r["photo"], r["image"])])) <= 1.5e-6, r


def test_a_collections_ground_truth_is_not_an_input_of_a_search(tiny_run, tmp_path):
    """A search reads the collection's database lists only: a mistake in its gnd.csv (a new user's trial: kind
    'hrad') made image_lists fail and stopped the search, and any gnd.csv edit re-ran every search."""
    jpgs = _folder(tiny_run, tmp_path / "mine", "coll", 12)
    _folder(tiny_run, tmp_path / "mine", "newp", 2)
    (tmp_path / "mine" / "coll" / "gnd.csv").write_text(
        f"query,positive,kind\njpg/{jpgs[0].name},jpg/{jpgs[1].name},hrad\n"
    )
    base = ("--configfile", str(TINY), "--config", f"data_root={tmp_path / 'mine'}")
    out = snakemake(tmp_path, "-n", "results/search/coll/newp.html", *base)
    planned = set(re.findall(r"^rule (\w+):", out.stdout, re.M))
    assert {"database_list", "search_knn", "search_photos"} <= planned and "image_lists" not in planned, planned
    assert "kind 'hrad' is not one of" in out.stdout + out.stderr  # still said, once, while the DAG is built
    # the collection's own evaluation does need the ground truth: it is refused there, naming the line
    out = snakemake(tmp_path, "-n", "results/coll_global.json", *base)
    assert "rule image_lists:" in out.stdout
    # photos to search whose folder is missing are told where to put them, not of ground truth for metrics
    out = snakemake(tmp_path, "-n", "results/search/coll/newq.html", *base, check=False)
    text = out.stdout + out.stderr
    assert out.returncode != 0 and "photos to search 'newq': folder" in text and "for metrics" not in text, text[-2000:]
    # a '{dataset}+1m' of photos has no folder of its own: it plans as before (it was refused as a missing folder)
    out = snakemake(tmp_path, "-n", "results/search/coll/coll+1m.csv", *base)
    assert "photos to search" not in out.stdout + out.stderr and "rule search_knn:" in out.stdout


def _job_stats(out):
    m = re.search(r"Job stats:\njob\s+count\n[-\s]+\n(.*?)\ntotal", out, re.S)
    return {} if m is None else {name: int(n) for name, n in (line.split() for line in m.group(1).strip().splitlines())}


def _store(wd, ds, split):
    with h5py.File(next((wd / "results" / "local" / ds).glob(f"*/{split}/local.h5")), "r") as f:
        return {k: f[k][:] for k in ("descriptors", "count", "xy", "image_size")}


def test_growing_folder_extracts_only_its_new_photos_and_equals_a_fresh_run(tiny_run, tmp_path):
    """A folder of 24 photos is indexed; 3 are added to a subfolder (which changes only that folder's mtime): the dry
    run plans one extraction job for those 3 only (hashing nothing else), the re-run's stores and results equal a
    from-scratch run's; renaming the folder extracts nothing. A hidden macOS resource fork (``._*.jpg``, not an
    image) is never listed."""
    wd = tmp_path / "wd"
    wd.mkdir()
    jpgs = _folder(tiny_run, tmp_path / "data", "coll", 27)
    photos = tmp_path / "data" / "coll" / "jpg"
    sub = photos / "2024"
    sub.mkdir()
    for p in jpgs[:9]:
        (photos / p.name).rename(sub / p.name)
    (photos / f"._{jpgs[0].name}").write_bytes(b"\x00\x05\x16\x07 Mac OS X resource fork")
    new = jpgs[1:9:3]  # three photos of the subfolder
    for p in new:
        (sub / p.name).unlink()
    base = ("--configfile", str(TINY), "--config", f"data_root={tmp_path / 'data'}")
    snakemake(wd, "results/coll_global.json", *base, timeout=1800)
    top_mtime = photos.stat().st_mtime_ns
    for p in new:
        shutil.copy(p, sub / p.name)
    assert photos.stat().st_mtime_ns == top_mtime  # only the subfolder changed
    out = snakemake(wd, "-n", "results/coll_global.json", *base).stdout
    stats = _job_stats(out)
    assert stats["extract_pack"] == 1 and "extract_local" not in stats, stats
    assert "coll: 3 of 27 images (and query boxes) to extract, in 1 job(s)" in out
    # the pack alone, as a job whose DAG is built again where it runs (a SLURM job): found from the plan its main
    # process recorded (a run, not the dry run, records plans; here one that stops before the pack)
    (planned,) = re.findall(r"output: (results/features/\w+/packs/\w+\.h5)", out)
    plan = wd / planned.replace("/packs/", "/plans/").replace(".h5", ".json")
    assert not plan.exists()
    snakemake(wd, "results/coll_global.json", "--omit-from", "extract_pack", *base)
    assert plan.exists() and not (wd / planned).exists()
    snakemake(wd, planned, *base)
    snakemake(wd, "results/coll_global.json", *base, timeout=1800)
    packs = sorted((wd / "results" / "features").glob("*/packs/*.json"), key=lambda p: load_json(p)["created"])
    last = load_json(packs[-1])
    assert sorted(last["rows"]["name"]) == sorted(f"jpg/2024/{p.name}" for p in new) and last["extracted"] == 3
    assert "Nothing to be done" in snakemake(wd, "-n", "results/coll_global.json", *base).stdout

    # a photo replaced in place by an older file of another size (cp -p, a restore from a backup): older than the
    # lists, so only the listed images' size/mtime digest (image_lists' params) has the lists made again; they kept
    # the old size (a new user's trial)
    victim = photos / jpgs[12].name
    with Image.open(victim) as im:
        im.resize((im.width // 2, im.height // 2)).save(victim)
    os.utime(victim, ns=(10**18, 10**18))  # 2001: older than every output
    assert "image_lists" in _job_stats(snakemake(wd, "-n", "results/coll_global.json", *base).stdout)
    snakemake(wd, "results/coll_global.json", *base, timeout=1800)
    lists = load_json(max((wd / "results" / "lists" / "coll").glob("*/lists.json"), key=lambda p: p.stat().st_mtime))
    (entry,) = [e for e in lists["db"] if e["name"] == f"jpg/{victim.name}"]
    assert (entry["width"], entry["height"]) == Image.open(victim).size
    assert "Nothing to be done" in snakemake(wd, "-n", "results/coll_global.json", *base).stdout
    # a photo put beside jpg/ changes nothing the workflow watches: the reused database list still names it
    shutil.copy(jpgs[13], photos.parent / "beside.jpg")
    dry = snakemake(wd, "-n", "results/coll_global.json", *base)
    assert "Nothing to be done" in dry.stdout
    assert "1 image(s) beside jpg/ are not in the database, which is the images under jpg/: beside.jpg" in (
        dry.stdout + dry.stderr
    )
    (photos.parent / "beside.jpg").unlink()

    # from scratch (a fresh working directory and cache) on the grown folder: the same stores and results
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    snakemake(fresh, "results/coll_global.json", *base, timeout=1800)
    for split in ("db", "query"):
        a, b = _store(wd, "coll", split), _store(fresh, "coll", split)
        for k in a:
            np.testing.assert_array_equal(a[k], b[k], err_msg=f"{split} {k}")
    ra, rb = load_json(wd / "results" / "coll_global.json"), load_json(fresh / "results" / "coll_global.json")
    assert ra["versions"] == rb["versions"]
    with (
        h5py.File(wd / ra["artifacts"]["ranking"], "r") as fa,
        h5py.File(fresh / rb["artifacts"]["ranking"], "r") as fb,
    ):
        for k in fa:
            np.testing.assert_array_equal(fa[k][:], fb[k][:], err_msg=k)
    assert (wd / ra["artifacts"]["neighbours_csv"]).read_text() == (
        fresh / rb["artifacts"]["neighbours_csv"]
    ).read_text()

    # rename the data folder: a new lists version, but every photo is found in the cache
    shutil.move(tmp_path / "data", tmp_path / "moved")
    out = snakemake(
        wd, "-n", "results/coll_global.json", "--configfile", str(TINY), "--config", f"data_root={tmp_path / 'moved'}"
    ).stdout
    assert (
        "coll: 0 of 27 images" in out and "extract_pack" not in _job_stats(out) and _job_stats(out)["merge_local"] == 2
    )


def _overwrite_in_place(dst, data):
    """``data`` (as long as ``dst``) written into ``dst``'s inode with its old times set back: what ``cp -p`` onto an
    existing file or ``unzip -o`` leave."""
    st = dst.stat()
    assert len(data) == st.st_size
    with open(dst, "r+b") as f:
        f.write(data)
    os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert (dst.stat().st_ino, dst.stat().st_mtime_ns) == (st.st_ino, st.st_mtime_ns)


def _ranking(wd, ds, method="global"):
    result = load_json(wd / "results" / f"{ds}_{method}.json")
    with h5py.File(wd / result["artifacts"]["ranking"], "r") as f:
        return {k: f[k][:] for k in f}, (wd / result["artifacts"]["neighbours_csv"]).read_text()


def test_photos_overwritten_in_place_are_searched_as_they_now_are(tiny_run, tmp_path):
    """A photo overwritten in place keeps its name, size, mtime and inode: until 2026-12-06 it was searched with its
    old features. Its ctime moved, so the plan hashes it: a chmod -R (the same bytes) runs nothing; the bytes of
    another photo of the collection (in the packs its stores already read) have the stores merged again through
    the rows they serve (helper-123's trial found "nothing to be done"); the old bytes written back too. The
    ranking equals a fresh run's on the changed folder, and the first one's once the photo is back."""
    wd = tmp_path / "wd"
    wd.mkdir()
    jpgs = _folder(tiny_run, tmp_path / "data", "coll", 8)
    photos = tmp_path / "data" / "coll" / "jpg"
    a, b = sorted((photos / p.name for p in jpgs), key=lambda p: p.stat().st_size)[-1:-3:-1]
    with Image.open(b) as im:  # b smaller in pixels, padded to a's size in bytes (a JPEG ignores the tail)
        im.resize((im.width * 3 // 4, im.height * 3 // 4)).save(b, quality=90)
    b.write_bytes(b.read_bytes().ljust(a.stat().st_size, b"\0"))
    base = ("--configfile", str(TINY), "--config", f"data_root={tmp_path / 'data'}")
    snakemake(wd, "results/coll_global.json", *base, timeout=1800)
    first = _ranking(wd, "coll")
    for p in photos.iterdir():
        p.chmod(0o600)
    out = snakemake(wd, "-n", "results/coll_global.json", *base).stdout
    assert "Nothing to be done" in out and "8 photo(s) hashed while planning" in out
    assert "photo(s) hashed" not in snakemake(wd, "-n", "results/coll_global.json", *base).stdout  # kept

    original = a.read_bytes()
    original_copy = tmp_path / "a_original.jpg"
    original_copy.write_bytes(original)
    _overwrite_in_place(a, b.read_bytes())
    out = snakemake(wd, "-n", "results/coll_global.json", *base).stdout
    assert "coll: 0 of 8 images" in out and f"are served those rows: jpg/{a.name}" in out
    assert _job_stats(out)["merge_local"] == 2 and "extract_pack" not in _job_stats(out)
    with Image.open(b) as im, Image.open(original_copy) as old:
        resized = f"{a} ({im.width} x {im.height}, listed as {old.width} x {old.height})"
    assert f"coll: 1 photo(s) overwritten in place have another pixel size than the lists read: {resized}" in out
    snakemake(wd, "results/coll_global.json", *base, timeout=1800)
    rows = list(csv.reader(_ranking(wd, "coll")[1].splitlines()))
    assert {r[2] for r in rows if r[0] == str(a) and float(r[3]) > 0.9999} == {str(a), str(b)}
    dry = snakemake(wd, "-n", "results/coll_global.json", *base)
    assert "Nothing to be done" in dry.stdout  # and the lists' old size still named (helper-125: said once only)
    assert f"have another pixel size than the lists read: {resized}" in dry.stdout + dry.stderr
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    snakemake(fresh, "results/coll_global.json", *base, timeout=1800)
    got, want = _ranking(wd, "coll"), _ranking(fresh, "coll")
    assert got[1] == want[1] and all(np.array_equal(got[0][k], want[0][k]) for k in want[0])

    _overwrite_in_place(a, original)  # written back: the row first extracted for it, served again
    snakemake(wd, "results/coll_global.json", *base, timeout=1800)
    got = _ranking(wd, "coll")
    assert got[1] == first[1] and all(np.array_equal(got[0][k], first[0][k]) for k in first[0])
    dry = snakemake(wd, "-n", "results/coll_global.json", *base)
    assert "Nothing to be done" in dry.stdout and "another pixel size" not in dry.stdout + dry.stderr


def test_a_deleted_feature_cache_is_extracted_again_for_a_job_that_reads_its_stores(tiny_run, tmp_path):
    """`rm -r results/features/{x}` (README: always safe) leaves merged stores that read deleted packs, and Snakemake
    keeps an output whose missing inputs it could make again: a later job reading the store failed on every run
    ('source chunk missing'). Now the store is removed when the DAG is built (a dry run only names it), and the
    job that reads it has the photos extracted and the store merged again, with the same rows as before."""
    wd = tmp_path / "wd"
    wd.mkdir()
    _folder(tiny_run, tmp_path / "data", "coll", 10)
    base = ("--configfile", str(TINY), "--config", f"data_root={tmp_path / 'data'}")
    snakemake(wd, "results/coll_global.json", *base, timeout=1800)
    before = {split: _store(wd, "coll", split) for split in ("db", "query")}
    shutil.rmtree(wd / "results" / "features")

    dry = snakemake(wd, "-n", "results/coll_sv.json", *base)
    assert re.search(
        r"results/local/coll/\w+/db/local\.h5 reads 1 file\(s\) that no longer exist", dry.stdout + dry.stderr
    )
    assert "(this job list leaves those jobs out)" in dry.stdout + dry.stderr
    summary = snakemake(wd, "--summary", "results/coll_sv.json", *base)
    assert "reads 1 file(s) that no longer exist" in summary.stdout + summary.stderr
    assert next((wd / "results" / "local" / "coll").glob("*/db/local.h5")).exists()  # neither removes anything
    run = snakemake(wd, "results/coll_sv.json", *base, timeout=1800)
    stats = _job_stats(run.stderr)  # a run logs to stderr, a dry run to stdout
    assert stats["extract_pack"] == 1 and stats["merge_local"] == 2 and stats["evaluate_sv"] == 1, stats
    assert "removed (it cannot be read); a job that reads it has them extracted again" in run.stdout + run.stderr
    sv_result = load_json(wd / "results" / "coll_sv.json")  # the whole database verified, sv.num_rerank (100) capped
    assert sv_result["num_rerank_applied"] == sv_result["n_db"] == 10 and "knn.k" not in run.stderr
    for split in ("db", "query"):
        after = _store(wd, "coll", split)
        for k in before[split]:
            np.testing.assert_array_equal(after[k], before[split][k], err_msg=f"{split} {k}")
    assert "Nothing to be done" in snakemake(wd, "-n", "results/coll_sv.json", *base).stdout
    # a pack that lost only its index (.json): the store's merge has it extracted again (with the .h5 alone as the
    # merge's input, the pack job was skipped and merge_local failed, "pack(s) without their index")
    (index,) = (wd / "results" / "features").glob("*/packs/*.json")
    index.unlink()
    run = snakemake(wd, "results/coll_global.json", *base, "-R", "merge_local", timeout=1800)
    assert _job_stats(run.stderr)["extract_pack"] == 1 and index.is_file()
    # that run re-computed global's files in place; the sv result published before names them: it is said stale
    assert re.search(r"results/coll_sv\.json is older than \S+, which changed since \(re-computed in place", run.stderr)
    assert "coll_global.json is older" not in run.stderr  # the file this run published is current
    # the remedy for a stale file whose folder is gone is said only where one is (helper-139: it read as if
    # something had moved)
    assert "whose dataset or photos folder was moved or removed" not in run.stderr
    # `snakemake ...` of that warning: the options the file was made with; this run's are named (without data_root
    # the folder is not found)
    assert (
        f"which this run cannot tell; this run's were --configfile {TINY} --config data_root={tmp_path / 'data'}."
        in (run.stderr)
    )


def test_a_ground_truth_edit_leaves_the_database_side_alone(tiny_run, tmp_path):
    """A gnd.csv collection's database is listed by its own rule (db.json): editing gnd.csv (a new query, a changed
    positive) re-runs the lists and the query side only, the database's list and store stay as they were, and the
    lists equal those built in one piece; adding a photo re-lists the database."""
    wd = tmp_path / "wd"
    wd.mkdir()
    root = tmp_path / "data" / "marked"
    jpgs = _folder(tiny_run, tmp_path / "data", "marked", 22)
    (root / "queries").mkdir()
    for p in jpgs[20:]:
        (root / "jpg" / p.name).rename(root / "queries" / p.name)
    q1, q2 = (f"queries/{p.name}" for p in jpgs[20:])
    (root / "gnd.csv").write_text(f"query,positive\n{q1},jpg/{jpgs[0].name}\n")
    base = ("--configfile", str(TINY), "--config", f"data_root={tmp_path / 'data'}")
    snakemake(wd, "results/marked_global.json", *base, timeout=1800)
    (db_json,) = (wd / "results" / "lists" / "marked").glob("*/db.json")
    db_store = next((wd / "results" / "local" / "marked").glob("*/db/local.h5"))
    before = {p: p.stat().st_mtime_ns for p in (db_json, db_store)}

    (root / "gnd.csv").write_text(f"query,positive\n{q1},jpg/{jpgs[1].name}\n{q2},jpg/{jpgs[2].name}\n")
    stats = _job_stats(snakemake(wd, "-n", "results/marked_global.json", *base).stdout)
    assert "database_list" not in stats and stats["image_lists"] == 1 and stats["merge_local"] == 1, stats
    snakemake(wd, "results/marked_global.json", *base, timeout=1800)
    assert {p: p.stat().st_mtime_ns for p in before} == before
    res = load_json(wd / "results" / "marked_global.json")
    assert res["n_queries"] == 2 and res["metrics"] is not None
    lists = load_json(db_json.parent / "lists.json")
    whole, gt = build_image_lists(root, "marked")
    assert lists == json.loads(json.dumps(whole)) and load_json(db_json.parent / "gnd.json") == gt.to_json()
    assert gt.gnd[0]["easy"] == [gt.imlist.index(f"jpg/{jpgs[1].name}")]

    # a broken edit (a positive that is not a database image) fails image_lists; the database side is not planned
    good = (root / "gnd.csv").read_text()
    (root / "gnd.csv").write_text(good + f"{q1},jpg/not_there.jpg\n")
    out = snakemake(wd, "-n", "results/marked_global.json", *base).stdout
    assert "database_list" not in _job_stats(out), _job_stats(out)
    assert not re.search(r"output: results/local/marked/\w+/db/", out), out
    failed = snakemake(wd, "results/marked_global.json", *base, check=False)
    assert failed.returncode != 0 and "not_there.jpg' is not a database image" in failed.stdout + failed.stderr
    (root / "gnd.csv").write_text(good)
    snakemake(wd, "results/marked_global.json", *base, timeout=1800)
    assert {p: p.stat().st_mtime_ns for p in before} == before

    shutil.copy(jpgs[21], root / "jpg" / "added.jpg")
    stats = _job_stats(snakemake(wd, "-n", "results/marked_global.json", *base).stdout)
    assert stats["database_list"] == 1 and stats["merge_local"] == 2, stats

    # a boxes file added, then removed (a new user's trial): the lists' manifest records the files they were read
    # from, so the plan builds them again and extracts the uncropped query in the same run (it read the cropped
    # lists, planned no extraction, and the run stopped at the merge: "run snakemake again"). The query is new, so
    # that its whole image is in no pack yet.
    Image.open(jpgs[20]).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(root / "queries" / "flipped.jpg")
    (root / "gnd.csv").write_text(good + f"queries/flipped.jpg,jpg/{jpgs[3].name}\n")
    (root / "query_boxes.csv").write_text("query,x1,y1,x2,y2\nqueries/flipped.jpg,2,2,40,40\n")
    snakemake(wd, "results/marked_global.json", *base, timeout=1800)
    (root / "query_boxes.csv").unlink()
    stats = _job_stats(snakemake(wd, "-n", "results/marked_global.json", *base).stdout)
    assert stats.get("extract_pack") == 1 and "database_list" not in stats, stats
    snakemake(wd, "results/marked_global.json", *base, timeout=1800)
    assert "Nothing to be done" in snakemake(wd, "-n", "results/marked_global.json", *base).stdout
    # an image_list.txt that left a new photo out, removed: the scan lists the photo, extracted in the same run
    Image.open(jpgs[21]).transpose(Image.Transpose.FLIP_TOP_BOTTOM).save(root / "jpg" / "upside.jpg")
    listed = sorted(f"jpg/{p.name}" for p in (root / "jpg").glob("*.jpg") if p.name != "upside.jpg")
    (root / "image_list.txt").write_text("\n".join(listed) + "\n")
    snakemake(wd, "results/marked_global.json", *base, timeout=1800)
    (root / "image_list.txt").unlink()
    stats = _job_stats(snakemake(wd, "-n", "results/marked_global.json", *base).stdout)
    assert stats.get("extract_pack") == 1 and stats["database_list"] == 1, stats
    snakemake(wd, "results/marked_global.json", *base, timeout=1800)
    assert load_json(wd / "results" / "marked_global.json")["n_db"] == len(listed) + 1


@pytest.mark.parametrize("target", ["results/my photos_global.json", "results/search/demo/new photos.html"])
def test_refused_folder_names_are_named_for_results_and_searches(tmp_path, target):
    """A folder name with a space gets names.py's message for a search too (it used to be 'no rule to produce')."""
    out = snakemake(tmp_path, "-n", target, check=False)
    assert out.returncode != 0
    assert "dataset name" in out.stderr + out.stdout and "[' '] are not allowed" in out.stderr + out.stdout


def test_a_compare_table_of_a_folder_without_ground_truth_is_refused_by_name(tmp_path):
    """results/{folder}_compare.json (and .md) are compare's: refused naming the missing ground truth, never read as
    a method called 'compare' (the publish rule's constraint once let the .json through)."""
    (tmp_path / "data" / "pf" / "jpg").mkdir(parents=True)
    for target in ("results/pf_compare.json", "results/pf_compare.md"):
        out = snakemake(tmp_path, "-n", target, "--config", f"data_root={tmp_path / 'data'}", check=False)
        text = out.stdout + out.stderr
        assert out.returncode != 0 and "needs metrics, and dataset 'pf' has no ground truth" in text, target
        assert "unknown method" not in text, target


def test_a_large_folder_gets_bounded_packs_and_memory_by_its_size(tmp_path):
    """A new user's trial: 4 extraction jobs however large the folder (6,500 photos each from 26,000, over the fixed
    2000 MB a job asked of SLURM), and a full N x N ranking whose knn (32 bytes a pair) asked a fixed 4000 MB."""
    from PIL import Image  # noqa: PLC0415

    photos = tmp_path / "data" / "bigf" / "jpg"
    photos.mkdir(parents=True)
    img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (16, 16, 3), dtype=np.uint8))
    for i in range(10100):  # the plan reads headers only: a dry run
        img.save(photos / f"{i:05d}.jpg")
    got = snakemake(tmp_path / "wd", "-n", "results/bigf_global.json", "--config", f"data_root={tmp_path / 'data'}")
    out = got.stdout + got.stderr
    assert "bigf: 10100 of 10100 images (and query boxes) to extract, in 11 job(s)" in out  # max_chunk_images 1000
    assert not list((tmp_path / "wd").glob("results/features/*/plans/*.json"))  # a dry run records no pack plan
    mem = {}
    for block in re.split(r"\n\[|\n\n", out):  # a job: a timestamp line, its rule, its fields
        rule, m = re.search(r"^(?:local)?rule (\w+):", block, re.M), re.search(r"mem_mb=(\d+)", block)
        if rule and m:
            mem.setdefault(rule.group(1), set()).add(int(m.group(1)))
    # 918 or 919 photos a pack at 0.35 MB each; 10100^2 pairs at 32 bytes each over the fixed base
    assert mem["extract_pack"] == {2321} and mem["knn"] == {4000 + 3264} and mem["evaluate_global"] == {2000 + 3264}
    assert "bigf: the full ranking of 10100 queries x 10100 images is 102M pairs" in out and "knn: {k: 1000}" in out
    shortlist = tmp_path / "k.yaml"
    shortlist.write_text("knn:\n  k: 1000\n")
    got = snakemake(
        tmp_path / "wd",
        "-n",
        "results/bigf_global.json",
        "--configfile",
        str(shortlist),
        "--config",
        f"data_root={tmp_path / 'data'}",
    )
    assert "mem_mb=4323" in got.stdout and "full ranking" not in got.stdout + got.stderr
    # bounds that cannot both hold are refused while the Snakefile is read (the maximum won without a word)
    shortlist.write_text("extract:\n  min_chunk_images: 5\n  max_chunk_images: 2\n")
    got = snakemake(tmp_path / "wd", "-n", "results/bigf_global.json", "--configfile", str(shortlist), check=False)
    assert (
        got.returncode != 0 and "min_chunk_images (5) is above extract.max_chunk_images (2)" in got.stdout + got.stderr
    )
    assert "WorkflowError" not in got.stdout + got.stderr


@pytest.mark.skipif(not (SHARED / "datasets" / "landmarks-mini").is_dir(), reason="../shared is absent")
def test_a_dataset_with_the_million_distractors_asks_memory_for_its_ranking(tmp_path):
    """'{dataset}+1m': every evaluation holds the full ranking (32 bytes a query and image, about 2.3 GB at 70 x 1M,
    ssp's three query sets three times that), where they asked a fixed 2000-4000 MB (a new user's trial). The
    distractors are counted from revisitop1m.txt at plan time (a dry run: no image is read)."""
    data = tmp_path / "data"
    (data / "revisitop1m").mkdir(parents=True)
    (data / "landmarks-mini").symlink_to(SHARED / "datasets" / "landmarks-mini")
    (data / "revisitop1m" / "revisitop1m.txt").write_text("".join(f"{i:07d}\n" for i in range(1_000_000)))
    got = snakemake(tmp_path / "wd", "-n", "results/landmarks-mini+1m_sv.json", "--config", f"data_root={data}")
    mem = {}
    for block in re.split(r"\n\[|\n\n", got.stdout):
        rule, m = re.search(r"^(?:local)?rule (\w+):", block, re.M), re.search(r"mem_mb=(\d+)", block)
        if rule and m:
            mem.setdefault(rule.group(1), set()).add(int(m.group(1)))
    ranking = 16 * (85 + 1_000_000) * 32 // 10**6  # 16 queries x (85 images + 1M distractors), 512 MB
    assert mem["evaluate_global"] == {2000 + ranking} and mem["evaluate_sv"] == {4000 + ranking}
    assert mem["knn"] == {4000 + ranking}


@pytest.mark.skipif(not (SHARED / "datasets" / "landmarks-mini").is_dir(), reason="../shared is absent")
def test_a_knn_k_covering_the_whole_database_is_named(tmp_path):
    """knn.k 1000 on landmarks-mini's 85 images (a new user's trial): the search caps it, so the ranking is the full
    one under knn.k's own version, and nothing said so. Named once while the DAG is built, for a dataset with ground
    truth and for a plain folder; a k below the database size is a shortlist, refused for the first (the metrics
    need every image) and not named for the second."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "landmarks-mini").symlink_to(SHARED / "datasets" / "landmarks-mini")
    photos = data / "pf" / "jpg"
    photos.mkdir(parents=True)
    for i in range(5):
        Image.new("RGB", (16, 16), (i * 40, 0, 0)).save(photos / f"{i}.jpg")
    k = tmp_path / "k.yaml"
    for ds, n_db in (("landmarks-mini", 85), ("pf", 5)):
        k.write_text("knn:\n  k: 1000\n")
        out = snakemake(
            tmp_path / "wd", "-n", f"results/{ds}_global.json", "--configfile", str(k), "--config", f"data_root={data}"
        )
        text = out.stdout + out.stderr
        assert text.count(f"{ds}: knn.k is 1000, at least its {n_db} database images") == 1, text[-3000:]
        k.write_text("knn:\n  k: 4\n")
        out = snakemake(
            tmp_path / "wd",
            "-n",
            f"results/{ds}_global.json",
            "--configfile",
            str(k),
            "--config",
            f"data_root={data}",
            check=False,
        )
        text = out.stdout + out.stderr
        assert "at least its" not in text
        assert (out.returncode != 0 and "knn.k is 4, a shortlist of 4 of the 85" in text) == (ds == "landmarks-mini")


def test_one_photo_named_two_ways_by_two_datasets_gets_a_pack_for_each(tiny_run, tmp_path):
    """A gnd.csv collection whose queries/ folder is also a dataset of photos to search (dataset_dirs): the same
    file is `queries/q2.jpg` to the one and `q2.jpg` to the other. A pack's id hashed the path and not the name, so
    the two planned one pack with two contents: each run rewrote it for one of them, the store of the other then
    found its image in no pack, and asking for both failed on every run (helper-135). Each name now has its pack."""
    jpgs = _folder(tiny_run, tmp_path / "mine", "coll", 10)
    queries = tmp_path / "mine" / "coll" / "queries"
    queries.mkdir()
    shutil.copy(jpgs[0], queries / "q1.jpg")
    gnd = tmp_path / "mine" / "coll" / "gnd.csv"
    gnd.write_text(f"query,positive\nqueries/q1.jpg,jpg/{jpgs[0].name}\n")
    dirs = tmp_path / "dirs.yaml"
    dirs.write_text(yaml.safe_dump({"dataset_dirs": {"qs": str(queries)}}))
    base = ("--configfile", str(TINY), str(dirs), "--config", f"data_root={tmp_path / 'mine'}")
    targets = ("results/coll_global.json", "results/search/coll/qs.html")
    snakemake(tmp_path, *targets, *base)
    shutil.copy(jpgs[1], queries / "q2.jpg")  # a new photo, a query of the collection and a photo to search
    with gnd.open("a") as f:
        f.write(f"queries/q2.jpg,jpg/{jpgs[1].name}\n")
    snakemake(tmp_path, *targets, *base)  # failed: '1 image(s) are in no extracted pack'
    again = snakemake(tmp_path, *targets, *base)
    assert "Nothing to be done" in again.stdout + again.stderr, again.stdout[-3000:]  # re-ran 7 jobs each time
    search = load_json(tmp_path / "results" / "search" / "coll" / "qs.json")
    firsts = {n["photo"].rsplit("/", 1)[1]: n["top"][0]["image"] for n in search["neighbours"]}
    assert firsts["q2.jpg"].endswith(f"jpg/{jpgs[1].name}") and firsts["q1.jpg"].endswith(f"jpg/{jpgs[0].name}")
