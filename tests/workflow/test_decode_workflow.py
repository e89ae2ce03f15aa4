"""Issue 14, items 1 and 2 end to end: a query stored with EXIF orientation 6 is cropped where its box was drawn, and
images without features (blank, tiny, unreadable) are never a match, for the global ranking and a re-ranker."""

import csv
import json
import shutil

import h5py
import numpy as np
import pytest
from PIL import Image

from conftest import TINY, load_json, snakemake

pytestmark = pytest.mark.workflow


def _stored_rotated(upright: np.ndarray) -> Image.Image:
    """What a camera held sideways stores for ``upright``: EXIF orientation 6 (the viewer rotates 90 clockwise)."""
    im = Image.fromarray(np.ascontiguousarray(np.rot90(upright, 1)))
    exif = Image.Exif()
    exif[0x0112] = 6
    im.info["exif"] = exif.tobytes()
    return im


def test_rotated_query_and_images_without_features(tiny_run, tmp_path):
    wd = tmp_path / "wd"
    shutil.copytree(tiny_run, wd, symlinks=True)
    demo = next((tiny_run / "results" / "demo_data").glob("*/demo"))
    root = tmp_path / "data" / "photos"
    shutil.copytree(demo / "jpg", root / "jpg")
    gnd = load_json(demo / "gnd.json")
    n_db, n_q = len(gnd["imlist"]), len(gnd["qimlist"])
    # 1. the first query again, stored sideways (orientation 6) with the same box, drawn on the picture as displayed
    q0 = gnd["qimlist"][0]
    upright = np.asarray(Image.open(root / "jpg" / f"{q0}.jpg").convert("RGB"))
    rot = _stored_rotated(upright)
    rot.save(root / "jpg" / "rotated_q.png", exif=rot.info["exif"])
    assert Image.open(root / "jpg" / "rotated_q.png").size == (upright.shape[0], upright.shape[1])  # stored landscape
    # 2. database images without features: blank, tiny, unreadable; and a blank query
    Image.fromarray(np.full((300, 400, 3), 128, np.uint8)).save(root / "jpg" / "blank.jpg")
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (6, 6, 3), dtype=np.uint8)).save(
        root / "jpg" / "tiny.png"
    )
    (root / "jpg" / "unreadable.jpg").write_text("not an image")
    Image.fromarray(np.full((200, 300, 3), 200, np.uint8)).save(root / "jpg" / "blank_q.jpg")
    gnd["imlist"] += ["blank.jpg", "tiny.png", "unreadable.jpg"]
    gnd["qimlist"] += ["rotated_q.png", "blank_q.jpg"]
    gnd["gnd"] += [dict(gnd["gnd"][0]), {**gnd["gnd"][0], "bbx": None}]
    (root / "gnd.json").write_text(json.dumps(gnd))
    featureless = [n_db, n_db + 1, n_db + 2]

    cfg = ("--configfile", str(TINY), "--config", f"data_root={tmp_path / 'data'}", "on_bad_image=skip")
    snakemake(wd, "results/photos_global.json", "results/photos_sv.json", *cfg)
    for method in ("global", "sv"):
        res = load_json(wd / "results" / f"photos_{method}.json")
        assert res["queries_without_features"] == ["blank_q.jpg"]
        assert res["db_images_without_features"] == 3
        ap = res["per_query_ap"]["M"]["ap"]
        assert ap[n_q] == ap[0]  # the sideways-stored query is the upright one: same crop, same features, same AP
        with h5py.File(wd / res["artifacts"]["ranking"], "r") as f:
            ranks = f["ranks"][:]
        for r in range(n_q + 1):  # every query with features: the three images without features last, in db order
            assert ranks[r, -3:].tolist() == featureless, (method, r)
        featured = [j for j in range(n_db + 3) if j not in featureless]
        assert ranks[n_q + 1].tolist() == featured + featureless  # the blank query: database order
        with open(wd / res["artifacts"]["neighbours_csv"]) as fh:
            rows = list(csv.DictReader(fh))
        score = "score" if method != "ames" else "global_score"
        for row in rows:
            no_match = row["image"].endswith(("blank.jpg", "tiny.png", "unreadable.jpg")) or row["query"].endswith(
                "blank_q.jpg"
            )
            assert (row[score] == "-inf") == no_match, row
    # the rotated query's stored keypoints are those of the upright query (full-image pixels, displayed orientation)
    res = load_json(wd / "results" / "photos_global.json")
    with h5py.File(wd / "results" / "local" / "photos" / res["versions"]["extract"] / "query" / "local.h5", "r") as f:
        count, xy = f["count"][:], f["xy"][:]
        size = f["image_size"][:]
    assert count[n_q] == count[0] > 0 and np.array_equal(xy[n_q], xy[0]) and (size[n_q] == size[0]).all()
    assert count[n_q + 1] == 0
    # under on_bad_image: error the lists cannot be built when planning: that is said once, and image_lists fails
    # naming every unreadable file
    strict = ("--configfile", str(TINY), "--config", f"data_root={tmp_path / 'data'}", "on_bad_image=error")
    out = snakemake(wd, "results/photos_global.json", *strict, check=False)
    text = out.stdout + out.stderr
    assert out.returncode != 0 and text.count("the image lists cannot be built, and image_lists will stop on this") == 1
    assert "1 unreadable image(s)" in text and "unreadable.jpg: cannot decode" in text
