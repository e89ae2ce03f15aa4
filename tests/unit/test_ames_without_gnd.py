"""AMES on a collection without ground truth (a folder of photos): the shortlist is re-ranked at the point chosen on
the validation split and written without metrics; it used to fail at the last job, after the logits."""

import csv

import h5py
import numpy as np

from conftest import evaluation_context
from retrieval.runtime import read_json, write_json
from retrieval.stages.ames_evaluate import evaluate_ames_stage
from retrieval.stores.global_store import write_neighbours


def _dataset(root, ids, relevant, gnd):
    """lists, gnd, knn and logits of 3 queries x 4 images: the logits say +5 for the relevant images, -5 otherwise;
    the global order puts them late."""
    root.mkdir()
    n_q, n_db = ids.shape
    write_json(root / "lists.json", {
        "query": [{"name": f"q{i}", "path": f"q{i}.jpg"} for i in range(n_q)],
        "db": [{"name": f"d{j}", "path": f"d{j}.jpg"} for j in range(n_db)],
        "crop_queries": False,
    })  # fmt: skip
    write_json(root / "gnd.json", gnd)
    sims = np.tile(np.linspace(0.9, 0.6, n_db, dtype=np.float32), (n_q, 1))
    write_neighbours(root / "knn.h5", ids, sims, n_db=n_db)
    pair_db = np.sort(ids, axis=1).astype(np.int32)
    logit = np.array([[5.0 if j in relevant[i] else -5.0 for j in row] for i, row in enumerate(pair_db)], np.float32)
    with h5py.File(root / "logits.h5", "w") as h:
        h.create_dataset("pair_db", data=pair_db)
        h.create_dataset("logits", data=logit)
        h.attrs.update({"kind": "ames_logits", "max_rerank": n_db, "seconds": 0.0, "n_pairs": logit.size})


def test_a_collection_without_ground_truth_is_re_ranked_at_the_validation_point(tmp_path):
    ids = np.array([[1, 2, 0, 3], [0, 1, 3, 2], [3, 2, 1, 0]])
    relevant = [{0, 3}, {3}, {0}]
    val_gnd = {"gnd": [{"easy": sorted(r), "hard": [], "junk": []} for r in relevant]}
    _dataset(tmp_path / "val", ids, relevant, val_gnd)
    _dataset(tmp_path / "photos", ids, relevant, None)
    write_json(tmp_path / "global.json", {})
    p = tmp_path / "photos"
    ctx = evaluation_context(
        p, "ames", dataset="photos", out_ranking=p / "r.h5", out_csv=p / "n.csv", csv_top=4, preset="tiny",
        baseline_json=tmp_path / "global.json",
    )  # fmt: skip
    v = tmp_path / "val"
    val_paths = {"knn": v / "knn.h5", "gnd": v / "gnd.json", "lists": v / "lists.json", "logits": v / "logits.h5"}
    grid = {"num_rerank": [4], "lambda": [1.0, 0.0], "gamma": [1.0]}  # lambda 1: the global order; 0: the logits
    evaluate_ames_stage(
        ctx, p / "logits.h5", p / "knn.h5", p / "grid.csv", "ames", grid, "validation", {}, val_paths, "val", "none"
    )
    r = read_json(p / "ames.json")
    assert r["metrics"] is None and r["oracle"] is None and r["grid"] == [] and "paired_difference" not in r
    assert r["chosen"]["lambda"] == 0.0 and r["chosen"]["selected_on"] == "val"  # chosen where the logits win
    with h5py.File(p / "r.h5") as f:
        ranks = f["ranks"][:]
    for i, rel in enumerate(relevant):  # the relevant images first, as the logits say, then the global order
        assert set(ranks[i, : len(rel)].tolist()) == rel
        assert [j for j in ranks[i] if j not in rel] == [j for j in ids[i] if j not in rel]
    with open(p / "n.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 12 and rows[0]["image"] == f"d{ranks[0, 0]}.jpg"
    with open(p / "grid.csv") as fh:
        assert fh.read().strip() == "num_rerank,lambda,gamma"  # no rows: nothing to evaluate


def test_a_query_without_features_scores_zero_in_the_grid_as_in_the_metrics(tmp_path):
    """The grid and its oracle scored a featureless query on its shortlist (AP 1 here, where its logits found its
    positives) while the evaluated point scored it AP 0: the grid's row of the chosen point disagreed with
    `metrics`, and the validation choice could lean on a query that retrieves nothing."""
    ids = np.array([[1, 2, 0, 3], [0, 1, 3, 2], [3, 2, 1, 0]])
    relevant = [{0, 3}, {3}, {0}]
    gnd = {"gnd": [{"easy": sorted(r), "hard": [], "junk": []} for r in relevant]}
    _dataset(tmp_path / "val", ids, relevant, gnd)
    _dataset(tmp_path / "set", ids, relevant, gnd)
    p, v = tmp_path / "set", tmp_path / "val"
    sims = np.tile(np.linspace(0.9, 0.6, 4, dtype=np.float32), (3, 1))
    for d in (p, v):  # query 0 has no features in both
        write_neighbours(d / "knn.h5", ids, sims, featureless=(np.array([True, False, False]), np.zeros(4, bool)))
    write_json(tmp_path / "global.json", {})
    ctx = evaluation_context(p, "ames", dataset="set", csv_top=4, preset="tiny", baseline_json=None)
    val_paths = {"knn": v / "knn.h5", "gnd": v / "gnd.json", "lists": v / "lists.json", "logits": v / "logits.h5"}
    grid = {"num_rerank": [4], "lambda": [1.0, 0.0], "gamma": [1.0]}
    evaluate_ames_stage(
        ctx, p / "logits.h5", p / "knn.h5", p / "grid.csv", "ames", grid, "validation", {}, val_paths, "val", "none"
    )
    r = read_json(p / "ames.json")
    assert r["queries_without_features"] == ["q0"] and r["per_query_ap"]["M"]["ap"][0] == 0.0
    with open(p / "grid.csv") as fh:
        rows = {float(row["lambda"]): float(row["mAP_M"]) for row in csv.DictReader(fh)}
    # lambda 0 ranks every query's positives first: 1, 1 and the featureless query's 0
    assert rows[0.0] == r["metrics"]["mAP"]["M"] == r["oracle"]["mAP_M"] == round(200 / 3, 4)
    assert r["chosen"]["validation_mAP"]["M"] == round(200 / 3, 4)


def test_a_fixed_point_deeper_than_the_grid_gets_evidence_that_deep(tmp_path):
    """select: fixed with num_rerank beyond the grid's largest and a geometric weight: sv's evidence was sized by the
    grid, and the fused score failed to broadcast (16, 80) against (16, 50) after the logits were computed."""
    ids = np.array([[1, 2, 0, 3], [0, 1, 3, 2], [3, 2, 1, 0]])
    relevant = [{0, 3}, {3}, {0}]
    gnd = {"gnd": [{"easy": sorted(r), "hard": [], "junk": []} for r in relevant]}
    _dataset(tmp_path / "set", ids, relevant, gnd)
    p = tmp_path / "set"
    write_json(p / "sv.json", {"artifacts": {"knn": str(p / "knn.h5")}, "timing": {}})
    inliers = np.array([[0, 0, 40, 40], [0, 0, 40, 0], [0, 0, 0, 40]], np.int32)  # the relevant images verified
    with h5py.File(p / "sv_ranking.h5", "w") as h:
        h.create_dataset("inliers", data=inliers)
        h.attrs["kind"] = "ranking"
    ctx = evaluation_context(p, "ames", dataset="set", csv_top=4, preset="tiny", baseline_json=None)
    fixed = {"lambda": 1.0, "gamma": 1.0, "num_rerank": 4, "geometry_weight": 1.0}
    evaluate_ames_stage(
        ctx, p / "logits.h5", p / "knn.h5", p / "grid.csv", "ames", {"num_rerank": [2], "lambda": [1.0], "gamma": [1.0]},
        "fixed", fixed, None, None, "none", geometry={"inliers_cap": 20, "weight": [0.0, 1.0]},
        sv_paths={"json": p / "sv.json", "ranking": p / "sv_ranking.h5"},
    )  # fmt: skip
    r = read_json(p / "ames.json")
    assert r["chosen"]["num_rerank"] == 4 and r["metrics"]["mAP"]["M"] == 100.0  # the inliers lift the positives
    assert r["chosen"]["num_rerank_applied"] == 4
    # a point deeper than the 4-image database: the whole shortlist is re-ranked, and the results say how deep
    evaluate_ames_stage(
        ctx, p / "logits.h5", p / "knn.h5", p / "grid.csv", "ames", {"num_rerank": [2], "lambda": [1.0], "gamma": [1.0]},
        "fixed", {**fixed, "num_rerank": 100}, None, None, "none", geometry={"inliers_cap": 20, "weight": [0.0, 1.0]},
        sv_paths={"json": p / "sv.json", "ranking": p / "sv_ranking.h5"},
    )  # fmt: skip
    deep = read_json(p / "ames.json")["chosen"]
    assert deep["num_rerank"] == 100 and deep["num_rerank_applied"] == 4


def test_a_fixed_point_gives_the_binary_model_its_own_lambda_and_gamma(tmp_path):
    """select: fixed used ames.fixed's lambda / gamma for ames_binary too, so the paper preset evaluated the binary
    student at DINOv2's point (0.50 / 0.20) instead of its own published one (0.35 / 0.10)."""
    ids = np.array([[1, 2, 0, 3], [0, 1, 3, 2], [3, 2, 1, 0]])
    relevant = [{0, 3}, {3}, {0}]
    gnd = {"gnd": [{"easy": sorted(r), "hard": [], "junk": []} for r in relevant]}
    _dataset(tmp_path / "set", ids, relevant, gnd)
    p = tmp_path / "set"
    # lambda 1: the global order (the positives late); lambda 0: the logits (the positives first)
    fixed = {"lambda": 1.0, "gamma": 1.0, "num_rerank": 4, "geometry_weight": 0.0, "binary": {"lambda": 0.0}}
    grid = {"num_rerank": [4], "lambda": [1.0, 0.0], "gamma": [1.0]}
    chosen, m_ap = {}, {}
    for method in ("ames", "ames_binary"):
        ctx = evaluation_context(p, method, dataset="set", csv_top=4, preset="tiny", baseline_json=None)
        evaluate_ames_stage(ctx, p / "logits.h5", p / "knn.h5", p / "grid.csv", method, grid, "fixed", fixed,
                            None, None, "none")  # fmt: skip
        r = read_json(p / f"{method}.json")
        chosen[method], m_ap[method] = r["chosen"], r["metrics"]["mAP"]["M"]
    assert (chosen["ames"]["lambda"], chosen["ames_binary"]["lambda"]) == (1.0, 0.0)
    assert chosen["ames_binary"]["gamma"] == 1.0 and "binary" not in chosen["ames_binary"]
    assert "geometry_weight" not in chosen["ames"]  # no geometric fusion: no weight reported
    assert m_ap["ames_binary"] == 100.0 > m_ap["ames"]
