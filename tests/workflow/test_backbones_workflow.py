"""Deep backbones end to end on the tiny demo with tiny random models: a ResNet (SuperGlobal pooling) shortlist
re-ranked with DINOv2 local descriptors, as AMES's published setting combines them."""

import re

import h5py
import numpy as np
import pytest
import torch
import yaml

from conftest import TINY, load_json, snakemake
from retrieval.features.deep import DeepConfig, DeepExtractor
from retrieval.stages.extract import extract_local_chunk

pytestmark = pytest.mark.workflow

DEEP = {
    "extract": {
        "backbone": "dinov2",
        "dinov2": {
            "checkpoint": "random",
            "model": {"variant": "vitb14", "registers": 4, "img_size": 56, "embed_dim": 32, "depth": 2, "heads": 2},
            "image_size": 112,
            "k": 64,
            "device": "cpu",
        },
        "resnet": {
            "checkpoint": "random",
            "model": {"depth": 50, "width": 4, "head": "fc", "fc_dim": 24},
            "image_size": 160,
            "k": 64,
            "device": "cpu",
        },
    },
    "shortlist": {"source": "backbone", "backbone": "resnet"},
    "compare": {"methods": ["global", "sv", "ames"]},
}
TARGETS = ("results/demo_global.json", "results/demo_sv.json", "results/demo_ames.json", "results/demo_compare.md")


@pytest.fixture(scope="module")
def deep_run(tmp_path_factory):
    wd = tmp_path_factory.mktemp("deep_run")
    cfg = wd / "deep.yaml"
    cfg.write_text(yaml.safe_dump(DEEP))
    dry = snakemake(wd, "-n", *TARGETS, "--configfile", str(TINY), str(cfg)).stdout
    snakemake(wd, *TARGETS, "--configfile", str(TINY), str(cfg))
    return wd, dry


def test_the_plan_extracts_both_backbones_on_gpu_resources_and_skips_vlad(deep_run):
    _, dry = deep_run
    blocks = re.split(r"\n(?=\[|rule )", dry)
    extract = [b for b in blocks if b.startswith("rule extract_local:")]
    # 2 backbones x (demo db + query, demo-val db + query, demo-train db) x 2 chunks
    assert len(extract) == 20 and all("gpu=1" in b for b in extract)
    assert "rule codebook:" not in dry and "rule aggregate_vlad:" not in dry and "rule whiten_fit:" not in dry
    assert len([b for b in blocks if b.startswith("rule backbone_global:")]) == 5


def test_shortlist_and_local_descriptors_come_from_their_backbones(deep_run):
    wd, _ = deep_run
    res = load_json(wd / "results" / "demo_global.json")
    sl = res["hyperparameters"]["shortlist"]
    assert sl["source"] == "backbone" and sl["extract"]["backbone"] == "resnet"
    knn = res["artifacts"]["knn"]
    ver = res["versions"]["global"]
    with h5py.File(wd / f"results/global_backbone/demo/{ver}/db.h5", "r") as f:
        g = f["descriptors"][:]
    assert g.shape[1] == 24 and np.allclose(np.linalg.norm(g, axis=1), 1, atol=1e-5)  # the CVNet-style fc head
    assert (wd / knn).is_file()
    sv = load_json(wd / "results" / "demo_sv.json")
    # the global ranking is the resnet's: it records no local extraction (which sv and AMES read, and record)
    assert "extract" not in res["versions"] and "extract" not in res["hyperparameters"]
    assert sv["hyperparameters"]["extract"]["backbone"] == "dinov2"
    local = wd / f"results/local/demo/{sv['versions']['extract']}/db/local.h5"
    with h5py.File(local, "r") as f:
        assert f.attrs["backbone"] == "dinov2" and f["descriptors"].shape[1:] == (64, 32)
        assert f["global"].shape[1] == 32
        counts = f["count"][:]
    assert (counts == 8 * 6).all()  # 480 x 360 photos at 112 px: 8 x 6 patches, fewer than k = 64
    manifest = load_json(local.parent / "manifest.json")
    assert manifest["config"]["backbone"] == "dinov2"
    for m in ("sv", "ames"):
        r = load_json(wd / f"results/demo_{m}.json")
        assert r["artifacts"]["knn"] == knn and r["baseline"]["metrics"] == res["metrics"]


def test_extraction_is_identical_across_runs(deep_run):

    wd, _ = deep_run
    res = load_json(wd / "results" / "demo_sv.json")
    chunk = wd / f"results/local/demo/{res['versions']['extract']}/query/chunk_1.h5"
    lists = wd / f"results/lists/demo/{res['versions']['image_lists']}/lists.json"
    again = wd / "again.h5"
    extract_local_chunk(lists, "query", 1, 2, again, "dinov2", DEEP["extract"]["dinov2"], "x")
    with h5py.File(chunk, "r") as a, h5py.File(again, "r") as b:
        for name in ("descriptors", "xy", "weight", "global"):
            np.testing.assert_array_equal(a[name][:], b[name][:])
        assert "random (seed 0)" in a.attrs["model"]


def test_the_local_backbone_and_the_device_re_run_nothing_they_do_not_change(deep_run, tmp_path):
    """A new user's trial: switching the local backbone (read by sv and AMES) re-ran the resnet shortlist's
    evaluate_global in place and published it as stale, on every switch; naming the device `auto` for `cpu` re-ran
    every merge and all that follows (the device was a param of the extraction jobs, though in no version)."""
    wd, _ = deep_run
    sift = tmp_path / "sift.yaml"
    sift.write_text(yaml.safe_dump({"extract": {"backbone": "sift"}}))
    dry = snakemake(wd, "-n", "results/demo_global.json", "--configfile", str(TINY), str(wd / "deep.yaml"), str(sift))
    assert "Nothing to be done" in dry.stdout, dry.stdout[-3000:]
    auto = tmp_path / "auto.yaml"
    auto.write_text(yaml.safe_dump({"extract": {b: {"device": "auto"} for b in ("dinov2", "resnet")}}))
    dry = snakemake(wd, "-n", *TARGETS, "--configfile", str(TINY), str(wd / "deep.yaml"), str(auto))
    assert "Nothing to be done" in dry.stdout, dry.stdout[-3000:]


def _photo_folder(wd, dataset_dir, n):
    """A folder dataset of the demo's first ``n`` database photos (``{dataset_dir}/jpg/p{i}.jpg``)."""
    lists = load_json(next((wd / "results" / "lists" / "demo").glob("*/lists.json")))
    (dataset_dir / "jpg").mkdir(parents=True)
    for i, e in enumerate(lists["db"][:n]):
        (dataset_dir / "jpg" / f"p{i}.jpg").write_bytes((wd / e["path"]).read_bytes())


def test_a_folders_deep_packs_are_not_extracted_again_on_the_next_run(deep_run, tmp_path):
    """A folder dataset's photos go through the feature cache's packs: the pack's sidecar recorded the device and
    the plan (since the device left the params) did not, so every pack was extracted again on the next run, and all
    that follows (a new user's trial); with the device changed there is nothing to do either."""
    wd, _ = deep_run
    _photo_folder(wd, tmp_path / "photos" / "few", 4)
    base = ("--configfile", str(TINY), str(wd / "deep.yaml"), "--config", f"data_root={tmp_path / 'photos'}")
    targets = ("results/few_global.json", "results/few_sv.json")
    snakemake(wd, *targets, *base)
    assert list((wd / "results" / "features").glob("*/packs/*.json"))  # through the feature cache
    again = snakemake(wd, "-n", *targets, *base)
    assert "Nothing to be done" in again.stdout, again.stdout[-3000:]
    auto = tmp_path / "auto.yaml"
    auto.write_text(yaml.safe_dump({"extract": {b: {"device": "auto"} for b in ("dinov2", "resnet")}}))
    again = snakemake(wd, "-n", *targets, *base[:-2], str(auto), *base[-2:])
    assert "Nothing to be done" in again.stdout, again.stdout[-3000:]


def test_a_weights_file_named_another_way_re_runs_nothing_and_new_weights_re_extract(deep_run, tmp_path):
    """A new user's trial: the same checkpoint named relatively, then absolutely, re-ran 11 jobs in place (the path
    was the extraction jobs' param, though only the file's content is in a version); weights saved over the same
    path must still be extracted again."""
    wd, _ = deep_run
    _photo_folder(wd, tmp_path / "photos" / "ck", 3)
    net = DeepExtractor(DeepConfig.from_dict("dinov2", {**DEEP["extract"]["dinov2"], "checkpoint": "random"})).net
    (wd / "weights").mkdir(exist_ok=True)
    torch.save(net.state_dict(), wd / "weights" / "vit.pt")

    def run(path, *args):
        weights = tmp_path / f"weights-{len(list(tmp_path.glob('weights-*')))}.yaml"
        weights.write_text(yaml.safe_dump({"extract": {"dinov2": {"checkpoint": path}}}))
        files = ("--configfile", str(TINY), str(wd / "deep.yaml"), str(weights))
        return snakemake(wd, *args, "results/ck_sv.json", *files, "--config", f"data_root={tmp_path / 'photos'}")

    run("weights/vit.pt")
    again = run(str(wd / "weights" / "vit.pt"), "-n")
    assert "Nothing to be done" in again.stdout, again.stdout[-3000:]
    torch.save({k: v + 1 for k, v in net.state_dict().items()}, wd / "weights" / "vit.pt")  # new weights, same path
    again = run("weights/vit.pt", "-n")
    assert "rule extract_pack:" in again.stdout and "rule evaluate_sv:" in again.stdout, again.stdout[-3000:]


def test_random_weights_are_flagged_in_the_table(deep_run):
    wd, _ = deep_run
    assert load_json(wd / "results" / "demo_compare.json")["random_weights"] is True
    assert "RANDOM WEIGHTS" in (wd / "results" / "demo_compare.md").read_text()


def test_extraction_throughput_target(tiny_run):
    snakemake(tiny_run, "results/benchmarks/extract_throughput.json", "--configfile", str(TINY))
    res = load_json(tiny_run / "results" / "benchmarks" / "extract_throughput.json")
    assert res["backbone"] == "dinov2" and res["images"] == 3 and res["images_per_second"] > 0
    assert res["weights"] == "random (seed 0)" and res["device"] == "cpu"
