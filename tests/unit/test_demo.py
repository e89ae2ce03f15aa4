"""The demo generator: label thresholds, visible fractions, determinism, and split separation."""

import hashlib
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from retrieval.data.demo import (
    BACKGROUND_PHOTOS,
    TEST_PHOTOS,
    TRAIN_PHOTOS,
    VAL_PHOTOS,
    DemoConfig,
    LabelRule,
    View,
    _colourise,
    _contrast,
    collage_instances,
    generate_demo,
    label_view,
    load_photo,
    make_background,
    render,
    texture,
)

RULE = LabelRule()
MILD = {"visible": 0.9, "rotation": 5.0, "tilt": 0.05, "blur": 0.5, "rel_size": 0.5}


def test_labels_follow_thresholds():
    assert label_view(MILD, RULE) == "easy"
    assert label_view({**MILD, "visible": RULE.junk_below - 0.01}, RULE) == "junk"
    assert label_view({**MILD, "visible": RULE.junk_below}, RULE) == "hard"
    assert label_view({**MILD, "visible": RULE.easy_visible - 0.01}, RULE) == "hard"
    assert label_view({**MILD, "visible": RULE.easy_visible}, RULE) == "easy"
    assert label_view({**MILD, "rotation": -(RULE.easy_max_rotation + 1)}, RULE) == "hard"
    assert label_view({**MILD, "tilt": RULE.easy_max_tilt + 0.01}, RULE) == "hard"
    assert label_view({**MILD, "blur": RULE.easy_max_blur + 0.1}, RULE) == "hard"
    assert label_view({**MILD, "rel_size": RULE.easy_min_rel_size - 0.01}, RULE) == "hard"


def _view(**kw):
    base = dict(rotation=0.0, tilt=0.0, rel_size=0.4, blur=0.0, truncate=False, occlude=False, gain=1.0, gamma=1.0)
    return View(**{**base, **kw})


def test_visible_fraction_of_an_unoccluded_view_is_one_and_truncation_reduces_it():
    rng = np.random.default_rng(0)
    canvas = np.zeros((300, 400, 3), np.uint8)
    patch = np.full((100, 100, 3), 200, np.uint8)
    bg = [np.full((64, 64, 3), 50, np.uint8)]
    _, geom = render(canvas, patch, _view(), bg, rng)
    assert geom["visible"] == pytest.approx(1.0, abs=0.03)
    x1, y1, x2, y2 = geom["bbx"]
    assert (x2 - x1) == pytest.approx(120, abs=2) and (y2 - y1) == pytest.approx(120, abs=2)  # 0.4 * 300
    fractions = [
        render(canvas, patch, _view(truncate=True), bg, np.random.default_rng(s))[1]["visible"] for s in range(20)
    ]
    assert min(fractions) < 0.9 and max(fractions) <= 1.0
    occluded = [
        render(canvas, patch, _view(occlude=True), bg, np.random.default_rng(s))[1]["visible"] for s in range(20)
    ]
    assert np.mean(occluded) < 0.95


def test_photo_pools_are_disjoint():
    pools = [set(TEST_PHOTOS), set(VAL_PHOTOS), set(TRAIN_PHOTOS), set(BACKGROUND_PHOTOS)]
    assert sum(len(p) for p in pools) == len(set().union(*pools))


def test_collage_instances_are_unique_and_textured():
    photos = [load_photo(n) for n in TRAIN_PHOTOS[:2]]
    inst = collage_instances(6, 120, photos, 12.0, np.random.default_rng(0))
    assert len(inst) == 6 and all(i.photo == "collage" for i in inst)
    assert all(texture(i.patch) >= 12.0 and 0.7 * 120 <= min(i.patch.shape[:2]) <= 120 for i in inst)
    # no two instances share their content (an instance is identified by its pixels)
    small = [cv2.resize(i.patch, (32, 32)).astype(np.float32) for i in inst]
    assert min(np.abs(a - b).mean() for k, a in enumerate(small) for b in small[k + 1 :]) > 10
    again = collage_instances(6, 120, photos, 12.0, np.random.default_rng(0))
    assert all(np.array_equal(a.patch, b.patch) for a, b in zip(inst, again))


TINY = DemoConfig.from_dict(
    {
        "test": {"instances": 3, "queries": 3, "views": 3, "distractors": 2},
        "val": {"instances": 2, "queries": 2, "views": 2, "distractors": 1},
        "train": {"instances": 3, "queries": 0, "views": 2, "distractors": 1},
    }
)


def test_generation_is_deterministic_and_labels_are_consistent(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    summary = generate_demo(a, TINY)
    # the splits rendered in parallel processes: the same summary and byte-identical files
    assert generate_demo(b, TINY, workers=3) == summary
    assert list(summary["splits"]) == ["demo", "demo-val", "demo-train"]
    for split in ("demo", "demo-val", "demo-train"):
        ga = json.loads((a / split / "gnd.json").read_text())
        assert ga == json.loads((b / split / "gnd.json").read_text())
        files = sorted(p.name for p in (a / split / "jpg").iterdir())
        assert files == sorted(p.name for p in (b / split / "jpg").iterdir())
        assert len(files) == len(ga["imlist"]) + len(ga["qimlist"])
        for name in files:
            assert (a / split / "jpg" / name).read_bytes() == (b / split / "jpg" / name).read_bytes()
    test = json.loads((a / "demo" / "gnd.json").read_text())
    train = json.loads((a / "demo-train" / "gnd.json").read_text())
    assert len(test["qimlist"]) == 3 and len(test["imlist"]) == 3 * 3 + 2
    assert train["qimlist"] == [] and len(train["labels"]) == len(train["imlist"])
    # every positive of a query shows that query's instance: images of one instance are labelled together
    for g in test["gnd"]:
        assert len(g["easy"]) + len(g["hard"]) + len(g["junk"]) == 3
    val = json.loads((a / "demo-val" / "gnd.json").read_text())
    assert {i["photo"] for i in test["instances"]} <= set(TEST_PHOTOS)
    assert {i["photo"] for i in val["instances"]} <= set(VAL_PHOTOS)
    assert {i["photo"] for i in train["instances"]} == {"collage"}


def _same_split(a: Path, b: Path, split: str) -> None:
    ga = json.loads((a / split / "gnd.json").read_text())
    assert ga == json.loads((b / split / "gnd.json").read_text())
    for name in ga["imlist"] + ga["qimlist"]:
        assert (a / split / "jpg" / f"{name}.jpg").read_bytes() == (b / split / "jpg" / f"{name}.jpg").read_bytes()


def test_test_split_does_not_depend_on_the_training_split(tmp_path):
    other = DemoConfig.from_dict(
        {
            **{k: v for k, v in TINY.to_dict().items() if k not in ("labels",)},
            "train": {"instances": 2, "queries": 0, "views": 3, "distractors": 2},
            "train_region_side": 100,
        }
    )
    generate_demo(tmp_path / "a", TINY)
    generate_demo(tmp_path / "b", other)
    _same_split(tmp_path / "a", tmp_path / "b", "demo")
    tb = json.loads((tmp_path / "b" / "demo-train" / "gnd.json").read_text())
    assert len(tb["imlist"]) == 2 * 3 + 2


def test_test_split_and_training_images_do_not_depend_on_the_validation_split(tmp_path):
    other = DemoConfig.from_dict(
        {
            **{k: v for k, v in TINY.to_dict().items() if k not in ("labels",)},
            "val": {"instances": 1, "queries": 1, "views": 3, "distractors": 2},
        }
    )
    generate_demo(tmp_path / "a", TINY)
    generate_demo(tmp_path / "b", other)
    _same_split(tmp_path / "a", tmp_path / "b", "demo")
    # the training split's images too; its instance ids (labels) follow the validation split's, numbered after them
    train = [sorted((tmp_path / d / "demo-train" / "jpg").glob("*.jpg")) for d in ("a", "b")]
    assert [p.name for p in train[0]] == [p.name for p in train[1]] and len(train[0]) == 3 * 2 + 1
    assert all(x.read_bytes() == y.read_bytes() for x, y in zip(*train))
    vb = json.loads((tmp_path / "b" / "demo-val" / "gnd.json").read_text())
    assert len(vb["imlist"]) == 1 * 3 + 2 and len(vb["qimlist"]) == 1


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_colour_tables_give_the_per_pixel_formulas_bytes(seed):
    # the generator looks the colour gains and the clutter contrast up in 256-entry tables; the demo's images (and
    # every number measured on them) must stay those of the per-pixel arithmetic they replaced
    rng = np.random.default_rng(seed)
    patch = rng.integers(0, 256, size=(37, 53, 3), dtype=np.uint8)
    patch[0, :3] = [[0, 0, 0], [255, 255, 255], [128, 7, 250]]
    gains = np.random.default_rng(seed).uniform(0.5, 1.3, size=3)
    expected = np.clip(patch.astype(np.float32) * gains, 0, 255).astype(np.uint8)
    assert np.array_equal(_colourise(patch, np.random.default_rng(seed)), expected)
    for contrast in (0.25, 0.7, 1.6):
        f = patch.astype(np.float32)
        mean = f.mean(axis=(0, 1), keepdims=True)
        expected = np.clip(mean + contrast * (f - mean), 0, 255).astype(np.uint8)
        assert np.array_equal(_contrast(patch, contrast), expected)


# sha256 of the TINY demo's files (relative path, then bytes, in sorted order) and of make_background + render
# arrays, as written by the generator's per-pixel implementation (546830c). The demo's images carry every demo
# number in the README: a change here needs a new GENERATOR_VERSION (and those numbers re-measured), not a new digest.
TINY_DIGEST = "18255416943df7c96aeb6104beb0a2bcc588a8e6b613361e61f8d7e33591e710"
RENDER_DIGEST = "485ca412dcae7f4150d2a5e195b0f055eed693e4812063c6ac8e08b6c8e1396b"


def test_generated_bytes_are_those_of_the_per_pixel_generator(tmp_path):
    generate_demo(tmp_path, TINY)
    h = hashlib.sha256()
    for p in sorted(tmp_path.rglob("*")):
        if p.is_file():
            h.update(p.relative_to(tmp_path).as_posix().encode())
            h.update(p.read_bytes())
    assert h.hexdigest() == TINY_DIGEST, (
        "the demo's bytes changed: a new GENERATOR_VERSION and re-measured demo numbers"
    )
    backgrounds = [load_photo(n) for n in BACKGROUND_PHOTOS]
    h = hashlib.sha256()
    for seed in range(4):  # occlusion (both kinds), blur, truncation, contrast and gains on every path of render
        rng = np.random.default_rng(seed)
        canvas = make_background((120, 160), backgrounds, rng, 0.25)
        patch = make_background((50, 70), backgrounds, rng, 1.0)
        view = View(20.0, 0.1, 0.6, 1.0, truncate=seed % 2 == 1, occlude=True, gain=1.2, gamma=0.8)
        img, geom = render(canvas, patch, view, backgrounds, rng)
        h.update(canvas.tobytes())
        h.update(img.tobytes())
        h.update(repr(geom).encode())
    assert h.hexdigest() == RENDER_DIGEST, "render / make_background changed their output (see TINY_DIGEST's comment)"


def test_an_interrupted_generation_leaves_no_part_folder_and_another_versions_is_left_alone(tmp_path, monkeypatch):
    """Ctrl-C during demo_data left results/demo_data/{v}.part (a new user's trial); another version's ``.part`` may be
    another run's, being written (Snakemake locks only the files a run writes): it stays."""
    from retrieval.stages import lists as lists_stage  # noqa: PLC0415

    root = tmp_path / "demo_data"
    (root / "0ld0ld00.part" / "demo" / "jpg").mkdir(parents=True)  # another version's, maybe another run's
    (root / "abcd1234.part" / "demo").mkdir(parents=True)  # this version's, left by a run killed outright

    def interrupted(out, cfg, workers):
        assert not Path(out).exists()  # this version's leftover was removed first
        (Path(out) / "demo-train" / "jpg").mkdir(parents=True)
        (Path(out) / "demo-train" / "jpg" / "a.jpg").write_bytes(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(lists_stage, "generate_demo", interrupted)
    with pytest.raises(KeyboardInterrupt):
        lists_stage.make_demo(root / "abcd1234", {}, "abcd1234", "tiny")
    assert sorted(p.name for p in root.iterdir()) == ["0ld0ld00.part"]

    def whole(out, cfg, workers):
        (Path(out) / "demo").mkdir(parents=True)
        return {"images": 0}

    monkeypatch.setattr(lists_stage, "generate_demo", whole)
    lists_stage.make_demo(root / "abcd1234", {}, "abcd1234", "tiny")
    assert sorted(p.name for p in root.iterdir()) == ["0ld0ld00.part", "abcd1234"]
    assert (root / "abcd1234" / "manifest.json").is_file()
