"""The HTML report reads each dataset's metric set: revisitop's E/M/H, or GLDv2's mAP@100 Public / Private."""

import json
import os

import numpy as np
from PIL import Image

from retrieval.evaluation.report import (
    _thumb,
    grid_at,
    metrics_table,
    precision_key,
    retrieved_images,
    retrieved_names,
    write_report,
)
from retrieval.evaluation.results import stale_published, write_ranking
from retrieval.stages.search import contact_sheet


def gldv2_result(method, public, private, baseline=None):
    r = {
        "dataset": "g",
        "method": method,
        "preset": "cpu",
        "n_queries": 3,
        "n_db": 4,
        "metrics": {"mAP@100": {"Public": public, "Private": private}},
        "per_query_ap": {
            "Public": {"query": ["q0", "q1", "q2"], "ap": [0.5, None, None]},
            "Private": {"query": ["q0", "q1", "q2"], "ap": [None, 0.25, 0.75]},
        },
    }
    if baseline is not None:
        r["baseline"] = {"method": "global", "metrics": baseline["metrics"]}
        r["paired_difference"] = {
            "Private": {"mean": 12.5, "ci95": [2.0, 20.0]},
            "Public": {"mean": 0.0, "ci95": [0, 0]},
        }
        for p in ("Public", "Private"):
            r["per_query_ap"][p]["baseline_ap"] = baseline["per_query_ap"][p]["ap"]
        r["chosen"] = {"num_rerank": 2, "lambda": 0.5, "gamma": 1.0, "selected_on": "g Public queries"}
        r["grid"] = [
            {
                "num_rerank": k,
                "lambda": lam,
                "gamma": 1.0,
                "mAP@100_Public": 50.0 + k + lam,
                "mAP@100_Private": 40.0 + k - lam,
            }
            for k in (1, 2)
            for lam in (0.0, 0.5)
        ]
    return r


def test_metrics_table_of_gldv2_results_shows_public_and_private():
    base = gldv2_result("global", 50.0, 41.25)
    html = metrics_table({"global": base, "ames": gldv2_result("ames", 50.0, 53.75, base)})
    assert "mAP@100 Public" in html and "mAP@100 Private" in html and "mAP E" not in html
    assert "<td>41.25</td>" in html and "<td>53.75</td>" in html and "+12.50 [+2.00, +20.00]" in html


def test_revisitop_table_unchanged():
    r = {"metrics": {"mAP": {"E": 90.0, "M": 80.5, "H": 60.0}, "mP@10": {"E": 1, "M": 70.0, "H": 2}}}
    html = metrics_table({"global": r})
    assert "mAP M" in html and "<td>80.50</td>" in html and "<td>70.00</td>" in html


def test_write_report_on_gldv2_results(tmp_path):
    paths = []
    for i, colour in enumerate([(200, 0, 0), (0, 200, 0), (0, 0, 200), (90, 90, 90)]):
        p = tmp_path / f"im{i}.jpg"
        Image.new("RGB", (40, 30), colour).save(p)
        paths.append(str(p))
    lists = {
        "db": [{"path": paths[0], "name": "d0"}, {"path": paths[1], "name": "d1"}],
        "query": [{"path": paths[2], "name": f"q{i}", "crop": None} for i in range(3)],
        "crop_queries": True,
    }
    gnd = {
        "protocol": "gldv2",
        "gnd": [
            {"easy": [0], "usage": "Public"},
            {"easy": [1], "usage": "Private"},
            {"easy": [0, 1], "usage": "Private"},
        ],
    }
    base = gldv2_result("global", 50.0, 41.25)
    results = {"global": base, "ames": gldv2_result("ames", 50.0, 53.75, base)}
    files = {}
    for m, r in results.items():
        (tmp_path / f"{m}.json").write_text(json.dumps(r))
        write_ranking(tmp_path / f"{m}.h5", np.array([[0, 1], [1, 0], [1, 0]]), 2)
        files[m] = (str(tmp_path / f"{m}.json"), str(tmp_path / f"{m}.h5"))
    (tmp_path / "lists.json").write_text(json.dumps(lists))
    (tmp_path / "gnd.json").write_text(json.dumps(gnd))
    out = tmp_path / "report" / "g.html"
    out.parent.mkdir()
    write_report(
        out,
        "g",
        {m: f[0] for m, f in files.items()},
        {m: f[1] for m, f in files.items()},
        {},
        [],
        str(tmp_path / "lists.json"),
        str(tmp_path / "gnd.json"),
        2,
        2,
    )
    page = out.read_text()
    assert "mAP@100 Private over the grid" in page and "mAP@100 Private" in page
    assert "Top 2 retrieved by ames" in page  # the best Private mAP@100 is the one shown
    assert page.count("<img") >= 4  # grid, mAP vs num_rerank, per-query scatter, thumbnails
    assert "(green: positive, red: negative, grey: junk)" in page
    # the files it was made from, in its head, for the stale check that ends every run (a new user's trial: a report
    # kept "4 queries" after gnd.csv gained one and only the published results were asked for again)
    os.utime(out, (2000, 2000))
    for f in [*files.values(), ("lists.json", "gnd.json")]:
        os.utime(tmp_path / f[0], (1000, 1000))
        os.utime(tmp_path / f[1], (1000, 1000))
    assert stale_published(tmp_path) == []
    os.utime(tmp_path / "ames.json", (3000, 3000))  # results/{dataset}_ames.json published again
    assert stale_published(tmp_path) == [(str(out), str(tmp_path / "ames.json"))]
    # a folder without ground truth: no colour legend for borders that are not drawn
    (tmp_path / "gnd.json").write_text("null")
    args = ({m: f[0] for m, f in files.items()}, {m: f[1] for m, f in files.items()}, {}, [])
    write_report(out, "g", *args, str(tmp_path / "lists.json"), str(tmp_path / "gnd.json"), 2, 2)
    page = out.read_text()
    assert "No ground truth: rankings only." in page and "green:" not in page
    # the last method listed is shown, not global (it hid the re-ranker asked for: a new user's trial)
    assert "Top 2 retrieved by ames (the last method listed: no metrics to choose by)" in page
    # report.top above the database's size: the title says what is shown (it said "Top 50" over 36 images)
    write_report(out, "g", *args, str(tmp_path / "lists.json"), str(tmp_path / "gnd.json"), 2, 50)
    assert "Top 2 retrieved by ames" in out.read_text()


def test_the_grid_is_read_at_the_chosen_geometric_weight():
    rows = [
        {"num_rerank": 5, "lambda": lam, "gamma": 1.0, "geometry_weight": mu, "mAP_M": 10 * lam + mu}
        for lam in (0.0, 0.5)
        for mu in (0.0, 0.3, 1.0)
    ]
    at, mu = grid_at(rows, {"num_rerank": 5, "lambda": 0.5, "gamma": 1.0, "geometry_weight": 0.3})
    assert mu == 0.3 and [r["mAP_M"] for r in at] == [0.3, 5.3]  # not the last weight's slice (1.0)
    assert grid_at(rows, {"num_rerank": 5, "lambda": 0.5, "gamma": 1.0})[1] == 0.0  # no weight chosen: AMES alone
    # a fixed point's weight off the grid (0.2): the nearest weight's slice, not an empty one that failed the report
    at, mu = grid_at(rows, {"num_rerank": 5, "lambda": 0.5, "gamma": 1.0, "geometry_weight": 0.2})
    assert mu == 0.3 and len(at) == 2
    plain = [{k: v for k, v in r.items() if k != "geometry_weight"} for r in rows[:2]]
    assert grid_at(plain, {"geometry_weight": 0.0}) == (plain, None)  # no geometric axis: the grid as it is


def test_an_unreadable_image_is_drawn_crossed_out_in_its_place(tmp_path, caplog):
    """An image skipped under on_bad_image: skip (truncated, missing) keeps its place in the report's and the
    search's contact sheets as a crossed-out thumbnail, instead of failing the page."""
    good = tmp_path / "good.jpg"
    Image.fromarray(np.full((60, 80, 3), (200, 30, 30), np.uint8)).save(good)
    data = good.read_bytes()
    (tmp_path / "truncated.jpg").write_bytes(data[: len(data) // 2])
    paths = [str(good), str(tmp_path / "truncated.jpg"), str(tmp_path / "missing.jpg")]
    thumbs = [_thumb(p, 40, None) for p in paths]
    assert thumbs[0][20, 20, 0] > 150 and thumbs[0][20, 20, 1] < 80  # the red photo
    for t in thumbs[1:]:
        assert t.shape == (40, 40, 3) and t[20, 20].tolist() == [120, 120, 120] and t[10, 25].tolist() == [225] * 3
    assert "truncated.jpg" in caplog.text and "missing.jpg" in caplog.text
    lists = {"query": [{"path": paths[1], "crop": None}], "db": [{"path": p} for p in paths]}
    page = retrieved_images(np.array([[1, 0, 2]]), lists, None, [0], 3)
    assert page.startswith("<img") and "base64" in page


def test_the_retrieved_images_are_named_in_rank_order():
    """The figure names no photo: a folder's report without ground truth could not be read (a new user's trial); the
    table under it gives each query's top names in rank order, marked against the ground truth where there is one."""
    lists = {
        "query": [{"name": "q<0>"}, {"name": "q1"}],
        "db": [{"name": f"barn_{i}.jpg"} for i in range(4)],
    }
    ranks = np.array([[2, 0, 3, 1], [1, 3, 0, 2]])
    page = retrieved_names(ranks, lists, None, [0, 1], 3)
    assert "<th>query</th><th>1</th><th>2</th><th>3</th></tr>" in page and "<th>4</th>" not in page
    row = "<tr><td style='text-align:left'>q&lt;0&gt;</td>" + "".join(
        f"<td style='text-align:left'>barn_{i}.jpg</td>" for i in (2, 0, 3)
    )
    assert row + "</tr>" in page
    gnd = [{"easy": [0], "hard": [3], "junk": [2]}, {"easy": [1], "hard": [], "junk": []}]
    page = retrieved_names(ranks, lists, gnd, [0], 4)
    assert "barn_2.jpg (junk)</td><td style='text-align:left'>barn_0.jpg (+)" in page
    assert "barn_3.jpg (+)</td><td style='text-align:left'>barn_1.jpg (-)</td></tr>" in page and "q1" not in page


def test_the_search_sheet_shows_similarity_and_integer_inliers_and_names_featureless_photos(tmp_path):
    img = tmp_path / "a.jpg"
    Image.fromarray(np.full((20, 30, 3), 90, np.uint8)).save(img)
    photos = [{"path": str(img), "crop": None}, {"path": str(tmp_path / "blank.jpg"), "crop": None}]
    collection = [{"path": str(img)}, {"path": str(img)}]
    ids = np.array([[1, 0], [0, 1]])
    sims = np.array([[0.9, 0.5], [-np.inf, -np.inf]], np.float32)
    contact_sheet(tmp_path / "sv.html", "t", photos, collection, ids, sims, 2, 10, np.array([[127, 3], [0, 0]]))
    page = (tmp_path / "sv.html").read_text()
    assert "<th>similarity</th><th>inliers</th>" in page and "<td>0.9000</td><td>127</td>" in page
    assert "blank.jpg (no features: unreadable or blank; these are not matches)" in page
    assert "a.jpg (no features" not in page
    contact_sheet(tmp_path / "plain.html", "t", photos, collection, ids, sims, 2, 10)
    assert "<th>inliers</th>" not in (tmp_path / "plain.html").read_text()


def test_the_precision_column_follows_evaluate_ks():
    """With evaluate.ks [1, 5, 20] the table said "mP@10" and showed a dash for every method (a new user's trial)."""
    r = {"metrics": {"mAP": {"E": 90.0, "M": 80.5, "H": 60.0}, "mP@1": {"M": 100.0}, "mP@20": {"M": 42.5}}}
    html = metrics_table({"global": r})
    assert "mP@20 M" in html and "<td>42.50</td>" in html and "mP@10" not in html
    assert precision_key({"global": r}) == "mP@20"
    r["metrics"]["mP@10"] = {"M": 55.0}
    assert precision_key({"global": r}) == "mP@10"
    assert precision_key({"global": {"metrics": None}}) is None
    assert "mP@" not in metrics_table({"global": {"metrics": {"mAP": {"E": 1.0, "M": 2.0, "H": 3.0}}}})


def test_the_parameters_say_how_many_entries_were_re_ranked_when_the_shortlist_is_shorter():
    """num_rerank 100 on an 85-image database re-ranks 85: the table said k=100 (a researcher's trial)."""
    m = {"metrics": {"mAP": {"E": 1.0, "M": 2.0, "H": 3.0}}}
    chosen = {"num_rerank": 100, "lambda": 0.5, "gamma": 0.2, "selected_on": "demo-val"}
    short = metrics_table({"global": m, "ames": {**m, "chosen": {**chosen, "num_rerank_applied": 85}}})
    assert "k=100 (85 re-ranked: the whole shortlist)" in short
    full = metrics_table({"global": m, "ames": {**m, "chosen": {**chosen, "num_rerank_applied": 100}}})
    assert "k=100, &lambda;=0.5" in full and "re-ranked" not in full
    older = metrics_table({"global": m, "ames": {**m, "chosen": chosen}})  # a results file from before the key
    assert "k=100, &lambda;=0.5" in older


def test_a_method_without_a_chosen_point_shows_its_own_settings():
    """The parameters column was empty for sv although its results record num_rerank, ratio, model, threshold (a new
    user's trial); nested settings (the global pipeline's) are left out, and AMES keeps its chosen point."""
    base = {"metrics": {"mAP": {"E": 90.0, "M": 80.5, "H": 60.0}}}
    sv = {
        "method": "sv",
        "metrics": {"mAP": {"E": 91.0, "M": 81.5, "H": 61.0}},
        "hyperparameters": {
            "global": {"codebook": {"k": 64}},
            "sv": {"num_rerank": 100, "ratio": 0.8, "model": "affine", "threshold": 20.0, "seed": 0},
        },
    }
    html = metrics_table({"global": base, "sv": sv})
    assert "<td>num_rerank=100, ratio=0.8, model=affine, threshold=20.0, seed=0</td>" in html
    assert "codebook" not in html
