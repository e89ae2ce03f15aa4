"""The compare table and the report read the published results/{dataset}_{method}.json: a copy that publish makes
of the versioned evaluation. A hand-edited one (Medium 12.34 with a mean difference outside its own interval),
another method's copied over it, or one missing a key went into both outputs, or failed with a bare KeyError
(helper-143); each is now refused naming the file and the -R that makes it again."""

import json
from types import SimpleNamespace

import numpy as np
import pytest

from retrieval.evaluation.results import EvaluationContext, read_published
from retrieval.runtime import Manifest, read_lists, write_json
from retrieval.stages.search import search_stage
from retrieval.stores.global_store import write_neighbours


def _published(tmp_path, method="sv", **changes):
    evaluation = tmp_path / "eval" / f"{method}.json"
    evaluation.parent.mkdir(exist_ok=True)
    result = {
        "dataset": "lm",
        "method": method,
        "metrics": {"mAP": {"E": 100.0, "M": 97.77, "H": 91.91}},
        "paired_difference": {"M": {"mean": 0.4, "ci95": [-3.95, 4.43]}},
        "n_queries": 16,
        "n_db": 85,
        "hyperparameters": {"sv": {"threshold": 20.0}},
        "versions": {"sv": "abc"},
        "artifacts": {"lists": "results/lists/lm/v/lists.json", "ranking": "r.h5"},
    }
    write_json(evaluation, result)
    published = {**result, "artifacts": {**result["artifacts"], "evaluation": str(evaluation)}, "fitted_on": {}}
    published.update(changes)
    path = tmp_path / f"lm_{method}.json"
    write_json(path, published)
    return path, evaluation


def test_a_published_result_equal_to_its_evaluation_is_read(tmp_path):
    path, _ = _published(tmp_path)
    assert read_published(path, "sv")["metrics"]["mAP"]["M"] == 97.77


def test_an_edited_published_result_is_refused_naming_what_differs(tmp_path):
    path, evaluation = _published(tmp_path, metrics={"mAP": {"E": 100.0, "M": 12.34, "H": 91.91}})
    with pytest.raises(ValueError) as e:
        read_published(path, "sv")
    assert str(e.value) == (
        f"{path}: differs from the evaluation it names, {evaluation} (metrics): edited, or another file copied over "
        f"it? make it again: add -R {path} after your target (snakemake --cores all ... -R {path})"
    )
    evaluation.unlink()  # the evaluation gone (deleted by hand): nothing to compare with, read as it is
    assert read_published(path, "sv")["metrics"]["mAP"]["M"] == 12.34


def test_another_method_s_result_or_a_partial_one_is_refused(tmp_path):
    aqe, _ = _published(tmp_path, method="aqe")
    sv = tmp_path / "lm_sv.json"
    sv.write_bytes(aqe.read_bytes())  # aqe's copied over sv's
    with pytest.raises(ValueError, match=rf"{sv}: holds the results of method 'aqe', not 'sv'; make it again: add -R"):
        read_published(sv, "sv")
    path, _ = _published(tmp_path)
    partial = json.loads(path.read_text())
    del partial["n_db"]
    path.write_text(json.dumps(partial))
    with pytest.raises(ValueError, match=rf"{path}: not a whole published result, n_db missing; make it again"):
        read_published(path, "sv")
    path.write_text(path.read_text()[:40])  # truncated: read_json's message, with the remedy
    with pytest.raises(ValueError, match=rf"{path}: not valid JSON .*; make it again: add -R {path} after your target"):
        read_published(path, "sv")
    path.write_text("[1, 2]")
    with pytest.raises(ValueError, match=r"not a published result \(a JSON list\)"):
        read_published(path, "sv")


class _Named(dict):
    """Snakemake's Namedlist as an evaluation's entry point reads it: attributes and get()."""

    __getattr__ = dict.__getitem__


def test_an_evaluation_refuses_the_workflow_s_copy_of_the_ground_truth_edited(tmp_path):
    """helper-143 moved a hard positive to junk in results/lists/{dataset}/{v}/gnd.json: every evaluation read it
    (global Hard 86.30 to 93.69) without a word, though image_lists' manifest records its SHA-1."""
    lists, gnd = tmp_path / "lists.json", tmp_path / "gnd.json"
    write_json(lists, {"db": [], "query": []})
    write_json(gnd, {"gnd": [{"easy": [0], "hard": [1], "junk": []}]})
    Manifest("image_lists", "v", {}, "cpu").write(tmp_path / "manifest.json", outputs=[lists, gnd])
    smk = SimpleNamespace(
        input=_Named(lists=str(lists), gnd=str(gnd)),
        output=_Named(json="o.json", ranking="o.h5", csv="o.csv"),
        params=_Named(csv_top=5, versions={}, hyperparameters={}, preset="cpu"),
        wildcards=_Named(dataset="lm"),
    )
    assert EvaluationContext.from_snakemake(smk).gnd_path == str(gnd)
    write_json(gnd, {"gnd": [{"easy": [0], "hard": [], "junk": [1]}]})
    with pytest.raises(ValueError) as e:
        EvaluationContext.from_snakemake(smk)
    assert str(e.value).startswith(f"{gnd}: not the file its image_lists recorded in {tmp_path / 'manifest.json'} (")
    assert str(e.value).endswith(
        "edited or damaged since; it is the workflow's copy, read from the dataset's folder: edit the dataset's own "
        f"ground truth (gnd.json, gnd.csv, ...) instead, and make this copy again: add -R {gnd} after your target"
    )


def test_every_stage_reads_the_lists_through_their_record(tmp_path):
    """helper-144 renamed an image in the workflow's lists.json: the merge, aggregation, kNN and search read it (the
    search listed a file that does not exist) while only the evaluations refused it. read_lists, which the stages
    use, checks the file against image_lists' manifest; a db.json (database_list's, its own manifest) is read."""
    lists, gnd, db = tmp_path / "lists.json", tmp_path / "gnd.json", tmp_path / "db.json"
    write_json(lists, {"db": [{"path": "jpg/barn_01.jpg"}], "query": []})
    write_json(gnd, None)
    write_json(db, {"db": [{"path": "jpg/barn_01.jpg"}]})
    Manifest("image_lists", "v", {}, "cpu").write(tmp_path / "manifest.json", outputs=[lists, gnd])
    assert read_lists(lists)["db"][0]["path"] == "jpg/barn_01.jpg" and read_lists(gnd) is None
    write_json(lists, {"db": [{"path": "jpg/barn_0X.jpg"}], "query": []})
    with pytest.raises(ValueError, match=rf"{lists}: not the file its image_lists recorded .* add -R {lists} after"):
        read_lists(lists)
    write_neighbours(tmp_path / "knn.h5", np.zeros((1, 1), np.int32), np.ones((1, 1), np.float32), n_db=1,
                     search="exact", search_seconds=0.0)  # fmt: skip
    with pytest.raises(ValueError, match="not the file its image_lists recorded"):
        search_stage(str(tmp_path / "knn.h5"), str(lists), str(lists), None, None, *(["x"] * 4), "c", "p", "none", 3,
                     None, 3, 10, "v", {}, {})  # fmt: skip
    write_json(db, {"db": []})  # not named by that manifest: read as it is
    assert read_lists(db) == {"db": []}
