"""ASMK on the tiny demo: results/demo_asmk.json in the results contract, its state in our formats, and an ASMK
shortlist (shortlist.source: asmk) re-ranked by spatial verification."""

import re

import h5py
import numpy as np
import pytest
import yaml

from conftest import TINY, copy_tree, load_json, snakemake

pytestmark = pytest.mark.workflow


def job_stats(dry_run_output):
    m = re.search(r"Job stats:\njob\s+count\n[-\s]+\n(.*?)\ntotal", dry_run_output, re.S)
    return {name: int(n) for name, n in (line.split() for line in m.group(1).strip().splitlines())}


@pytest.fixture(scope="module")
def asmk_run(tiny_run):
    snakemake(tiny_run, "results/demo_asmk.json", "--configfile", str(TINY))
    return tiny_run


def test_asmk_results_contract_and_state_in_our_formats(asmk_run):
    res = load_json(asmk_run / "results" / "demo_asmk.json")
    glob = load_json(asmk_run / "results" / "demo_global.json")
    assert res["method"] == "asmk" and res["n_queries"] == glob["n_queries"]
    for key in (
        "metrics",
        "per_query_ap",
        "baseline",
        "paired_difference",
        "hyperparameters",
        "versions",
        "artifacts",
        "timing",
        "first_stage",
    ):
        assert key in res, key
    assert res["baseline"]["metrics"] == glob["metrics"]
    assert res["artifacts"]["baseline_knn"] == glob["artifacts"]["knn"] != res["artifacts"]["knn"]
    assert res["per_query_ap"]["M"]["baseline_ap"] == glob["per_query_ap"]["M"]["ap"]
    for p in "EMH":
        d = res["paired_difference"][p]
        assert d["ci95"][0] <= d["mean"] <= d["ci95"][1]
    t = res["timing"]["ms_per_query"]
    assert t["first_stage"] > 0 and t["rerank"] == 0 and res["timing"]["offline_seconds"] > 0
    assert res["hyperparameters"]["asmk"]["alpha"] == 3.0 and res["hyperparameters"]["global"]["fit_split"] == "demo"
    # what was used, as the inverted file records it: the tiny preset's 64 words, assignments 1 and 5 (within them)
    with h5py.File(asmk_run / res["artifacts"]["knn"], "r") as f:
        words = int(f.attrs["codebook_size"])
    assert res["first_stage"]["codebook_size"] == words == res["hyperparameters"]["asmk"]["codebook"]["k"]
    assert (res["first_stage"]["db_multiple_assignment"], res["first_stage"]["query_multiple_assignment"]) == (1, 5)
    # nothing of ASMK is fitted on the training split: it is no hyperparameter, and changing it re-ran the
    # evaluation in place (a new user's trial)
    assert "training_split" not in res["hyperparameters"]
    other = snakemake(
        asmk_run, "-n", "results/demo_asmk.json", "--configfile", str(TINY), "--config", "training_split=demo-val"
    )
    assert "Nothing to be done" in other.stdout, other.stdout[-2000:]
    v = res["versions"]

    # the codebook: fitted on the training split, enough descriptors per word, a plain npz
    manifest = load_json(asmk_run / f"results/asmk_codebook/demo/{v['asmk_codebook']}/manifest.json")
    # unsupervised_fit: self: the words come from the demo's own database images, as the VLAD codebook
    assert manifest["fitted_on"] == "demo" and manifest["points_per_word"] >= 39
    assert res["fitted_on"]["asmk_codebook"]["split"] == "demo"
    with np.load(asmk_run / f"results/asmk_codebook/demo/{v['asmk_codebook']}/codebook.npz", allow_pickle=False) as z:
        assert z["centroids"].shape == (64, 128)
    # the inverted file: our HDF5, with no pickle anywhere in the ASMK stages
    with h5py.File(asmk_run / f"results/asmk_ivf/demo/{v['asmk_ivf']}/ivf.h5", "r") as f:
        assert f.attrs["kind"] == "asmk_ivf" and f["codes"].dtype == np.uint32 and f["codes"].shape[1] == 4
        assert f["n_words"].shape == (glob["n_db"],) and f.attrs["codebook_size"] == 64
    for stage in ("asmk_codebook", "asmk_ivf", "asmk_search"):
        assert not list((asmk_run / "results" / stage).rglob("*.pkl")), stage
    # the ranking is the ASMK search's, a full one, ordered by descending score
    with h5py.File(asmk_run / res["artifacts"]["knn"], "r") as f:
        ids, sims = f["ids"][:], f["sims"][:]
    with h5py.File(asmk_run / res["artifacts"]["ranking"], "r") as f:
        assert (f["ranks"][:] == ids).all()
    assert ids.shape == (glob["n_queries"], glob["n_db"]) and (np.diff(sims, axis=1) <= 0).all()
    assert (np.sort(ids, axis=1) == np.arange(glob["n_db"])).all()


def test_a_kernel_setting_reruns_the_search_not_the_inverted_file(asmk_run, tmp_path):
    """alpha and the threshold are the search's selective kernel: the inverted file (binarised residuals per image and
    word) does not depend on them. It was re-built in place when they changed (the whole kernel was its param)."""
    cfg = tmp_path / "alpha.yaml"
    cfg.write_text("asmk:\n  alpha: 2.0\n  similarity_threshold: 0.1\n")
    plan = job_stats(snakemake(asmk_run, "-n", "results/demo_asmk.json", "--configfile", str(TINY), str(cfg)).stdout)
    assert plan == {"asmk_search": 1, "evaluate_asmk": 1, "publish": 1}


def test_sv_reranks_an_asmk_shortlist(asmk_run, tmp_path):
    wd = copy_tree(asmk_run, tmp_path / "asmk_shortlist")
    cfg = tmp_path / "asmk_shortlist.yaml"
    cfg.write_text(yaml.safe_dump({"shortlist": {"source": "asmk"}}))
    # methods that need global descriptors say so
    refused = snakemake(wd, "-n", "results/demo_aqe.json", "--configfile", str(TINY), str(cfg), check=False)
    assert refused.returncode != 0 and "shortlist.source: asmk" in refused.stdout + refused.stderr
    plan = job_stats(snakemake(wd, "-n", "results/demo_sv.json", "--configfile", str(TINY), str(cfg)).stdout)
    assert plan["asmk_shortlist"] == 1 and "asmk_codebook" not in plan and "asmk_ivf" not in plan  # reused
    assert "knn" not in plan and "extract_local" not in plan
    snakemake(
        wd,
        "results/demo_sv.json",
        "results/demo_global.json",
        "results/demo_asmk.json",
        "--configfile",
        str(TINY),
        str(cfg),
    )
    sv = load_json(wd / "results" / "demo_sv.json")
    glob = load_json(wd / "results" / "demo_global.json")
    asmk = load_json(wd / "results" / "demo_asmk.json")
    before = load_json(asmk_run / "results" / "demo_asmk.json")
    assert glob["hyperparameters"]["shortlist"] == {"source": "asmk"} and "asmk_search" in glob["versions"]
    assert sv["artifacts"]["knn"] == glob["artifacts"]["knn"] == asmk["artifacts"]["knn"]
    # the global method is the ASMK ranking now, with the same metrics as the asmk method had on the VLAD run
    assert glob["metrics"] == before["metrics"] == sv["baseline"]["metrics"]
    inl = h5py.File(wd / sv["artifacts"]["ranking"], "r")["inliers"][:]
    assert inl.shape == (glob["n_queries"], min(100, glob["n_db"])) and inl.max() > 0
    assert sv["versions"]["asmk_search"] == before["versions"]["asmk_search"]
    # every method reading the ASMK shortlist records the words and assignments it was ranked with (global and sv
    # had only the configuration's asmk.codebook.k, the most: a new user's trial); a VLAD shortlist records none
    assert sv["first_stage"] == glob["first_stage"] == asmk["first_stage"]
    assert glob["first_stage"]["codebook_size"] == 64 and glob["first_stage"]["knn"] == glob["artifacts"]["knn"]
    assert "first_stage" not in load_json(asmk_run / "results" / "demo_global.json")


def test_report_lists_asmk(asmk_run, tmp_path):
    """report.methods may name asmk (its schema refused it): the page has its row, with the results JSON's Medium."""
    override = tmp_path / "report.yaml"
    override.write_text("report:\n  methods: [global, asmk]\n")
    snakemake(asmk_run, "results/report/demo.html", "--configfile", str(TINY), str(override))
    page = (asmk_run / "results" / "report" / "demo.html").read_text()
    res = load_json(asmk_run / "results" / "demo_asmk.json")
    assert "<tr><td>asmk</td>" in page and f"{res['metrics']['mAP']['M']:.2f}" in page
