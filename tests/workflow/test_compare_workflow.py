"""Every method on the same shortlist in one table, with Lw whitening and SuperGlobal computed by the workflow."""

import pytest

from conftest import TINY, load_json, snakemake

pytestmark = pytest.mark.workflow

METHODS = ["global", "lw", "aqe", "adba", "superglobal", "sv", "ames", "ames_binary", "asmk"]


@pytest.fixture(scope="module")
def compared(tiny_ames):
    # demo-val's superglobal too: with the tiny preset the demo is PCA-whitened and demo-val is not
    snakemake(tiny_ames, "results/demo_compare.md", "results/demo-val_superglobal.json", "--configfile", str(TINY))
    return tiny_ames


def test_compare_table_holds_every_method_on_the_same_shortlist(compared):
    table = load_json(compared / "results" / "demo_compare.json")
    rows = {r["method"]: r for r in table["rows"]}
    assert list(rows) == METHODS and table["random_weights"] is False
    # what it was made from, for the stale check that ends every run
    assert table["artifacts"] == {**{f"result_{m}": f"results/demo_{m}.json" for m in METHODS}, "knn": table["knn"]}
    md = (compared / "results" / "demo_compare.md").read_text()
    knn = load_json(compared / "results" / "demo_global.json")["artifacts"]["knn"]
    for m in METHODS:
        res = load_json(compared / "results" / f"demo_{m}.json")
        assert rows[m]["mAP"] == res["metrics"]["mAP"]
        # asmk ranks by itself (its own first stage); its baseline is the shared global shortlist
        assert res["artifacts"].get("baseline_knn", res["artifacts"]["knn"]) == knn
        assert f"| {m} | {res['metrics']['mAP']['E']:.2f} | {res['metrics']['mAP']['M']:.2f} |" in md
        cost = rows[m]["ms_per_query"]
        assert cost["first_stage"] > 0 and cost["total"] == pytest.approx(
            cost["first_stage"] + cost["reads"] + cost["rerank"]
        )
        if m != "global":
            d = res["paired_difference"]["M"]
            assert rows[m]["difference_M"] == d and d["ci95"][0] <= d["mean"] <= d["ci95"][1]
    for m in ("sv", "ames", "ames_binary"):  # local-descriptor re-rankers read descriptors and do real work
        assert rows[m]["ms_per_query"]["reads"] > 0 and rows[m]["ms_per_query"]["rerank"] > 0
    assert rows["global"]["ms_per_query"]["rerank"] == 0
    asmk = load_json(compared / "results" / "demo_asmk.json")
    assert (
        rows["asmk"]["ms_per_query"]["first_stage"]
        == asmk["timing"]["ms_per_query"]["first_stage"]
        != rows["global"]["ms_per_query"]["first_stage"]
    )
    assert rows["asmk"]["ms_per_query"]["rerank"] == 0 and rows["asmk"]["offline_seconds"] > 0
    assert rows["adba"]["offline_seconds"] > 0 and rows["aqe"]["offline_seconds"] == 0


def test_lw_is_fitted_on_the_training_pairs(compared):
    res = load_json(compared / "results" / "demo_lw.json")
    assert res["method"] == "lw" and res["fitted_on"]["lw"]["split"] == "demo-train"
    manifest = load_json(compared / f"results/lw/{res['versions']['lw']}/manifest.json")
    # the tiny training split: 10 instances x 5 views -> 10 * C(5, 2) same-label pairs
    assert manifest["n_pairs"] == 100 and manifest["fitted_on"] == "demo-train"
    assert manifest["inputs"]["lists"]["path"].startswith("results/lists/demo-train/")  # the labels it paired
    assert res["hyperparameters"]["lw"]["ridge"] == 1.0
    sg = load_json(compared / "results" / "demo_superglobal.json")
    assert sg["hyperparameters"]["superglobal"] == {"m": 400, "k": 9, "beta": 0.15, "query_pool": "auto"}
    # auto: the mean for VLAD that was not PCA-whitened, the official max when it was (the rule reads the whitening
    # file of the dataset's space); the two splits exercise both
    sg_val = load_json(compared / "results" / "demo-val_superglobal.json")
    assert [r["fitted_on"]["whitening"]["applied"] for r in (sg, sg_val)] == [True, False]
    assert [r["query_pool"] for r in (sg, sg_val)] == ["max", "mean"]


CONTRACT = {
    "dataset",
    "method",
    "preset",
    "n_queries",
    "n_db",
    "crop_queries",
    "metrics",
    "n_evaluated_queries",
    "per_query_ap",
    "hyperparameters",
    "versions",
    "artifacts",
    "timing",
    "queries_without_features",
    "db_images_without_features",
    "fitted_on",
}


def test_every_method_writes_the_same_results_contract(compared):
    """One results writer: every method's JSON has the README's keys, and the counts agree with the per-query APs."""
    for m in METHODS:
        res = load_json(compared / "results" / f"demo_{m}.json")
        assert CONTRACT <= set(res), (m, sorted(CONTRACT - set(res)))
        for p, n in res["n_evaluated_queries"].items():
            assert n == sum(a is not None for a in res["per_query_ap"][p]["ap"]) > 0, (m, p)
        assert {"reads_seconds", "rerank_seconds", "offline_seconds", "ms_per_query"} <= set(res["timing"]), m
        if m != "global":
            assert {"baseline", "paired_difference"} <= set(res), m
            assert (
                res["baseline"]["metrics"]["mAP"]
                == load_json(compared / "results" / "demo_global.json")["metrics"]["mAP"]
            )


def test_the_old_method_name_whiten_is_an_alias_of_lw(compared):
    """Method `whiten` (supervised Lw) was renamed `lw`: the old name still works, says so, and computes nothing new."""
    proc = snakemake(compared, "results/demo_whiten.json", "--configfile", str(TINY))
    assert "method 'whiten' is deprecated, now 'lw'" in proc.stdout + proc.stderr
    assert (
        "evaluate_lw" not in proc.stdout + proc.stderr
    )  # the lw evaluation is reused, only published under the old name
    old, new = load_json(compared / "results" / "demo_whiten.json"), load_json(compared / "results" / "demo_lw.json")
    assert old == new

    def dry_compare(methods):  # the table planned with compare.methods given on the command line
        config = f"compare={{'methods': {methods!r}}}"
        return snakemake(
            compared, "-n", "results/demo_compare.md", "--configfile", str(TINY), "--config", config, check=False
        )

    proc = dry_compare(["global", "whiten"])
    assert (
        proc.returncode == 0 and "compare.methods: 'whiten' is now 'lw'" in proc.stdout + proc.stderr
    )  # a dry run logs to stdout
    # listed under both names: one row, folded in silence, where a method listed twice is refused (a new user's trial)
    proc = dry_compare(["global", "lw", "whiten"])
    said = "compare.methods: 'whiten' is 'lw' (its old name), which the list names already"
    assert proc.returncode == 1 and said in proc.stdout + proc.stderr
