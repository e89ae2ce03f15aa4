"""AMES in the workflow (tiny preset): training, distillation, cached logits, grid selection, results contract."""

import csv

import h5py
import numpy as np
import pytest
import yaml

from conftest import TINY, copy_tree, load_json, snakemake
from retrieval.methods.ames.infer import fast_dtype

pytestmark = pytest.mark.workflow


@pytest.mark.parametrize("method", ["ames", "ames_binary"])
def test_ames_results_contract(tiny_ames, method):
    res = load_json(tiny_ames / "results" / f"demo_{method}.json")
    glob_res = load_json(tiny_ames / "results" / "demo_global.json")
    assert res["method"] == method and res["baseline"]["metrics"] == glob_res["metrics"]
    # parameters come from the validation split, and the oracle is labelled as such
    assert res["chosen"]["selected_on"] == "demo-val"
    grid = res["grid"]  # num_rerank x lambda x gamma x the geometric weight (tiny: sv's inliers, weights 0 and 0.5)
    assert len(grid) == 2 * 2 * 2 * 2 and res["timing"]["grid_points"] == 16
    assert res["oracle"]["mAP_M"] == max(r["mAP_M"] for r in grid)
    keys = ("num_rerank", "lambda", "gamma", "geometry_weight")
    point = [r for r in grid if all(r[k] == res["chosen"][k] for k in keys)]
    assert point[0]["mAP_M"] == pytest.approx(res["metrics"]["mAP"]["M"])
    diff = res["paired_difference"]["M"]
    ap, base = res["per_query_ap"]["M"]["ap"], res["per_query_ap"]["M"]["baseline_ap"]
    assert diff["mean"] == pytest.approx(100 * np.mean([a - b for a, b in zip(ap, base) if a is not None]))
    assert diff["ci95"][0] <= diff["mean"] <= diff["ci95"][1]
    with h5py.File(tiny_ames / res["artifacts"]["ranking"], "r") as f:
        ranks = f["ranks"][:]
    # only the top num_rerank entries may move; the rest keeps the global order
    with h5py.File(tiny_ames / glob_res["artifacts"]["ranking"], "r") as f:
        global_ranks = f["ranks"][:]
    k = res["chosen"]["num_rerank"]
    np.testing.assert_array_equal(ranks[:, k:], global_ranks[:, k:])
    assert all(sorted(r[:k]) == sorted(g[:k]) for r, g in zip(ranks, global_ranks))
    # the geometry came from the sv evaluation of the same shortlist, whose cost is counted in AMES's
    sv = load_json(tiny_ames / res["artifacts"]["sv"])
    assert res["geometry"]["source"] == "sv" and res["versions"]["sv"] == sv["versions"]["evaluate"]
    assert res["artifacts"]["knn"] == sv["artifacts"]["knn"] and res["geometry"]["unverified_pairs"] == 0
    assert res["geometry"]["validation_unverified_pairs"] == 0
    assert res["timing"]["geometry_seconds"] > 0
    assert res["timing"]["rerank_seconds"] >= sv["timing"]["rerank_seconds"]
    # the neighbour CSV gives the fused score the top k were sorted by (empty below), the global score, sv's inliers
    with open(tiny_ames / res["artifacts"]["neighbours_csv"]) as fh:
        rows = list(csv.DictReader(fh))
    with open(tiny_ames / sv["artifacts"]["neighbours_csv"]) as fh:
        sv_inliers = {(r["query"], r["image"]): r["inliers"] for r in csv.DictReader(fh)}
    with open(tiny_ames / glob_res["artifacts"]["neighbours_csv"]) as fh:
        global_score = {(r["query"], r["image"]): r["score"] for r in csv.DictReader(fh)}
    assert list(rows[0]) == ["query", "rank", "image", "score", "global_score", "inliers"]
    lists = load_json(tiny_ames / res["artifacts"]["lists"])
    index = {d["path"]: j for j, d in enumerate(lists["db"])}
    by_query = {}
    for row in rows:
        by_query.setdefault(row["query"], []).append(row)
        assert (row["score"] == "") == (int(row["rank"]) > k)
        assert row["global_score"] == global_score[(row["query"], row["image"])]
        assert row["inliers"] == ("" if int(row["rank"]) > k else sv_inliers[(row["query"], row["image"])])
    for i, q in enumerate(lists["query"]):
        got = by_query[q["path"]]
        assert [index[r["image"]] for r in got] == ranks[i, : len(got)].tolist()
        scores = [float(r["score"]) for r in got[:k]]
        assert scores == sorted(scores, reverse=True)  # the order the fusion gave


def test_training_curves_and_manifests(tiny_ames):
    res = load_json(tiny_ames / "results" / "demo_ames_binary.json")
    v = res["versions"]
    curves = load_json(tiny_ames / f"results/ames_model/{v['ames_model']}/curves.json")
    assert len(curves) == 2 and {"loss", "pair_accuracy", "lr"} <= set(curves[0])
    # early stopping scored every epoch on the validation split and kept the best one
    assert all(0.0 <= c["validation"] <= 100.0 for c in curves) and sum(c["kept"] for c in curves) == 1
    best = max(curves, key=lambda c: c["validation"])
    assert next(c for c in curves if c["kept"])["validation"] == best["validation"]
    student = load_json(tiny_ames / f"results/ames_binary_model/{v['ames_binary_model']}/curves.json")
    assert all(c["distill_mse"] > 0 for c in student)
    man = load_json(tiny_ames / f"results/ames_model/{v['ames_model']}/manifest.json")
    assert man["fitted_on"] == "demo-train" and man["device"] == "cpu"
    assert man["validation_split"] == "demo-val" and man["kept"]["kept"]
    # every input the model's version hashes is named (the local store by path; the small files with their SHA-1)
    inputs = man["inputs"]
    assert inputs["local"]["path"].startswith("results/local/demo-train/") and "sha1" not in inputs["local"]
    assert {"lists", "knn", "validation_knn", "validation_gnd", "validation_lists"} <= set(inputs)
    assert all("sha1" in inputs[k] for k in ("lists", "knn", "validation_knn", "validation_gnd", "validation_lists"))
    assert inputs["validation_query"]["path"].startswith("results/local/demo-val/")
    binary = load_json(tiny_ames / f"results/ames_binary_model/{v['ames_binary_model']}/manifest.json")["inputs"]
    assert binary["teacher"]["path"].endswith(f"ames_model/{v['ames_model']}/model.pt")
    assert binary["itq"]["path"].startswith(f"results/itq/{v['itq']}/") and "sha1" in binary["itq"]
    assert "validation" not in student[0]  # the student distils for its epochs, no early stopping


def test_grid_change_reuses_the_logits(tiny_ames, tmp_path):
    override = tmp_path / "grid.yaml"
    override.write_text("ames:\n  lambda: [0.0, 0.3, 0.5]\n")
    out = snakemake(tiny_ames, "-n", "results/demo_ames.json", "--configfile", str(TINY), str(override)).stdout
    assert "rule evaluate_ames" in out and "rule ames_logits" not in out and "rule train_ames" not in out
    override.write_text("ames:\n  num_rerank: [5, 20]\n")  # a larger shortlist needs new logits, not a new model
    out = snakemake(tiny_ames, "-n", "results/demo_ames.json", "--configfile", str(TINY), str(override)).stdout
    assert "rule ames_logits" in out and "rule train_ames" not in out
    # the device is in no version and no parameter: naming it re-runs nothing (as a parameter it re-ran the training
    # in place, and on a machine without the GPU asked for the failed job deleted the trained model)
    override.write_text("ames:\n  device: cpu\n")
    out = snakemake(tiny_ames, "-n", "results/demo_ames.json", "--configfile", str(TINY), str(override)).stdout
    assert "Nothing to be done" in out, out[-2000:]
    # nor do the pairs per forward pass, or how knn streams the database (each re-ran the logits in place; knn.block
    # re-ran demo-val's knn and so the training)
    override.write_text("ames:\n  batch_pairs: 7\nknn:\n  block: 500\n")
    out = snakemake(tiny_ames, "-n", "results/demo_ames.json", "--configfile", str(TINY), str(override)).stdout
    assert "Nothing to be done" in out, out[-2000:]


def test_benchmark_target_writes_ratios(tiny_run):
    snakemake(tiny_run, "results/benchmarks/ames_throughput.json", "--configfile", str(TINY))
    res = load_json(tiny_run / "results" / "benchmarks" / "ames_throughput.json")
    assert [(r["q_desc"], r["db_desc"]) for r in res["ames"]["sizes"]] == [(16, 16), (24, 8)]
    for r in res["ames"]["sizes"]:
        assert r["prepared_max_abs_logit_difference"] < 1e-5 and r["speedup"] > 0 and 0 < r["fraction_of_gemm_peak"]
        if res["ames"]["fast_dtype"] == "bfloat16":  # the hardware runs it natively: its path is the one reported
            assert r["max_abs_logit_difference"] == r["prepared_bf16_max_abs_logit_difference"]
            assert 0 < r["prepared_bf16_max_relative_logit_difference"] < 0.02
        else:
            assert r["max_abs_logit_difference"] == r["prepared_max_abs_logit_difference"]
    grid = res["grid"]
    assert grid["points"] == 10 and grid["grid_seconds"] > 0 and grid["single_point_seconds"] > 0
    # a ratio of wall times: on the tiny grid, noise can put the 10-point sweep a hair under one point (0.99995 in a
    # run sharing its cores with another job), so the ratio is checked against its parts, not against 1
    logits_s = grid["logits_seconds_estimated"]
    want = (logits_s + grid["grid_seconds"]) / (logits_s + grid["single_point_seconds"])
    assert grid["grid_over_single_point"] == pytest.approx(want) and 0.5 < want < 20
    sv = res["sv"]  # the demo's shortlists verified by both implementations in the same run
    assert sv["dataset"] == "demo" and sv["pairs"] > 0 and sv["speedup"] > 0 and sv["identical_inlier_fraction"] == 1.0


def test_descriptor_sweep_matches_the_published_points(tiny_ames, tmp_path):
    snakemake(tiny_ames, "results/benchmarks/demo_descriptors.json", "results/demo_sv.json", "--configfile", str(TINY))
    res = load_json(tiny_ames / "results" / "benchmarks" / "demo_descriptors.json")
    got = {(r["method"], r["db_desc"]): r for r in res["rows"]}
    assert res["precision"] == "auto"  # ames.precision, as the published results' logits
    assert set(got) == {("sv", 8), ("sv", 128), ("ames", 8), ("ames", 32), ("ames_binary", 8), ("ames_binary", 32)}
    assert (
        got[("ames", 32)]["bytes_per_image"] == 32 * 256 + 4
        and got[("ames_binary", 32)]["bytes_per_image"] == 32 * 16 + 4
    )
    # at the counts the published results use, the sweep reproduces them
    # (AMES alone: the fused results' point with geometric weight 0, whose grid row holds its mAP)
    for method, count in (("ames", 32), ("ames_binary", 32), ("sv", 128)):
        pub = load_json(tiny_ames / "results" / f"demo_{method}.json")
        if method == "sv":
            want = [pub["metrics"]["mAP"][p] for p in "EMH"]
        else:
            alone = pub["without_geometry"]
            assert alone["chosen"]["geometry_weight"] == 0.0
            want = [alone["metrics"][f"mAP_{p}"] for p in "EMH"]
        assert [got[(method, count)][f"mAP_{p}"] for p in "EMH"] == pytest.approx(want, abs=1e-3), method
    assert (tiny_ames / "results" / "benchmarks" / "demo_descriptors.png").stat().st_size > 1000
    assert "| ames_binary | 32 | 516 |" in (tiny_ames / "results" / "benchmarks" / "demo_descriptors.md").read_text()
    # a count above what extraction keeps is refused naming the key (it was skipped with a log line, and a sweep of
    # only such counts wrote an empty table), while the DAG is built: no job runs, the earlier sweep is kept (the
    # sweep's job refused it after every job before it, helper-114's trial)
    wd = copy_tree(tiny_ames, tmp_path / "wd")
    before = (wd / "results" / "benchmarks" / "demo_descriptors.json").read_bytes()
    override = tmp_path / "sweep.yaml"
    override.write_text("benchmark:\n  descriptors:\n    sv: [8, 5000]\n")
    failed = snakemake(
        wd, "results/benchmarks/demo_descriptors.json", "-F", "--configfile", str(TINY), str(override), check=False
    )
    said = "benchmark.descriptors.sv: [5000] descriptors per image asked, but extraction keeps at most 128"
    assert failed.returncode != 0 and said in failed.stderr + failed.stdout
    assert "Select jobs to execute" not in failed.stderr + failed.stdout
    assert (wd / "results" / "benchmarks" / "demo_descriptors.json").read_bytes() == before


def test_database_side_is_stored_once_as_packed_bits_or_fp16_tokens(tiny_ames):
    for method, payload, width in (("ames", "tokens", 128), ("ames_binary", "codes", 16)):
        res = load_json(tiny_ames / "results" / f"demo_{method}.json")
        logits = tiny_ames / res["artifacts"]["logits"]
        db_input = load_json(logits.with_name(f"{method}.manifest.json"))["inputs"]["db"]["path"]
        assert db_input.startswith("results/ames_store/demo/") and db_input.endswith(f"{method}.h5")
        store_inputs = load_json((tiny_ames / db_input).with_name(f"{method}.manifest.json"))["inputs"]
        assert store_inputs["db_local"]["path"].startswith("results/local/demo/")  # what it read (helper-153)
        with h5py.File(tiny_ames / db_input, "r") as f:
            assert f[payload].shape == (res["n_db"], 32, width)  # tiny preset: db_desc 32; 128 bits = 16 bytes
            assert f.attrs["bytes_per_image"] == 32 * width * f[payload].dtype.itemsize + 4
        assert res["timing"]["reads_measured"] is True and res["timing"]["ms_per_query"]["reads"] > 0
    itq = load_json(tiny_ames / f"results/itq/{res['versions']['itq']}/manifest.json")
    assert itq["inputs"]["local"]["path"].startswith("results/local/demo-train/")  # it recorded no input


def test_scale_benchmark_on_a_simulated_database(tiny_ames):
    snakemake(tiny_ames, "results/benchmarks/demo_scale.json", "--configfile", str(TINY))
    res = load_json(tiny_ames / "results" / "benchmarks" / "demo_scale.json")
    assert res["n_db"] == 20000 and res["exact"]["search_ms_per_query"] > 0
    assert 0.0 < res["ivfpq"]["recall@100"] <= 1.0 and res["ivfpq"]["bytes_per_image"] == 8 + 8  # m 8 bytes + id
    store = res["binary_store"]
    assert (
        store["payload_bytes_per_image"] == 32 * 16 + 4
        and store["bytes_per_image"] < 2 * store["payload_bytes_per_image"]
    )
    assert store["bytes_per_image_at_600"] == 9604 and res["goals"]["binary_store_at_most_10KB_per_image_at_600"]
    assert res["rerank"]["ms_per_query"] > 0 and res["peak_rss_mb"] > 0
    after = res["peak_rss_mb_after"]  # the running peak after each phase, in order, up to the job's peak
    assert list(after) == ["inputs", "simulate", "exact", "ivfpq", "rerank"]
    assert list(after.values()) == sorted(after.values()) and after["rerank"] <= res["peak_rss_mb"]
    assert res["rerank"]["dtype"] == str(fast_dtype("cpu")).removeprefix("torch.")  # ames.precision: auto
    assert not list((tiny_ames / "results" / "benchmarks").glob("demo_scale.json.work/*.h5"))  # work files removed
    assert res["rerank"]["queries"] == 2 and res["rerank"]["num_rerank"] == 10 and "recall@10" in res["ivfpq"]
    # more than there is (a new user's trial: the JSON said 100 queries of 50 for 16 of 10, and a time per query
    # divided by 100) and a shortlist below 10 (its "recall@10" was the recall at 5): what ran is recorded
    more = tiny_ames / "more.yaml"
    more.write_text(yaml.safe_dump({"benchmark": {"scale": {"k": 5, "num_rerank": 50, "rerank_queries": 1000}}}))
    snakemake(tiny_ames, "results/benchmarks/demo_scale.json", "--configfile", str(TINY), str(more))
    res = load_json(tiny_ames / "results" / "benchmarks" / "demo_scale.json")
    n_queries = load_json(tiny_ames / "results" / "demo_global.json")["n_queries"]
    assert (res["rerank"]["queries"], res["rerank"]["num_rerank"]) == (n_queries, 5)
    assert (res["rerank"]["rerank_queries_requested"], res["rerank"]["num_rerank_requested"]) == (1000, 50)
    assert "recall@5" in res["ivfpq"] and "recall@10" not in res["ivfpq"]
    # k above the simulated database: refused while the DAG is built, naming the keys (the job refused it only after
    # the extraction, the binary AMES model and its store); nothing runs, and the last result is kept
    bad = tiny_ames / "bad.yaml"
    bad.write_text(yaml.safe_dump({"benchmark": {"scale": {"k": 30000}}}))
    proc = snakemake(
        tiny_ames, "results/benchmarks/demo_scale.json", "--configfile", str(TINY), str(bad), "-F", check=False
    )
    assert proc.returncode != 0
    assert "benchmark.scale.k: 30000 neighbours asked of a database of 20000" in proc.stdout + proc.stderr
    assert load_json(tiny_ames / "results" / "benchmarks" / "demo_scale.json") == res
