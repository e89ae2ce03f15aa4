"""Google Landmarks v2 retrieval: the official layout read as a dataset, malformed files named by line, and the
official mAP@100 against a hand-worked example and an independent transcription of the official loop."""

import json
from dataclasses import replace
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image

from conftest import evaluation_context
from retrieval.data.datasets import build_image_lists
from retrieval.data.gnd import load_ground_truth
from retrieval.data.gnd_formats import gldv2_image, iter_gldv2_train, read_gldv2, read_gldv2_train
from retrieval.evaluation.compare import compare_rows, render_markdown
from retrieval.evaluation.metrics import evaluate_gldv2, evaluate_ground_truth, gldv2_average_precision
from retrieval.evaluation.results import write_reranked_evaluation
from retrieval.runtime import read_json, write_json
from retrieval.stages.ames_evaluate import evaluate_ames_stage
from retrieval.stages.evaluate import evaluate_global
from retrieval.stores.global_store import write_neighbours

INDEX = ["0a1b2c3d4e5f6071", "0a1fffffffffffff", "1b2c3d4e5f607182", "2c3d4e5f60718293", "f0e1d2c3b4a59687"]
TEST = ["9a8b7c6d5e4f3021", "9a8f000000000000", "a1b2c3d4e5f60718", "b2c3d4e5f6071829"]
SOLUTION = (
    "id,images,Usage\n"
    "9a8b7c6d5e4f3021,0a1b2c3d4e5f6071 2c3d4e5f60718293,Public\n"
    "9a8f000000000000,None,Ignored\n"
    "a1b2c3d4e5f60718,f0e1d2c3b4a59687,Private\n"
    "b2c3d4e5f6071829,1b2c3d4e5f607182 0a1fffffffffffff f0e1d2c3b4a59687,Private\n"
)


def _gldv2(root: Path, index=INDEX, test=TEST, solution=SOLUTION, images=True, skip=()) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "index.csv").write_text("id\n" + "".join(f"{i}\n" for i in index))
    (root / "test.csv").write_text("id,url\n" + "".join(f"{i},http://example.invalid/{i}.jpg\n" for i in test))
    (root / "retrieval_solution_v2.1.csv").write_text(solution)
    if images:
        for part, ids in (("index", index), ("test", test)):
            for i in ids:
                if i in skip:
                    continue
                p = root / gldv2_image(part, i)
                p.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(np.full((24, 32, 3), 100, np.uint8)).save(p)
    return root


def test_layout_paths_usage_and_ignored_queries(tmp_path):
    root = _gldv2(tmp_path / "gldv2")
    lists, gt = build_image_lists(root, "gldv2")
    assert gldv2_image("index", "0a1b2c3d4e5f6071") == "index/0/a/1/0a1b2c3d4e5f6071.jpg"
    assert lists["db"][0]["path"] == str((root / "index/0/a/1/0a1b2c3d4e5f6071.jpg").resolve())
    assert lists["query"][0]["path"] == str((root / "test/9/a/8/9a8b7c6d5e4f3021.jpg").resolve())
    # the Ignored query is not a query (not listed, so never extracted)
    assert [Path(q).stem for q in gt.qimlist] == ["9a8b7c6d5e4f3021", "a1b2c3d4e5f60718", "b2c3d4e5f6071829"]
    assert [g["usage"] for g in gt.gnd] == ["Public", "Private", "Private"]
    assert [g["easy"] for g in gt.gnd] == [[0, 3], [4], [1, 2, 4]]
    assert gt.to_json()["protocol"] == "gldv2" and gt.subset is None
    (tmp_path / "gnd.json").write_text(json.dumps(gt.to_json()))

    again = load_ground_truth(tmp_path / "gnd.json")  # what the lists stage writes, read back
    assert again.protocol == "gldv2" and [g["usage"] for g in again.gnd] == ["Public", "Private", "Private"]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"solution": "id,images\n"}, r"retrieval_solution_v2\.1\.csv:1: .*lacks column\(s\) \['usage'\]"),
        ({"index": INDEX + [INDEX[1]]}, r"index\.csv:7: duplicate id '0a1fffffffffffff' \(first on line 3\)"),
        ({"test": TEST + [TEST[0]]}, r"test\.csv:6: duplicate id '9a8b7c6d5e4f3021' \(first on line 2\)"),
        (
            {"solution": SOLUTION + "ffffffffffffffff,0a1b2c3d4e5f6071,Public\n"},
            r"retrieval_solution_v2\.1\.csv:6: id 'ffffffffffffffff' is not in test\.csv",
        ),
        (
            {"solution": SOLUTION.replace("f0e1d2c3b4a59687,Private", "eeeeeeeeeeeeeeee,Private", 1)},
            r"retrieval_solution_v2\.1\.csv:4: image id\(s\) \['eeeeeeeeeeeeeeee'\] are not in index\.csv",
        ),
        (
            {"solution": SOLUTION + "9a8b7c6d5e4f3021,0a1b2c3d4e5f6071,Public\n"},
            r"retrieval_solution_v2\.1\.csv:6: duplicate id '9a8b7c6d5e4f3021' \(first on line 2\)",
        ),
        ({"solution": SOLUTION.replace("Ignored", "Secret")}, r"retrieval_solution_v2\.1\.csv:3: Usage 'Secret'"),
        (
            {"solution": SOLUTION.replace("None,Ignored", "None,Public")},
            r"retrieval_solution_v2\.1\.csv:3: a Public query without relevant images",
        ),
        ({"solution": "\n".join(SOLUTION.splitlines()[:4]) + "\n"}, r"1 test\.csv id\(s\) have no row"),
        ({"index": ["0a"]}, r"index\.csv:2: id '0a' is not an image id"),
    ],
)
def test_malformed_files_name_file_and_line(tmp_path, kwargs, match):
    root = _gldv2(tmp_path / "gldv2", images=False, **kwargs)
    with pytest.raises(ValueError, match=match):
        read_gldv2(root)


def test_missing_solution_file_is_named(tmp_path):
    root = _gldv2(tmp_path / "gldv2", images=False)
    (root / "retrieval_solution_v2.1.csv").unlink()
    with pytest.raises(FileNotFoundError, match=r"retrieval_solution_v2\.1\.csv: not found"):
        read_gldv2(root)
    (root / "index.csv").unlink()
    with pytest.raises(FileNotFoundError, match=r"index\.csv: not found \(GLDv2 layout"):
        read_gldv2(root)


def test_present_only_restricts_ground_truth_and_says_so(tmp_path):
    # index image 4 (relevant to both Private queries) and the Public query are not downloaded
    root = _gldv2(tmp_path / "gldv2", skip=(INDEX[4], TEST[0]))
    with pytest.raises(FileNotFoundError):
        build_image_lists(root, "gldv2")  # the full solution names files that are absent
    lists, gt = build_image_lists(root, "gldv2", gldv2={"present_only": True})
    assert len(gt.imlist) == 4 and [Path(q).stem for q in gt.qimlist] == ["b2c3d4e5f6071829"]
    assert gt.gnd[0]["easy"] == [1, 2]  # index 4 dropped, 1 and 2 keep their rows
    assert gt.subset["queries_dropped"] == 2 and gt.subset["queries_official"] == 3
    assert lists["subset"]["index_images"] == 4 and "not comparable" in lists["subset"]["note"]


# --------------------------------------------------------------------------------------------- mAP@100
def _official_map(predictions: dict, solution: dict, max_predictions: int = 100) -> float:
    """An independent transcription of the official loop (DELF google_landmarks_dataset/metrics.py,
    MeanAveragePrecision), on id strings: kept separate from the implementation under test."""
    mean_ap = 0.0
    for key, prediction in predictions.items():
        if key not in solution:
            raise ValueError(key)
        ap, already, correct = 0.0, set(), 0
        expected = min(len(solution[key]), max_predictions)
        for i in range(min(len(prediction), max_predictions)):
            if prediction[i] not in already:
                if prediction[i] in solution[key]:
                    correct += 1
                    ap += correct / (i + 1)
                already.add(prediction[i])
        mean_ap += ap / expected
    return mean_ap / len(solution)


def test_map_at_100_hand_worked():
    # relevant {3, 7, 9}; hits at positions 1, 3 (7), a duplicate of 3 at position 4, and 9 at position 6:
    # AP = (1/1 + 2/3 + 3/6) / min(3, 100) = (1 + 0.6667 + 0.5) / 3 = 0.7222...
    assert gldv2_average_precision([3, 0, 7, 3, 1, 9], {3, 7, 9}) == pytest.approx((1 + 2 / 3 + 3 / 6) / 3)
    # a relevant image at position 101 does not count; 150 relevant images divide by 100, not 150
    assert gldv2_average_precision(list(range(1, 101)) + [0], {0}) == 0.0
    assert gldv2_average_precision(list(range(100)), set(range(150))) == pytest.approx(1.0)
    assert gldv2_average_precision([], {1}) == 0.0  # no predictions: 0
    with pytest.raises(ValueError):
        gldv2_average_precision([1], set())


def test_map_at_100_equals_the_official_loop_public_private_apart():
    rng = np.random.default_rng(3)
    n_db, n_q = 400, 60
    usage = ["Public" if i % 3 else "Private" for i in range(n_q)]
    relevant = [set(rng.choice(n_db, size=int(rng.integers(1, 160)), replace=False).tolist()) for _ in range(n_q)]
    ranks = np.stack([rng.permutation(n_db)[:100] for _ in range(n_q)])
    ranks[:, 50:] = ranks[:, :50]  # duplicates in the second half: each counts once, at its first position
    gnd = {
        "protocol": "gldv2",
        "imlist": [],
        "qimlist": [],
        "gnd": [{"easy": sorted(r), "hard": [], "junk": [], "usage": u} for r, u in zip(relevant, usage)],
    }
    m = evaluate_ground_truth(ranks, gnd, n_db)
    assert set(m["per_query_ap"]) == {"Public", "Private"}
    for part in ("Public", "Private"):
        sol = {f"q{i}": {f"d{j}" for j in relevant[i]} for i in range(n_q) if usage[i] == part}
        pred = {f"q{i}": [f"d{j}" for j in ranks[i]] for i in range(n_q) if usage[i] == part}
        assert m["mAP@100"][part] == pytest.approx(100 * _official_map(pred, sol), abs=1e-4)
        assert m["n_evaluated"][part] == len(sol)
    # a full ranking scores exactly as its top 100 (what the lists store for GLDv2)
    full = np.concatenate([ranks[:, :50], np.stack([np.setdiff1d(np.arange(n_db), r[:50]) for r in ranks])], axis=1)
    assert (
        evaluate_gldv2(full, gnd["gnd"], n_db)["mAP@100"] == evaluate_gldv2(full[:, :100], gnd["gnd"], n_db)["mAP@100"]
    )
    # a query without relevant images is named (the metric's own ValueError did not say which)
    empty = [dict(g) for g in gnd["gnd"]]
    empty[2]["easy"] = []
    with pytest.raises(ValueError, match=r"gnd\[2\]: a (Public|Private) query without relevant index images"):
        evaluate_gldv2(ranks, empty, n_db)


def test_evaluate_global_reports_gldv2_metrics_from_a_top_100_shortlist(tmp_path):

    root = _gldv2(tmp_path / "gldv2")
    lists, gt = build_image_lists(root, "gldv2")
    write_json(tmp_path / "lists.json", lists)
    write_json(tmp_path / "gnd.json", gt.to_json())
    ids = np.array([[3, 0, 1], [4, 2, 1], [2, 3, 0]])  # top 3 of 5 stored: enough for mAP@100 semantics here
    write_neighbours(tmp_path / "knn.h5", ids, np.ones(ids.shape, np.float32))
    ctx = evaluation_context(
        tmp_path, "g", dataset="gldv2", csv_top=3, preset="tiny", ks=[1, 5, 10], baseline_json=None
    )
    evaluate_global(ctx, tmp_path / "knn.h5", {})
    r = read_json(tmp_path / "g.json")
    # Public: relevant {0, 3} at positions 1, 2 -> 1.0; Private: {4} at 1 -> 1.0 and {1, 2, 4} at 1 -> 1/3
    assert r["metrics"] == {"mAP@100": {"Public": 100.0, "Private": pytest.approx(100 * (1 + 1 / 3) / 2, abs=1e-3)}}
    assert r["n_evaluated_queries"] == {"Public": 1, "Private": 2} and "ground_truth_subset" not in r
    better = np.array([[0, 3, 1], [4, 2, 1], [2, 1, 4]])
    sv_ctx = replace(
        ctx,
        out_json=tmp_path / "sv.json",
        out_ranking=tmp_path / "sv.h5",
        out_csv=tmp_path / "sv.csv",
        baseline_json=tmp_path / "g.json",
        n_bootstrap=100,
    )

    def reranked(sv_context, knn):  # sv's evaluation of the ranking `better` over the shortlist in `knn`
        write_reranked_evaluation(
            sv_context, "sv", better, np.ones(better.shape), ids, lists, read_json(tmp_path / "gnd.json"), knn, {}
        )
        return read_json(sv_context.out_json)

    s = reranked(sv_ctx, tmp_path / "knn.h5")
    assert s["metrics"]["mAP@100"]["Private"] == 100.0 and s["baseline"]["metrics"] == r["metrics"]
    assert s["paired_difference"]["Private"]["improved"] == 1 and set(s["paired_difference"]) == {"Public", "Private"}
    # the Public query without features: its ranking becomes the database order (0, 1, 2: AP@100 0.5 by luck); it
    # scores 0 in global's evaluation, in a re-ranked one and in that one's baseline
    none = (np.array([True, False, False]), np.zeros(len(lists["db"]), bool))
    write_neighbours(tmp_path / "knn0.h5", ids, np.ones(ids.shape, np.float32), featureless=none, n_db=len(lists["db"]))
    evaluate_global(replace(ctx, out_json=tmp_path / "g0.json"), tmp_path / "knn0.h5", {})
    g0 = read_json(tmp_path / "g0.json")
    assert g0["queries_without_features"] == [lists["query"][0]["name"]]
    assert (
        g0["metrics"]["mAP@100"]["Public"] == 0.0
        and g0["metrics"]["mAP@100"]["Private"] == r["metrics"]["mAP@100"]["Private"]
    )
    s0 = reranked(
        replace(sv_ctx, out_json=tmp_path / "sv0.json", baseline_json=tmp_path / "g0.json"), tmp_path / "knn0.h5"
    )
    assert s0["metrics"]["mAP@100"]["Public"] == 0.0 and s0["baseline"]["metrics"]["mAP@100"]["Public"] == 0.0


def test_an_mp_at_k_deeper_than_the_database_is_warned(tmp_path, caplog):
    """A new user's trial: evaluate.ks [1, 500] on 85 images reported mP@500 without a word."""
    root = _gldv2(tmp_path / "gldv2")
    lists, gt = build_image_lists(root, "gldv2")
    write_json(tmp_path / "lists.json", lists)
    write_json(tmp_path / "gnd.json", {**gt.to_json(), "protocol": "revisitop"})  # mP@k is revisitop's
    ids = np.array([[3, 0, 1, 2, 4], [4, 2, 1, 0, 3], [2, 3, 0, 1, 4]])
    write_neighbours(tmp_path / "knn.h5", ids, np.ones(ids.shape, np.float32))
    ctx = evaluation_context(tmp_path, "g", dataset="x", csv_top=3, preset="tiny", ks=[1, 5], baseline_json=None)
    with caplog.at_level("WARNING"):
        evaluate_global(ctx, tmp_path / "knn.h5", {})
    assert "mP@" not in caplog.text  # 5 of 5 images: not past it
    caplog.clear()
    with caplog.at_level("WARNING"):
        evaluate_global(replace(ctx, ks=[1, 6, 500]), tmp_path / "knn.h5", {})
    assert "evaluate.ks: mP@6/500 reach(es) past the 5 database images of x, and equal(s) mP@5 there" in caplog.text
    r = read_json(tmp_path / "g.json")
    assert r["metrics"]["mP@6"] == r["metrics"]["mP@500"]  # what the warning says: revisitop's min(k, last rank)


# ------------------------------------------------------------------------------------ the training split
TRAIN = {
    "0a0b0c0d0e0f1011": 7,
    "0a0b0c0d0e0f1012": 7,
    "1b0b0c0d0e0f1013": 12,
    "2c0b0c0d0e0f1014": 12,
    "3d0b0c0d0e0f1015": 99,
}


def _train(root: Path, files=True, skip=()):
    root.mkdir(parents=True, exist_ok=True)
    by_landmark: dict[int, list[str]] = {}
    for i, lm in TRAIN.items():
        by_landmark.setdefault(lm, []).append(i)
    (root / "train_clean.csv").write_text(
        "landmark_id,images\n" + "".join(f"{lm},{' '.join(ids)}\n" for lm, ids in by_landmark.items())
    )
    (root / "train_750k.txt").write_text("".join(f"{gldv2_image('train', i)},{lm},32,24\n" for i, lm in TRAIN.items()))
    if files:
        for i in TRAIN:
            if i not in skip:
                p = root / gldv2_image("train", i)
                p.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(np.full((24, 32, 3), 90, np.uint8)).save(p)
    return root


@pytest.mark.parametrize("train_list", ["train_clean.csv", "train_750k.txt"])
def test_training_split_labels_exclusion_and_present_only(tmp_path, train_list):
    root = _train(tmp_path / "gldv2-train", skip=("2c0b0c0d0e0f1014",))
    (tmp_path / "overlap.txt").write_text("# landmarks also in ROxford/RParis\n99\n")
    opts = {"train_list": train_list, "exclude_landmarks": str(tmp_path / "overlap.txt"), "present_only": True}
    lists, gt = build_image_lists(root, "gldv2-train", gldv2=opts)
    assert gt.qimlist == [] and lists["query"] == []
    assert [Path(n).stem for n in gt.imlist] == ["0a0b0c0d0e0f1011", "0a0b0c0d0e0f1012", "1b0b0c0d0e0f1013"]
    assert gt.labels == [7, 7, 12] and [e["label"] for e in lists["db"]] == [7, 7, 12]
    assert lists["db"][2]["path"] == str((root / "train/1/b/0/1b0b0c0d0e0f1013.jpg").resolve())
    assert gt.subset == {"present_only": True, "listed": 5, "excluded_by_landmark": 1, "images": 3, "landmarks": 2}


def test_training_lists_stream_and_name_bad_lines(tmp_path):

    root = _train(tmp_path / "t", files=False)
    rows = iter_gldv2_train(root / "train_clean.csv")
    assert next(rows) == ("0a0b0c0d0e0f1011", 7)  # a generator: rows are read as they are consumed
    (root / "train_clean.csv").write_text("landmark_id,images\n7,0a0b0c0d0e0f1011\nx,0a0b0c0d0e0f1012\n")
    with pytest.raises(ValueError, match=r"train_clean\.csv:3: landmark_id 'x' is not an integer"):
        read_gldv2_train(root)
    (root / "train_clean.csv").write_text(
        "landmark_id,images\n7,0a0b0c0d0e0f1011\n8,1b0b0c0d0e0f1013 0a0b0c0d0e0f1011\n"
    )
    with pytest.raises(
        ValueError, match=r"train_clean\.csv:3: image '0a0b0c0d0e0f1011' is listed again \(first on line 2\)"
    ):
        read_gldv2_train(root)
    (root / "train_clean.csv").write_text("landmark,images\n7,0a0b0c0d0e0f1011\n")
    with pytest.raises(ValueError, match=r"train_clean\.csv:1: .*lacks column\(s\) \['landmark_id'\]"):
        read_gldv2_train(root)
    (root / "train_750k.txt").write_text(
        "train/0/a/0/0a0b0c0d0e0f1011.jpg,7,32,24\ntrain/1/b/1/1b0b0c0d0e0f1013.jpg,3,1,1\n"
    )
    with pytest.raises(
        ValueError, match=r"train_750k\.txt:2: 'train/1/b/1/1b0b0c0d0e0f1013\.jpg' is not at train/a/b/c"
    ):
        read_gldv2_train(root, "train_750k.txt")
    (tmp_path / "ex.txt").write_text("7\nseven\n")
    with pytest.raises(ValueError, match=r"ex\.txt:2: 'seven' is not a landmark id"):
        read_gldv2_train(root, exclude_landmarks=tmp_path / "ex.txt")


def test_ames_on_gldv2_is_chosen_on_public_and_reported_on_private(tmp_path):

    root = _gldv2(tmp_path / "gldv2")
    lists, gt = build_image_lists(root, "gldv2")
    write_json(tmp_path / "lists.json", lists)
    write_json(tmp_path / "gnd.json", gt.to_json())
    # relevant: Public q0 {0, 3}; Private q1 {4}, q2 {1, 2, 4}. The global top 4 puts them late; the logits know.
    ids = np.array([[1, 2, 0, 3], [0, 1, 4, 2], [0, 3, 1, 2]])
    sims = np.tile(np.array([0.9, 0.8, 0.7, 0.6], np.float32), (3, 1))
    write_neighbours(tmp_path / "knn.h5", ids, sims)
    relevant = [{0, 3}, {4}, {1, 2, 4}]
    pair_db = np.sort(ids, axis=1).astype(np.int32)
    logit = np.array([[5.0 if j in relevant[i] else -5.0 for j in row] for i, row in enumerate(pair_db)], np.float32)
    with h5py.File(tmp_path / "logits.h5", "w") as h:
        h.create_dataset("pair_db", data=pair_db)
        h.create_dataset("logits", data=logit)
        h.attrs.update({"kind": "ames_logits", "max_rerank": 4, "seconds": 0.0, "n_pairs": 12})
    write_json(tmp_path / "global.json", {})
    grid = {"num_rerank": [4], "lambda": [0.0, 1.0], "gamma": [1.0]}
    ctx = evaluation_context(tmp_path, "ames", dataset="gldv2", csv_top=3, preset="tiny", n_bootstrap=100)
    evaluate_ames_stage(
        ctx,
        tmp_path / "logits.h5",
        tmp_path / "knn.h5",
        tmp_path / "grid.csv",
        "ames",
        grid,
        "validation",
        {},
        None,
        "demo-val",
        "none",
    )
    r = read_json(tmp_path / "ames.json")
    assert r["chosen"]["lambda"] == 0.0 and "Public" in r["chosen"]["selected_on"]
    # re-ranked: q2's relevant image 4 is outside its shortlist, so q2 scores (1/1 + 2/2) / 3 and Private is 83.33
    assert r["metrics"] == {"mAP@100": {"Public": 100.0, "Private": pytest.approx(100 * (1 + 2 / 3) / 2, abs=1e-3)}}
    # global order: Public hits at 3, 4 -> (1/3 + 2/4) / 2; Private q1 at 3 -> 1/3, q2 at 3, 4 -> (1/3 + 2/4) / 3
    assert r["baseline"]["metrics"]["mAP@100"]["Public"] == pytest.approx(100 * (1 / 3 + 2 / 4) / 2, abs=1e-3)
    assert r["baseline"]["metrics"]["mAP@100"]["Private"] == pytest.approx(
        100 * (1 / 3 + (1 / 3 + 2 / 4) / 3) / 2, abs=1e-3
    )
    assert [row["mAP@100_Private"] for row in r["grid"]] == [
        r["metrics"]["mAP@100"]["Private"],
        r["baseline"]["metrics"]["mAP@100"]["Private"],
    ]
    assert set(r["paired_difference"]) == {"Public", "Private"}


def test_compare_table_uses_the_dataset_metric_set():

    def res(method, pub, priv, diff=None):
        r = {
            "n_queries": 3,
            "n_db": 5,
            "metrics": {"mAP@100": {"Public": pub, "Private": priv}},
            "timing": {"ms_per_query": {"reads": 0.0, "rerank": 1.0}},
        }
        if diff is not None:
            r["paired_difference"] = {
                "Public": {"mean": 0.0, "ci95": [0, 0]},
                "Private": {"mean": diff, "ci95": [-1.0, 2.0]},
            }
        return r

    rows = compare_rows({"global": res("global", 40.0, 38.5), "sv": res("sv", 50.0, 47.25, 8.75)}, 0.003)
    assert rows[1]["mAP@100"] == {"Public": 50.0, "Private": 47.25} and rows[1]["difference_Private"]["mean"] == 8.75
    md = render_markdown("gldv2", rows)
    assert "| method | Public | Private | Private − global [95% CI] |" in md
    assert "| sv | 50.00 | 47.25 | +8.75 [-1.00, +2.00] |" in md
    # revisitop results keep their E/M/H table; a part without evaluated queries (INSTRE's Hard) prints '-'
    r = {"n_queries": 2, "n_db": 9, "metrics": {"mAP": {"E": 60.0, "M": 60.0, "H": None}}, "timing": {}}
    assert "| global | 60.00 | 60.00 | - |" in render_markdown("instre", compare_rows({"global": r}, None))
    # the footer says how many queries the means score when some have no positive (a gnd.csv query declared without)
    assert "\n2 queries, 9 database images." in render_markdown("instre", compare_rows({"global": r}, None))
    r["n_evaluated_queries"] = {"E": 2, "M": 2, "H": 0}
    md = render_markdown("instre", compare_rows({"global": r}, None))
    assert "\n2 queries (the means score fewer: H 0), 9 database images." in md


def test_a_truncated_shortlist_names_its_own_file_and_the_way_out(tmp_path):
    """An imported nn_*.pkl of K < the database was refused naming the knn file and the knn settings, which do not
    apply to an import (helper-99's trial); a searched shortlist still names knn.k."""
    root = _gldv2(tmp_path / "gldv2")
    lists, gt = build_image_lists(root, "gldv2")
    write_json(tmp_path / "lists.json", lists)
    write_json(tmp_path / "gnd.json", {**gt.to_json(), "protocol": "revisitop"})
    ids = np.array([[3, 0], [4, 2], [2, 3]])
    ctx = evaluation_context(tmp_path, "g", dataset="x", csv_top=3, preset="tiny", ks=[1], baseline_json=None)
    write_neighbours(tmp_path / "knn.h5", ids, np.ones(ids.shape, np.float32), n_db=5)
    with pytest.raises(ValueError, match=r"knn\.h5: rankings hold 2 of 5 images; .*\(set knn\.k: 0"):
        evaluate_global(ctx, tmp_path / "knn.h5", {})
    write_neighbours(
        tmp_path / "knn.h5", ids, np.ones(ids.shape, np.float32), n_db=5, search="imported", source="/r/nn_sift.pkl"
    )
    with pytest.raises(ValueError, match=r"^/r/nn_sift\.pkl \(imported as .*knn\.h5\): rankings hold 2 of 5 .*K = the"):
        evaluate_global(ctx, tmp_path / "knn.h5", {})


def test_every_bad_solution_line_is_named_in_one_run_and_usage_is_read_in_any_case(tmp_path):
    """One bad line per run, and 'private' refused where gnd.csv reads 'Hard' (helper-99's trial)."""
    bad = SOLUTION.replace("Ignored", "Secret").replace("f0e1d2c3b4a59687,Private", "eeeeeeeeeeeeeeee,Private", 1)
    root = _gldv2(tmp_path / "bad", images=False, solution=bad)
    with pytest.raises(ValueError) as e:
        read_gldv2(root)
    lines = str(e.value).splitlines()
    assert lines[0].endswith("retrieval_solution_v2.1.csv: 2 bad lines (fix them all, then run again):")
    assert "csv:3: Usage 'Secret'" in lines[1] and "csv:4: image id(s) ['eeeeeeeeeeeeeeee']" in lines[2]
    cased = SOLUTION.replace("Private", "private").replace("Public", "PUBLIC").replace("None", "none")
    root = _gldv2(tmp_path / "cased", images=False, solution=cased)
    assert [g["usage"] for g in read_gldv2(root).gnd] == ["Public", "Private", "Private"]
    # a test id without a row came on the run after the bad lines (helper-101): in the same error now
    root = _gldv2(tmp_path / "both", images=False, solution="\n".join(bad.splitlines()[:4]) + "\n")
    with pytest.raises(ValueError) as e:
        read_gldv2(root)
    assert ": 3 bad lines" in str(e.value).splitlines()[0] and "1 test.csv id(s) have no row" in str(e.value)


def test_a_ground_truth_without_any_positive_is_warned(tmp_path, caplog):
    """A new user's trial: a gnd.csv in which no query has a positive gave null metrics and a silent success."""
    root = _gldv2(tmp_path / "gldv2")
    lists, gt = build_image_lists(root, "gldv2")
    write_json(tmp_path / "lists.json", lists)
    gnd = {**gt.to_json(), "protocol": "revisitop"}
    gnd["gnd"] = [{**g, "easy": [], "hard": []} for g in gnd["gnd"]]
    write_json(tmp_path / "gnd.json", gnd)
    ids = np.array([[3, 0, 1, 2, 4], [4, 2, 1, 0, 3], [2, 3, 0, 1, 4]])
    write_neighbours(tmp_path / "knn.h5", ids, np.ones(ids.shape, np.float32))
    ctx = evaluation_context(tmp_path, "g", dataset="x", csv_top=3, preset="tiny", ks=[1, 5], baseline_json=None)
    with caplog.at_level("WARNING"):
        evaluate_global(ctx, tmp_path / "knn.h5", {})
    assert "x: no query has a positive in its ground truth under any protocol (E/M/H), so every mAP" in caplog.text
    r = read_json(tmp_path / "g.json")
    assert r["n_evaluated_queries"] == {"E": 0, "M": 0, "H": 0} and r["metrics"]["mAP"]["M"] is None


def test_a_missing_image_is_named_by_its_line_of_index_or_test_csv_with_the_partial_download_setting(tmp_path):
    """helper-118's trial: an index image missing from disk was said to be listed in the solution file (where its id
    was not), with no line and nothing on present_only, the README's setting for a partial download."""
    root = _gldv2(tmp_path / "gldv2", skip=(INDEX[1],))
    with pytest.raises(FileNotFoundError) as e:
        build_image_lists(root, "gldv2")
    message = str(e.value)
    assert f"1 database image(s) listed in {root.resolve() / 'index.csv'} but not found" in message
    assert f"{gldv2_image('index', INDEX[1])} (line 3)" in message
    assert message.endswith(
        "a partial download? gldv2: {present_only: true} keeps the images on disk and the "
        "ground truth of those (README, 'Google Landmarks v2')"
    )
    root = _gldv2(tmp_path / "gldv2b", skip=(TEST[2],))
    with pytest.raises(
        FileNotFoundError,
        match=r"1 query image\(s\) listed in .*test\.csv but not found: .*a1b2c3d4e5f60718\.jpg \(line 4\)",
    ):
        build_image_lists(root, "gldv2")
    lists, _ = build_image_lists(root, "gldv2", gldv2={"present_only": True})  # the setting named works
    assert len(lists["query"]) == 2
