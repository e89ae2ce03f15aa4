"""The search stage's JSON (results/search/{collection}/{photos}.json) is strict JSON: a photo without features
(its similarities -inf) has null scores, which every parser reads (JavaScript's JSON.parse refuses -Infinity)."""

import json

import numpy as np

from retrieval.runtime import write_json
from retrieval.stages.search import _json_neighbour, search_stage
from retrieval.stores.global_store import write_neighbours


def _refuse_constant(name):
    raise ValueError(f"not strict JSON: {name}")


def test_a_photo_without_features_gets_null_scores_in_strict_json(tmp_path):
    db = [{"name": f"d{i}", "path": f"coll/jpg/d{i}.jpg"} for i in range(4)]
    photos = [{"name": "p0", "path": "new/jpg/p0.jpg"}, {"name": "blank", "path": "new/jpg/blank.jpg"}]
    write_json(tmp_path / "coll.json", {"db": db})
    write_json(tmp_path / "photos.json", {"db": photos})
    ids = np.array([[2, 0, 1, 3], [0, 1, 2, 3]], np.int32)
    sims = np.array([[0.9, 0.5, 0.25, -0.1], [-np.inf] * 4], np.float32)  # the second photo has no features
    write_neighbours(tmp_path / "knn.h5", ids, sims, n_db=4, search="exact", search_seconds=0.01)
    out = {s: str(tmp_path / f"search.{s}") for s in ("csv", "html", "json")}
    search_stage(
        str(tmp_path / "knn.h5"), str(tmp_path / "photos.json"), str(tmp_path / "coll.json"), None, None,
        out["csv"], out["html"], out["json"], str(tmp_path / "manifest.json"), "coll", "new", "none", 3, None,
        3, 10, "v1", {}, {},
    )  # fmt: skip
    res = json.loads((tmp_path / "search.json").read_text(), parse_constant=_refuse_constant)
    assert res["photos_without_features"] == ["new/jpg/blank.jpg"]
    first, blank = res["neighbours"]
    assert [n["image"] for n in first["top"]] == ["coll/jpg/d2.jpg", "coll/jpg/d0.jpg", "coll/jpg/d1.jpg"]
    assert [n["similarity"] for n in first["top"]] == [0.9, 0.5, 0.25]
    assert [n["similarity"] for n in blank["top"]] == [None, None, None]


def test_a_verified_neighbour_keeps_its_similarity_and_no_match_is_null_for_both():
    """Under search.rerank: sv the JSON gave {image, inliers} only: the similarity was gone, and a photo without
    features read {"inliers": 0}, a match with no inliers (a new user's trial)."""
    assert _json_neighbour("a.jpg", np.float32(0.5), np.float32(12)) == {
        "image": "a.jpg",
        "similarity": 0.5,
        "inliers": 12,
    }
    assert _json_neighbour("a.jpg", -np.inf, 0.0) == {"image": "a.jpg", "similarity": None, "inliers": None}
    assert _json_neighbour("a.jpg", np.float32(0.25), None) == {"image": "a.jpg", "similarity": 0.25}


def test_the_similarity_is_written_to_the_csv_s_six_decimals():
    """An exact copy's similarity is 1 + 2**-23 in float32 after the dot product's rounding; the JSON printed it as
    1.0000001192092896 where the CSV wrote 1.000000 (a new user's trial)."""
    just_over = np.nextafter(np.float32(1), np.float32(2))
    assert float(just_over) == 1.0000001192092896
    assert _json_neighbour("a.jpg", just_over, None) == {"image": "a.jpg", "similarity": 1.0}
    assert _json_neighbour("a.jpg", np.float32(0.1234567), None)["similarity"] == 0.123457
