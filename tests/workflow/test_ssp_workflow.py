"""SSP in the workflow (tiny preset): anchors, the light query model, the asymmetric evaluation and its baselines."""

import numpy as np
import pytest

from conftest import TINY, load_json, snakemake

pytestmark = pytest.mark.workflow


@pytest.fixture(scope="module")
def ssp_run(tiny_run):
    snakemake(tiny_run, "results/demo_ssp.json", "--configfile", str(TINY))
    return tiny_run


def test_ssp_result_contract(ssp_run):
    res = load_json(ssp_run / "results" / "demo_ssp.json")
    glob_res = load_json(ssp_run / "results" / "demo_global.json")
    assert res["method"] == "ssp" and set(res["alongside"]) == {"light_without_adapter", "symmetric_gallery"}
    # the same results writer as every other method: the same contract keys
    assert set(glob_res) - {"provenance"} <= set(res), sorted(set(glob_res) - set(res))
    assert res["n_evaluated_queries"] == glob_res["n_evaluated_queries"] and res["queries_without_features"] == []
    # the symmetric baseline is the gallery model searching itself: the global method's numbers
    assert res["alongside"]["symmetric_gallery"]["metrics"]["mAP"] == pytest.approx(
        glob_res["metrics"]["mAP"], abs=1e-3
    )
    assert res["baseline"]["method"] == "light_without_adapter"
    d = res["paired_difference"]["M"]
    assert d["ci95"][0] <= d["mean"] <= d["ci95"][1]
    cost = res["cost_per_image"]
    assert cost["images_timed"] == 3 and cost["query_model_extract_ms"] > 0 and cost["gallery_model_extract_ms"] > 0
    v = res["versions"]
    anchors = np.load(ssp_run / f"results/anchors/demo/{v['anchors']}/anchors.npy")
    assert anchors.shape == (8, 8, 4)  # tiny preset: m 8 sub-spaces of the 32-d whitened space, 2^3 codewords
    manifest = load_json(ssp_run / f"results/query_model/demo/{v['query_model']}/manifest.json")
    assert manifest["fitted_on"] == "demo-train"
    assert {"codebook", "whiten"} <= set(manifest["inputs"])  # the light descriptors' codebook and whitening
    assert all("sha1" in manifest["inputs"][k] for k in ("codebook", "whiten"))
    curves = load_json(ssp_run / f"results/query_model/demo/{v['query_model']}/curves.json")
    losses = [c["val_loss"] for c in curves["curves"]]
    # ssp.train.select: validation: the epoch with the best validation Medium mAP is kept (the earliest of equal ones;
    # the identity start is epoch 0), read on demo-val's light queries, whose files the manifest names
    scores = [c["val_score"] for c in curves["curves"]]
    assert len(losses) == 6 and curves["best_epoch"] == int(np.argmax(scores))
    assert 0 < scores[0] <= 100 and manifest["inputs"]["validation_gnd"]["path"].startswith("results/lists/demo-val/")
    assert manifest["best_epoch"] == curves["best_epoch"]
    light = load_json(ssp_run / f"results/local/demo/{v['ssp_local']}/query/manifest.json")
    assert light["config"]["sift"]["scale"] == 0.5 and light["config"]["sift"]["k"] == 128


def test_too_many_codewords_for_the_training_split_is_a_clear_error(ssp_run, tmp_path):
    cfg = tmp_path / "big.yaml"
    cfg.write_text("ssp: {anchors: {m: 8, nbits: 8, min_points_per_centroid: 39}}\n")
    proc = snakemake(ssp_run, "results/demo_ssp.json", "--configfile", str(TINY), str(cfg), check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "lower ssp.anchors.nbits" in out and "demo-train" in out


def test_the_training_split_written_out_as_the_anchors_split_runs_nothing(ssp_run, tmp_path):
    """ssp.anchors.split: null means the training split; writing its name (a new user's trial) re-ran the anchors,
    the adapter and the evaluation, whose params carried the raw configuration (a re-check found the evaluation)."""
    cfg = tmp_path / "spelled.yaml"
    cfg.write_text("ssp: {anchors: {split: demo-train}}\n")
    proc = snakemake(ssp_run, "-n", "results/demo_ssp.json", "--configfile", str(TINY), str(cfg))
    assert "Nothing to be done" in proc.stdout + proc.stderr, proc.stdout[-3000:]
