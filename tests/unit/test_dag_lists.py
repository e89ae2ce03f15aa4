"""The lists the DAG plans from (retrieval/dag_lists.py), without Snakemake: built once a build, bad input warned of
once and given as None, the database side kept through a broken gnd.csv, the full-ranking check and the memory of
a ranking job with their warnings."""

import dataclasses
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from conftest import with_overrides
from retrieval import job_memory
from retrieval.dag_lists import DagLists, PackPlans
from retrieval.data.datasets import build_database_list
from retrieval.plan import Plan, PlanError
from retrieval.stages.extract_pack import extract_pack
from retrieval.stages.lists import make_database_list
from retrieval.stores.feature_cache import CacheError
from retrieval.stores.global_store import write_global

BASE = yaml.safe_load((Path(__file__).resolve().parents[2] / "config" / "config.yaml").read_text())


def _photos(folder: Path, n: int) -> None:
    (folder / "jpg").mkdir(parents=True)
    for i in range(n):
        Image.new("RGB", (32, 24), (i * 20, 0, 0)).save(folder / "jpg" / f"{i:02d}.jpg")


def _dag(tmp_path, monkeypatch, **overrides) -> tuple[DagLists, list[str]]:
    monkeypatch.chdir(tmp_path)  # results/ under the test's folder
    config = with_overrides(BASE, data_root=str(tmp_path / "data"), **overrides)
    warnings: list[str] = []
    return DagLists(Plan(config), config, warnings.append), warnings


def test_lists_are_built_once_a_build_and_bad_input_is_said_once(tmp_path, monkeypatch):
    _photos(tmp_path / "data" / "coll", 6)
    (tmp_path / "data" / "coll" / "gnd.csv").write_text("query,positive\njpg/00.jpg,jpg/01.jpg\n")
    dag, warnings = _dag(tmp_path, monkeypatch)
    lists = dag.lists("coll")
    assert [e["name"] for e in lists["db"]] == [f"jpg/{i:02d}.jpg" for i in range(6)] and len(lists["query"]) == 1
    assert dag.lists("coll") is lists and warnings == []  # the same object: built once
    # a broken gnd.csv: None and one warning, however often asked; the database side keeps its lists
    (tmp_path / "data" / "coll" / "gnd.csv").write_text("query,postive\njpg/00.jpg,jpg/01.jpg\n")
    dag, warnings = _dag(tmp_path, monkeypatch)
    assert dag.lists("coll") is None and dag.lists("coll") is None
    assert len(warnings) == 1 and "coll: the image lists cannot be built" in warnings[0]
    assert "the database side and searches against it do not need them" in warnings[0] and "'postive'" in warnings[0]
    planning = dag.planning("coll")
    assert [e["name"] for e in planning["db"]] == [f"jpg/{i:02d}.jpg" for i in range(6)] and planning["query"] == []


def test_a_database_that_cannot_be_listed_is_said_once_as_the_database_lists(tmp_path, monkeypatch):
    """A folder of photos to search holding a text file named .jpg (a new user's trial) got the image lists' message
    ("the queries' side: evaluations, ...; searches against it do not need them"), wrong for photos searched, and
    the error thrice; now once, as what it is: database_list stops, and with it every job of the folder."""
    _photos(tmp_path / "data" / "newph", 2)
    (tmp_path / "data" / "newph" / "jpg" / "broken.jpg").write_text("not an image")
    dag, warnings = _dag(tmp_path, monkeypatch)
    assert dag.lists("newph") is None and dag.planning("newph") is None and dag.database("newph") is None
    assert len(warnings) == 1 and warnings[0].startswith(
        "newph: the database list cannot be built, and database_list will stop on this (so will every job that needs "
        "newph's images, a search of its photos too): 1 unreadable image(s)"
    )
    assert "broken.jpg: cannot decode" in warnings[0]


def test_an_unexpected_error_while_listing_is_said_not_left_to_snakemake(tmp_path, monkeypatch):
    """Snakemake takes an input function's exception for "no producer" and keeps an existing output: a raw file's
    preview that made Pillow raise DecompressionBombError (not an OSError or ValueError) while the database was
    listed gave "Nothing to be done", silently, and every later change to the folder went unseen (helper-131).
    Every exception is now said once with its type and given as None, for the job to raise with its traceback."""
    _photos(tmp_path / "data" / "coll", 3)

    def boom(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr("retrieval.data.datasets.image_header", boom)
    dag, warnings = _dag(tmp_path, monkeypatch)
    assert dag.database("coll") is None and dag.lists("coll") is None and dag.planning("coll") is None
    assert len(warnings) == 1 and warnings[0].startswith("coll: the database list cannot be built")
    assert warnings[0].endswith(": RuntimeError: boom")
    _photos(tmp_path / "data" / "gt2", 2)  # a dataset whose ground truth names both sides: its lists
    (tmp_path / "data" / "gt2" / "gnd.json").write_text(
        json.dumps({"imlist": ["00", "01"], "qimlist": ["00"], "gnd": [{"easy": [1], "hard": [], "junk": []}]})
    )
    assert dag.lists("gt2") is None
    assert warnings[-1].startswith("gt2: the image lists cannot be built") and warnings[-1].endswith(
        "RuntimeError: boom"
    )


def test_a_file_left_out_of_a_plain_folder_is_said_once_a_build(tmp_path, monkeypatch, caplog):
    """A plain folder is scanned for its lists and again for its database list: a .gif in a folder of photos to
    search printed its "left out" line twice (a new user's trial). Once per build; a new build says it again, and
    the scan outside the build still warns (each job's log)."""
    _photos(tmp_path / "data" / "newph", 2)
    (tmp_path / "data" / "newph" / "jpg" / "anim.gif").write_bytes(b"GIF89a")
    left_out = "anim.gif"

    def said() -> int:
        return sum(left_out in r.getMessage() for r in caplog.records)

    dag, warnings = _dag(tmp_path, monkeypatch)
    with caplog.at_level("WARNING"):
        assert dag.lists("newph") is not None and dag.database("newph") is not None
        assert said() == 1 and warnings == []
        dag2, _ = _dag(tmp_path, monkeypatch)
        dag2.database("newph")
        assert said() == 2
        build_database_list(str(tmp_path / "data" / "newph"), "newph", "error", BASE["max_image_pixels"])
        assert said() == 3  # the filter is gone after the build
    # a fresh db.json reused while the lists are built: the images beside jpg/ said once too (it was twice)
    Image.new("RGB", (32, 24)).save(tmp_path / "data" / "newph" / "beside.jpg")
    plan = Plan(with_overrides(BASE, data_root=str(tmp_path / "data")))
    dbj = Path(plan.database_json("newph"))
    dbj.parent.mkdir(parents=True, exist_ok=True)
    make_database_list(
        str(tmp_path / "data" / "newph"), "newph", str(dbj), str(dbj.parent / "db.manifest.json"), "v", "cpu"
    )
    caplog.clear()
    with caplog.at_level("WARNING"):
        dag, _ = _dag(tmp_path, monkeypatch)
        dag.database("newph")
        dag.lists("newph")
        assert sum("beside.jpg" in r.getMessage() for r in caplog.records) == 1


def test_a_shortlist_shorter_than_a_ground_truth_database_is_refused_and_a_covering_one_named(tmp_path, monkeypatch):
    _photos(tmp_path / "data" / "coll", 6)
    (tmp_path / "data" / "coll" / "gnd.csv").write_text("query,positive\njpg/00.jpg,jpg/01.jpg\n")
    _photos(tmp_path / "data" / "plain", 4)
    dag, warnings = _dag(tmp_path, monkeypatch, **{"knn.k": 5})
    with pytest.raises(PlanError, match=r"results/coll_global\.json: knn\.k is 5, a shortlist of 5 of the 6 database"):
        dag.check_full_ranking("coll", "global")
    dag.check_full_ranking("coll", "asmk")  # its own search: no shortlist of knn.k's
    dag.check_full_ranking("plain", "global")  # no ground truth: a shortlist is what it needs
    assert warnings == []
    # with R1M's distractors (whose lists are not read while the DAG is built) the size is said in words
    with pytest.raises(PlanError, match=r"a shortlist of 5 images, fewer than the database \(coll's images and the "
                       r"1,001,001 revisitop1m distractors\)"):  # fmt: skip
        dag.check_full_ranking("coll+1m", "global")
    # k at least the database: the full ranking, under knn.k's own version; said once a dataset
    dag, warnings = _dag(tmp_path, monkeypatch, **{"knn.k": 6})
    dag.check_full_ranking("coll", "global")
    dag.check_full_ranking("coll", "sv")
    assert warnings == ["coll: knn.k is 6, at least its 6 database images: every image is ranked, as with knn.k: 0, "
                        "but under knn.k's own version (knn and what follows it are computed again rather than "
                        "shared with knn.k: 0)"]  # fmt: skip
    assert dag.ranking_mem_mb("plain", 4000) == 4000 + 0  # 1 query x 4 images: no MB to add
    assert len(warnings) == 2 and warnings[1].startswith("plain: knn.k is 6, at least its 4 database images")
    dag.ranking_mem_mb("coll", 4000)
    assert len(warnings) == 2
    # an ASMK or imported shortlist does not use knn.k: nothing to say
    dag, warnings = _dag(tmp_path, monkeypatch, **{"knn.k": 6, "shortlist.source": "asmk"})
    dag.ranking_mem_mb("plain", 4000)
    dag.check_full_ranking("coll", "global")
    assert warnings == []


def test_ivfpq_without_a_shortlist_length_is_refused_before_any_job(tmp_path, monkeypatch):
    """knn.search: ivfpq with the default knn.k 0 failed inside the knn job, after extraction, codebook and
    whitening (a new user's trial); an ASMK shortlist uses no knn search and is not refused."""
    _photos(tmp_path / "data" / "plain", 4)
    dag, _ = _dag(tmp_path, monkeypatch, **{"knn.search": "ivfpq"})
    for ds, method in (("plain", "global"), ("demo", "sv")):
        with pytest.raises(PlanError, match=rf"results/{ds}_{method}\.json: knn\.search: ivfpq .* knn\.k is 0"):
            dag.check_full_ranking(ds, method)
    dag.check_full_ranking("plain", "asmk")
    dag, _ = _dag(tmp_path, monkeypatch, **{"knn.search": "ivfpq", "shortlist.source": "asmk"})
    dag.check_full_ranking("plain", "global")


def test_a_training_split_without_labels_is_refused_before_any_job(tmp_path, monkeypatch):
    """Lw and AMES are fitted on the training split's labels: a plain folder named as training_split failed in lw_fit
    after its extraction and aggregation (a new user's trial); it is refused while the DAG is built, naming the key.
    A method fitted on nothing there, or AMES from a given checkpoint, does not need it."""
    _photos(tmp_path / "data" / "plain", 4)
    dag, _ = _dag(tmp_path, monkeypatch, training_split="plain")
    for method in ("lw", "ames", "ames_binary"):
        with pytest.raises(PlanError, match=rf"training_split \('plain', for results/demo_{method}\.json\): dataset "
                           r"'plain' has no ground truth .*its labels .* are what is fitted"):  # fmt: skip
            dag.check_full_ranking("demo", method)
    for method in ("global", "sv", "aqe", "superglobal", "asmk"):
        dag.check_full_ranking("demo", method)
    model = tmp_path / "model.pt"
    model.write_bytes(b"a released model")
    dag, _ = _dag(tmp_path, monkeypatch, training_split="plain", **{"ames.checkpoint.ames": str(model)})
    dag.check_full_ranking("demo", "ames")  # used as it is: nothing is trained
    with pytest.raises(PlanError, match="training_split"):
        dag.check_full_ranking("demo", "ames_binary")  # distilled here: on the training split


def test_a_training_split_whose_ground_truth_has_no_labels_is_refused_before_any_job(tmp_path, monkeypatch):
    """helper-118's trial: a gnd.json without 'labels' named as training_split failed in lw_fit after extraction,
    the codebook and the whitening; a gnd.csv holds no labels at all. With 'labels' the split is taken."""
    root = tmp_path / "data" / "labelled"
    _photos(root, 4)
    gnd = {"imlist": ["jpg/p0.jpg", "jpg/p1.jpg"], "qimlist": [], "gnd": []}
    (root / "gnd.json").write_text(json.dumps(gnd))
    dag, _ = _dag(tmp_path, monkeypatch, training_split="labelled")
    for method in ("lw", "ames"):
        with pytest.raises(PlanError, match=rf"training_split \('labelled', for results/demo_{method}\.json\): "
                           r"dataset 'labelled' has ground truth \(gnd\.json\) but no database labels .* "
                           r"give a gnd\.json with 'labels'"):  # fmt: skip
            dag.check_full_ranking("demo", method)
    dag.check_full_ranking("demo", "sv")  # fitted on nothing there
    (root / "gnd.json").write_text(json.dumps({**gnd, "labels": [0, 0]}))
    dag, _ = _dag(tmp_path, monkeypatch, training_split="labelled")
    dag.check_full_ranking("demo", "lw")
    (root / "gnd.json").unlink()
    (root / "gnd.csv").write_text("query,positive,kind\njpg/p2.jpg,jpg/p0.jpg,easy\n")
    dag, _ = _dag(tmp_path, monkeypatch, training_split="labelled")
    with pytest.raises(PlanError, match=r"has ground truth \(gnd\.csv\) but no database labels"):
        dag.check_full_ranking("demo", "ames")
    # the demo's evaluated splits and the downloads' retrieval ground truth hold none either, on disk or not yet
    # downloaded (helper-120: training_split=roxford5k passed, and failed in lw_fit after its download and extraction)
    for split, held in (("demo-val", "generated"), ("roxford5k", "downloaded"), ("gldv2", "downloaded")):
        dag, _ = _dag(tmp_path, monkeypatch, training_split=split)
        with pytest.raises(PlanError, match=rf"dataset '{split}' has ground truth \({held}\) but no database labels"):
            dag.check_full_ranking("demo", "lw")
    (tmp_path / "data" / "roxford5k" / "jpg").mkdir(parents=True)
    with open(tmp_path / "data" / "roxford5k" / "gnd_roxford5k.pkl", "wb") as fh:
        pickle.dump({"imlist": ["a"], "qimlist": [], "gnd": []}, fh)
    dag, _ = _dag(tmp_path, monkeypatch, training_split="roxford5k")
    with pytest.raises(PlanError, match=r"has ground truth \(gnd_roxford5k\.pkl\) but no database labels"):
        dag.check_full_ranking("demo", "ames")
    for split in ("demo-train", "gldv2-train"):  # labelled
        _dag(tmp_path, monkeypatch, training_split=split)[0].check_full_ranking("demo", "lw")


def test_a_ranking_jobs_memory_follows_the_collection_and_a_large_full_ranking_is_named(tmp_path, monkeypatch):
    _photos(tmp_path / "data" / "plain", 3)
    dag, warnings = _dag(tmp_path, monkeypatch)
    assert dag.ranking_shape("plain") == (3, 3)  # a plain folder: every image a query
    assert dag.ranking_shape("demo") is None  # not listed apart: the rule's base request
    assert dag.ranking_mem_mb("demo", 2000) == 2000 and warnings == []
    # R1M's distractors counted from its list where it is on disk, else 1,000,000
    assert dag.ranking_shape("plain+1m") == (3, 3 + 1_000_000)
    (tmp_path / "data" / "revisitop1m").mkdir()
    (tmp_path / "data" / "revisitop1m" / "revisitop1m.txt").write_text("a.jpg\nb.jpg\n\n")
    dag, warnings = _dag(tmp_path, monkeypatch)
    assert dag.ranking_shape("plain+1m") == (3, 5)
    # above FULL_RANKING_WARN_PAIRS (lowered here to 3 x 3's 9 pairs), a folder without ground truth is told to
    # take a shortlist, once; its memory follows job_memory's model of the ranking
    monkeypatch.setattr(job_memory, "FULL_RANKING_WARN_PAIRS", 8)
    dag, warnings = _dag(tmp_path, monkeypatch)
    want = job_memory.ranking_mem_mb(4000, 3, 3, 0, 2)
    assert dag.ranking_mem_mb("plain", 4000, 2) == want and dag.ranking_mem_mb("plain", 4000, 2) == want
    assert warnings == [
        "plain: the full ranking of 3 queries x 3 images is 0M pairs (about 0.0 GB in knn); a collection without "
        "ground truth needs only its top neighbours: set knn: {k: 1000} in a --configfile (or search new photos "
        "against it, which ranks only them)"
    ]


def test_the_feature_cache_plan_is_made_once_recorded_outside_a_dry_run_and_read_back(tmp_path, monkeypatch):
    """A folder's extraction from an empty cache: every photo in packs of at least extract.min_chunk_images, planned
    once a build and logged; each pack's job recorded (not in a dry run), so a build that no longer plans it (a
    SLURM job's, after sibling packs finished) reads it back; a pack no configuration planned is refused."""
    _photos(tmp_path / "data" / "coll", 7)
    dag, _ = _dag(tmp_path, monkeypatch, **{"extract.n_chunks": 2, "extract.min_chunk_images": 3})
    sift = dag.config["extract"]["sift"]
    infos: list[str] = []
    dry = PackPlans(dag, dag.config, infos.append, lambda: True)
    xv, plan, lists = dry.extraction("coll", "sift", sift)
    assert dry.extraction("coll", "sift", sift)[1] is plan and len(infos) == 1  # once a build
    assert plan.n_new == 7 and len(plan.new_packs) == 2 and sorted(len(v) for v in plan.new_packs.values()) == [3, 4]
    assert infos[0].endswith("coll: 7 of 7 images (and query boxes) to extract, in 2 job(s) (they run only for a "
                             "store that is made again: the job list says which); the images to extract: jpg/00.jpg, "
                             "jpg/01.jpg, jpg/02.jpg, jpg/03.jpg, jpg/04.jpg and 2 more")  # fmt: skip
    # photos the plan finds probably renamed or copied (a cp -r of a cached folder) are said to be copied, not
    # extracted, once hashed (helper-93's trial read "16 of 16 to extract" as extracting them again)
    guess = dataclasses.replace(plan, n_renamed=1, n_copied=5)
    assert (
        dry._summary("coll", xv, guess, lists)
        .split(" job(s)")[1]
        .startswith(
            "; 1 of them have the size and time of a cached file under another name (renamed, moved, or another dataset's name for it?); 5 others have the name "
            "and size of a cached file, with another time (touched, or a copied folder?): hashed first, they are copied, not "
            "extracted, when their content is cached (they run only"
        )
    )
    # a cp -a copy, a photo swapped in under a cached name, size and mtime, a pack cached before inodes were recorded
    same = dry._summary("coll", xv, dataclasses.replace(plan, n_same_stat=2, n_copied=5), lists)
    assert "job(s); 2 of them have the name, size and time of a cached file, but another inode (a copy made " in same
    assert "2026-12-06); 5 others have the name and size" in same
    one = dry._summary("coll", xv, dataclasses.replace(plan, n_renamed=2, n_same_stat=1), lists)
    assert (
        "(renamed, moved, or another dataset's name for it?); 1 other has the name, size and time" in one
    )  # "1 others have" (helper-117)
    # photos overwritten in place (hashed while planning: other bytes) are told apart, before the likely copies
    over = dry._summary("coll", xv, dataclasses.replace(plan, n_rewritten=1, n_renamed=2), lists)
    assert (
        "job(s); 1 of them have the name, size, time and inode of a cached file, with other bytes: overwritten in "
        "place; 2 others have the size and time of a cached file under another name (renamed, moved, or another dataset's name for it?): hashed "
        "first, they are copied" in over
    )
    served = dry._summary("coll", xv, dataclasses.replace(plan, displaced={"db": [(2, ("p", 0))]}), lists)
    assert served.endswith(  # after the photos to extract, which it is not one of (helper-124)
        "job(s) (they run only for a store that is made again: the job list says which); the images to extract: jpg/00.jpg, "
        "jpg/01.jpg, jpg/02.jpg, jpg/03.jpg, jpg/04.jpg and 2 more; 1 photo(s) hold bytes the cache has under another "
        "name or from before (overwritten in place, or written back) and are served those rows: jpg/02.jpg"
    )
    unsaved = dry._summary("coll", xv, dataclasses.replace(plan, n_verified=3), lists, recorded=False)
    assert unsaved.endswith(
        f"; 3 photo(s) hashed while planning, their ctime having moved (not recorded: {dag.plan.cache_dir(xv)}/"
        "verified_stats.jsonl could not be written, see the warning)"
    )
    alone = dry._summary("coll", xv, dataclasses.replace(plan, n_copied=5), lists)
    assert (
        "job(s); 5 of them have the name and size of a cached file, with another time (touched, or a copied folder?): "
        in alone
    )
    pack = next(iter(plan.new_packs))
    assert dry.pack(xv, pack)["items"] == plan.new_packs[pack] and dry.pack(xv, pack)["backbone"] == "sift"
    assert not (tmp_path / PackPlans.plan_path(xv, pack)).exists()  # a dry run records nothing
    run = PackPlans(dag, dag.config, infos.append, lambda: False)
    run.extraction("coll", "sift", sift)
    assert (tmp_path / PackPlans.plan_path(xv, pack)).is_file()
    later = PackPlans(DagLists(dag.plan, dag.config, print), dag.config, infos.append, lambda: False)
    assert later.pack(xv, pack) == run.pack(xv, pack)  # read back without planning
    with pytest.raises(PlanError, match=r"0123456789abcdef\.h5 is not a pack the current configuration plans"):
        later.pack(xv, "0123456789abcdef")
    # the packs extracted, a photo chmod-ed (its ctime moved): a dry run's plan hashes it, finds it cached, and
    # keeps the hash in the packs folder's memo, so the next plan reads no file
    cache = tmp_path / dag.plan.cache_dir(xv)
    for p, items in plan.new_packs.items():
        extract_pack(items, cache / f"{p}.h5", cache / f"{p}.json", xv, "sift", sift)
    photo = tmp_path / "data" / "coll" / "jpg" / "03.jpg"
    old = photo.stat().st_ctime_ns
    while photo.stat().st_ctime_ns == old:  # the ctime's tick is the kernel's (a few ms)
        photo.chmod(0o600 if photo.stat().st_mode & 0o044 else 0o644)
    again = PackPlans(DagLists(dag.plan, dag.config, print), dag.config, infos.append, lambda: True)
    assert again.extraction("coll", "sift", sift)[1].n_new == 0
    assert infos[-1].endswith(
        "0 of 7 images (and query boxes) to extract, in 0 job(s); 1 photo(s) hashed while planning, their ctime having "
        f"moved (recorded in {dag.plan.cache_dir(xv)}/verified_stats.jsonl)"
    )
    assert [json.loads(line)[0] for line in (cache / "verified_stats.jsonl").read_text().splitlines()] == ["jpg/03.jpg"]
    # a damaged pack index fails the plan, and is said as a warning too: Snakemake drops an input function's error
    # where the job's output exists, and found "nothing to be done" with the photos' changes unseen (helper-123)
    next(cache.glob("*.json")).write_text("{garbage")
    said: list[str] = []
    broken = PackPlans(DagLists(dag.plan, dag.config, said.append), dag.config, infos.append, lambda: True)
    for _ in range(2):  # asked by every input function that needs it: said once
        with pytest.raises(CacheError, match="unreadable pack index"):
            broken.extraction("coll", "sift", sift)
    assert len(said) == 1 and said[0].startswith("feature cache: unreadable pack index ")
    assert said[0].endswith("; until then changes to coll's photos are not seen")


def test_a_training_or_validation_split_that_cannot_be_listed_is_refused_naming_its_key(tmp_path, monkeypatch):
    """A split of a gnd.csv and no images got only the lists' warning, naming the folder, not the key, and the dry
    run planned every job before it; now a PlanError names the key: ames.validation_split, or training_split, whose
    gnd.csv is refused first for holding no labels. A listable split passes."""
    (tmp_path / "data" / "empty").mkdir(parents=True)
    (tmp_path / "data" / "empty" / "gnd.csv").write_text("query,positive\njpg/a.jpg,jpg/b.jpg\n")
    _photos(tmp_path / "data" / "good", 4)
    (tmp_path / "data" / "good" / "gnd.json").write_text(
        json.dumps({"imlist": ["00", "01", "02"], "qimlist": ["03"], "gnd": [{"easy": [0]}], "labels": [0, 0, 1]})
    )
    dag, warnings = _dag(tmp_path, monkeypatch, training_split="empty")
    for method in ("lw", "ames"):
        with pytest.raises(PlanError, match=rf"training_split \('empty', for results/demo_{method}\.json\): dataset "
                           r"'empty' has ground truth \(gnd\.csv\) but no database labels"):  # fmt: skip
            dag.check_full_ranking("demo", method)
    dag.check_full_ranking("demo", "sv")  # fitted on nothing there
    dag, warnings = _dag(tmp_path, monkeypatch, training_split="good", **{"ames.validation_split": "empty"})
    dag.check_full_ranking("demo", "lw")
    with pytest.raises(PlanError, match=r"ames\.validation_split \('empty', for results/demo_ames\.json\): the split's "
                       r"image lists cannot be built"):  # fmt: skip
        dag.check_full_ranking("demo", "ames")
    assert len(warnings) == 1 and "holds no images" in warnings[0]  # the reason, said once
    # a folder named by unsupervised_fit failed in database_list without naming the key (a new user's trial)
    (tmp_path / "data" / "bare" / "jpg").mkdir(parents=True)
    dag, _ = _dag(tmp_path, monkeypatch, training_split="good", unsupervised_fit="bare")
    with pytest.raises(PlanError, match=r"unsupervised_fit \('bare', for results/good_global\.json\): the split's"):
        dag.check_full_ranking("good", "global")
    dag, _ = _dag(tmp_path, monkeypatch, training_split="good", unsupervised_fit="good")
    dag.check_full_ranking("good", "global")


def test_an_ivfpq_search_asks_memory_for_its_training_sample(tmp_path, monkeypatch):
    """knn's mem_mb ignored IVF-PQ's training set, (n_train, D) float32 and faiss's copy of it: 11 GB on a million
    8192-d VLADs at the defaults. Added from the database file's shape; 0 for exact search, a fallback to exact
    search, a plan that cannot train (the job says why) and a file not made yet."""
    db = tmp_path / "db.h5"
    write_global(db, np.random.default_rng(0).standard_normal((2000, 512)).astype(np.float32))
    ivf = {"nlist": 4, "m": 8, "nbits": 4, "nprobe": 4, "train": 1500}
    dag, _ = _dag(tmp_path, monkeypatch, **{"knn.search": "ivfpq", "knn.k": 10, "knn.ivfpq": ivf})
    assert dag.ivfpq_mem_mb(db) == job_memory.ivfpq_mem_mb(1500, 512, 2000, 8) == 6  # 2.2 x 1500 x 512 x 4 B
    assert dag.ivfpq_mem_mb(tmp_path / "not_yet.h5") == 0
    dag, _ = _dag(tmp_path, monkeypatch, **{"knn.search": "ivfpq", "knn.k": 10, "knn.ivfpq": {**ivf, "m": 7}})
    assert dag.ivfpq_mem_mb(db) == 0  # 7 does not divide 512: refused by the job, with the numbers
    dag, _ = _dag(tmp_path, monkeypatch, **{"knn.search": "ivfpq", "knn.k": 10, "knn.ivfpq": {**ivf, "nlist": "auto"}})
    assert dag.ivfpq_mem_mb(db) == 0  # 2,000 vectors: exact search instead
    dag, _ = _dag(tmp_path, monkeypatch)
    assert dag.ivfpq_mem_mb(db) == 0  # exact search
    assert job_memory.ivfpq_mem_mb(156_000, 8192, 1_000_000, 32) == 11285
    with pytest.raises(ValueError, match="sizes must be >= 0"):
        job_memory.ivfpq_mem_mb(-1, 8, 8, 8)
