"""Spatial verification in the workflow (tiny preset): results contract, only the shortlist moves, re-run plan."""

import csv

import h5py
import numpy as np
import pytest

from conftest import TINY, load_json, snakemake

pytestmark = pytest.mark.workflow


def test_sv_results_contract(tiny_run, tmp_path):
    snakemake(tiny_run, "results/demo_sv.json", "--configfile", str(TINY))
    res = load_json(tiny_run / "results" / "demo_sv.json")
    glob_res = load_json(tiny_run / "results" / "demo_global.json")
    assert res["method"] == "sv" and res["baseline"]["metrics"] == glob_res["metrics"]
    assert res["versions"]["knn"] == glob_res["versions"]["knn"]
    diff = res["paired_difference"]["M"]
    ap, base = res["per_query_ap"]["M"]["ap"], res["per_query_ap"]["M"]["baseline_ap"]
    assert diff["mean"] == pytest.approx(100 * np.mean([a - b for a, b in zip(ap, base) if a is not None]))
    with h5py.File(tiny_run / res["artifacts"]["ranking"], "r") as f:
        ranks, inliers = f["ranks"][:], f["inliers"][:]
    with h5py.File(tiny_run / glob_res["artifacts"]["ranking"], "r") as f:
        global_ranks = f["ranks"][:]
    k = inliers.shape[1]
    assert k == min(100, global_ranks.shape[1])
    np.testing.assert_array_equal(ranks[:, k:], global_ranks[:, k:])
    for r in range(len(ranks)):
        # the verified order is by inliers, descending
        pos = {int(j): c for c, j in enumerate(global_ranks[r, :k])}
        counts = [inliers[r, pos[int(j)]] for j in ranks[r, :k]]
        assert counts == sorted(counts, reverse=True)
    assert res["timing"]["pairs"] == len(ranks) * k
    # the neighbour CSV lists each verified image's inlier count (empty beyond the verified top k)
    lists = load_json(tiny_run / res["artifacts"]["lists"])
    with open(tiny_run / res["artifacts"]["neighbours_csv"]) as fh:
        rows = list(csv.DictReader(fh))
    index = {d["path"]: j for j, d in enumerate(lists["db"])}
    qindex = {q["path"]: i for i, q in enumerate(lists["query"])}
    for row in rows:
        i, j, rank = qindex[row["query"]], index[row["image"]], int(row["rank"])
        assert j == ranks[i, rank - 1]
        pos = {int(x): c for c, x in enumerate(global_ranks[i, :k])}
        assert row["inliers"] == (str(inliers[i, pos[j]]) if j in pos else "")
    assert any(row["inliers"] not in ("", "0") for row in rows)
    # a change of the RANSAC threshold re-runs only the verification
    override = tmp_path / "sv.yaml"
    override.write_text("sv:\n  threshold: 8.0\n")
    out = snakemake(tiny_run, "-n", "results/demo_sv.json", "--configfile", str(TINY), str(override)).stdout
    assert "rule evaluate_sv" in out and "rule knn" not in out and "rule extract_local" not in out
    # more query descriptors than extraction kept (tiny: 128) read the 128: nothing re-runs, and it is said
    override.write_text("sv:\n  q_desc: 500\n")
    run = snakemake(tiny_run, "-n", "results/demo_sv.json", "--configfile", str(TINY), str(override))
    assert "rule evaluate_sv" not in run.stdout
    assert "sv.q_desc (500) is more than extract.sift.k (128)" in run.stdout + run.stderr


@pytest.mark.parametrize("method", ["aqe", "adba"])
def test_query_expansion_methods(tiny_run, method):
    snakemake(tiny_run, f"results/demo_{method}.json", "--configfile", str(TINY))
    res = load_json(tiny_run / "results" / f"demo_{method}.json")
    glob_res = load_json(tiny_run / "results" / "demo_global.json")
    assert res["method"] == method and res["baseline"]["metrics"] == glob_res["metrics"]
    assert ("adba" in res["hyperparameters"]) == (method == "adba")  # aqe names no adba settings
    with h5py.File(tiny_run / res["artifacts"]["ranking"], "r") as f:
        ranks = f["ranks"][:]
    assert all(sorted(r) == list(range(res["n_db"])) for r in ranks)  # a full ranking of the database
