"""'{dataset}+1m' in the workflow (tiny preset): a small stand-in for the R1M distractors in revisitop1m's own layout
(``revisitop1m.txt`` naming images in sub-folders of ``jpg/``) appended to the demo database."""

import re
import shutil

import h5py
import numpy as np
import pytest

from conftest import TINY, load_json, snakemake

pytestmark = pytest.mark.workflow


@pytest.fixture(scope="module")
def plus_run(tiny_run):
    # stand-in distractors: demo-train photos (other landmarks than the demo's), in R1M's folder layout
    train = sorted((tiny_run / "results" / "demo_data").glob("*/demo-train/jpg/*.jpg"))
    root = tiny_run / "r1m_root" / "revisitop1m"
    names = []
    for i, p in enumerate(train[:30]):
        name = f"{i % 3:02d}/{p.name}"
        (root / "jpg" / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(p, root / "jpg" / name)
        names.append(name)
    (root / "revisitop1m.txt").write_text("\n".join(names) + "\n")
    proc = snakemake(
        tiny_run,
        "results/demo+1m_global.json",
        "--configfile",
        str(TINY),
        "--config",
        f"data_root={tiny_run / 'r1m_root'}",
    )
    return tiny_run, names, proc.stdout + proc.stderr


def test_lists_append_the_distractors_and_keep_the_ground_truth(plus_run):
    wd, names, _ = plus_run
    res, base = load_json(wd / "results/demo+1m_global.json"), load_json(wd / "results/demo_global.json")
    lists = load_json(wd / f"results/lists/demo+1m/{res['versions']['image_lists']}/lists.json")
    blists = load_json(wd / f"results/lists/demo/{base['versions']['image_lists']}/lists.json")
    assert [e["name"] for e in lists["db"]] == [e["name"] for e in blists["db"]] + names
    assert lists["query"] == blists["query"] and res["n_db"] == base["n_db"] + len(names)
    gnd = load_json(wd / f"results/lists/demo+1m/{res['versions']['image_lists']}/gnd.json")
    bgnd = load_json(wd / f"results/lists/demo/{base['versions']['image_lists']}/gnd.json")
    assert gnd["gnd"] == bgnd["gnd"] and gnd["imlist"] == bgnd["imlist"] + names


def test_the_dataset_is_not_extracted_again_and_its_rows_come_first(plus_run):
    wd, names, log = plus_run
    res, base = load_json(wd / "results/demo+1m_global.json"), load_json(wd / "results/demo_global.json")
    v = res["versions"]["extract"]
    assert not list((wd / f"results/local/demo+1m/{v}").rglob("chunk_*.h5"))  # a virtual stack, nothing extracted
    with (
        h5py.File(wd / f"results/local/demo+1m/{v}/db/local.h5") as plus,
        h5py.File(wd / f"results/local/demo/{base['versions']['extract']}/db/local.h5") as own,
    ):
        n = own["count"].shape[0]
        assert plus["count"].shape[0] == n + len(names)
        np.testing.assert_array_equal(plus["descriptors"][:n], own["descriptors"][:])
        assert (plus["count"][n:] > 0).all()


def test_distractors_only_push_positives_down(plus_run):
    wd, names, _ = plus_run
    res, base = load_json(wd / "results/demo+1m_global.json"), load_json(wd / "results/demo_global.json")
    for proto in ("E", "M", "H"):
        assert res["per_query_ap"][proto]["query"] == base["per_query_ap"][proto]["query"]
        ap = np.array(res["per_query_ap"][proto]["ap"], float)
        bap = np.array(base["per_query_ap"][proto]["ap"], float)
        ok = ~np.isnan(bap)
        assert (ap[ok] <= bap[ok] + 1e-9).all()
    assert res["metrics"]["mAP"]["M"] < base["metrics"]["mAP"]["M"]  # some distractor outranks a positive
    # restricted to the demo's own images, each query's ranking is the demo's
    n = base["n_db"]
    with h5py.File(next((wd / "results/eval/demo+1m").glob("*/global_ranking.h5"))) as f:
        plus_ranks = f["ranks"][:]
    with h5py.File(wd / f"results/eval/demo/{base['versions']['evaluate']}/global_ranking.h5") as f:
        own_ranks = f["ranks"][:]
    for q in range(len(own_ranks)):
        np.testing.assert_array_equal(plus_ranks[q][plus_ranks[q] < n], own_ranks[q])


def test_a_second_variant_shares_the_distractor_extraction(plus_run):
    wd, _, _ = plus_run
    proc = snakemake(
        wd,
        "results/demo-val+1m_global.json",
        "--configfile",
        str(TINY),
        "--config",
        f"data_root={wd / 'r1m_root'}",
        "-n",
    )
    out = proc.stdout
    # the dry run plans the new variant's lists and its merge, and no extraction of the distractors or of a '+1m'
    # dataset (only, if any, the base dataset's own chunks)
    assert "dataset=demo-val+1m" in out and "merge_local" in out
    jobs, rule = [], None
    for line in out.splitlines():
        m = re.match(r"\s*(?:local)?rule (\w+):", line)
        if m:
            rule = m.group(1)
        elif line.strip().startswith("wildcards:") and rule:
            jobs.append((rule, line.strip()))
    assert ("merge_local", "wildcards: dataset=demo-val+1m") in [(r, w.split(",")[0]) for r, w in jobs]
    extracted = [w for r, w in jobs if r == "extract_local"]
    assert all("+1m" not in w and "revisitop1m" not in w for w in extracted), extracted
    assert "dataset=revisitop1m" not in out


@pytest.mark.parametrize(
    "target, message",
    [
        ("results/revisitop1m_global.json", "no queries"),
        ("results/revisitop1m+1m_global.json", "appends the revisitop1m distractors to another dataset"),
    ],
)
def test_bad_distractor_targets_are_refused_clearly(plus_run, target, message):
    wd, _, _ = plus_run
    proc = snakemake(
        wd, target, "--configfile", str(TINY), "--config", f"data_root={wd / 'r1m_root'}", "-n", check=False
    )
    assert proc.returncode != 0 and message in proc.stdout + proc.stderr
