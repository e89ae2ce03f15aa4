"""Workflow tier: lint, the tiny demo end to end, the results contract, partial re-runs, and input errors."""

import csv
import hashlib
import json
import os
import pickle
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml
from PIL import Image

from conftest import SHARED, TINY, copy_tree, load_json, snakemake
from retrieval.data.gnd import load_ground_truth

pytestmark = pytest.mark.workflow


def job_stats(dry_run_output: str) -> dict[str, int]:
    """The 'Job stats' table of `snakemake -n`, without the total."""
    m = re.search(r"Job stats:\njob\s+count\n[-\s]+\n(.*?)\ntotal", dry_run_output, re.S)
    if m is None:
        return {}
    return {name: int(n) for name, n in (line.split() for line in m.group(1).strip().splitlines())}


def test_lint_is_clean(tmp_path):
    proc = snakemake(tmp_path, "--lint", check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_a_dataset_not_on_disk_plans_its_download_whatever_the_spelling_of_data_root(tmp_path):
    """Dataset folders are asked for absolute (one folder spelt two ways re-ran every job): the download rules'
    outputs, under data_root, must be too, for the default relative data/ as for ../ spellings."""
    (tmp_path / "wd").mkdir()
    for root in (None, "data", "../wd/data/"):
        extra = () if root is None else ("--config", f"data_root={root}")
        out = snakemake(tmp_path / "wd", "-n", "results/roxford5k_global.json", *extra).stdout
        assert job_stats(out)["download_revisitop"] == 1, root
        assert f"output: {tmp_path / 'wd' / 'data' / 'roxford5k' / '.download_complete'}" in out, root


def test_dry_run_plans_the_whole_dag(tmp_path):
    out = snakemake(tmp_path, "-n", "results/demo_global.json", "--configfile", str(TINY)).stdout
    stats = job_stats(out)
    # 2 chunks x (demo db, demo query); unsupervised_fit: self fits the codebook and whitening on the demo's own
    # database images, so the global method needs nothing of the training split
    assert stats == {
        "demo_data": 1,
        "image_lists": 1,
        "extract_local": 4,
        "merge_local": 2,
        "codebook": 1,
        "aggregate_vlad": 2,
        "whiten_fit": 1,
        "whiten_apply": 2,
        "knn": 1,
        "evaluate_global": 1,
        "publish": 1,
    }
    # the training split's images fit them with unsupervised_fit: training (its queries are never extracted)
    out = snakemake(
        tmp_path, "-n", "results/demo_global.json", "--configfile", str(TINY), "--config", "unsupervised_fit=training"
    ).stdout
    assert job_stats(out)["extract_local"] == 6 and "results/codebook/demo-train/" in out
    assert "results/codebook/demo/" not in out


def test_paper_preset_plans_the_ames_jobs(tmp_path):
    # that paper.yaml validates over config.yaml and equals TrainConfig's defaults (the paper's) is checked without
    # Snakemake in tests/unit/test_config_defaults.py; here Snakemake plans AMES's jobs with it
    out = snakemake(
        tmp_path,
        "-n",
        "results/demo_ames_binary.json",
        "--configfile",
        str(TINY.parents[2] / "config" / "presets" / "paper.yaml"),
    ).stdout
    assert {"train_ames", "train_ames_binary", "itq", "ames_logits"} <= set(job_stats(out))
    # the result at the published point (select: fixed): no logits of the validation split to choose one on
    assert job_stats(out)["ames_logits"] == 1 and "results/ames_logits/demo-val/" not in out


def test_results_contract(tiny_run):
    res = load_json(tiny_run / "results" / "demo_global.json")
    assert res["dataset"] == "demo" and res["method"] == "global" and res["preset"] == "tiny"
    for metric in ("mAP", "mP@1", "mP@5", "mP@10"):
        assert set(res["metrics"][metric]) == {"E", "M", "H"}
        assert all(0.0 <= v <= 100.0 for v in res["metrics"][metric].values())
    # only what changed the ranking: no training_split (nothing of global is fitted on it) and knn's identity, not
    # knn.block (either re-ran the evaluation in place, and the re-rankers after it, when it changed)
    assert "training_split" not in res["hyperparameters"] and res["hyperparameters"]["fit_split"] == "demo"
    assert res["hyperparameters"]["knn"] == {"k": 0}
    assert set(res["versions"]) >= {"image_lists", "extract", "codebook", "whiten", "knn", "evaluate"}
    with h5py.File(tiny_run / res["artifacts"]["ranking"], "r") as f:
        ranks = f["ranks"][:]
    assert ranks.dtype == np.int32 and ranks.shape == (res["n_queries"], res["n_db"])
    assert all(sorted(r) == list(range(res["n_db"])) for r in ranks)  # full rankings
    # per-query AP agrees with the headline mAP
    aps = [a for a in res["per_query_ap"]["M"]["ap"] if a is not None]
    assert 100 * np.mean(aps) == pytest.approx(res["metrics"]["mAP"]["M"], abs=1e-3)
    with open(tiny_run / res["artifacts"]["neighbours_csv"]) as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == res["n_queries"] * min(100, res["n_db"]) and Path(rows[0]["image"]).is_file()


def test_manifests_name_the_split_that_fed_each_fit(tiny_run):
    res = load_json(tiny_run / "results" / "demo_global.json")
    v = res["versions"]
    cb = load_json(tiny_run / f"results/codebook/demo/{v['codebook']}/manifest.json")
    wh = load_json(tiny_run / f"results/whiten/demo/{v['whiten']}/manifest.json")
    # unsupervised_fit: self: the demo's own database images, no labels; the results JSON says so
    assert cb["fitted_on"] == "demo" and wh["fitted_on"] == "demo"
    assert res["fitted_on"]["codebook"] == {
        "split": "demo",
        "images": "database, no labels",
        "evaluated_dataset_itself": True,
        "unsupervised_fit": "self",
    }
    # 42 database images >= min_images_per_dim 1 x dim 32 (tiny preset): whitening is learned and applied
    assert res["fitted_on"]["whitening"]["applied"] is True and wh["applied"] is True and wh["n_images"] == res["n_db"]
    assert cb["preset"] == "tiny" and "numpy" in cb["packages"] and cb["code_revision"]
    ex = load_json(tiny_run / f"results/local/demo/{v['extract']}/db/manifest.json")
    assert ex["store"]["n_rows"] == res["n_db"] and ex["inputs"]["lists"]["version"] == v["image_lists"]
    # the stages without a fit write theirs from the rule: configuration, input versions and checksums
    for path, stage, upstream in [
        (f"results/vlad/demo/demo/{v['aggregate']}/db.manifest.json", "aggregate_vlad", v["codebook"]),
        (f"results/global/demo/demo/{v['global']}/query.manifest.json", "whiten_apply", v["whiten"]),
        (f"results/knn/demo/{v['knn']}/manifest.json", "knn", v["global"]),
        (f"results/eval/demo/{v['evaluate']}/global.manifest.json", "evaluate_global", v["knn"]),
    ]:
        man = load_json(tiny_run / path)
        assert man["stage"] == stage and man["preset"] == "tiny" and man["outputs"]
        assert upstream in {i.get("version") for i in man["inputs"].values()}
        assert all("sha1" in i for i in man["inputs"].values())


def test_partial_rerun_and_switching_back(tiny_run, tmp_path):
    wd = tmp_path / "wd"
    shutil.copytree(tiny_run, wd, symlinks=True)
    assert "Nothing to be done" in snakemake(wd, "-n", "results/demo_global.json", "--configfile", str(TINY)).stdout
    # restating defaults changes nothing: a --configfile puts the keys it names first, and section-valued params
    # in another order used to look changed (the codebook's restated seed re-ran every job after extraction); an int
    # for a float default (edge_threshold 10 for 10.0) moved the extraction's version
    restated = tmp_path / "restated.yaml"
    restated.write_text(
        "codebook:\n  seed: 0\nevaluate:\n  csv_top: 100\nwhiten:\n  dim: 32\nextract:\n  sift:\n    edge_threshold: 10\n"
    )
    got = snakemake(wd, "-n", "results/demo_global.json", "--configfile", str(TINY), str(restated)).stdout
    assert "Nothing to be done" in got, got[-3000:]
    # settings that change no result re-run nothing: how exact search streams (knn.block), the IVF-PQ settings
    # under exact search, the training split of a global ranking, AMES's pairs per batch (a new user's trial: each
    # re-ran knn or the evaluation in place, knn.block then AMES's training too)
    neutral = tmp_path / "neutral.yaml"
    neutral.write_text("knn:\n  block: 500\n  ivfpq: {nprobe: 8}\ntraining_split: demo-val\names:\n  batch_pairs: 7\n")
    got = snakemake(wd, "-n", "results/demo_global.json", "--configfile", str(TINY), str(neutral)).stdout
    assert "Nothing to be done" in got, got[-3000:]
    # a demo split named in dataset_dirs is refused while the Snakefile is read, even with its results up to date
    # (it was refused only where jobs were planned, and ignored here)
    neutral.write_text(f"dataset_dirs:\n  demo: {tmp_path}\n")
    got = snakemake(wd, "-n", "results/demo_global.json", "--configfile", str(TINY), str(neutral), check=False)
    assert (
        got.returncode != 0
        and "dataset_dirs.demo: the demo splits are generated under results/" in got.stderr + got.stdout
    )
    override = tmp_path / "power.yaml"
    override.write_text("whiten:\n  power: 0.25\n")
    plan = job_stats(snakemake(wd, "-n", "results/demo_global.json", "--configfile", str(TINY), str(override)).stdout)
    assert plan == {"whiten_apply": 2, "knn": 1, "evaluate_global": 1, "publish": 1}
    snakemake(wd, "results/demo_global.json", "--configfile", str(TINY), str(override))
    changed = load_json(wd / "results" / "demo_global.json")
    # back to the original configuration: every artifact is found again, only the top-level file is re-pointed
    plan = job_stats(snakemake(wd, "-n", "results/demo_global.json", "--configfile", str(TINY)).stdout)
    assert plan == {"publish": 1}
    snakemake(wd, "results/demo_global.json", "--configfile", str(TINY))
    assert (
        load_json(wd / "results" / "demo_global.json")["metrics"]
        == load_json(tiny_run / "results" / "demo_global.json")["metrics"]
    )
    assert changed["versions"]["global"] != load_json(wd / "results" / "demo_global.json")["versions"]["global"]
    # an extraction change re-extracts (2 chunks x demo db and query; the codebook is the demo's own), but leaves
    # the demo data and the image lists alone
    override.write_text("extract:\n  sift:\n    k: 100\n")
    plan = job_stats(snakemake(wd, "-n", "results/demo_global.json", "--configfile", str(TINY), str(override)).stdout)
    assert plan["extract_local"] == 4 and "demo_data" not in plan and "image_lists" not in plan


@pytest.mark.parametrize(
    "override, pattern",
    [
        ("extarct:\n  n_chunks: 2\n", r"extarct"),
        ("extract:\n  sift:\n    k: 0\n", r"0 is less than the minimum of 1"),
        ("whiten:\n  powr: 0.5\n", r"powr"),
        ("ames:\n  train:\n    grad_clip: .nan\n", r"ames\.train\.grad_clip: nan is not a finite number"),
        ("sv: {threshold: 8.0}\nsv: {ratio: 0.7}\n", r"bad\.yaml:2: key 'sv' given a second time"),
    ],
)
def test_bad_config_is_rejected_before_any_job(tmp_path, override, pattern):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(override)
    proc = snakemake(tmp_path, "-n", "results/demo_global.json", "--configfile", str(cfg), check=False)
    assert proc.returncode != 0 and re.search(pattern, proc.stdout + proc.stderr)
    # the problem in a line, not Snakemake's dump of the whole schema and configuration (4,000+ lines)
    out = proc.stdout + proc.stderr
    assert "invalid configuration (1 problem(s)" in out and len(out.splitlines()) < 30
    # said in its own lines: not framed as a WorkflowError of the Snakefile with a stray "File ..., line N" after it
    assert "WorkflowError" not in out and 'Snakefile", line' not in out
    assert not (tmp_path / "results").exists()


def test_a_duplicate_key_and_a_misspelt_one_are_named_in_one_run(tmp_path):
    """The duplicate-key check stopped the run before the schema's, so a misspelt key in the same file was named only
    on the next try (a new user's trial)."""
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("sv: {threshold: 8.0}\nsv: {ratio: 0.7}\nserach: {k: 5}\n")
    proc = snakemake(tmp_path, "-n", "results/demo_global.json", "--configfile", str(cfg), check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "bad.yaml:2: key 'sv' given a second time" in out
    assert re.search(r"serach.*did you mean 'search'", out), out[-2000:]
    assert not (tmp_path / "results").exists()


def _refusal(workdir, text, target="results/demo_global.json"):
    """A dry run of ``target`` with ``text`` as a --configfile (bad.yaml) that must be refused: its output."""
    cfg = workdir / "bad.yaml"
    cfg.write_text(text)
    proc = snakemake(workdir, "-n", target, "--configfile", str(cfg), check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1 and "Traceback" not in out and "WorkflowError" not in out, out[-2000:]
    return out


def test_the_schemas_problems_and_the_other_checks_are_named_in_one_run(tmp_path):
    """A schema problem was said first and alone: the checks the schema cannot make came only on the next try. A
    check whose key the schema's lines already name is not said twice."""
    out = _refusal(
        tmp_path, "sv: {num_rerank: -3}\nunsupervised_fit: selff\nextract: {min_chunk_images: 5000, n_chunks: 0}\n"
    )
    assert "invalid configuration (2 problem(s); " in out, out[-2000:]
    assert re.search(r"\n  sv\.num_rerank: -3 is less than the minimum of 1 \[in .*bad\.yaml\]", out)
    assert "invalid configuration (2 problem(s) the schema cannot see;" in out
    assert re.search(r"\n  extract\.min_chunk_images \(5000\) is above extract\.max_chunk_images \(1000\)", out)
    assert re.search(r"\n  unsupervised_fit: 'selff' is not self, training or cross.*did you mean 'self'\?", out)
    out = _refusal(tmp_path, "unsupervised_fit: selff\nextract: {min_chunk_images: 5000, max_chunk_images: -1}\n")
    assert "extract.max_chunk_images: -1" in out and "unsupervised_fit: 'selff'" in out
    assert "is above extract.max_chunk_images" not in out  # its key is named by the schema's line already
    # a value of the wrong type stopped the other checks: it is set back to its default for them
    out = _refusal(tmp_path, "unsupervised_fit: 5\nextract: {min_chunk_images: 5000}\n")
    assert "\n  unsupervised_fit: 5 is not of type 'string'" in out, out[-2000:]
    assert "\n  extract.min_chunk_images (5000) is above extract.max_chunk_images (1000)" in out
    assert not (tmp_path / "results").exists()
    # a duplicate key, NaN, a key given by both its names: each stopped the run alone (helper-95's trial)
    out = _refusal(
        tmp_path,
        "sv: {ratio: 0.7}\nsv: {ratio: 0.8, threshold: .nan}\names: {bootstrap: 300}\nevaluate: {bootstrap: 500}\n"
        "extract: {min_chunk_images: 500, max_chunk_images: 200}\n",
    )
    assert "bad.yaml:2: key 'sv' given a second time" in out, out[-2000:]
    assert "\n  sv.threshold: nan is not a finite number" in out
    assert "invalid configuration (2 problem(s) the schema cannot see;" in out
    assert re.search(r"\n  .*bad\.yaml: gives both ames\.bootstrap: 300 and evaluate\.bootstrap: 500", out)
    assert "\n  extract.min_chunk_images (500) is above extract.max_chunk_images (200)" in out


def test_a_config_yaml_that_is_not_yaml_is_named_with_its_line(tmp_path):
    """An edit of config/config.yaml (the file the README says to copy) that broke its YAML got Snakemake's "Config file
    is not valid JSON or YAML", naming neither the file nor the line, framed as an error of the Snakefile's line 12
    (helper-98's trial)."""
    repo = Path(__file__).resolve().parents[2]
    proj = tmp_path / "proj"
    proj.mkdir()
    for name in ("Snakefile", "rules", "config"):
        (shutil.copytree if (repo / name).is_dir() else shutil.copy)(repo / name, proj / name)
    (proj / "workflow_scripts").symlink_to(repo / "workflow_scripts")
    lines = (proj / "config" / "config.yaml").read_text().splitlines()
    at = next(i for i, line in enumerate(lines) if line.strip().startswith("niter:"))
    lines[at] = "  niter: [20, 30"
    (proj / "config" / "config.yaml").write_text("\n".join(lines) + "\n")
    cmd = [sys.executable, "-m", "snakemake", "-s", str(proj / "Snakefile"), "-d", str(tmp_path / "wd"), "-n"]
    proc = subprocess.run([*cmd, "--cores", "1", "results/demo_global.json"], capture_output=True, text=True)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1 and "config/config.yaml is not valid YAML:" in out, out[-2000:]
    assert f'config.yaml", line {at + 1}, column' in out and "Traceback" not in out
    # a comment saved in Latin-1: a traceback from inside yaml (helper-101)
    (proj / "config" / "config.yaml").write_bytes(
        (repo / "config" / "config.yaml").read_bytes() + "# café\n".encode("latin-1")
    )
    proc = subprocess.run([*cmd, "--cores", "1", "results/demo_global.json"], capture_output=True, text=True)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1 and "config/config.yaml is not UTF-8 text (byte " in out, out[-2000:]
    assert "Traceback" not in out
    # a section given twice in config.yaml itself (helper-101: only --configfile files were read for it), and the
    # same file named again with --configfile is said once
    text = (repo / "config" / "config.yaml").read_text()
    (proj / "config" / "config.yaml").write_text(text + "knn: {k: 50}\n")
    config_yaml = proj / "config" / "config.yaml"
    said = f"{config_yaml}:{len(text.splitlines()) + 1}: key 'knn' given a second time"
    for again in ([], ["--configfile", str(config_yaml)]):
        proc = subprocess.run(
            [*cmd, "--cores", "1", "results/demo_global.json", *again], capture_output=True, text=True
        )
        out = proc.stdout + proc.stderr
        assert proc.returncode == 1 and said in out, out[-2000:]
        assert out.count("given a second time") == 1


@pytest.mark.parametrize(
    "override, pattern",
    [
        ("extract:\n  backbone: resnet\n", r"extract\.backbone: resnet needs extract\.resnet\.checkpoint.*\[in "),
        ("shortlist:\n  source: backbone\n  backbone: resnet\n", r"shortlist\.backbone: resnet needs extract\.resnet"),
    ],
)
def test_a_resnet_without_weights_is_refused_before_any_job(tmp_path, override, pattern):
    """It failed every extraction job, after the demo had been generated and listed."""
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(override)
    proc = snakemake(tmp_path, "results/demo_global.json", "--configfile", str(cfg), check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1 and re.search(pattern, out)
    # in its own lines, as the schema's problems are (it came framed as "WorkflowError in file .../common.smk")
    assert "WorkflowError" not in out and 'common.smk", line' not in out, out[-2000:]
    assert not (tmp_path / "results").exists()


def test_a_refusal_beyond_the_schema_comes_without_the_warnings_of_a_run_that_goes_on(tmp_path):
    """helper-146: a run refused by a check the schema cannot make printed the unapplied preset's and an older key's
    warnings first; and a method listed under both names was not said beside the schema's problems."""
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("extract: {max_chunk_images: 50}\names: {bootstrap: 500}\nreport: {methods: [global, lw, whiten]}\n")
    proc = snakemake(
        tmp_path, "-n", "results/demo_global.json", "--configfile", str(cfg), "--config", "preset=tiny", check=False
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1 and "extract.min_chunk_images (100) is above extract.max_chunk_images (50)" in out
    assert "report.methods: 'whiten' is 'lw' (its old name), which the list names already" in out, out[-2000:]
    assert "names config/presets/tiny.yaml" not in out and "older name" not in out, out[-2000:]
    cfg.write_text("sv: {ratio: 0.0}\nreport: {methods: [global, lw, whiten]}\n")  # beside a schema problem
    out = snakemake(tmp_path, "-n", "results/demo_global.json", "--configfile", str(cfg), check=False).stderr
    assert "sv.ratio: 0.0 must be above 0" in out and "'whiten' is 'lw' (its old name)" in out, out[-2000:]


def test_sources_without_what_they_read_are_refused_together_before_any_job(tmp_path):
    """A shortlist backbone that has no global descriptor and ames_import without its folder: each came alone, in
    Snakemake's InputFunctionException frame, so fixing one showed the next."""
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("extract:\n  backbone: ames_import\nshortlist:\n  source: backbone\n")
    proc = snakemake(tmp_path, "-n", "results/demo_sv.json", "--configfile", str(cfg), check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1 and "shortlist.source: backbone needs a deep backbone" in out, out[-2000:]
    # each names the file that set the key leading its line: the user's choice, not the key left out
    assert re.search(r"extract\.backbone: ames_import needs extract\.ames_import\.dir.*\[in .*bad\.yaml\]", out)
    assert re.search(r"shortlist\.source: backbone needs a deep backbone.*\[in .*bad\.yaml\]", out)
    # a value given with --config wins over every file: no file named, though the file gives the same value
    cfg.write_text("unsupervised_fit: nosuch\n")
    args = ("--configfile", str(cfg), "--config", "unsupervised_fit=nosuch")
    proc = snakemake(tmp_path, "-n", "results/demo_sv.json", *args, check=False)
    out = proc.stdout + proc.stderr  # this run's (the check below read the first run's: helper-94's review)
    (line,) = [ln for ln in out.splitlines() if ln.lstrip().startswith("unsupervised_fit:")]
    assert proc.returncode == 1 and "[in " not in line, line
    assert "InputFunctionException" not in out and "WorkflowError" not in out, out[-2000:]


def test_unknown_method_training_split_and_missing_dataset_are_named(tmp_path):
    proc = snakemake(tmp_path, "-n", "results/demo_nosuch.json", check=False)
    assert proc.returncode != 0 and "unknown method 'nosuch'" in proc.stdout + proc.stderr
    # no method at all: how a result is named, not Snakemake's "No rule to produce" (helper-174)
    for name, said in [("demo", "'demo' is a dataset"), ("gc", "a result is named results/{dataset}_{method}.json")]:
        proc = snakemake(tmp_path, "-n", f"results/{name}.json", check=False)
        out = proc.stdout + proc.stderr
        assert proc.returncode != 0 and said in out and "MissingRuleException" not in out, out[-2000:]
    proc = snakemake(tmp_path, "-n", "results/demo-train_global.json", check=False)
    assert proc.returncode != 0 and "training split" in proc.stdout + proc.stderr
    proc = snakemake(tmp_path, "-n", "results/nowhere_global.json", check=False)
    assert proc.returncode != 0 and "data/nowhere" in proc.stdout + proc.stderr
    # a dataset named in a key is named with the key (it read as an unknown dataset of image_lists)
    cfg = tmp_path / "sv_dataset.yaml"
    cfg.write_text("benchmark:\n  ames:\n    sv_dataset: nosuch\n")
    proc = snakemake(tmp_path, "-n", "results/benchmarks/ames_throughput.json", "--configfile", str(cfg), check=False)
    assert proc.returncode != 0 and "benchmark.ames.sv_dataset: dataset 'nosuch'" in proc.stdout + proc.stderr


def test_a_published_result_whose_evaluation_was_removed_is_said_with_the_remedy_that_works(tiny_run, tmp_path):
    """helper-149: a refused SLURM submission made Snakemake remove an evaluation's files; the published copy stayed,
    naming them, and the next run said only "Nothing to be done". It is now said, and -R on the file restores it."""
    wd = copy_tree(tiny_run, tmp_path / "wd")
    evaluation = load_json(wd / "results" / "demo_global.json")["artifacts"]["evaluation"]
    (wd / evaluation).unlink()  # as Snakemake removes a failed job's outputs
    again = snakemake(wd, "results/demo_global.json", "--configfile", str(TINY))
    said = f"results/demo_global.json names {evaluation}, which is gone"
    out = again.stdout + again.stderr
    assert "Nothing to be done" in out and said in out, out[-2000:]
    # the rule that makes it, everything, or the published copy (which needs the evaluation again) made again
    for forced in (["-R", "evaluate_global"], ["-F"], ["-f"], ["-R", "results/demo_global.json"], ["-R", "publish"]):
        dry = snakemake(wd, "-n", "results/demo_global.json", *forced, "--configfile", str(TINY))
        assert "evaluate_global" in dry.stdout and "which is gone" not in dry.stdout + dry.stderr, forced
    remedy = snakemake(wd, "results/demo_global.json", "-R", evaluation, "--configfile", str(TINY))
    assert "which is gone" not in remedy.stdout + remedy.stderr  # not told to do what it does
    assert (wd / evaluation).is_file()
    assert load_json(wd / evaluation)["metrics"] == load_json(wd / "results" / "demo_global.json")["metrics"]
    after = snakemake(wd, "results/demo_global.json", "--configfile", str(TINY))
    assert "which is gone" not in after.stdout + after.stderr


def test_plain_folder_without_ground_truth_gets_neighbours(tiny_run, tmp_path):
    """An engineer's folder of photos: rankings and a neighbour CSV by path, no metrics."""
    wd = tmp_path / "wd"
    shutil.copytree(tiny_run, wd, symlinks=True)
    photos = tmp_path / "mine" / "photos" / "jpg"
    photos.mkdir(parents=True)
    demo_jpg = sorted((tiny_run / "results" / "demo_data").glob("*/demo/jpg/*.jpg"))[:8]
    for p in demo_jpg:
        shutil.copy(p, photos / p.name)
    snakemake(wd, "results/photos_global.json", "--configfile", str(TINY), "--config", f"data_root={tmp_path / 'mine'}")
    res = load_json(wd / "results" / "photos_global.json")
    assert res["metrics"] is None and res["n_queries"] == 8 and res["n_db"] == 8
    assert res["crop_queries"] is False  # no query has a box (it recorded the setting, true)
    with open(wd / res["artifacts"]["neighbours_csv"]) as fh:
        rows = list(csv.DictReader(fh))
    # every image is its own best match
    firsts = [r for r in rows if r["rank"] == "1"]
    assert all(r["query"] == r["image"] for r in firsts)
    # adding a photo to the folder is noticed: the lists (and what follows) are planned again
    cfg = ("--configfile", str(TINY), "--config", f"data_root={tmp_path / 'mine'}")
    assert "Nothing to be done" in snakemake(wd, "-n", "results/photos_global.json", *cfg).stdout
    shutil.copy(demo_jpg[-1], photos / "added.jpg")
    os.utime(photos, (time.time() + 5, time.time() + 5))
    assert "image_lists" in job_stats(snakemake(wd, "-n", "results/photos_global.json", *cfg).stdout)


def test_bad_images_error_by_default_and_are_recorded_with_skip(tiny_run, tmp_path):
    """A truncated, a zero-byte, a non-image and a missing file among good photos."""
    wd = tmp_path / "wd"
    shutil.copytree(tiny_run, wd, symlinks=True)
    root = tmp_path / "mine" / "bad"
    (root / "jpg").mkdir(parents=True)
    good = sorted((tiny_run / "results" / "demo_data").glob("*/demo/jpg/*.jpg"))[:6]
    for p in good:
        shutil.copy(p, root / "jpg" / p.name)
    data = good[0].read_bytes()
    (root / "jpg" / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (root / "jpg" / "empty.jpg").write_bytes(b"")
    (root / "jpg" / "notes.jpg").write_text("not an image")
    Image.new("RGB", (64, 48), (128, 128, 128)).save(root / "jpg" / "blank.jpg")  # decodes; no SIFT feature
    names = [f"jpg/{p.name}" for p in good] + ["jpg/truncated.jpg", "jpg/empty.jpg", "jpg/notes.jpg", "jpg/gone.jpg"]
    names.append("jpg/blank.jpg")
    (root / "image_list.txt").write_text("\n".join(names) + "\n")
    cfg = ("--configfile", str(TINY), "--config", f"data_root={tmp_path / 'mine'}")
    failed = snakemake(wd, "results/bad_global.json", *cfg, check=False)
    assert failed.returncode != 0 and "gone.jpg" in failed.stdout + failed.stderr
    for bad in ("empty.jpg", "notes.jpg", "truncated.jpg"):  # each alone: an error naming it
        (root / "image_list.txt").write_text("\n".join(names[:6] + [f"jpg/{bad}"]) + "\n")
        failed = snakemake(wd, "results/bad_global.json", *cfg, check=False)
        out = failed.stdout + failed.stderr + "".join(p.read_text() for p in (wd / "logs").rglob("*.log"))
        assert failed.returncode != 0 and f"bad/jpg/{bad}: " in out, bad
    (root / "image_list.txt").write_text("\n".join(names) + "\n")
    ok = snakemake(wd, "results/bad_global.json", *cfg, "on_bad_image=skip")
    # the warnings name the dataset (they said "image(s) of db", the same for a collection and a searched folder;
    # a folder without queries is named alone) in one warning that counts the skipped (a second warning named the
    # same files again)
    said = ok.stdout + ok.stderr
    assert (
        "5 image(s) of bad have no local features (never a match; the manifest names them; 4 of them skipped as "
        "unreadable, on_bad_image: skip)" in said
    )
    assert "got no features" not in said
    res = load_json(wd / "results" / "bad_global.json")
    assert res["metrics"] is None and res["n_db"] == 11 and res["db_images_without_features"] == 5
    v = res["versions"]
    lists_man = load_json(wd / "results" / "lists" / "bad" / v["image_lists"] / "manifest.json")
    db_skipped = [s["name"] for s in lists_man["skipped_images"] if s["split"] == "db"]
    assert db_skipped == ["jpg/empty.jpg", "jpg/notes.jpg", "jpg/gone.jpg"]
    extract_man = load_json(wd / "results" / "local" / "bad" / v["extract"] / "db" / "manifest.json")
    skipped = sorted(Path(s["path"]).name for s in extract_man["skipped_images"])
    assert skipped == ["empty.jpg", "gone.jpg", "notes.jpg", "truncated.jpg"]
    # the blank photo was read and found nothing: not skipped, but named with the others that got no features
    assert extract_man["n_without_features"] == 5
    assert extract_man["images_without_features"] == names[6:]
    with h5py.File(wd / "results" / "local" / "bad" / v["extract"] / "db" / "local.h5", "r") as f:
        counts = f["count"][:]
    assert (counts[6:] == 0).all() and (counts[:6] > 0).all()


def _without_root_file_access() -> tuple[str, ...] | None:
    """A command prefix under which file permissions hold for this process: none for a user other than root; for
    root, util-linux's setpriv dropping the capabilities that override them (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH);
    None when root has no setpriv."""
    if os.geteuid() != 0:
        return ()
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        return None
    caps = "-dac_override,-dac_read_search"
    return (setpriv, f"--inh-caps={caps}", f"--bounding-set={caps}")


def test_a_photo_without_read_permission_is_named_skipped_and_read_once_permitted(tiny_run, tmp_path, request):
    """Photos on a shared drive this process may not read (a file chmod 000, and one in a folder without search
    permission, with root's override dropped): the default run fails naming them and why; under skip they are listed
    without features, with the reason; given permission back (chmod keeps sizes and mtimes) the next run lists and
    extracts them, instead of keeping their empty rows."""
    prefix = _without_root_file_access()
    if prefix is None:
        pytest.skip("running as root without setpriv: file permissions cannot be made to hold")
    wd = tmp_path / "wd"
    shutil.copytree(tiny_run, wd, symlinks=True)
    root = tmp_path / "mine" / "perm"
    (root / "jpg" / "nox").mkdir(parents=True)
    (root / "jpg" / "unlisted").mkdir()
    good = sorted((tiny_run / "results" / "demo_data").glob("*/demo/jpg/*.jpg"))[:9]
    names = [f"jpg/{p.name}" for p in good[:7]] + [f"jpg/nox/{good[7].name}", f"jpg/unlisted/{good[8].name}"]
    for p, n in zip(good, names):
        shutil.copy(p, root / n)
    locked, hidden = root / names[3], root / names[7]
    request.addfinalizer(lambda: [d.chmod(0o755) for d in (hidden.parent, root / "jpg" / "unlisted")])
    locked.chmod(0)
    hidden.parent.chmod(0o600)  # no search (x) permission: even its stat is refused
    (root / "jpg" / "unlisted").chmod(0o300)  # no read permission: a scan cannot list it
    cfg = ("--configfile", str(TINY), "--config", f"data_root={tmp_path / 'mine'}")
    for listed_by in ("image_list.txt", "a scan"):  # the default run fails naming both, either way
        if listed_by == "image_list.txt":
            (root / "image_list.txt").write_text("\n".join(names[:8]) + "\n")
        else:
            (root / "image_list.txt").unlink()
        failed = snakemake(wd, "results/perm_global.json", *cfg, check=False, prefix=prefix)
        out = failed.stdout + failed.stderr + "".join(p.read_text() for p in (wd / "logs").rglob("*.log"))
        assert failed.returncode != 0, out
        assert f"{locked}: no permission to read it" in out and f"{hidden}: no permission to read it" in out, out
    assert f"{root / 'jpg' / 'unlisted'}: folder cannot be listed (Permission denied): its images are left out" in out

    def run(on_bad_image):
        snakemake(wd, "results/perm_global.json", *cfg, f"on_bad_image={on_bad_image}", prefix=prefix)
        v = load_json(wd / "results" / "perm_global.json")["versions"]
        lists = load_json(wd / "results" / "lists" / "perm" / v["image_lists"] / "manifest.json")
        extract = load_json(wd / "results" / "local" / "perm" / v["extract"] / "db" / "manifest.json")
        with h5py.File(wd / "results" / "local" / "perm" / v["extract"] / "db" / "local.h5", "r") as f:
            counts = f["count"][:]
        return lists["skipped_images"], extract["skipped_images"], counts

    listed, extracted, counts = run("skip")
    assert {s["path"] for s in listed} == {str(locked), str(hidden)}
    assert sorted(extracted, key=lambda s: s["path"]) == [
        {"path": str(p), "reason": "no permission to read it"} for p in sorted([locked, hidden])
    ]
    assert counts[3] == counts[7] == 0 and (np.delete(counts, [3, 7]) > 0).all()
    mtimes = [p.stat().st_mtime_ns for p in (locked, hidden, hidden.parent)]
    hidden.parent.chmod(0o755)
    locked.chmod(0o644)
    assert [p.stat().st_mtime_ns for p in (locked, hidden, hidden.parent)] == mtimes
    listed, extracted, counts = run("skip")
    assert listed == [] and extracted == [] and len(counts) == 8 and (counts > 0).all()
    # the folder that could not be listed, listable again: a change of permissions moves no mtime, so the plan made
    # while the DAG is built still holds the lists without its photo, and the run stops saying to run it again
    # (folders' ctimes would tell, but any chmod or chown of a folder would then rebuild the lists at every plan)
    (root / "jpg" / "unlisted").chmod(0o755)
    failed = snakemake(wd, "results/perm_global.json", *cfg, "on_bad_image=skip", check=False, prefix=prefix)
    out = failed.stdout + failed.stderr + "".join(p.read_text() for p in (wd / "logs").rglob("*.log"))
    assert failed.returncode != 0 and f"{root / names[8]}']: they changed after the workflow planned" in out
    assert "run snakemake again" in out
    listed, extracted, counts = run("skip")
    assert listed == [] and extracted == [] and len(counts) == 9 and (counts > 0).all()


@pytest.mark.skipif(
    not (SHARED / "datasets" / "landmarks-mini").is_dir(), reason="../shared/datasets/landmarks-mini is absent"
)
def test_landmarks_mini_end_to_end(tiny_run, tmp_path):
    snakemake(
        tiny_run,
        "results/landmarks-mini_global.json",
        "--configfile",
        str(TINY),
        "--config",
        f"data_root={SHARED / 'datasets'}",
    )
    res = load_json(tiny_run / "results" / "landmarks-mini_global.json")
    assert res["n_queries"] == 16 and res["n_db"] == 85 and res["crop_queries"] is True
    assert res["n_evaluated_queries"] == {"E": 15, "M": 16, "H": 12}
    assert res["hyperparameters"]["fit_split"] == "landmarks-mini"
    assert res["fitted_on"]["codebook"]["split"] == "landmarks-mini"  # its own database images (self), no labels
    # far better than a random ranking (random Medium mAP on this set is about 11%)
    assert res["metrics"]["mAP"]["M"] > 20
    # nothing behind it is generated: a demo key re-runs nothing, and the fit split named rather than "self" only
    # publish, whose fitted_on records the mode (both re-ran its evaluation in place, under the same version)
    (tmp_path / "seed.yaml").write_text("demo: {seed: 1}\n")
    (tmp_path / "named.yaml").write_text("unsupervised_fit: landmarks-mini\n")
    # a misspelt fit split is refused before any job, with the closest folder (a new user's trial got it wrapped in
    # an InputFunctionException and its traceback)
    (tmp_path / "misspelt.yaml").write_text("unsupervised_fit: landmarks-minii\n")

    def dry_run(change, check=True):
        return snakemake(
            tiny_run,
            "-n",
            "results/landmarks-mini_global.json",
            "--configfile",
            str(TINY),
            str(tmp_path / change),
            "--config",
            f"data_root={SHARED / 'datasets'}",
            check=check,
        )

    for change, planned in (("seed.yaml", {}), ("named.yaml", {"publish": 1})):
        dry = dry_run(change)
        assert job_stats(dry.stdout) == planned, (change, dry.stdout[-2000:])
    dry = dry_run("misspelt.yaml", check=False)
    text = dry.stdout + dry.stderr
    assert dry.returncode != 0 and "InputFunctionException" not in text
    assert "unsupervised_fit: 'landmarks-minii' is not self, training or cross" in text
    assert "did you mean 'landmarks-mini'?" in text
    # under the header the schema's problems have, indented as theirs (they came as bare lines)
    assert "invalid configuration (1 problem(s) the schema cannot see;" in text
    assert "\n  unsupervised_fit: 'landmarks-minii'" in text


def test_revisitop_layout_with_pickle_and_alias(tiny_run, tmp_path):
    """jpg/ + gnd_roxford5k.pkl (numpy arrays, as revisitop ships it), requested by its alias 'roxford':
    the same images and labels as the tiny demo must give exactly the demo's metrics."""

    wd = tmp_path / "wd"
    shutil.copytree(tiny_run, wd, symlinks=True)
    demo_dir = next((tiny_run / "results" / "demo_data").glob("*/demo"))
    target = tmp_path / "data" / "roxford5k"
    shutil.copytree(demo_dir / "jpg", target / "jpg")
    gnd = load_json(demo_dir / "gnd.json")
    gnd["gnd"] = [
        {
            "easy": np.array(g["easy"]),
            "hard": np.array(g["hard"]),
            "junk": np.array(g["junk"]),
            "bbx": np.array(g["bbx"]),
        }
        for g in gnd["gnd"]
    ]
    (target / "gnd_roxford5k.pkl").write_bytes(pickle.dumps(gnd, protocol=2))
    snakemake(
        wd, "results/roxford_global.json", "--configfile", str(TINY), "--config", f"data_root={tmp_path / 'data'}"
    )
    res = load_json(wd / "results" / "roxford_global.json")
    assert res["metrics"] == load_json(tiny_run / "results" / "demo_global.json")["metrics"]
    # the alias asks for the canonical name's artifacts (it used to extract the database twice, once per name)
    assert sorted(p.name for p in (wd / "results" / "local").iterdir() if p.name.startswith("rox")) == ["roxford5k"]
    out = snakemake(
        wd,
        "-n",
        "results/roxford5k_global.json",
        "--configfile",
        str(TINY),
        "--config",
        f"data_root={tmp_path / 'data'}",
    ).stdout
    assert re.search(r"publish\s+1\ntotal\s+1\n", out), out
    # '+1m' names the distractor variant of a dataset: a missing base dataset is named as such
    proc = snakemake(wd, "-n", "results/nowhere+1m_global.json", check=False)
    assert proc.returncode != 0 and "dataset 'nowhere': folder" in proc.stdout + proc.stderr


def test_imported_global_descriptors_give_the_same_metrics(tiny_run, tmp_path):
    """Descriptors computed elsewhere (here: this run's own, exported to .npy and .h5) make the same shortlist."""
    wd = tmp_path / "wd"
    copy_tree(tiny_run, wd)
    res = load_json(tiny_run / "results" / "demo_global.json")
    imp = tmp_path / "import" / "demo"
    imp.mkdir(parents=True)
    with h5py.File(tiny_run / f"results/global/demo/demo/{res['versions']['global']}/db.h5", "r") as f:
        np.save(imp / "db.npy", f["descriptors"][:] * 3.0)  # any scale: rows are normalised on import
    shutil.copy(tiny_run / f"results/global/demo/demo/{res['versions']['global']}/query.h5", imp / "query.h5")
    cfg = tmp_path / "import.yaml"
    cfg.write_text(f"shortlist: {{source: import, import_dir: {tmp_path / 'import'}}}\n")
    snakemake(wd, "results/demo_global.json", "--configfile", str(TINY), str(cfg))
    got = load_json(wd / "results" / "demo_global.json")
    assert got["hyperparameters"]["shortlist"]["source"] == "import"
    for metric, values in res["metrics"].items():
        assert got["metrics"][metric] == pytest.approx(values, abs=1e-3), metric
    # a file with the wrong number of rows is refused, naming it
    np.save(imp / "db.npy", np.ones((3, 4), np.float32))
    proc = snakemake(wd, "results/demo_global.json", "--configfile", str(TINY), str(cfg), check=False)
    assert (
        proc.returncode != 0
        and "db.npy" in proc.stdout + proc.stderr
        and "3 db descriptors" in proc.stdout + proc.stderr
    )


def test_export_in_the_ames_layout_reads_back_to_identical_results(tiny_ames, tmp_path):
    """results/export/ames/demo, moved elsewhere and read back (ames_import local descriptors, the ames_nn shortlist,
    the trained model as ames.checkpoint): global, sv and AMES give the same numbers without any extraction."""
    wd = tmp_path / "wd"
    copy_tree(tiny_ames, wd)
    fixed = tmp_path / "fixed.yaml"
    fixed.write_text(yaml.safe_dump({"ames": {"select": "fixed"}}))
    targets = ["results/demo_global.json", "results/demo_sv.json", "results/demo_ames.json"]
    snakemake(wd, *targets, "results/export/ames/demo", "--configfile", str(TINY), str(fixed))
    want = {t: load_json(wd / t) for t in targets}
    release = tmp_path / "release"
    shutil.copytree(wd / "results" / "export" / "ames", release)
    folder = release / "demo"
    n_db, n_q = want["results/demo_global.json"]["n_db"], want["results/demo_global.json"]["n_queries"]
    with open(folder / "nn_sift.pkl", "rb") as fh:
        nn = pickle.load(fh)  # as AMES reads it (src/utils/utils.py: pickle_load)
    assert tuple(nn.shape) == (2, n_q, n_db) and bool((nn[0][:, :-1] >= nn[0][:, 1:]).all())
    with h5py.File(folder / "sift_gallery_local.hdf5") as f:
        assert f["features"].shape == (n_db,) and f["features"].dtype["descriptor"].base == np.float16
    assert len((folder / "test_query.txt").read_text().splitlines()) == n_q
    # the manifest hashes every exported file, the image lists included (they had no hash)
    outputs = {Path(p).name: v for p, v in load_json(folder / "manifest.json")["outputs"].items()}
    exported = [p.name for p in folder.iterdir() if p.name != "manifest.json" and not p.name.startswith(".")]
    assert sorted(outputs) == sorted(exported)  # (.snakemake_timestamp: Snakemake's mark on a directory output)
    for name, entry in outputs.items():
        assert entry["sha1"] == hashlib.sha1((folder / name).read_bytes()).hexdigest(), name
    # and its inputs with their versions and the preset, as every manifest (they had paths only, preset null)
    manifest = load_json(folder / "manifest.json")
    assert manifest["preset"] == "tiny" and all("version" in e for e in manifest["inputs"].values())
    assert manifest["inputs"]["knn"]["version"] == want["results/demo_global.json"]["versions"]["knn"]
    assert "sha1" in manifest["inputs"]["knn"] and "sha1" not in manifest["inputs"]["db"]
    gt = load_ground_truth(folder / "gnd_demo.pkl")  # the restricted unpickler accepts it
    assert gt.n_db == n_db and gt.n_queries == n_q

    model = wd / f"results/ames_model/{want['results/demo_ames.json']['versions']['ames_model']}/model.pt"
    cfg = tmp_path / "import.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "extract": {
                    "backbone": "ames_import",
                    "ames_import": {"dir": str(release), "desc": "sift", "k": 128, "positions": "auto"},
                },
                "shortlist": {"source": "ames_nn", "import_dir": str(release), "nn_file": "nn_sift.pkl"},
                # the README's form: relative to the working directory (Snakemake had read it as train_ames's output)
                "ames": {"checkpoint": {"ames": str(model.relative_to(wd))}},
            }
        )
    )
    proc = snakemake(wd, *targets, "--configfile", str(TINY), str(fixed), str(cfg))
    assert "rule train_ames" not in proc.stdout and "rule knn:" not in proc.stdout
    # another desc than the folder's files: the key is named, with what the folder holds (it was Snakemake's
    # MissingInputException naming the file only: helper-99's trial)
    other = tmp_path / "other_desc.yaml"
    other.write_text(yaml.safe_dump({"extract": {"ames_import": {"desc": "dinov2"}}}))
    proc = snakemake(
        wd, "-n", "-F", targets[1], "--configfile", str(TINY), str(fixed), str(cfg), str(other), check=False
    )
    said = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "MissingInputException" not in said, said[-2000:]
    assert re.search(r"extract\.ames_import: \S*dinov2_(gallery|query)_local\.hdf5 not found \(desc: dinov2", said)
    assert "the folder holds the descriptors ['sift']: set extract.ames_import.desc" in said
    for t in targets:
        got = load_json(wd / t)
        assert got["metrics"] == want[t]["metrics"], t
    got = load_json(wd / "results/demo_ames.json")
    assert got["hyperparameters"]["checkpoint"] == str(model) and "knn_train" not in got["versions"]
    assert got["hyperparameters"]["global"]["shortlist"]["source"] == "ames_nn"
    # the report works from an imported shortlist (its knn timing comes from the import)
    report = tmp_path / "report.yaml"
    report.write_text(yaml.safe_dump({"report": {"methods": ["global", "sv", "ames"]}}))
    snakemake(wd, "results/report/demo.html", "--configfile", str(TINY), str(fixed), str(cfg), str(report))
    assert (wd / "results/report/demo.html").stat().st_size > 0
    # methods that need global descriptors say so
    proc = snakemake(wd, "results/demo_aqe.json", "--configfile", str(TINY), str(fixed), str(cfg), check=False)
    assert proc.returncode != 0 and "imports only a shortlist" in proc.stdout + proc.stderr
    # a file of the folder edited in place still reads: its export's record names it (it was used without a word)
    gallery = folder / "sift_gallery_local.hdf5"
    data = bytearray(gallery.read_bytes())
    data[-100] ^= 1
    gallery.write_bytes(bytes(data))
    proc = snakemake(wd, "results/demo_sv.json", "--configfile", str(TINY), str(fixed), str(cfg), check=False)
    said = proc.stdout + proc.stderr + "".join(p.read_text() for p in (wd / "logs").rglob("*.log"))
    assert proc.returncode != 0 and f"{gallery}: not the file its export recorded in {folder / 'manifest.json'}" in said


def test_compressed_search_is_a_shortlist_that_is_never_scored(tiny_run, tmp_path):
    """knn.k > 0 is a shortlist: refused while the DAG is built where revisitop metrics need every image ranked
    (before any job runs), and searched with IVF-PQ for a folder without ground truth."""
    wd = tmp_path / "wd"
    copy_tree(tiny_run, wd)
    cfg = tmp_path / "ivf.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {"knn": {"k": 10, "search": "ivfpq", "ivfpq": {"nlist": 4, "m": 8, "nbits": 4, "nprobe": 4, "train": 42}}}
        )
    )
    before = sorted((wd / "results" / "knn").rglob("knn.h5"))
    for target in ("results/demo_global.json", "results/demo_ames.json"):
        proc = snakemake(wd, target, "--configfile", str(TINY), str(cfg), check=False)
        out = proc.stdout + proc.stderr
        assert proc.returncode != 0 and "knn.k is 10, a shortlist of 10 of the" in out and "knn.k: 0" in out
    assert sorted((wd / "results" / "knn").rglob("knn.h5")) == before  # nothing ran
    # before the demo is generated: refused all the same, without a warning that its lists cannot be built (they
    # were asked for to count the database, and the demo's folder is not there yet)
    proc = snakemake(
        tmp_path / "empty", "-n", "results/demo_global.json", "--configfile", str(TINY), str(cfg), check=False
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "knn.k is 10" in out and "cannot be built" not in out
    # a folder without ground truth takes the shortlist: the IVF-PQ search's top 10 of its images
    photos = tmp_path / "mine" / "photos" / "jpg"
    photos.mkdir(parents=True)
    demo_jpg = sorted((tiny_run / "results" / "demo_data").glob("*/demo/jpg/*.jpg"))
    for p in demo_jpg:
        shutil.copy(p, photos / p.name)
    snakemake(
        wd,
        "results/photos_global.json",
        "--configfile",
        str(TINY),
        str(cfg),
        "--config",
        f"data_root={tmp_path / 'mine'}",
    )
    res = load_json(wd / "results" / "photos_global.json")
    assert res["metrics"] is None and res["n_db"] == len(demo_jpg) > 10
    with h5py.File(wd / res["artifacts"]["knn"], "r") as f:
        assert f["ids"].shape == (len(demo_jpg), 10) and f.attrs["search"] == "ivfpq"


def test_whitening_is_off_for_a_split_too_small_to_learn_it(tiny_run):
    """demo-val's 18 database images are fewer than min_images_per_dim 1 x dim 32 (tiny preset): no whitening, the
    L2-normalised VLAD is the global descriptor, and the results JSON records the decision."""
    snakemake(tiny_run, "results/demo-val_global.json", "--configfile", str(TINY))
    res = load_json(tiny_run / "results" / "demo-val_global.json")
    w = res["fitted_on"]["whitening"]
    assert w["applied"] is False and w["decision"].startswith("off: 18 images < ")
    with h5py.File(tiny_run / f"results/global/demo-val/demo-val/{res['versions']['global']}/db.h5", "r") as f:
        x = f["descriptors"][:]
    assert x.shape == (18, 8 * 128)  # the VLAD's own dimension (8 words x 128), not the 32 PCA components
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5)


def test_unsupervised_fit_cross_pairs_oxford_and_paris(tmp_path):
    """unsupervised_fit: cross is the field's convention: roxford5k's codebook and whitening come from rparis6k."""
    for name in ("roxford5k", "rparis6k"):
        (tmp_path / "data" / name / "jpg").mkdir(parents=True)
        (tmp_path / "data" / name / "gnd.json").write_text(json.dumps({"imlist": ["a"], "qimlist": ["a"], "gnd": [{}]}))
    out = snakemake(
        tmp_path,
        "-n",
        "results/roxford_global.json",
        "--configfile",
        str(TINY),
        "--config",
        f"data_root={tmp_path / 'data'}",
        "unsupervised_fit=cross",
    ).stdout
    assert "results/codebook/rparis6k/" in out and "results/whiten/rparis6k/" in out
    assert "results/codebook/roxford5k/" not in out
    assert "results/global/roxford5k/rparis6k/" in out or "results/global/roxford/rparis6k/" in out
