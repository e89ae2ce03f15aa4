"""The version graph and artifact paths (retrieval/plan.py), without Snakemake: what a configuration change
invalidates and what it leaves alone, the fit split of each unsupervised_fit mode, errors naming the key, and a golden
file recorded from rules/common.smk before the graph moved here (the same version strings and paths)."""

import copy
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest

from conftest import with_overrides
from retrieval import plan as p
from retrieval.config_errors import refused_keys, with_defaults
from retrieval.evaluation.results import published_datasets
from retrieval.plan import Plan, PlanError, problems_beside_schema
from retrieval.runtime import file_sha1
from retrieval.stages.extract import job_backbone_config

GOLDEN = Path(__file__).parent / "data" / "plan_golden.json"
# (name, the configuration overlay): recorded by running rules/common.smk's functions under `snakemake -n` on the
# default config/config.yaml with this overlay (and validated by the schema), for the demo splits; the values
# re-recorded from Plan when a version constant of retrieval/versions.py changed (FIT_VERSION 2: every key that
# follows the whitening, Lw or SSP's fits moved, nothing before them; DECODER_VERSION 4: every key from the image
# lists on, checked first to reproduce the file exactly at decoder version 3; ASMK_VERSION 2: the inverted file's
# key and what follows it, ASMK's rankings and, under shortlist.source: asmk, the shortlist's; BACKBONE_VERSIONS
# sift 2: an extractor_version under extract.sift and every SIFT-derived key, nothing else; resnet 3: no key, the
# recorded overlays do not extract with resnet; DECODER_VERSION 5: every key from the image lists on, v_demo and the
# configuration answers unchanged; DECODER_VERSION 6: the same keys as 5; search_space under shortlist.source: asmk,
# the collection's space since 2026-12-07: the asmk cases' search_space, v_search_knn, v_search and search_dir;
# knn.k out of the search's version: every case's v_search_knn, v_search and search_dir)
GOLDEN_CASES = json.loads(GOLDEN.read_text())


def answer(plan: Plan, name: str, args: list):
    try:
        return json.loads(json.dumps(getattr(plan, name)(*args), sort_keys=True, default=str))
    except PlanError as e:
        return {"__error__": "WorkflowError", "message": str(e)}


@pytest.mark.parametrize("case", sorted(GOLDEN_CASES))
def test_plan_reproduces_common_smk(case):
    recorded = GOLDEN_CASES[case]
    plan = Plan(copy.deepcopy(recorded["config"]))
    wrong = {}
    for key, want in recorded["values"].items():
        name, args = json.loads(key)
        got = answer(plan, name, args)
        if got != want:
            wrong[key] = (got, want)
    assert not wrong, f"{len(wrong)} of {len(recorded['values'])} differ, e.g. {next(iter(wrong.items()))}"


# ------------------------------------------------------------------------------ what a change invalidates
BASE = GOLDEN_CASES["default"]["config"]  # config/config.yaml as the schema validated it


def configured(**overrides) -> dict:
    """The default configuration with dotted keys overridden: configured(**{"codebook.k": 32})."""
    return with_overrides(BASE, **overrides)


def stages(plan: Plan, ds: str = "demo") -> dict[str, str]:
    fit = plan.fit_split(ds)
    return {
        "demo": plan.v_demo(),
        "lists": plan.v_lists(ds),
        "local": plan.v_local(ds),
        "codebook": plan.v_codebook(fit),
        "vlad": plan.v_vlad(ds),
        "whiten": plan.v_whiten(fit),
        "global": plan.v_global(ds),
        "knn": plan.v_knn(ds),
        "eval": plan.v_eval(ds),
        "sv": plan.v_sv(ds),
        "qe": plan.v_qe(ds, "aqe"),
        "lw": plan.v_lw(),
        "asmk_search": plan.v_asmk_search(ds),
        "ames_model": plan.v_ames_model(),
        "logits": plan.v_logits(ds, "ames"),
        "eval_ames": plan.v_eval_ames(ds, "ames"),
    }


def invalidated(**overrides) -> set[str]:
    before, after = stages(Plan(copy.deepcopy(BASE))), stages(Plan(configured(**overrides)))
    return {k for k in before if before[k] != after[k]}


GEOMETRY = {"weight": [0.0, 0.3], "inliers_cap": 20}  # sv's inliers fused into AMES's score


def test_geometry_fusion_depends_on_sv_and_is_absent_when_off():
    off, on = Plan(copy.deepcopy(BASE)), Plan(configured(**{"ames.geometry": GEOMETRY}))
    zero = Plan(configured(**{"ames.geometry": {"weight": [0.0], "inliers_cap": 20}}))
    # no key (older configurations) and all-zero weights are the same thing: AMES alone, nothing from sv
    assert zero.ames_geometry() is None and zero.v_eval_ames("demo", "ames") == off.v_eval_ames("demo", "ames")
    assert "sv" not in zero.ames_versions("demo", "ames")
    assert on.v_eval_ames("demo", "ames") != off.v_eval_ames("demo", "ames")
    assert on.v_logits("demo", "ames") == off.v_logits("demo", "ames")  # the logits are reused
    versions = on.ames_versions("demo", "ames")
    assert versions["sv"] == on.v_sv("demo") and versions["validation_sv"] == on.v_sv(BASE["ames"]["validation_split"])
    assert on.sv_paths("demo")["json"] == on.evaluation_path("demo", "sv")
    assert on.sv_paths("demo")["ranking"].endswith(f"/{on.v_sv('demo')}/sv_ranking.h5")
    assert on.ames_hyperparameters("demo", "ames")["geometry"] == GEOMETRY
    # a change of sv's configuration moves the fused AMES evaluation, not the AMES logits or model
    moved = Plan(configured(**{"ames.geometry": GEOMETRY, "sv.ratio": 0.9}))
    assert moved.v_eval_ames("demo", "ames") != on.v_eval_ames("demo", "ames")
    assert moved.v_logits("demo", "ames") == on.v_logits("demo", "ames")


# the global pipeline's evaluations and what reads the shortlist: the default AMES model validates on demo-val's
# shortlist (ames.select: validation, early stopping), so it moves with the shortlist too
AFTER_KNN = {"eval", "sv", "qe", "ames_model", "logits", "eval_ames"}


@pytest.mark.parametrize(
    "overrides, changed",
    [
        ({"codebook.k": 32}, {"codebook", "vlad", "whiten", "global", "knn", "lw"} | AFTER_KNN),
        (
            {"extract.sift.k": 500},
            {"local", "codebook", "vlad", "whiten", "global", "knn", "lw", "asmk_search"} | AFTER_KNN,
        ),
        ({"whiten.power": 0.25}, {"global", "knn", "lw"} | AFTER_KNN),
        ({"knn.k": 50}, {"knn"} | AFTER_KNN),
        ({"evaluate.csv_top": 10}, {"eval", "sv", "qe", "eval_ames"}),
        ({"sv.ratio": 0.9}, {"sv"}),
        ({"ames.num_rerank": [10]}, {"logits", "eval_ames"}),
        ({"ames.lambda": [0.5]}, {"eval_ames"}),
        ({"ames.train.epochs": 3}, {"ames_model", "logits", "eval_ames"}),
        ({"ames.train.grad_clip": 0.5}, {"ames_model", "logits", "eval_ames"}),
        ({"ames.precision": "float32"}, {"ames_model", "logits", "eval_ames"}),  # training, its validation, logits
        ({"demo.seed": 5}, set(stages(Plan(copy.deepcopy(BASE))))),  # the generated images: everything
    ],
    ids=[
        "codebook",
        "extract",
        "whiten.power",
        "knn",
        "evaluate",
        "sv",
        "ames.num_rerank",
        "ames.lambda",
        "ames.train",
        "ames.train.grad_clip",
        "ames.precision",
        "demo",
    ],
)
def test_a_change_invalidates_its_stage_and_what_follows_only(overrides, changed):
    assert invalidated(**overrides) == changed


SHARED_DATASETS = Path(__file__).resolve().parents[3] / "shared" / "datasets"

# what each evaluation records (its jobs' params: versions, hyperparameters) and the version of its folder
RECORDED = {
    "global": (lambda p, ds: p.v_eval(ds), lambda p, ds: (p.versions(ds), p.global_hyperparameters(ds))),
    "lw": (lambda p, ds: p.v_lw_eval(ds), lambda p, ds: (p.lw_versions(ds), p.lw_hyperparameters(ds))),
    "asmk": (lambda p, ds: p.v_asmk_eval(ds), lambda p, ds: (p.asmk_versions(ds), p.global_hyperparameters(ds))),
    "ames": (
        lambda p, ds: p.v_eval_ames(ds, "ames"),
        lambda p, ds: (p.ames_versions(ds, "ames"), p.ames_hyperparameters(ds, "ames")),
    ),
}


NO_SHARED = pytest.mark.skipif(not (SHARED_DATASETS / "landmarks-mini").is_dir(), reason="../shared is absent")


@NO_SHARED
@pytest.mark.parametrize("kind", RECORDED)
@pytest.mark.parametrize(
    "ds, overrides",
    [
        ("landmarks-mini", {"demo.seed": 1}),  # landmarks-mini's global ranking does not read the demo
        ("landmarks-mini", {"demo.test.queries": 10}),
        ("demo", {"unsupervised_fit": "demo"}),  # the same fit split as self
        ("landmarks-mini", {"unsupervised_fit": "landmarks-mini"}),
        ("demo-val", {"unsupervised_fit": "cross"}),  # cross falls back to the training split, as "training"
        ("demo", {"knn.block": 7}),
        ("landmarks-mini", {"threads": 3}),
    ],
)
def test_what_an_evaluation_records_changes_only_with_its_version(kind, ds, overrides):
    """An evaluation's recorded versions and hyperparameters are its jobs' params: a value among them that changes
    while the version does not re-ran the job in place, overwriting its folder, and again on switching back (a new
    user's trial: a demo.* key re-ran landmarks-mini's evaluations; unsupervised_fit: demo re-ran demo's)."""
    base_cfg = configured(data_root=str(SHARED_DATASETS))
    other_cfg = configured(data_root=str(SHARED_DATASETS), **overrides)
    if "unsupervised_fit" in overrides and overrides["unsupervised_fit"] == "cross":
        base_cfg = configured(data_root=str(SHARED_DATASETS), unsupervised_fit="training")
    version, recorded = RECORDED[kind]
    a, b = Plan(base_cfg), Plan(other_cfg)
    if kind in ("global", "asmk"):  # none of these changes what is behind a global or ASMK ranking
        assert version(a, ds) == version(b, ds)
    if version(a, ds) == version(b, ds):
        assert json.dumps(recorded(a, ds), sort_keys=True, default=str) == json.dumps(
            recorded(b, ds), sort_keys=True, default=str
        )


@NO_SHARED
def test_lw_records_the_space_it_re_ranks_in():
    """Lw re-ranks global descriptors in the training split's fit space: its results name those artifacts (they
    named only the baseline's, in the evaluated dataset's own space) and the fit split they were made in."""
    plan = Plan(configured(data_root=str(SHARED_DATASETS)))
    v, h = plan.lw_versions("demo"), plan.lw_hyperparameters("demo")
    assert v["lw_space"] == "demo-train" and v["codebook_lw_space"] == plan.v_codebook("demo-train")
    assert v["global_lw_space"] == plan.v_global("demo", "demo-train") != v["global"]
    assert h["global"]["fit_split"] == "demo-train" and h["lw"]["training_split"] == "demo-train"
    assert plan.versions("landmarks-mini")["demo_data"] is None
    assert plan.lw_versions("landmarks-mini")["demo_data"] == plan.v_demo()  # learned on demo-train
    # AMES trained here records the split it was trained on, as the README's results table says (it was absent)
    assert plan.ames_hyperparameters("landmarks-mini", "ames")["training_split"] == "demo-train"


def test_precision_auto_is_part_of_no_version():
    """auto resolves per machine (the manifests record the hardware and the dtype): a configuration that leaves it
    at auto has the versions of one without the key."""
    without = copy.deepcopy(BASE)
    without["ames"].pop("precision", None)
    assert stages(Plan(without)) == stages(Plan(configured(**{"ames.precision": "auto"})))
    binary = Plan(configured(**{"ames.precision": "bfloat16"})).v_ames_binary_model()
    assert binary != Plan(copy.deepcopy(BASE)).v_ames_binary_model()


def test_unsupervised_fit_picks_the_fit_split():
    def fit(mode, ds):
        return Plan(configured(unsupervised_fit=mode)).fit_split(ds)

    assert fit("self", "roxford") == "roxford5k"
    assert fit("training", "roxford5k") == BASE["training_split"]
    assert fit("cross", "roxford5k") == "rparis6k" and fit("cross", "rparis") == "roxford5k"
    assert fit("cross", "demo") == BASE["training_split"]  # no pair: the training split
    assert fit("demo-val", "demo") == "demo-val"
    assert fit("roxford", "demo") == "roxford5k"
    # a misspelt dataset folder gets the closest one (a new user's lmm for lm); a misspelt mode the mode
    with pytest.raises(PlanError, match=r"unsupervised_fit: 'demo-vall' is not self, .*; did you mean 'demo-val'\?$"):
        fit("demo-vall", "demo")
    with pytest.raises(PlanError, match=r"; did you mean 'training'\?$"):
        fit("trainig", "demo")
    # '{dataset}+1m' is fitted as its dataset: the distractors never fit anything
    assert fit("self", "roxford5k+1m") == "roxford5k"
    assert fit("cross", "rparis+1m") == "roxford5k"


def test_unsupervised_fit_moves_the_codebook_but_not_the_local_descriptors():
    self_, training = Plan(configured(unsupervised_fit="self")), Plan(configured(unsupervised_fit="training"))
    assert self_.v_local("demo") == training.v_local("demo")
    assert self_.codebook_path(self_.fit_split("demo")) != training.codebook_path(training.fit_split("demo"))
    assert training.codebook_path(training.fit_split("demo")).startswith("results/codebook/demo-train/")
    assert self_.global_path("demo", "db").startswith("results/global/demo/demo/")
    assert training.global_path("demo", "db").startswith("results/global/demo/demo-train/")


@pytest.mark.parametrize("source", ["vlad", "asmk"])
def test_new_photos_are_described_in_the_collection_s_space(source):
    """Under shortlist.source: asmk the photos searched against a collection were aggregated with a codebook and
    whitening fitted on themselves, and compared with the collection's VLADs (6 of 30 photos found their original
    first, 28 of 30 under vlad, helper-141): the search ranks by the VLAD under both sources."""
    plan = Plan(configured(**{"shortlist.source": source}))
    assert plan.search_space("demo") == "demo"
    assert plan.global_path("demo-val", "db", plan.search_space("demo")).startswith("results/global/demo-val/demo/")
    assert plan.global_path("demo", "db", plan.search_space("demo")).startswith("results/global/demo/demo/")


def test_a_search_moves_with_knn_s_search_settings_not_with_its_k():
    """search_knn fetches search.k (or sv.num_rerank) neighbours: knn.k, the evaluations' shortlist depth, re-ran
    the search for byte-identical files (helper-141); knn.search and its IVF-PQ settings change what it finds."""
    base = Plan(copy.deepcopy(BASE))
    deeper = Plan(configured(**{"knn.k": 1000}))
    assert deeper.v_knn("demo") != base.v_knn("demo")
    assert deeper.v_search_knn("demo", "demo-val") == base.v_search_knn("demo", "demo-val")
    assert deeper.search_dir("demo", "demo-val") == base.search_dir("demo", "demo-val")
    compressed = Plan(configured(**{"knn.search": "ivfpq"}))
    assert compressed.v_search_knn("demo", "demo-val") != base.v_search_knn("demo", "demo-val")
    assert Plan(configured(**{"search.k": 30})).v_search_knn("demo", "demo-val") != base.v_search_knn(
        "demo", "demo-val"
    )


def test_paths_fill_the_rule_patterns():
    plan = Plan(copy.deepcopy(BASE))
    assert plan.knn_path("demo") == p.fill(p.KNN, dataset="demo", ver=plan.v_knn("demo"))
    assert plan.evaluation_path("demo", "global") == plan.baseline_path("demo")
    assert plan.evaluation_path("demo", "sv") == p.fill(p.EVAL, dataset="demo", ver=plan.v_sv("demo"), method="sv")
    assert plan.lists_json("demo") == f"{plan.lists_dir('demo')}/lists.json"
    assert p.beside(p.KNN, "manifest.json") == "results/knn/{dataset}/{ver}/manifest.json"
    for path in (
        plan.local_store("demo", "db"),
        plan.global_path("demo", "query"),
        plan.logits_path("demo", "ames"),
        plan.ames_store_path("demo", "ames_binary"),
        plan.knn_train_path(),
        plan.itq_path(),
        plan.lw_path(),
        plan.anchors_path("demo"),
        plan.query_model_path("demo"),
        plan.asmk_ivf_path("demo"),
        plan.search_knn_path("demo", "demo-val"),
        *plan.chunk_paths("demo", plan.v_local("demo"), "query"),
    ):
        assert "{" not in path and path.startswith("results/"), path


@pytest.mark.parametrize(
    "call, overrides, named",
    [
        (lambda p: p.evaluation_path("demo", "nosuch"), {}, "unknown method 'nosuch'"),
        (lambda p: p.evaluation_path("demo", "SV"), {}, "unknown method 'SV' in demo_SV; did you mean 'sv'?"),
        (
            lambda p: p.evaluation_path("demo", "glboal"),
            {},
            "unknown method 'glboal' in demo_glboal; did you mean 'global'?",
        ),
        (lambda p: p.evaluation_path("coll_ames", "binray"), {}, "did you mean 'coll_ames_binary'?"),
        (  # the table of methods, misspelt (helper-139: offered nothing)
            lambda p: p.evaluation_path("landmarks-mini", "compar"),
            {},
            "in landmarks-mini_compar; did you mean 'results/landmarks-mini_compare.md' (the table of every method)?",
        ),
        (lambda p: p.evaluation_path("demo", "whiten2"), {}, "did you mean 'lw'?"),
        (lambda p: p.evaluation_path("demo", "qqqq"), {}, "unknown method 'qqqq' in demo_qqqq (available"),
        (lambda p: p.evaluation_path("holiday_asmk", "2"), {}, "unknown method '2' in holiday_asmk_2 (available"),
        (lambda p: p.evaluation_path("coll", "binary"), {}, "did you mean 'ames_binary'?"),
        # a method cut at one of its own underscores (a new user's trial: demo_super_global was read as a dataset
        # demo_super, and image_lists said where to put its photos)
        (
            lambda p: p.evaluation_path("demo_super", "global"),
            {},
            f"results/demo_super_global.json: read as dataset 'demo_super' (no folder {os.path.abspath('data')}"
            "/demo_super) and method "
            "'global'; did you mean 'results/demo_superglobal.json'?",
        ),
        (lambda p: p.evaluation_path("demo-train", "global"), {}, "training_split"),
        (lambda p: p.evaluation_path("revisitop1m", "global"), {}, "distractor set"),
        (lambda p: p.distractor_base("revisitop1m+1m"), {}, "roxford5k+1m"),
        (lambda p: p.evaluation_path("demo", "aqe"), {"shortlist.source": "asmk"}, "shortlist.source: asmk"),
        (lambda p: p.v_global("demo"), {"shortlist.source": "import", "shortlist.import_dir": ""}, "import_dir"),
        (lambda p: p.v_global("demo"), {"shortlist.source": "ames_nn", "shortlist.import_dir": ""}, "import_dir"),
        (lambda p: p.global_path("demo", "db"), {"shortlist.source": "ames_nn"}, "ames_nn"),
        # a release folder without the training / validation splits' files: said what they are for and the way out
        (
            lambda p: p.v_global("demo-train"),
            {"shortlist.source": "ames_nn", "shortlist.import_dir": "/nonexistent"},
            "demo-train is training_split, whose shortlist AMES trains on: set ames.checkpoint.ames",
        ),
        (
            lambda p: p.v_global("demo-val"),
            {"shortlist.source": "ames_nn", "shortlist.import_dir": "/nonexistent"},
            "or set ames.select: fixed",
        ),
        (lambda p: p.global_path("demo", "db"), {"shortlist.source": "ames_nn"}, "superglobal, lw, ssp and AMES"),
        (lambda p: p.shortlist_backbone(), {"shortlist.source": "backbone", "extract.backbone": "sift"}, "backbone"),
        (lambda p: p.v_anchors("demo"), {"shortlist.source": "asmk"}, "shortlist.source: vlad"),
        # SIFT queries through a DINOv2 codebook failed in train_query with numpy's shape error (helper-145)
        (
            lambda p: p.v_anchors("demo"),
            {"extract.backbone": "dinov2", "extract.dinov2.checkpoint": "random"},
            "needs extract.backbone: sift (here dinov2)",
        ),
        (
            lambda p: p.ames_model_path("ames"),
            {"ames.checkpoint.ames": "/nonexistent/model.pt"},
            "ames.checkpoint.ames",
        ),
        (lambda p: p.v_ames_model(), {"ames.validation_split": "demo-train"}, "ames.validation_split"),
        (lambda p: p.v_ames_model(), {"ames.train.min_desc": 128}, "ames.train.q_desc (128) must be more than"),
        (lambda p: p.v_ames_binary_model(), {"ames.train.db_desc": 5}, "ames.train.db_desc (5) must be more"),
        (lambda p: p.v_lists("demo"), {"gldv2.exclude_landmarks": "/nonexistent.csv"}, "gldv2.exclude_landmarks"),
        (lambda p: p.extraction_of("demo", "00000000"), {}, "00000000"),
        (lambda p: p.v_eval_ames("demo", "ames"), {"ames.geometry": GEOMETRY, "sv.num_rerank": 50}, "sv.num_rerank"),
        (
            lambda p: p.v_eval_ames("demo", "ames"),
            {"ames.select": "fixed", "ames.fixed.geometry_weight": 0.3},
            "ames.fixed.geometry_weight",
        ),
    ],
)
def test_bad_requests_raise_plan_error_naming_the_key(call, overrides, named):
    with pytest.raises(PlanError) as e:
        call(Plan(configured(**overrides)))
    assert named in str(e.value)
    assert isinstance(e.value, ValueError)


def test_the_descriptor_sweep_is_refused_while_planned_above_what_extraction_keeps():
    # the sweep's job refused it, after the demo, extraction and AMES training had run (helper-114's trial)
    plan = Plan(configured(**{"benchmark.descriptors.sv": [16, 1001], "extract.sift.k": 1000}))
    with pytest.raises(PlanError, match=r"^benchmark\.descriptors\.sv: \[1001\] .* at most 1000 \(extract\.sift\.k\)"):
        plan.descriptor_sweep_store("demo")
    ames = Plan(configured(**{"benchmark.descriptors.ames": [700], "extract.backbone": "dinov2"}))
    assert ames.descriptor_sweep_store("demo") == ames.local_store("demo", "db")  # dinov2 keeps 700
    with pytest.raises(PlanError, match=r"^benchmark\.descriptors\.ames: \[701\] .*\(extract\.dinov2\.k\)"):
        Plan(configured(**{"benchmark.descriptors.ames": [701], "extract.backbone": "dinov2"})).descriptor_sweep_store(
            "demo"
        )
    assert plan.local_store("demo", "db") == Plan(copy.deepcopy(BASE)).descriptor_sweep_store("demo")


def test_the_deprecated_method_whiten_is_lw():
    plan = Plan(copy.deepcopy(BASE))
    assert plan.evaluation_path("demo", "whiten") == plan.evaluation_path("demo", "lw")
    assert plan.evaluation_path("demo", "lw").endswith("/lw.json")
    assert plan.fitted_on("demo", "whiten") == plan.fitted_on("demo", "lw")
    assert plan.fitted_on("demo", "lw")["lw"]["split"] == BASE["training_split"]


def test_sources_of_a_plain_folder_are_its_folders_or_its_lists(tmp_path):
    """image_lists depends on every folder of a plain folder dataset (an image added to a subfolder changes only that
    folder's mtime), hidden ones excluded, unless image_list.txt lists its database; and on its list files."""
    root = tmp_path / "photos" / "jpg"
    (root / "a" / "b").mkdir(parents=True)
    (root / ".cache").mkdir()
    plan = Plan(configured(data_root=str(tmp_path)))
    assert plan.folder_source("photos") == [str(root), str(root / "a"), str(root / "a" / "b")]
    # a query list alone: the database is still the scanned folder, so its folders stay sources
    (tmp_path / "photos" / "query_list.txt").write_text("jpg/x.jpg\n")
    folders = [str(root), str(root / "a"), str(root / "a" / "b")]
    assert plan.folder_source("photos") == [str(tmp_path / "photos" / "query_list.txt")] + folders
    (tmp_path / "photos" / "image_list.txt").write_text("jpg/x.jpg\n")
    assert plan.folder_source("photos") == [str(tmp_path / "photos" / f) for f in ("image_list.txt", "query_list.txt")]


def test_sources_of_a_gnd_csv_dataset_include_its_scanned_folders(tmp_path):
    """A gnd.csv dataset without image_list.txt takes every image under jpg/ as its database: a photo added there
    (or to a subfolder) must re-plan the lists, so its folders are sources next to gnd.csv and query_boxes.csv."""
    d = tmp_path / "coll"
    (d / "jpg" / "sub").mkdir(parents=True)
    (d / "gnd.csv").write_text("query,positive\n")
    (d / "query_boxes.csv").write_text("query,x1,y1,x2,y2\n")
    plan = Plan(configured(data_root=str(tmp_path)))
    assert plan.folder_source("coll") == [
        str(d / "gnd.csv"),
        str(d / "query_boxes.csv"),
        str(d / "jpg"),
        str(d / "jpg" / "sub"),
    ]
    (d / "image_list.txt").write_text("jpg/x.jpg\n")  # a listed database: the list is the source, not the folders
    assert plan.folder_source("coll") == [str(d / "gnd.csv"), str(d / "query_boxes.csv"), str(d / "image_list.txt")]


def test_a_database_listed_apart_is_read_by_the_database_side_only(tmp_path):
    """A plain folder's or gnd.csv dataset's database has its own list (db.json), which the database side's stages
    read; its sources exclude the query-side files. A ground-truth file naming both sides, a demo split and a '+1m'
    stack keep one list."""
    for name, gt in (("plain", None), ("csv", "gnd.csv"), ("named", "gnd.json")):
        (tmp_path / name / "jpg").mkdir(parents=True)
        if gt:
            (tmp_path / name / gt).write_text("query,positive\n" if gt == "gnd.csv" else "{}")
    (tmp_path / "csv" / "query_boxes.csv").write_text("query,x1,y1,x2,y2\n")
    plan = Plan(configured(data_root=str(tmp_path)))
    apart = {n: plan.database_apart(n) for n in ("plain", "csv", "named", "demo", "csv+1m")}
    assert apart == {"plain": True, "csv": True, "named": False, "demo": False, "csv+1m": False}
    assert plan.side_lists_json("csv", "db") == plan.database_json("csv") != plan.lists_json("csv")
    assert plan.side_lists_json("csv", "query") == plan.lists_json("csv")
    assert plan.side_lists_json("named", "db") == plan.lists_json("named")
    assert plan.database_json("csv").endswith("/db.json")
    d = tmp_path / "csv"
    assert plan.database_source("csv") == [str(d / "jpg")]
    assert plan.query_source("csv") == [str(d / "gnd.csv"), str(d / "query_boxes.csv")]
    assert plan.query_source("plain") == []
    (d / "image_list.txt").write_text("jpg/x.jpg\n")
    assert plan.database_source("csv") == [str(d / "image_list.txt")]
    assert plan.query_source("csv") == [str(d / "gnd.csv"), str(d / "query_boxes.csv")]


def test_lists_of_a_scanned_folder_are_versioned_by_the_image_suffixes(tmp_path, monkeypatch):
    """A folder scan's lists depend on which suffixes count as images (HEIC was added): a longer set makes new lists
    for a plain folder and a gnd.csv dataset, not for one whose ground truth names its images."""
    for name, gt in (("plain", None), ("csv", "gnd.csv"), ("named", "gnd.json")):
        (tmp_path / name / "jpg").mkdir(parents=True)
        if gt:
            (tmp_path / name / gt).write_text("query,positive\n" if gt == "gnd.csv" else "{}")
    plan = Plan(configured(data_root=str(tmp_path)))
    before = {n: plan.v_lists(n) for n in ("plain", "csv", "named", "demo")}
    monkeypatch.setattr(p, "IMAGE_SUFFIXES", p.IMAGE_SUFFIXES + (".jxl",))
    after = {n: Plan(configured(data_root=str(tmp_path))).v_lists(n) for n in before}
    assert [n for n in before if before[n] != after[n]] == ["plain", "csv"]


def test_lists_are_versioned_by_the_folder_a_link_reaches(tmp_path):
    """The same folder reached through a linked data_root, or through a linked dataset folder, has the version of
    its real path (its artifacts are found again, not made anew); a link re-pointed at another folder gets another."""
    for name in ("photos", "other"):
        (tmp_path / "real" / name / "jpg").mkdir(parents=True)
    os.symlink(tmp_path / "real", tmp_path / "root_link")
    direct = Plan(configured(data_root=str(tmp_path / "real"))).v_lists("photos")
    assert Plan(configured(data_root=str(tmp_path / "root_link"))).v_lists("photos") == direct
    os.symlink(tmp_path / "real" / "photos", tmp_path / "dataset_link")
    linked = configured(dataset_dirs={"photos": str(tmp_path / "dataset_link")})
    assert Plan(linked).v_lists("photos") == direct
    os.remove(tmp_path / "dataset_link")
    os.symlink(tmp_path / "real" / "other", tmp_path / "dataset_link")
    assert Plan(linked).v_lists("photos") != direct


def test_an_ames_checkpoint_is_checked_and_recorded_as_what_was_fitted(tmp_path):
    """ames.checkpoint: a folder is named as one (it was "not found"); a given model's results say where it came
    from, not "trained on the training split"; a binary model distilled from a given teacher says so."""
    (tmp_path / "models").mkdir()
    with pytest.raises(PlanError, match=r"ames\.checkpoint\.ames: .*models is a folder; name the model file"):
        Plan(configured(**{"ames.checkpoint.ames": str(tmp_path / "models")})).ames_checkpoint("ames")
    (tmp_path / "models" / "model.pt").write_bytes(b"")
    plan = Plan(configured(**{"ames.checkpoint.ames": str(tmp_path / "models" / "model.pt")}))
    assert plan.fitted_on("demo", "ames")["ames"] == {
        "checkpoint": str(tmp_path / "models" / "model.pt"),
        "data": "ames.checkpoint.ames, used as it is (not trained by this run)",
    }
    binary = plan.fitted_on("demo", "ames_binary")["ames"]
    assert binary["split"] == "demo-train" and "from ames.checkpoint.ames (" in binary["data"]
    assert Plan(copy.deepcopy(BASE)).fitted_on("demo", "ames")["ames"]["data"] == (
        "training split, labels via its global kNN"
    )


def test_an_unsupervised_fit_that_names_no_dataset_is_refused_naming_the_key(tmp_path):
    (tmp_path / "mine" / "jpg").mkdir(parents=True)
    assert Plan(configured(data_root=str(tmp_path), unsupervised_fit="mine")).fit_split("demo") == "mine"
    with pytest.raises(PlanError, match=r"unsupervised_fit: 'Self' is not self, training or cross, and no dataset"):
        Plan(configured(data_root=str(tmp_path), unsupervised_fit="Self")).fit_split("demo")
    with pytest.raises(PlanError, match=r"no dataset folder .*selff exists .*; did you mean 'self'\?"):
        Plan(configured(data_root=str(tmp_path), unsupervised_fit="selff")).fit_split("demo")


def test_config_problems_are_all_named_at_once(tmp_path):
    """The checks the schema cannot make: each failed on its own, later (a ResNet in every extraction job) or in
    Snakemake's WorkflowError frame, so fixing one showed the next."""
    bounds = {"extract.min_chunk_images": 100, "extract.max_chunk_images": 1000}  # config.yaml's (not in BASE)
    assert Plan(configured(data_root=str(tmp_path), **bounds)).config_problems() == []
    cfg = configured(
        data_root=str(tmp_path),
        dataset_dirs={"demo-val": str(tmp_path), "mine": str(tmp_path)},
        unsupervised_fit="selff",
        **{"extract.min_chunk_images": 5, "extract.max_chunk_images": 2},
    )
    cfg["shortlist"].update(source="backbone", backbone="resnet")
    problems = Plan(cfg).config_problems()
    assert [line.split(":")[0] for line in problems] == [
        "dataset_dirs.demo-val",
        "shortlist.backbone",
        "extract.min_chunk_images (5) is above extract.max_chunk_images (2)",
        "unsupervised_fit",
    ]
    assert "did you mean 'self'?" in problems[-1]
    cfg["shortlist"]["source"] = "global"  # a resnet shortlist backbone that nothing extracts needs no weights
    assert not any("resnet" in p for p in Plan(cfg).config_problems())
    equal = configured(data_root=str(tmp_path), **{"extract.min_chunk_images": 3, "extract.max_chunk_images": 3})
    assert Plan(equal).config_problems() == []
    # the extraction benchmark of a resnet without its settings (the job failed with KeyError: 'resnet')
    timed = configured(data_root=str(tmp_path), **bounds, **{"benchmark.extract.backbone": "resnet"})
    (line,) = Plan(timed).config_problems()
    assert line.startswith("benchmark.extract.backbone: resnet needs benchmark.extract.resnet, its settings")
    # SSP's anchors sampling fewer vectors per codeword than they require (the anchors job failed on it)
    sampled = configured(data_root=str(tmp_path), **bounds)
    sampled["ssp"]["anchors"].update(min_points_per_centroid=39, max_points_per_centroid=20)
    (line,) = Plan(sampled).config_problems()
    assert line.startswith("ssp.anchors.max_points_per_centroid (20) is below ssp.anchors.min_points_per_centroid (39)")
    timed["benchmark"]["extract"]["resnet"] = {"checkpoint": "random", "model": {"depth": 50}}
    assert Plan(timed).config_problems() == []


def test_a_split_is_kept_apart_from_the_evaluated_dataset_by_its_folder_not_only_its_name(tmp_path):
    """dataset_dirs: {lmalias: <data>/lm} with training_split: lmalias evaluated lm on its own training data with no
    word (Medium 77.86 against 74.30, helper-140), and a validation split naming the evaluated folder was taken."""
    (tmp_path / "lm" / "jpg").mkdir(parents=True)
    (tmp_path / "other" / "jpg").mkdir(parents=True)
    (tmp_path / "link").symlink_to(tmp_path / "lm")
    aliased = Plan(
        configured(data_root=str(tmp_path), training_split="lmalias", dataset_dirs={"lmalias": str(tmp_path / "lm")})
    )
    with pytest.raises(
        PlanError,
        match=rf"dataset 'lm' is the training split \(training_split: lmalias, the same folder, {tmp_path / 'lm'}\)",
    ):
        aliased.check_evaluable("lm")
    assert aliased.same_data("lm+1m", "lmalias") and aliased.same_data("lm", "link")  # a link reaches the folder
    aliased.check_evaluable("other")
    assert not aliased.same_data("other", "lm")
    val = Plan(configured(data_root=str(tmp_path), training_split="link", **{"ames.validation_split": "lm"}))
    with pytest.raises(
        PlanError, match=r"ames.validation_split 'lm' must differ from the training split .*: both read"
    ):
        val.train_validation()
    assert Plan(copy.deepcopy(BASE)).same_data("roxford", "roxford5k")  # an alias of the name
    # a split whose photos folder is a link to the evaluated dataset's (helper-144): the same photos
    (tmp_path / "lmtrain").mkdir()
    (tmp_path / "lmtrain" / "jpg").symlink_to(tmp_path / "lm" / "jpg")
    linked = Plan(configured(data_root=str(tmp_path), training_split="lmtrain"))
    with pytest.raises(PlanError, match=rf"training_split: lmtrain, the same folder, {tmp_path / 'lm' / 'jpg'}\)"):
        linked.check_evaluable("lm")
    linked.check_evaluable("other")
    # a plain folder's photos are its root: a split whose jpg/ links there reads them too (helper-147)
    (tmp_path / "flat").mkdir()
    (tmp_path / "flattrain").mkdir()
    (tmp_path / "flattrain" / "jpg").symlink_to(tmp_path / "flat")
    flat = Plan(configured(data_root=str(tmp_path), training_split="flattrain"))
    with pytest.raises(PlanError, match=rf"training_split: flattrain, the same folder, {tmp_path / 'flat'}\)"):
        flat.check_evaluable("flat")


def test_a_table_of_metrics_is_refused_for_a_folder_without_ground_truth(tmp_path):
    """compare needs metrics: a folder without ground truth is refused before any job runs, naming what to add."""
    for name, gt in (("plain", None), ("csv", "gnd.csv")):
        (tmp_path / name / "jpg").mkdir(parents=True)
        if gt:
            (tmp_path / name / gt).write_text("query,positive\n")
    plan = Plan(configured(data_root=str(tmp_path)))
    with pytest.raises(PlanError, match=r"the table needs metrics, and dataset 'plain' has no ground truth .*gnd\.csv"):
        plan.check_ground_truth("plain", "the table")
    for ds in ("csv", "demo", "roxford5k"):
        plan.check_ground_truth(ds, "the table")


def test_dataset_dirs_name_a_folder_outside_data_root(tmp_path):
    elsewhere = tmp_path / "photos" / "2024"
    (elsewhere / "jpg").mkdir(parents=True)
    plan = Plan(configured(data_root=str(tmp_path / "data"), dataset_dirs={"mine": str(elsewhere)}))
    assert plan.dataset_dir("mine") == str(elsewhere) and plan.folder_source("mine") == [str(elsewhere / "jpg")]
    assert plan.dataset_dir("other") == str(tmp_path / "data" / "other")
    (elsewhere / "x.jpg").write_bytes(b"")
    for bad, match in (
        ({"mine": str(elsewhere / "x.jpg")}, r"dataset_dirs\.mine: .*x\.jpg is a file; name the folder"),
        ({"demo": str(elsewhere)}, r"dataset_dirs\.demo: the demo splits are generated under results/"),
    ):
        with pytest.raises(PlanError, match=match):
            Plan(configured(data_root=str(tmp_path / "data"), dataset_dirs=bad)).folder_source(next(iter(bad)))
    home = Plan(configured(dataset_dirs={"mine": "~/photos"}))
    assert home.dataset_dir("mine") == os.path.expanduser("~/photos")
    assert plan.search_dir("roxford", "mine") == plan.search_dir("roxford5k", "mine")  # an alias, one search
    aliased = Plan(configured(data_root=str(tmp_path / "data"), dataset_dirs={"roxford": str(elsewhere)}))
    assert aliased.dataset_dir("roxford5k") == str(elsewhere)  # an alias names the same dataset
    with pytest.raises(PlanError, match=r"dataset_dirs\.roxford5k: .*holds no ground truth, and downloads go to"):
        aliased.folder_source("roxford5k")
    moved = Plan(configured(data_root=str(tmp_path / "data"), dataset_dirs={"mine": str(tmp_path / "nowhere")}))
    with pytest.raises(PlanError, match=r"folder .*nowhere not found \(dataset_dirs\.mine\)"):
        moved.folder_source("mine")
    with pytest.raises(PlanError, match=r"photos to search 'nophotos': folder .*nophotos not found .*jpg/ \(no gro"):
        plan.folder_source("nophotos", searched=True)
    trains = Plan(configured(data_root=str(tmp_path / "data"), training_split="nophotos"))
    with pytest.raises(PlanError, match=r"^training_split: dataset 'nophotos': .*for metrics"):
        trains.folder_source("nophotos", searched=True)  # searched, but a training split needs its ground truth
    # with the distractors: the base's folder is what is missing, and the key still named (helper-144)
    trains = Plan(configured(data_root=str(tmp_path / "data"), training_split="nophotos+1m"))
    with pytest.raises(PlanError, match=r"^training_split: dataset 'nophotos': folder .*nophotos not found"):
        trains.folder_source("nophotos")
    validates = Plan(configured(data_root=str(tmp_path / "data"), **{"ames.validation_split": "nophotos+1m"}))
    with pytest.raises(PlanError, match=r"^ames.validation_split: dataset 'nophotos': folder"):
        validates.folder_source("nophotos")
    (tmp_path / "data" / "afile").parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / "data" / "afile").write_bytes(b"")
    with pytest.raises(PlanError, match=r"^photos to search 'afile': .*afile is a file, not a folder"):
        plan.folder_source("afile", searched=True)
    (tmp_path / "data" / "afile").unlink()
    # a near miss under data_root is suggested (a new user typed landmarks_mini for landmarks-mini)
    (tmp_path / "data" / "landmarks-mini").mkdir(parents=True)
    typo = Plan(configured(data_root=str(tmp_path / "data")))
    with pytest.raises(PlanError, match=r"landmarks_mini not found .*; did you mean 'landmarks-mini'\?$"):
        typo.folder_source("landmarks_mini")
    # the name in another case: difflib offered nothing for it (helper-118: results/CSVDS_global.json for csvds/)
    with pytest.raises(PlanError, match=r"LANDMARKS-MINI not found .*; did you mean 'landmarks-mini'\?$"):
        typo.folder_source("LANDMARKS-MINI")
    # photos searched against a collection: the collection is never offered for a misspelt photos folder (helper-174
    # was offered 'new_photos' or 'my_photos' for new_photo, searched against my_photos)
    (tmp_path / "data" / "my_photos").mkdir()
    (tmp_path / "data" / "new_photos").mkdir()
    with pytest.raises(PlanError, match=r"new_photo not found .*; did you mean 'new_photos'\?$"):
        typo.folder_source("new_photo", searched=True, not_offered=("my_photos",))
    with pytest.raises(PlanError, match=r"; did you mean 'new_photos' or 'my_photos'\?$"):
        typo.folder_source("new_photo", searched=True)
    # data_root naming the dataset's own folder: told to name its parent (helper-154 was told to nest jpg/ deeper)
    (tmp_path / "data" / "landmarks-mini" / "jpg").mkdir()
    inside = Plan(configured(data_root=str(tmp_path / "data" / "landmarks-mini")))
    with pytest.raises(PlanError) as own:
        inside.folder_source("landmarks-mini")
    assert f"is itself a dataset's folder (it holds jpg/); data_root is the folder above the datasets: --config " \
        f"data_root={tmp_path / 'data'}" in str(own.value) and "put the images" not in str(own.value)  # fmt: skip
    with pytest.raises(PlanError, match=r"data_root=\S+/data \(that folder's dataset is then 'landmarks-mini'\)$"):
        inside.folder_source("other")
    # data_root itself mistyped ('dta' for 'data'): said, where the dataset's folder alone was named before
    with pytest.raises(PlanError, match=r"\(data_root=\S+/dta, and data_root \S+/dta does not exist at all\)"):
        Plan(configured(data_root=str(tmp_path / "dta"))).folder_source("newph")
    with pytest.raises(PlanError) as present:
        typo.folder_source("newph")
    assert "does not exist at all" not in str(present.value)
    # a file where data_root or a dataset's folder is wanted is said to be a file (it read as "does not exist")
    (tmp_path / "afile").write_text("x")
    with pytest.raises(PlanError, match=r"^data_root: \S+/afile is a file, not a folder; name the folder that holds"):
        Plan(configured(data_root=str(tmp_path / "afile"))).folder_source("newph")
    (tmp_path / "data" / "filed").write_text("x")
    with pytest.raises(PlanError, match=r"^dataset 'filed': \S+/data/filed is a file, not a folder; put the images"):
        typo.folder_source("filed")
    with pytest.raises(PlanError) as far:
        typo.folder_source("zzz")
    assert "did you mean" not in str(far.value)
    # a misspelt training split names its key, and the demo split it was meant to be
    split = Plan(configured(data_root=str(tmp_path / "data"), training_split="demo-tran"))
    with pytest.raises(PlanError, match=r"^training_split: dataset 'demo-tran': .*did you mean 'demo-train'"):
        split.folder_source("demo-tran")
    # so does SSP's anchor split (a new user's trial got the folder message without the key)
    cfg = configured(data_root=str(tmp_path / "data"))
    cfg["ssp"]["anchors"]["split"] = "landmarks-mni"
    with pytest.raises(
        PlanError, match=r"^ssp.anchors.split: dataset 'landmarks-mni': .*did you mean 'landmarks-mini'"
    ):
        Plan(cfg).folder_source("landmarks-mni")


def test_ranks_every_image_follows_the_ground_truth_protocol(tmp_path):
    """Where knn.k > 0 is refused at plan time: revisitop metrics (mAP over every database image) need the full
    ranking; GLDv2's mAP@100 and a folder without ground truth do not. A gnd.json says which by its protocol."""
    root = tmp_path / "data"
    files = {
        "csv": ("gnd.csv", "query,image,kind\n"),
        "pkl": ("gnd_pkl.pkl", ""),
        "json_revisitop": ("gnd.json", json.dumps({"imlist": [], "qimlist": [], "gnd": []})),
        "json_gldv2": ("gnd.json", json.dumps({"imlist": [], "qimlist": [], "gnd": [], "protocol": "gldv2"})),
        "gld": ("retrieval_solution_v2.1.csv", "id,images,Usage\n"),
    }
    for ds, (name, text) in files.items():
        (root / ds).mkdir(parents=True)
        (root / ds / name).write_text(text)
    (root / "plain" / "jpg").mkdir(parents=True)
    plan = Plan(configured(data_root=str(root)))
    got = {ds: plan.ranks_every_image(ds) for ds in (*files, "plain", "demo", "demo-val", "roxford5k+1m", "gldv2")}
    assert got == {
        "csv": True,
        "pkl": True,
        "json_revisitop": True,
        "json_gldv2": False,
        "gld": False,
        "plain": False,
        "demo": True,
        "demo-val": True,
        "roxford5k+1m": True,
        "gldv2": False,
    }


def test_gldv2_keys_version_only_gldv2_lists(tmp_path):
    """gldv2.present_only (a GLDv2 retrieval key) moved every dataset's list version: the demo's whole chain, AMES's
    training included, was planned again. It now versions only datasets in GLDv2's format."""
    root = tmp_path / "data"
    (root / "gld").mkdir(parents=True)
    (root / "gld" / "retrieval_solution_v2.1.csv").write_text("id,images,Usage\n")
    (root / "mine" / "jpg").mkdir(parents=True)
    base, present = (Plan(configured(data_root=str(root), **o)) for o in ({}, {"gldv2.present_only": True}))
    for ds in ("demo", "demo-val", "demo-train", "mine", "roxford5k"):
        assert base.v_lists(ds) == present.v_lists(ds), ds
    assert base.v_lists("gld") != present.v_lists("gld") and base.v_lists("gldv2") != present.v_lists("gldv2")


def test_a_backbones_extractor_version_moves_its_versions_only(monkeypatch, tmp_path):
    """versions.BACKBONE_VERSIONS: resnet's extraction changed (ReLU+ kept out of the local features, CVNet's learned
    GeM p); its local version and feature-cache key move, SIFT's and DINOv2's do not. And SIFT's own version moves
    SIFT's alone (keypoints mapped back to pixel centres after a resize)."""
    (tmp_path / "cvnet.pt").write_bytes(b"weights")
    cfg = configured(**{"extract.backbone": "resnet", "extract.resnet.checkpoint": str(tmp_path / "cvnet.pt")})
    original = dict(p.BACKBONE_VERSIONS)

    def keys(without=None):  # each backbone's (local version, feature-cache key), one backbone's version left out
        monkeypatch.setattr(p, "BACKBONE_VERSIONS", {k: v for k, v in original.items() if k != without})
        return {
            b: (Plan(copy.deepcopy(cfg)).v_local("demo", b), Plan(copy.deepcopy(cfg)).cache_key(b, cfg["extract"][b]))
            for b in ("sift", "dinov2", "resnet")
        }

    before = keys()
    for moved in ("resnet", "sift"):
        after = keys(without=moved)
        for b in ("sift", "dinov2", "resnet"):
            if b == moved:
                assert after[b][0] != before[b][0] and after[b][1] != before[b][1], b
            else:
                assert after[b] == before[b], (moved, b)


@pytest.mark.parametrize("backbone", ["dinov2", "resnet"])
def test_a_deep_backbones_weights_are_versioned_by_content_and_its_device_by_nothing(tmp_path, backbone):
    """A new user's trial: new weights saved over the same checkpoint path re-used the old features (the path was
    hashed, not the file), and naming the device `auto` already chose (cpu) extracted every photo again."""
    ck, det = tmp_path / "model.pt", tmp_path / "detector.pt"
    ck.write_bytes(b"seed 0 weights")
    det.write_bytes(b"detector")
    cfg = configured(**{"extract.backbone": backbone, f"extract.{backbone}.checkpoint": str(ck)})

    def keys(**overrides):
        c = with_overrides(cfg, **{f"extract.{backbone}.{k}": v for k, v in overrides.items()})
        plan = Plan(c)
        return plan.cache_key(backbone, c["extract"][backbone]), plan.v_local("demo", backbone)

    def params(**overrides):  # what the extraction and merge jobs get as params (extraction_params)
        c = with_overrides(cfg, **{f"extract.{backbone}.{k}": v for k, v in overrides.items()})
        plan = Plan(c)
        return plan.extraction_params("demo", plan.v_local("demo", backbone))

    first = keys()
    assert keys(device="cpu") == first and keys(device="cuda") == first  # where it runs, not what it computes
    # nor the jobs' params: as one, the device re-ran every chunk and merge in place, and all after them (a trial)
    assert params(device="cpu") == params() == params(device="cuda") and "device" not in params()[1]
    ck.write_bytes(b"seed 1 weights")  # saved over the same path
    os.utime(ck, ns=(1, 1))  # whatever its time says
    second = keys()
    assert second[0] != first[0] and second[1] != first[1]
    moved = tmp_path / "elsewhere" / "renamed.pt"
    moved.parent.mkdir()
    ck.rename(moved)
    assert keys(checkpoint=str(moved)) == second  # the same weights moved: nothing to extract again
    # nor re-run in place: the path was a param, and the same file named relatively and then absolutely re-ran 11
    # jobs (a new user's trial)
    assert params(checkpoint=os.path.relpath(moved)) == params(checkpoint=str(moved))
    assert params(checkpoint=str(moved))[1]["checkpoint"] == {"sha1": file_sha1(moved)}
    with_detector = keys(checkpoint=str(moved), detector=str(det))
    assert with_detector != second
    det.write_bytes(b"another detector")
    assert keys(checkpoint=str(moved), detector=str(det)) != with_detector
    assert keys(checkpoint="random") != keys(checkpoint="random", seed=1)  # random weights: their seed
    with pytest.raises(PlanError, match=rf"extract\.{backbone}\.checkpoint: .*model\.pt not found"):
        keys(checkpoint=str(ck))
    # a relative path: where it was read from (helper-145 had put the file beside its config file)
    with pytest.raises(PlanError, match=r"nothere\.pt not found \(read from the working directory: /\S*/nothere\.pt\)"):
        keys(checkpoint="nothere.pt")
    with pytest.raises(PlanError, match=r"~/nothere\.pt not found \(as /\S*/nothere\.pt\)"):
        keys(checkpoint="~/nothere.pt")
    with pytest.raises(PlanError, match=rf"extract\.{backbone}\.detector: .* not found \(a folder"):
        keys(checkpoint=str(moved), detector=str(tmp_path))
    with pytest.raises(PlanError, match=rf"extract\.{backbone}\.checkpoint: Random not found; did you mean random\?"):
        keys(checkpoint="Random")
    with pytest.raises(PlanError, match=rf"extract\.{backbone}\.checkpoint: None not found; did you mean null"):
        keys(checkpoint="None")
    with pytest.raises(PlanError, match=rf"extract\.{backbone}\.checkpoint is empty: name a weights file"):
        keys(checkpoint="")


@pytest.mark.parametrize("backbone", ["dinov2", "resnet"])
def test_an_extraction_job_runs_with_the_configured_weights_file_and_device(tmp_path, backbone):
    """The jobs' params give a weights file by its SHA-1; the job loads the path the configuration names, with the
    device, and refuses a file saved over since the plan (it would extract new weights into the old version)."""
    ck = tmp_path / "model.pt"
    ck.write_bytes(b"seed 0 weights")
    cfg = configured(
        **{"extract.backbone": backbone, f"extract.{backbone}.checkpoint": str(ck), f"extract.{backbone}.device": "cpu"}
    )
    plan = Plan(cfg)
    b, params = plan.extraction_params("demo", plan.v_local("demo", backbone))
    job = job_backbone_config(b, params, cfg)
    assert job == {**cfg["extract"][backbone]}  # what the extractor got when the params held the path and device
    assert job_backbone_config("sift", {"k": 5}, cfg) == {"k": 5}
    ck.write_bytes(b"seed 1 weights")
    with pytest.raises(ValueError, match=rf"extract\.{backbone}\.checkpoint: .*model\.pt is not the file this job"):
        job_backbone_config(b, params, cfg)
    ck.unlink()  # moved away while a job waited: the key named, not a bare FileNotFoundError (a review)
    with pytest.raises(ValueError, match=rf"extract\.{backbone}\.checkpoint: .*model\.pt is not the file this job"):
        job_backbone_config(b, params, cfg)
    cfg["extract"][backbone]["checkpoint"] = None  # the key changed meanwhile: not a TypeError
    with pytest.raises(ValueError, match=rf"extract\.{backbone}\.checkpoint: None is not the file this job"):
        job_backbone_config(b, params, cfg)


def test_a_binary_fixed_point_moves_only_the_binary_evaluation():
    """ames.fixed.binary is ames_binary's point: it must re-run ames_binary's evaluation and leave ames's alone (the
    whole ames.fixed was hashed into both); without the key, both hash ames.fixed as before it existed."""
    fixed = {"ames.select": "fixed"}
    before = Plan(configured(**fixed))
    after = Plan(configured(**fixed, **{"ames.fixed.binary": {"lambda": 0.35, "gamma": 0.1}}))
    assert after.v_eval_ames("demo", "ames") == before.v_eval_ames("demo", "ames")
    assert after.v_eval_ames("demo", "ames_binary") != before.v_eval_ames("demo", "ames_binary")
    # a binary point equal to the shared one changes nothing that ames_binary computes
    same = Plan(configured(**fixed, **{"ames.fixed.binary": {"lambda": 0.5, "gamma": 0.2}}))
    assert same.v_eval_ames("demo", "ames_binary") == before.v_eval_ames("demo", "ames_binary")


@NO_SHARED
@pytest.mark.parametrize("source", ["backbone", "import"])
def test_a_local_backbone_change_leaves_a_global_ranking_it_does_not_feed_alone(source, tmp_path):
    """Under a resnet shortlist, switching the local backbone (what sv and AMES read) from sift to dinov2 re-ran
    evaluate_global in place, its JSON published as stale, and again on switching back (a new user's trial): the
    global evaluation recorded the local extraction. sv, AMES and ASMK, which read it, still record it."""
    shortlist = (
        {"shortlist.source": "backbone", "shortlist.backbone": "resnet", "extract.resnet.checkpoint": "random"}
        if source == "backbone"
        else {"shortlist.source": "import", "shortlist.import_dir": str(tmp_path)}
    )
    for ds_dir in ("landmarks-mini", "demo-train", "demo-val"):  # imported global descriptors (AMES reads its splits')
        (tmp_path / ds_dir).mkdir()
        for side in ("db", "query"):
            np.save(tmp_path / ds_dir / f"{side}.npy", np.eye(4, dtype=np.float32))
    base = configured(data_root=str(SHARED_DATASETS), **shortlist)
    other = with_overrides(base, **{"extract.backbone": "dinov2", "extract.dinov2.checkpoint": "random"})
    a, b = Plan(base), Plan(other)
    ds = "landmarks-mini"
    assert a.v_eval(ds) == b.v_eval(ds)
    assert (a.versions(ds), a.global_hyperparameters(ds)) == (b.versions(ds), b.global_hyperparameters(ds))
    assert "extract" not in a.versions(ds) and "extract" not in a.global_hyperparameters(ds)
    for plan, backbone in ((a, "sift"), (b, "dinov2")):
        assert plan.local_hyperparameters()["extract"]["backbone"] == backbone
        assert plan.local_versions(ds) == {"extract": plan.v_local(ds)}
        assert plan.ames_versions(ds, "ames")["extract"] == plan.v_local(ds)
        assert plan.ames_hyperparameters(ds, "ames")["extract"]["backbone"] == backbone
        assert plan.asmk_versions(ds)["extract"] == plan.v_local(ds)
    assert a.v_sv(ds) != b.v_sv(ds) and a.v_eval_ames(ds, "ames") != b.v_eval_ames(ds, "ames")
    # a VLAD shortlist reads the local descriptors: its global ranking records them, and sv adds nothing
    vlad = Plan(configured(data_root=str(SHARED_DATASETS)))
    assert vlad.versions(ds)["extract"] == vlad.v_local(ds) and vlad.local_hyperparameters() == {}
    assert vlad.global_hyperparameters(ds)["extract"]["backbone"] == "sift"


@pytest.mark.parametrize(
    ("overrides", "pattern"),
    [
        ({"benchmark.scale.k": 2000, "benchmark.scale.n_db": 1000}, r"benchmark\.scale\.k: 2000 .* of 1000"),
        ({"benchmark.scale.k": 0}, r"benchmark\.scale\.k: 0 "),
        # 1,000 images cannot train 1024 lists: named before the binary model and store are made for it
        (
            {"benchmark.scale.n_db": 1000},
            r"benchmark\.scale\.ivfpq cannot be trained .*lower benchmark\.scale\.ivfpq\.nlist",
        ),
        ({"benchmark.scale.n_db": 5000, "benchmark.scale.ivfpq.nlist": "auto"}, r"give explicit nlist and train"),
    ],
)
def test_scale_benchmark_settings_are_refused_while_the_dag_is_built(overrides, pattern):
    with pytest.raises(PlanError, match=pattern):
        Plan(configured(**overrides)).scale_benchmark_config()
    # the defaults pass, and m's division of the dimension is left to the job (not known here)
    cfg = Plan(configured(**{"benchmark.scale.ivfpq.m": 7})).scale_benchmark_config()
    assert cfg["n_db"] == 1_000_000 and cfg["ivfpq"]["m"] == 7


def test_a_dataset_with_an_underscore_is_not_read_as_a_cut_method_name(tmp_path):
    """The split hint is for folders that are not there: a collection named my_super with its photos evaluates, and a
    name with nothing close (coll_x_global) is left to image_lists, which says where to put the photos."""
    (tmp_path / "demo_super" / "jpg").mkdir(parents=True)
    plan = Plan(configured(data_root=str(tmp_path)))
    assert plan.evaluation_path("demo_super", "global").startswith("results/eval/demo_super/")
    assert plan._split_hint("coll_x", "global") == ""
    assert plan._split_hint("demo_ames", "binary") == "; did you mean 'results/demo_ames_binary.json'?"


def test_a_result_that_names_a_dataset_and_no_method_says_how_results_are_named(tmp_path):
    # a new user's trial (helper-174): results/my_photos.json said "unknown method 'photos' in my_photos"
    (tmp_path / "my_photos" / "jpg").mkdir(parents=True)
    plan = Plan(configured(data_root=str(tmp_path)))
    want = "results/my_photos.json: 'my_photos' is a dataset, and a result names its method after it: "
    with pytest.raises(PlanError, match=re.escape(want + "results/my_photos_{method}.json (results/my_photos_global")):
        plan.evaluation_path("my", "photos")
    assert plan.result_is_dataset("demo").startswith("results/demo.json: 'demo' is a dataset")  # made, not a folder
    # not a dataset, or not a name a dataset can have: the caller's own message
    assert plan.result_is_dataset("their_photos") is None and plan.result_is_dataset("my photos") is None
    # with the distractors: a dataset where its base is (helper-175: any name ending in +1m was called one)
    assert plan.result_is_dataset("my_photos+1m").startswith("results/my_photos+1m.json: 'my_photos+1m' is a dataset")
    assert plan.result_is_dataset("nosuch+1m") is None and plan.result_is_dataset("+1m") is None
    with pytest.raises(PlanError, match="unknown method 'photos' in their_photos"):
        plan.evaluation_path("their", "photos")


def test_ssp_anchors_split_written_as_its_default_changes_nothing():
    """ssp.anchors.split: null means the training split; writing it out (a new user's trial) re-ran the anchors, the
    adapter's training and the evaluation. Another split is another version."""
    default = Plan(configured())
    spelled = Plan(configured(**{"ssp.anchors.split": "demo-train"}))
    assert spelled.anchors_config() == default.anchors_config() and default.anchors_config()["split"] is None
    assert spelled.v_anchors("demo") == default.v_anchors("demo")
    assert spelled.v_query_model("demo") == default.v_query_model("demo") and spelled.v_ssp("demo") == default.v_ssp(
        "demo"
    )
    other = Plan(configured(**{"ssp.anchors.split": "demo-val"}))
    assert other.anchors_config()["split"] == "demo-val" and other.v_anchors("demo") != default.v_anchors("demo")


def test_ssp_validation_reads_the_validation_split_and_needs_its_ground_truth(tmp_path):
    """ssp.train.select: validation (the default) chooses the adapter's kept epoch on the validation split's light
    queries, its database in the gallery space and its ground truth: all three enter the query model's version.
    A validation split without ground truth is refused naming the key; select: loss reads none of it."""
    plan = Plan(configured())
    v = plan.ssp_validation("demo")
    assert v["split"] == "demo-val" and v["gnd"].startswith("results/lists/demo-val/")
    assert v["light_query"] == plan.local_store("demo-val", "query", plan.v_ssp_local("demo-val"))
    assert v["db"] == plan.global_path("demo-val", "db", "demo")
    loss = Plan(configured(**{"ssp.train.select": "loss"}))
    assert loss.ssp_validation("demo") is None and loss.v_query_model("demo") != plan.v_query_model("demo")
    moved = Plan(configured(**{"ssp.query_sift.k": 64}))  # the validation queries' light features move too
    assert moved.ssp_validation("demo")["light_query"] != v["light_query"]
    (tmp_path / "plain" / "jpg").mkdir(parents=True)
    (tmp_path / "plain" / "jpg" / "a.jpg").write_bytes(b"")
    plain = Plan(configured(data_root=str(tmp_path), **{"ames.validation_split": "plain"}))
    with pytest.raises(PlanError, match=r"ames\.validation_split \('plain', whose mAP ssp\.train\.select"):
        plain.ssp_validation("demo")


def test_one_folder_spelt_two_ways_is_one_dataset_dir(tmp_path, monkeypatch):
    """A new user's trial: data_root=../data and the same folder written absolute, or a trailing slash in
    dataset_dirs, were two spellings in the rules' params and inputs, and each switch re-ran every job in place."""
    (tmp_path / "data" / "lm").mkdir(parents=True)
    (tmp_path / "main").mkdir()
    monkeypatch.chdir(tmp_path / "main")
    want = str(tmp_path / "data" / "lm")
    for cfg in (
        configured(data_root=str(tmp_path / "data")),
        configured(data_root="../data"),
        configured(data_root=str(tmp_path / "main" / ".." / "data") + "/"),
        configured(dataset_dirs={"lm": want + "/"}),
    ):
        assert Plan(cfg).dataset_dir("lm") == want


def test_a_shortlist_or_local_source_without_what_it_reads_is_a_config_problem(tmp_path):
    """shortlist.source backbone over sift, import or ames_nn without import_dir, ames_import without its dir: each
    came alone in Snakemake's InputFunctionException frame, once a job reading it was planned."""
    bounds = {"extract.min_chunk_images": 100, "extract.max_chunk_images": 1000}  # config.yaml's (not in BASE)
    cfg = configured(
        data_root=str(tmp_path), **bounds, **{"extract.backbone": "ames_import", "shortlist.source": "backbone"}
    )
    problems = Plan(cfg).config_problems()
    assert [line.split(":")[0] for line in problems] == ["shortlist.source", "extract.backbone"]
    assert "needs a deep backbone" in problems[0] and "needs extract.ames_import.dir" in problems[1]
    assert "gallery_local.hdf5" in problems[1]
    for source, held in (("import", "db.npy and query.npy"), ("ames_nn", "{dataset}/nn_dinov2.pkl")):
        cfg = configured(data_root=str(tmp_path), **bounds, **{"shortlist.source": source})
        (problem,) = Plan(cfg).config_problems()
        assert problem.startswith(f"shortlist.source: {source} needs shortlist.import_dir") and held in problem
        cfg["shortlist"]["import_dir"] = str(tmp_path)  # its files are checked per dataset, while jobs are planned
        assert Plan(cfg).config_problems() == []
    # left out as a nested --config leaves it (text) or as an empty value (helper-92: both got past the check)
    for unset in ("", "null"):
        cfg = configured(data_root=str(tmp_path), **bounds, **{"shortlist.source": "ames_nn"})
        cfg["shortlist"].update(import_dir=unset, backbone="resnet")
        cfg["extract"].update(backbone="ames_import", ames_import={"dir": unset, "desc": "dinov2"})
        cfg["extract"]["resnet"] = {"checkpoint": unset}
        cfg["shortlist"]["source"] = "ames_nn"
        keys = [line.split(":")[0] for line in Plan(cfg).config_problems()]
        assert keys == ["shortlist.source", "extract.backbone"], (unset, keys)  # no resnet: ames_nn extracts none
        cfg["extract"]["backbone"] = "resnet"
        keys = [line.split(":")[0] for line in Plan(cfg).config_problems()]
        assert keys == ["extract.backbone", "shortlist.source"], (unset, keys)
    cfg = configured(data_root=str(tmp_path), **bounds, **{"shortlist.source": "backbone"})
    cfg["extract"].update(backbone="ames_import", ames_import={"dir": str(tmp_path), "desc": "dinov2"})
    (problem,) = Plan(cfg).config_problems()
    assert "ames_import has no global descriptor" in problem  # it said sift's
    cfg = configured(
        data_root=str(tmp_path), **bounds, **{"extract.backbone": "dinov2", "shortlist.source": "backbone"}
    )
    assert Plan(cfg).config_problems() == []


def test_an_unsupervised_fit_named_in_dataset_dirs_names_that_key(tmp_path):
    """A missing folder placed by dataset_dirs was said with data_root, which did not place it."""
    bounds = {"extract.min_chunk_images": 100, "extract.max_chunk_images": 1000}  # config.yaml's (not in BASE)
    where = {"dataset_dirs": {"fitset": str(tmp_path / "x")}}
    cfg = configured(data_root=str(tmp_path), unsupervised_fit="fitset", **where, **bounds)
    (problem,) = Plan(cfg).config_problems()
    assert f"no dataset folder {tmp_path / 'x'} exists (dataset_dirs.fitset)" in problem
    assert "data_root" not in problem
    assert "did you mean" not in problem  # it offered the name given (helper-95's trial)
    cfg["unsupervised_fit"] = "fitest"  # nor a dataset_dirs name whose folder is missing too
    (problem,) = Plan(cfg).config_problems()
    assert "did you mean" not in problem
    (tmp_path / "x").mkdir()
    cfg["unsupervised_fit"] = "fitest"  # a dataset_dirs name mistyped: the nearest offered
    (problem,) = Plan(cfg).config_problems()
    assert "did you mean 'fitset'?" in problem


def test_a_mistyped_unsupervised_fit_is_said_whatever_the_training_split(tmp_path):
    """The name was checked through fit_split(training_split): an invalid training_split ('revisitop1m+1m') was said
    in its place, and the mistyped name only once that was fixed (helper-92's trial)."""
    bounds = {"extract.min_chunk_images": 100, "extract.max_chunk_images": 1000}  # config.yaml's (not in BASE)
    cfg = configured(data_root=str(tmp_path), unsupervised_fit="demo-trian", training_split="revisitop1m+1m", **bounds)
    (problem,) = Plan(cfg).config_problems()
    assert problem.startswith("unsupervised_fit: 'demo-trian'") and "did you mean 'demo-train'?" in problem
    cfg["unsupervised_fit"] = "demo-train"
    assert Plan(cfg).config_problems() == []  # a training_split nothing reads is said by the targets that read it
    assert Plan(cfg).fit_split("demo") == "demo-train"


def test_the_checks_beside_a_schema_refusal_are_all_made_where_they_can_be(tmp_path):
    """problems_beside_schema: the checks said in the run the schema refuses; none where a refused value stops them;
    a dataset_dirs name that cannot be planned ('revisitop1m+1m', refused by the schema) does not replace the
    unsupervised_fit line by its own, keyless one (helper-96's review)."""
    bounds = {"extract.min_chunk_images": 5, "extract.max_chunk_images": 2}
    cfg = configured(data_root=str(tmp_path), unsupervised_fit="selff", **bounds)
    both = problems_beside_schema(cfg)
    assert [line.split(" ")[0] for line in both] == ["extract.min_chunk_images", "unsupervised_fit:"]
    cfg["unsupervised_fit"] = 5  # a value of the wrong type stops the checks: the schema's line names it
    assert problems_beside_schema(cfg) == []
    # ... unless it is set back to its default first (the Snakefile does: with_defaults), so the others are said
    (line,) = problems_beside_schema(with_defaults(cfg, refused_keys("  unsupervised_fit: 5 is not of type"), BASE))
    assert line.startswith("extract.min_chunk_images (5) is above extract.max_chunk_images (2)")
    cfg = configured(data_root=str(tmp_path), unsupervised_fit="nosuch", **{**bounds, "extract.max_chunk_images": 9})
    cfg["dataset_dirs"] = {"revisitop1m+1m": str(tmp_path)}
    (line,) = problems_beside_schema(cfg)
    assert line.startswith("unsupervised_fit: 'nosuch' is not self, training or cross")


def test_a_folder_named_like_a_distractor_target_is_said_not_to_be_read(tmp_path):
    """'x+1m' is dataset 'x' with the R1M distractors: a folder named 'x+1m' got "dataset 'x': folder ... not found",
    nothing saying why it was not read (helper-98's trial)."""
    (tmp_path / "x+1m" / "jpg").mkdir(parents=True)
    plan = Plan(configured(data_root=str(tmp_path)))
    assert plan.distractor_base("x+1m") == "x"
    with pytest.raises(PlanError, match=r"'x\+1m' is read as 'x' with the revisitop1m distractors appended, so the fo"):
        plan.folder_source("x")
    with pytest.raises(PlanError) as missing:
        plan.folder_source("y")
    assert "+1m" not in str(missing.value)
    # a name close enough to be offered by "did you mean" is not offered as well as said to be renamed (helper-100)
    (tmp_path / "mydata+1m" / "jpg").mkdir(parents=True)
    with pytest.raises(PlanError) as e:
        plan.folder_source("mydata")
    assert "did you mean" not in str(e.value) and "'mydata+1m' is read as 'mydata' with" in str(e.value)
    with pytest.raises(PlanError) as e:  # a target 'mydata+1M' (not the +1m suffix) is not offered 'mydata+1m'
        plan.folder_source("mydata+1M")
    assert "did you mean" not in str(e.value)


def test_the_database_side_of_a_folder_moved_away_is_named_not_switched(tmp_path):
    """A plain folder's database side reads its own db.json; with the folder moved away it switched to lists.json (a
    file never made for a collection only searched), and a search asked for again ran with every thumbnail crossed
    out, exit status 0 (helper-133). The folder is named as not found; a dataset a rule downloads is not refused."""
    (tmp_path / "coll" / "jpg").mkdir(parents=True)
    plan = Plan(configured(data_root=str(tmp_path)))
    listed = plan.side_lists_json("coll", "db")
    assert listed == plan.database_json("coll") and listed.endswith("/db.json")
    (tmp_path / "coll").rename(tmp_path / "elsewhere")
    with pytest.raises(PlanError, match=f"folder {tmp_path / 'coll'} not found"):
        plan.side_lists_json("coll", "db")
    assert plan.side_lists_json("coll", "query") == plan.lists_json("coll")  # its queries' side: the lists
    assert plan.side_lists_json("roxford5k", "db") == plan.lists_json("roxford5k")  # downloaded by its rule
    assert plan.side_lists_json("demo", "db") == plan.lists_json("demo")
    with pytest.raises(PlanError, match=f"folder {tmp_path / 'coll'} not found"):  # with the distractors (helper-134)
        plan.side_lists_json("coll+1m", "db")
    assert plan.side_lists_json("demo+1m", "db") == plan.lists_json("demo+1m")
    # a link whose folder moved names its target (it read as if nothing were there)
    (tmp_path / "coll").symlink_to(tmp_path / "gone")
    with pytest.raises(PlanError, match=f"a symbolic link to {tmp_path / 'gone'}, which does not exist") as e:
        plan.side_lists_json("coll", "db")
    assert "point the link at the folder that holds them" in str(e.value) and "put the images" not in str(e.value)


def test_a_folder_read_before_is_told_as_moved_not_offered_another_name(tmp_path, monkeypatch):
    """A folder moved away was offered the nearest other folder ('ilg' for 'il', helper-138), whose results the hint
    would have computed. Where its lists were made here before, the message says so and offers no other name."""
    (tmp_path / "data" / "ilg" / "jpg").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)  # the working directory, whose results/ Snakemake writes
    plan = Plan(configured(data_root=str(tmp_path / "data")))
    with pytest.raises(PlanError, match=r"; did you mean 'ilg'\?$"):  # a new name: a typo, perhaps
        plan.folder_source("il")
    (tmp_path / "results" / "lists" / "il").mkdir(parents=True)
    with pytest.raises(PlanError) as e:
        plan.folder_source("il")
    assert "did you mean" not in str(e.value), str(e.value)
    assert str(e.value).endswith(
        "; it was read here before (results/lists/il/): moved or renamed? Its results are kept, and are found again "
        "if it comes back to this place"
    )


def test_a_gnd_csv_renamed_moves_the_lists_version_an_edit_does_not(tmp_path):
    """A gnd.csv renamed (`gnd (1).csv`) or removed left the folder's version as it was, and its evaluations were
    written again without metrics over the ones with (helper-134). Whether the ground truth is a gnd.csv is part of
    the lists' version; its rows are not (an edit leaves the database side alone)."""
    folder = tmp_path / "gc"
    (folder / "jpg").mkdir(parents=True)
    (folder / "gnd.csv").write_text("query,image,kind\na.jpg,b.jpg,easy\n")
    plan = Plan(configured(data_root=str(tmp_path)))
    with_csv = plan.v_lists("gc")
    (folder / "gnd.csv").write_text("query,image,kind\na.jpg,c.jpg,easy\n")
    assert plan.v_lists("gc") == with_csv
    evaluated = plan.v_eval("gc")
    (folder / "gnd.csv").rename(folder / "gnd (1).csv")
    assert plan.v_lists("gc") != with_csv and plan.v_eval("gc") != evaluated  # the evaluations go beside
    (folder / "gnd (1).csv").rename(folder / "gnd.csv")
    assert plan.v_lists("gc") == with_csv and plan.v_eval("gc") == evaluated  # and are found again


def test_a_gnd_json_removed_beside_image_list_moves_the_lists_version(tmp_path):
    """A gnd.json removed (or renamed gnd.json.bak) from a folder listed by image_list.txt left its version as it
    was: the folder is not scanned, so the image suffixes did not move it, and its evaluations were written again
    without metrics over the ones with. The ground truth's file name is part of the version; putting the file back
    finds the earlier evaluations, and a pickle left beside it reads as another ground truth."""
    folder = tmp_path / "gj"
    (folder / "jpg").mkdir(parents=True)
    (folder / "image_list.txt").write_text("jpg/a.jpg\njpg/b.jpg\n")
    (folder / "gnd.json").write_text("{}")
    plan = Plan(configured(data_root=str(tmp_path)))
    with_json, evaluated = plan.v_lists("gj"), plan.v_eval("gj")
    (folder / "gnd.json").rename(folder / "gnd.json.bak")
    without = plan.v_lists("gj")
    assert without != with_json and plan.v_eval("gj") != evaluated
    (folder / "gnd_gj.pkl").write_bytes(b"")
    assert plan.v_lists("gj") not in (with_json, without)
    (folder / "gnd_gj.pkl").unlink()
    (folder / "gnd.json.bak").rename(folder / "gnd.json")
    assert plan.v_lists("gj") == with_json and plan.v_eval("gj") == evaluated
    # the folder moved away is neither: it had the version of the folder without its ground truth, whose evaluations
    # (made by the rename above) were then published in place of the ones with metrics, exit status 0 (helper-138)
    folder.rename(tmp_path / "away")
    assert plan.v_lists("gj") not in (with_json, without)
    (tmp_path / "away").rename(folder)
    assert plan.v_lists("gj") == with_json


def test_a_published_files_datasets_and_whether_their_folder_is_gone(tmp_path):
    """After the stale-file warnings, the remedy for one whose folder moved (delete it) is said only where a stale
    file's dataset folder is gone (helper-135 asked for it; helper-139 saw it after every stale warning)."""
    methods = [*p.METHODS, "compare"]
    assert published_datasets("results/x_ames_binary.json", methods) == ["x"]
    assert published_datasets("results/my_coll_compare.json", methods) == ["my_coll"]
    assert published_datasets("results/report/coll.html", methods) == ["coll"]
    assert published_datasets("results/search/coll/newp.json", methods) == ["coll", "newp"]
    assert published_datasets("results/nounderscore.json", methods) == []
    (tmp_path / "coll" / "jpg").mkdir(parents=True)
    plan = Plan(configured(data_root=str(tmp_path)))
    assert not plan.folder_missing("coll") and plan.folder_missing("newp") and plan.folder_missing("newp+1m")
    assert not any(plan.folder_missing(d) for d in ("demo", "roxford5k", "revisitop1m", "coll+1m"))


def test_a_folder_read_before_from_elsewhere_names_the_setting_that_reads_it(tmp_path, monkeypatch):
    """A run without the earlier runs' --config data_root was told "moved or renamed?" of a folder that was where it
    had been read (helper-164). The newest lists' root is named, and where it is there, the setting that reads it."""
    (tmp_path / "data" / "coll" / "jpg").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    for ver, root, mtime in (("0" * 8, "/elsewhere/coll", 1), ("1" * 8, str(tmp_path / "data" / "coll"), 2)):
        lists = tmp_path / "results" / "lists" / "coll" / ver / "lists.json"
        lists.parent.mkdir(parents=True)
        lists.write_text(json.dumps({"dataset": "coll", "root": root, "db": [], "query": []}))
        os.utime(lists, (mtime, mtime))  # the newest by mtime is the one named
    plan = Plan(configured(data_root=str(tmp_path / "nowhere")))
    with pytest.raises(PlanError) as e:
        plan.folder_source("coll")
    assert str(e.value).endswith(
        f"; it was read here before from {tmp_path / 'data' / 'coll'} (results/lists/coll/), which is there: "
        f"--config data_root={tmp_path / 'data'} reads it again"
    ), str(e.value)
    # named another way in dataset_dirs, that setting is the one to give
    plan = Plan(configured(data_root=str(tmp_path / "data"), dataset_dirs={"coll": str(tmp_path / "gone")}))
    with pytest.raises(PlanError) as e:
        plan.folder_source("coll")
    assert f"dataset_dirs: {{coll: {tmp_path / 'data' / 'coll'}}} in a --configfile reads it again" in str(e.value)
    # gone from there too: where it was, and the question
    (tmp_path / "data" / "coll" / "jpg").rmdir()
    (tmp_path / "data" / "coll").rmdir()
    plan = Plan(configured(data_root=str(tmp_path / "data")))
    with pytest.raises(PlanError) as e:
        plan.folder_source("coll")
    assert f"read here before from {tmp_path / 'data' / 'coll'} (results/lists/coll/): moved or renamed?" in str(
        e.value
    )
