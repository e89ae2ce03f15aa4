"""Fault suite: a job killed with SIGKILL in the middle of extraction, merge, training or evaluation, and the
Snakemake run itself killed; the re-run finishes, trusts nothing half-written, and gives the same metrics.

Crashes are injected deterministically (``RETRIEVAL_FAULT=<step>`` makes the job that reaches that point kill
itself; ``<step>:run`` also kills its Snakemake process), on a copy of the session's tiny run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

import pytest

from conftest import REPO, TINY, copy_tree, load_json, snakemake

pytestmark = pytest.mark.workflow


def _run(wd, *args, env_extra=None, timeout=900):
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "--snakefile",
        str(REPO / "Snakefile"),
        "--directory",
        str(wd),
        "--cores",
        "2",
        *args,
    ]
    env = {**os.environ, "PYTHONHASHSEED": "0", **(env_extra or {})}
    # a new session: a fault that kills the Snakemake process never reaches pytest
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, start_new_session=True)


def _partials(wd):
    return sorted(str(p.relative_to(wd)) for p in (wd / "results").rglob("*.part"))


CASES = [
    # step, the rule it kills, the target, what is removed from the finished tiny run before the crashing run
    ("extract", "extract_local", "results/demo_global.json", ["*"]),
    ("merge", "merge_local", "results/demo_global.json", ["*"]),
    ("evaluate", "evaluate_global", "results/demo_global.json", ["eval", "demo_global.json"]),
    (
        "train",
        "train_ames",
        "results/demo_ames.json",
        ["ames_model", "ames_binary_model", "ames_logits", "eval", "demo_ames.json", "demo_ames_binary.json"],
    ),
]


def _remove(wd, names):
    """Remove results so the crashing run computes them again (``*``: all but the demo data and the lists)."""
    res = wd / "results"
    keep = {"demo_data", "lists"}
    for p in res.iterdir():
        if (names == ["*"] and p.name not in keep) or p.name in names:
            shutil.rmtree(p) if p.is_dir() else p.unlink()


@pytest.mark.parametrize("step,rule,target,remove", CASES, ids=[c[0] for c in CASES])
def test_killed_job_then_rerun_gives_the_same_metrics(tiny_ames, tmp_path, step, rule, target, remove):
    wd = copy_tree(tiny_ames, tmp_path / "wd")
    expected = load_json(tiny_ames / target)["metrics"]
    _remove(wd, remove)
    t0 = time.time()
    crashed = _run(wd, target, "--configfile", str(TINY), env_extra={"RETRIEVAL_FAULT": step})
    assert crashed.returncode != 0, crashed.stdout[-2000:]
    assert f"RETRIEVAL_FAULT: killing the {step} step" in crashed.stdout + crashed.stderr + _logs(wd)
    assert not (wd / target).exists()
    rerun = _run(wd, target, "--rerun-incomplete", "--configfile", str(TINY))
    assert rerun.returncode == 0, rerun.stderr[-4000:]
    assert f"rule {rule}:" in rerun.stdout + rerun.stderr  # the killed job ran again
    assert load_json(wd / target)["metrics"] == expected
    assert _partials(wd) == []
    print(f"\n{step}: crash and re-run {time.time() - t0:.1f} s")


def test_killed_snakemake_run_then_rerun_incomplete_finishes(tiny_run, tmp_path):
    wd = copy_tree(tiny_run, tmp_path / "wd")
    expected = load_json(tiny_run / "results" / "demo_global.json")["metrics"]
    _remove(wd, ["eval", "demo_global.json"])
    crashed = _run(
        wd, "results/demo_global.json", "--configfile", str(TINY), env_extra={"RETRIEVAL_FAULT": "evaluate:run"}
    )
    assert crashed.returncode < 0 or crashed.returncode == 137, (crashed.returncode, crashed.stderr[-2000:])
    # Snakemake died without cleaning up: the ranking written before the kill is on disk under its final name,
    # and a plain re-run refuses to trust it
    blocked = _run(wd, "results/demo_global.json", "--configfile", str(TINY))
    out = blocked.stdout + blocked.stderr
    assert blocked.returncode != 0 and "incomplete files" in out.lower() and "global_ranking.h5" in out
    # a Snakemake killed with SIGKILL cannot remove its lock: the plain run above stopped at the incomplete file
    # before locking, but --rerun-incomplete is refused until --unlock (a new user's trial met the two in turn)
    assert list((wd / ".snakemake" / "locks").glob("*.lock"))
    locked = _run(wd, "results/demo_global.json", "--rerun-incomplete", "--configfile", str(TINY))
    assert locked.returncode != 0 and "cannot be locked" in locked.stdout + locked.stderr
    assert _run(wd, "--unlock", "--configfile", str(TINY)).returncode == 0
    rerun = _run(wd, "results/demo_global.json", "--rerun-incomplete", "--configfile", str(TINY))
    assert rerun.returncode == 0, rerun.stderr[-4000:]
    assert load_json(wd / "results" / "demo_global.json")["metrics"] == expected
    assert _partials(wd) == []


def test_fault_variable_is_checked(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-c", "from retrieval.runtime import fault_point; fault_point('merge')"],
        capture_output=True,
        text=True,
        cwd=REPO / "workflow_scripts",
        env={**os.environ, "RETRIEVAL_FAULT": "merg"},
    )
    assert proc.returncode == 1 and "RETRIEVAL_FAULT='merg'" in proc.stderr


def _logs(wd) -> str:
    return "\n".join(p.read_text(errors="replace") for p in (wd / "logs").rglob("*.log"))


def test_two_runs_with_the_same_seed_give_identical_metrics_json(tiny_run, tmp_path):
    wd = tmp_path / "again"
    wd.mkdir()
    snakemake(wd, "results/demo_global.json", "--configfile", str(TINY))
    a = load_json(tiny_run / "results" / "demo_global.json")
    b = load_json(wd / "results" / "demo_global.json")
    assert a["metrics"] == b["metrics"] and a["per_query_ap"] == b["per_query_ap"] and a["versions"] == b["versions"]
