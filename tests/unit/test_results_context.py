"""The evaluation context: built once per job from the rule's snakemake object (what every evaluation stage and
the results writer share), with the defaults of a rule that sets no ``ks``, ``n_bootstrap`` or ``baseline``."""

import os
import re
from dataclasses import FrozenInstanceError
from pathlib import Path
from types import SimpleNamespace

import h5py
import numpy as np
import pytest
from snakemake.iocontainers import InputFiles, OutputFiles, Params, Wildcards

from retrieval.evaluation.results import (
    DEFAULT_KS,
    DEFAULT_N_BOOTSTRAP,
    EvaluationContext,
    outputs_gone_message,
    published_outputs_gone,
    read_ranking,
    report_inputs_meta,
    rerank_depth,
    run_options,
    stale_message,
    stale_published,
    write_ranking,
    write_reranked_evaluation,
)
from retrieval.runtime import write_json

OUTPUTS = {"json": "e/sv.json", "ranking": "e/sv_ranking.h5", "csv": "e/sv_neighbours.csv", "manifest": "e/m.json"}
PARAMS = {"csv_top": 7, "versions": {"extract": "abcd1234"}, "hyperparameters": {"sv": {}}, "preset": "cpu"}


def _smk(inputs: dict, params: dict) -> SimpleNamespace:
    return SimpleNamespace(
        input=InputFiles(fromdict=inputs),
        output=OutputFiles(fromdict=OUTPUTS),
        params=Params(fromdict=params),
        wildcards=Wildcards(fromdict={"dataset": "landmarks-mini", "ver": "0123abcd"}),
    )


def test_from_snakemake_maps_a_reranking_rule():

    inputs = {"knn": "k.h5", "lists": "l.json", "gnd": "g.json", "baseline": "global.json", "query": "q.h5"}
    ctx = EvaluationContext.from_snakemake(_smk(inputs, {**PARAMS, "ks": [1, 5], "n_bootstrap": 50, "sv": {}}))
    assert ctx == EvaluationContext(
        dataset="landmarks-mini",
        lists_path="l.json",
        gnd_path="g.json",
        out_json="e/sv.json",
        out_ranking="e/sv_ranking.h5",
        out_csv="e/sv_neighbours.csv",
        csv_top=7,
        versions={"extract": "abcd1234"},
        hyperparameters={"sv": {}},
        preset="cpu",
        ks=[1, 5],
        n_bootstrap=50,
        baseline_json="global.json",
    )
    with pytest.raises(FrozenInstanceError):
        ctx.csv_top = 3


def test_from_snakemake_defaults_and_missing_names():

    # evaluate_global: no baseline, no n_bootstrap; evaluate_ames: no ks
    ctx = EvaluationContext.from_snakemake(_smk({"knn": "k.h5", "lists": "l.json", "gnd": "g.json"}, PARAMS))
    assert ctx.baseline_json is None and ctx.ks == DEFAULT_KS == (1, 5, 10)
    assert ctx.n_bootstrap == DEFAULT_N_BOOTSTRAP
    with pytest.raises(AttributeError):
        EvaluationContext.from_snakemake(_smk({"lists": "l.json", "gnd": "g.json"}, {"preset": "cpu"}))


def test_a_reranked_evaluation_needs_its_baseline(tmp_path):

    ctx = EvaluationContext.from_snakemake(_smk({"lists": "l.json", "gnd": "g.json"}, PARAMS))
    ids = np.zeros((1, 2), np.int64)
    with pytest.raises(ValueError, match="sv: a re-ranked evaluation records its baseline"):
        write_reranked_evaluation(ctx, "sv", ids, np.zeros((1, 2)), ids, {}, None, tmp_path / "k.h5", {})


def test_every_evaluation_rule_passes_the_configured_ks():
    """A rule that leaves out ``ks`` silently reports mP@1/5/10 whatever ``evaluate.ks`` says (evaluate_ames did)."""
    repo = Path(__file__).resolve().parents[2]
    scripts = {
        p.name
        for p in (repo / "workflow_scripts").glob("evaluate_*.py")
        if "EvaluationContext.from_snakemake" in p.read_text()
    }
    assert len(scripts) >= 8
    seen = set()
    for smk in sorted((repo / "rules").glob("*.smk")):
        for block in re.split(r"\n(?=rule |localrule )", smk.read_text()):
            script = re.search(r'"\.\./workflow_scripts/(evaluate_\w+\.py)"', block)
            if script and script.group(1) in scripts:
                seen.add(script.group(1))
                name = block.split(":")[0]
                assert re.search(r'\bks=.*config\["evaluate"\]\["ks"\]', block), f"{smk.name}: {name} passes no ks"
                assert 'config["evaluate"]["csv_top"]' in block, f"{smk.name}: {name} passes no csv_top"
    assert seen == scripts


def test_a_published_result_older_than_a_file_it_names_is_stale(tmp_path, monkeypatch):
    """A new user's trial: photos added, only global asked for again; the sv JSON published before still said n_db
    168 beside lists of 218. A published result older than a file under its artifacts is named, with that file."""
    monkeypatch.chdir(tmp_path)
    for name in ("lists.json", "knn.h5", "e/sv.json", "e/global.json"):
        Path(name).parent.mkdir(parents=True, exist_ok=True)
        Path(name).write_text("{}")
        os.utime(name, (1000, 1000))
    sv = {"method": "sv", "artifacts": {"lists": "lists.json", "knn": "knn.h5", "evaluation": "e/sv.json"}}
    write_json("results/mine_sv.json", sv)
    write_json("results/mine_global.json", {"method": "global", "artifacts": {"evaluation": "e/global.json"}})
    write_json("results/mine_compare.json", {"rows": []})  # not a published result
    Path("results/broken.json").write_text("{")  # unreadable: passed over
    write_json("results/other_sv.json", {"method": "sv", "artifacts": {"lists": "gone/lists.json"}})
    for name in Path("results").iterdir():
        os.utime(name, (2000, 2000))
    assert stale_published("results") == []
    os.utime("lists.json", (3000, 3000))  # re-computed in place by a later run for another target
    assert stale_published("results") == [("results/mine_sv.json", "lists.json")]
    os.utime("e/global.json", (3000, 3000))
    assert stale_published(Path("results")) == [
        ("results/mine_global.json", "e/global.json"),
        ("results/mine_sv.json", "lists.json"),
    ]
    write_json("results/mine_sv.json", sv)  # asked for again: published anew
    write_json("results/mine_global.json", {"method": "global", "artifacts": {"evaluation": "e/global.json"}})
    assert stale_published("results") == []


def test_a_published_result_whose_evaluation_files_were_removed_is_named_with_the_remedy(tmp_path, monkeypatch):
    """helper-149: a refused SLURM submission made Snakemake remove evaluate_sv's outputs; the published copy stayed,
    naming them, and asking for it again found nothing to do. It is named, with -R on the gone file."""
    monkeypatch.chdir(tmp_path)
    for name in ("e/sv.json", "e/sv_ranking.h5", "e/sv.csv", "lists.json"):
        Path(name).parent.mkdir(parents=True, exist_ok=True)
        Path(name).write_text("{}")
    own = {"evaluation": "e/sv.json", "ranking": "e/sv_ranking.h5", "neighbours_csv": "e/sv.csv"}
    write_json("results/mine_sv.json", {"method": "sv", "artifacts": {"lists": "lists.json", **own}})
    write_json("results/mine_compare.json", {"rows": [], "artifacts": {"result_sv": "results/gone.json"}})
    Path("results/broken.json").write_text("{")
    assert published_outputs_gone("results") == []
    os.remove("e/sv_ranking.h5")
    os.remove("e/sv.json")
    assert published_outputs_gone("results") == [("results/mine_sv.json", "e/sv.json")]  # the evaluation first
    said = outputs_gone_message("results/mine_sv.json", "e/sv.json")
    assert said.endswith("(snakemake ... results/mine_sv.json -R e/sv.json)") and "which is gone" in said
    os.remove("lists.json")  # an input, not the job's own output: the stale check's business
    Path("e/sv.json").write_text("{}")
    assert published_outputs_gone("results") == [("results/mine_sv.json", "e/sv_ranking.h5")]


def test_a_published_search_older_than_its_collections_lists_is_stale(tmp_path, monkeypatch):
    """A new user's trial: a photo of the collection replaced and one added, only results/coll_global.json asked
    for; results/search/coll/newph.json still gave the old photo's similarities and n_collection 34 against 35, and
    the run's end named only the stale {dataset}_{method}.json files."""
    monkeypatch.chdir(tmp_path)
    made_from = {
        "csv": "s/neighbours.csv",
        "knn": "s/knn.h5",
        "photos_lists": "p/db.json",
        "collection_lists": "c/db.json",
    }
    for name in made_from.values():
        Path(name).parent.mkdir(parents=True, exist_ok=True)
        Path(name).write_text("{}")
        os.utime(name, (1000, 1000))
    write_json("results/search/coll/newph.json", {"collection": "coll", "photos": "newph", "artifacts": made_from})
    Path("results/search/coll/newph.html").write_text("<html></html>")  # published with it: not read
    os.utime("results/search/coll/newph.json", (2000, 2000))
    assert stale_published("results") == []
    os.utime("c/db.json", (3000, 3000))  # the collection listed again in place (coll_global.json asked for)
    assert stale_published("results") == [("results/search/coll/newph.json", "c/db.json")]
    message = stale_message("results/search/coll/newph.json", "c/db.json")
    assert message.startswith("results/search/coll/newph.json (.csv, .html) is older than c/db.json")
    assert message.endswith(
        "ask for it again (snakemake ... results/search/coll/newph.html) to bring it up to date (if that finds "
        "nothing to do, c/db.json was changed outside the workflow, or the run that made it failed before publishing: add -R c/db.json after the target)"
    )
    # a file that is not an input of publish (a ranking's CSV saved from a spreadsheet): asking again does nothing,
    # -R with it does (helper-122's trial got the same warning after every run)
    assert stale_message("results/mine_sv.json", "results/eval/mine/v/sv_neighbours.csv").endswith(
        "(if that finds nothing to do, results/eval/mine/v/sv_neighbours.csv was changed outside the workflow, or the run that made it failed before publishing: add -R "
        "results/eval/mine/v/sv_neighbours.csv after the target)"
    )
    assert "its numbers" in stale_message("results/mine_sv.json", "lists.json")
    assert "what it shows is from before" in stale_message("results/report/mine.html", "results/lists/m/db.json")


def test_a_published_result_is_stale_when_a_file_upstream_of_its_artifacts_was_re_computed(tmp_path, monkeypatch):
    """A new user's trial: photos added to a collection, only a search asked for; it re-computed the collection's
    global descriptors in place (not its knn file), and coll_global.json, n_db 30 against 37 photos, was not named.
    What a file was made from is followed through the stages' manifests (inputs recorded per output)."""
    monkeypatch.chdir(tmp_path)
    files = ("results/knn/c/v1/knn.h5", "results/global/c/v2/db.h5", "results/lists/c/v3/db.json", "elsewhere/x.h5")
    for name in files:
        Path(name).parent.mkdir(parents=True, exist_ok=True)
        Path(name).write_text("")
    write_json(  # knn.h5's manifest: its inputs, one nested in a list
        "results/knn/c/v1/manifest.json",
        {
            "inputs": {"db": {"path": "results/global/c/v2/db.h5"}, "more": [{"path": "elsewhere/x.h5"}]},
            "outputs": {"results/knn/c/v1/knn.h5": {}},
        },
    )
    write_json(
        "results/global/c/v2/db.manifest.json",
        {"inputs": {"lists": {"path": "results/lists/c/v3/db.json"}}, "outputs": {"results/global/c/v2/db.h5": {}}},
    )
    write_json("results/lists/c/v3/db.manifest.json", {"inputs": {}, "outputs": {"results/lists/c/v3/db.json": {}}})
    write_json("results/c_global.json", {"method": "global", "artifacts": {"knn": "results/knn/c/v1/knn.h5"}})
    write_json("results/c_compare.json", {"rows": [], "artifacts": {"result_global": "results/c_global.json"}})
    for name in files + ("results/knn/c/v1/manifest.json", "results/global/c/v2/db.manifest.json"):
        os.utime(name, (1000, 1000))
    os.utime("results/c_global.json", (2000, 2000))
    os.utime("results/c_compare.json", (2500, 2500))
    assert stale_published("results") == []
    os.utime("results/lists/c/v3/db.json", (3000, 3000))  # two stages up: the collection listed again
    assert stale_published("results") == [
        ("results/c_compare.json", "results/lists/c/v3/db.json"),  # through the result it lists, then manifests
        ("results/c_global.json", "results/lists/c/v3/db.json"),
    ]
    os.utime("results/global/c/v2/db.h5", (3000, 3000))  # one stage up: found first (breadth first)
    assert stale_published("results")[1] == ("results/c_global.json", "results/global/c/v2/db.h5")
    os.utime("results/lists/c/v3/db.json", (1000, 1000))
    os.utime("results/global/c/v2/db.h5", (1000, 1000))
    os.utime("elsewhere/x.h5", (3000, 3000))  # an input outside results/ is edited, not re-computed: not followed
    assert stale_published("results") == []
    write_json(  # an input recorded by its absolute path is followed like a relative one
        "results/knn/c/v1/manifest.json",
        {
            "inputs": {"db": {"path": str(tmp_path / "results/global/c/v2/db.h5")}, "nul": {"path": "a\0b"}},
            "outputs": {"results/knn/c/v1/knn.h5": {}},
        },
    )
    os.utime("results/knn/c/v1/manifest.json", (1000, 1000))
    os.utime("results/lists/c/v3/db.json", (3000, 3000))
    assert stale_published("results")[1] == ("results/c_global.json", "results/lists/c/v3/db.json")
    os.utime("results/lists/c/v3/db.json", (1000, 1000))
    write_json(  # a manifest that does not name the file among its outputs is not the file's
        "results/knn/c/v1/manifest.json",
        {"inputs": {"db": {"path": "results/lists/c/v3/db.json"}}, "outputs": {"results/knn/c/v1/other.h5": {}}},
    )
    os.utime("results/lists/c/v3/db.json", (3000, 3000))
    assert stale_published("results") == []
    Path("results/loop").symlink_to("loop")  # a link loop among the named files is passed over, never raised
    write_json("results/c_global.json", {"method": "global", "artifacts": {"x": "results/loop/y.h5"}})
    assert stale_published("results") == []  # (a copy published again counts by what it names: below)
    Path("results/knn/c/v1/manifest.json").write_text("{")  # a malformed manifest: its file has no known inputs
    write_json("results/c_global.json", {"method": "global", "artifacts": {"knn": "results/knn/c/v1/knn.h5"}})
    os.utime("results/knn/c/v1/knn.h5", (4000, 4000))  # newer than the table, older than the result just written
    assert stale_published("results") == [("results/c_compare.json", "results/knn/c/v1/knn.h5")]


def test_a_result_published_again_from_the_same_files_leaves_its_table_fresh(tmp_path, monkeypatch):
    """A researcher's trial: sv.threshold 8, then back to the default; publish copied the default's sv JSON again,
    newer than the method table and the report that show it, which were named stale although they showed its
    numbers, and asking for them again did nothing. A published result counts by what it was made from: copied
    again from its older evaluation it is not newer; published from an evaluation computed after the table, it is."""
    monkeypatch.chdir(tmp_path)
    for name, t in (("results/ev/a/sv.json", 1000), ("results/ev/b/sv.json", 1000)):
        Path(name).parent.mkdir(parents=True, exist_ok=True)
        Path(name).write_text("{}")
        os.utime(name, (t, t))
    write_json("results/c_sv.json", {"method": "sv", "artifacts": {"evaluation": "results/ev/a/sv.json"}})
    write_json("results/c_compare.json", {"rows": [], "artifacts": {"result_sv": "results/c_sv.json"}})
    os.utime("results/c_sv.json", (2000, 2000))
    os.utime("results/c_compare.json", (2500, 2500))
    assert stale_published("results") == []
    os.utime("results/c_sv.json", (3000, 3000))  # published again, from the same evaluation (switching back)
    assert stale_published("results") == []
    write_json("results/c_sv.json", {"method": "sv", "artifacts": {"evaluation": "results/ev/b/sv.json"}})
    os.utime("results/ev/b/sv.json", (2800, 2800))  # another configuration's, computed after the table
    assert stale_published("results") == [("results/c_compare.json", "results/ev/b/sv.json")]


def test_a_table_whose_row_shows_another_evaluation_than_its_published_result_is_stale(tmp_path, monkeypatch):
    """Another configuration's sv, computed before the table, published again after it: no file is newer than the
    table, which still showed the other numbers without a word. Its row records the evaluation it shows."""
    monkeypatch.chdir(tmp_path)
    for name in ("results/ev/a/sv.json", "results/ev/b/sv.json", "results/ev/g.json"):
        Path(name).parent.mkdir(parents=True, exist_ok=True)
        Path(name).write_text("{}")
        os.utime(name, (1000, 1000))
    write_json("results/c_global.json", {"method": "global", "artifacts": {"evaluation": "results/ev/g.json"}})
    write_json("results/c_sv.json", {"method": "sv", "artifacts": {"evaluation": "results/ev/a/sv.json"}})
    rows = [
        {"method": "global", "evaluation": "results/ev/g.json"},
        {"method": "sv", "evaluation": "results/ev/a/sv.json"},
    ]
    table = {"rows": rows, "artifacts": {"result_global": "results/c_global.json", "result_sv": "results/c_sv.json"}}
    write_json("results/c_compare.json", table)
    for name in ("results/c_global.json", "results/c_sv.json", "results/c_compare.json"):
        os.utime(name, (2000, 2000))
    assert stale_published("results") == []
    write_json("results/c_sv.json", {"method": "sv", "artifacts": {"evaluation": "results/ev/b/sv.json"}})
    os.utime("results/c_sv.json", (1500, 1500))  # no time says it: only the row's evaluation does
    assert stale_published("results") == [("results/c_compare.json", "results/c_sv.json")]
    message = stale_message("results/c_compare.json", "results/c_sv.json")
    assert message.startswith("results/c_compare.json (.md) shows other numbers than results/c_sv.json holds now")
    assert message.endswith("(snakemake ... results/c_compare.md) to bring it up to date")
    write_json("results/c_sv.json", {"method": "sv", "artifacts": {"evaluation": "results/ev/a/sv.json"}})
    assert stale_published("results") == []  # switched back: the table shows it again
    # a report records what it shows in its head: the same for it
    shown = {"results/c_global.json": "results/ev/g.json", "results/c_sv.json": "results/ev/a/sv.json"}
    Path("results/report").mkdir()
    Path("results/report/c.html").write_text(f"<html><head>{report_inputs_meta(list(shown), shown)}</head></html>")
    assert stale_published("results") == []
    write_json("results/c_sv.json", {"method": "sv", "artifacts": {"evaluation": "results/ev/b/sv.json"}})
    os.utime("results/c_sv.json", (1500, 1500))
    assert stale_published("results") == [
        ("results/c_compare.json", "results/c_sv.json"),
        ("results/report/c.html", "results/c_sv.json"),
    ]
    message = stale_message("results/report/c.html", "results/c_sv.json")
    assert message.startswith("results/report/c.html shows other numbers than results/c_sv.json holds now")
    Path("results/c_sv.json").unlink()  # a result gone: passed over, never raised
    assert stale_published("results") == []


def test_a_shortlist_shorter_than_the_re_rankers_setting_is_recorded_and_warned(caplog):
    """A new user's trial: knn.k 10 had sv verify 10 images a query while its JSON said sv.num_rerank 100."""
    with caplog.at_level("WARNING"):
        assert rerank_depth("sv.num_rerank", 100, 10, 35) == 10  # knn.k caps it: said
    assert "sv.num_rerank is 100, but the shortlist holds 10 neighbours a query (knn.k)" in caplog.text
    assert "set knn.k to at least 100, or 0 for every image" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING"):
        assert rerank_depth("sv.num_rerank", 100, 35, 35) == 35  # a database smaller than the setting: all of it
        assert rerank_depth("superglobal.m", 400, 1000, 5000) == 400
    assert caplog.text == ""


def test_a_method_table_older_than_a_result_it_lists_is_stale(tmp_path, monkeypatch):
    """A new user's trial: gnd.json edited, only results/g_sv.json asked for again; g_compare.md kept sv's old Hard
    mAP (99.14 against 98.97) and the run's end named the report but not the table."""
    monkeypatch.chdir(tmp_path)
    made_from = {"result_global": "results/g_global.json", "result_sv": "results/g_sv.json", "knn": "k/knn.h5"}
    Path("k").mkdir()
    Path("k/knn.h5").write_text("")
    write_json("results/g_global.json", {"method": "global", "artifacts": {}})
    Path("k/sv.json").write_text("{}")  # sv's evaluation
    write_json("results/g_sv.json", {"method": "sv", "artifacts": {"evaluation": "k/sv.json"}})
    write_json("results/g_compare.json", {"dataset": "g", "rows": [], "artifacts": made_from})
    for name in ("k/knn.h5", "k/sv.json", "results/g_global.json", "results/g_sv.json"):
        os.utime(name, (1000, 1000))
    os.utime("results/g_compare.json", (2000, 2000))
    assert stale_published("results") == []
    # sv evaluated again in place (gnd.json edited) and published again, the table not asked for: named by the file
    # re-computed (the copy's own time is not the signal: publish copies a result again when switching back)
    os.utime("k/sv.json", (3000, 3000))
    os.utime("results/g_sv.json", (3000, 3000))
    assert stale_published("results") == [("results/g_compare.json", "k/sv.json")]
    assert stale_message("results/g_compare.json", "k/sv.json") == (
        "results/g_compare.json (.md) is older than k/sv.json, which changed since (re-computed in place by a "
        "later run, or edited): its "
        "table is from before; ask for it again (snakemake ... results/g_compare.md) to bring it up to date (if "
        "that finds nothing to do, k/sv.json was changed outside the workflow, or the run that made it failed before publishing: add -R k/sv.json after the target)"
    )


def test_the_stale_warnings_name_the_options_that_make_the_file_again():
    """`snakemake ... {published}` under the defaults made another file, or named the folder as missing where the
    run's --config gave data_root: the run's own --configfile and --config are named, quoted for a shell, as a
    reminder of what the file may have been made with."""
    line = run_options(["my photos.yaml", "b.yaml"], {"data_root": "../d", "sv": {"threshold": 8}})
    assert line.startswith(
        "(`snakemake ...` above: with the options each file was made with, which this run cannot tell; this run's "
        "were --configfile 'my photos.yaml' --configfile b.yaml --config data_root=../d 'sv={threshold: 8}'. "
    )  # a reminder, not the remedy: a table made with another --configfile planned AMES's training (helper-143)
    assert run_options(["a.yaml"], {}).count("--config") == 1
    assert run_options([], {}) == run_options([], None) == ""


def test_a_ranking_file_is_read_by_its_kind_and_arrays(tmp_path):
    path = tmp_path / "sv_ranking.h5"
    write_ranking(path, np.array([[2, 0, 1]]), 3, {"inliers": np.array([[5, 0, 9]], np.int32)})
    got = read_ranking(path, ("ranks", "inliers"))
    assert got["ranks"].dtype == np.int32 and got["ranks"].tolist() == [[2, 0, 1]]
    assert got["inliers"].tolist() == [[5, 0, 9]]
    with pytest.raises(ValueError, match="sv_ranking.h5: a ranking file without 'scores'$"):
        read_ranking(path, ("scores",))
    with h5py.File(path, "a") as f:  # a neighbours file has no 'ranks'; one given in a ranking's place is named
        f.attrs["kind"] = "neighbours"
    with pytest.raises(ValueError, match="not a ranking file .kind='neighbours'; evaluate_. writes"):
        read_ranking(path)
    with pytest.raises(FileNotFoundError):
        read_ranking(tmp_path / "absent.h5")
