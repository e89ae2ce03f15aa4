"""The demo workflow submitted to a real single-node SLURM cluster (Debian's slurm-wlm + munge on 127.0.0.1).

The cluster is installed with apt-get where it is missing, started by tests/cluster/slurm_local.sh, and
stopped by PID afterwards. The test skips, with its reason, only where the packages cannot be installed or
started (not root, no apt-get, no package registry).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path

import pytest

from conftest import REPO, TINY, load_json

pytestmark = pytest.mark.workflow

SCRIPT = REPO / "tests" / "cluster" / "slurm_local.sh"
PROFILE = REPO / "config" / "profiles" / "slurm"
GPU_RULES = {"train_ames", "train_ames_binary", "ames_store", "ames_logits"}
CPU_RULES = {"demo_data", "extract_local", "merge_local", "codebook", "knn", "evaluate_global", "evaluate_ames"}


def _script(action: str, state: Path, timeout: int) -> subprocess.CompletedProcess:
    env = {**os.environ, "STATE": str(state)}
    return subprocess.run(["bash", str(SCRIPT), action], capture_output=True, text=True, timeout=timeout, env=env)


@pytest.fixture(scope="module")
def slurm_cluster(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("a local SLURM cluster needs root (apt-get install, munged, slurmd)")
    timings = {}
    if shutil.which("slurmctld", path="/usr/sbin:/usr/bin") is None:
        if shutil.which("apt-get") is None:
            pytest.skip("slurm-wlm is not installed and there is no apt-get to install it")
        t0 = time.time()
        r = _script("install", tmp_path_factory.mktemp("slurm-install"), timeout=900)
        if r.returncode != 0:
            pytest.skip(f"slurm-wlm/munge could not be installed: {(r.stderr or r.stdout)[-500:]}")
        timings["install_s"] = round(time.time() - t0, 1)
    if Path("/etc/slurm/slurm.conf").exists():
        pytest.skip("/etc/slurm/slurm.conf exists: another cluster is configured on this machine; not touching it")
    state = tmp_path_factory.mktemp("slurm-state")
    t0 = time.time()
    r = _script("start", state, timeout=120)
    if r.returncode != 0:
        _script("stop", state, timeout=120)
        raise AssertionError(f"the local SLURM cluster did not start:\n{r.stdout}\n{r.stderr}")
    timings["start_s"] = round(time.time() - t0, 1)
    try:
        yield {"state": state, "timings": timings}
    finally:
        t0 = time.time()
        _script("stop", state, timeout=120)
        timings["stop_s"] = round(time.time() - t0, 1)
        print(f"\nlocal SLURM cluster timings: {json.dumps(timings)}")
    assert not Path("/etc/slurm/slurm.conf").exists(), "stopping the cluster must remove slurm.conf"


def _jobs() -> list[dict[str, str]]:
    """Every job the controller remembers (MinJobAge=3600 keeps finished ones for an hour, longer than any run here), as key=value dicts."""
    out = subprocess.run(["scontrol", "-o", "show", "job"], capture_output=True, text=True, timeout=60).stdout
    return [dict(kv.split("=", 1) for kv in line.split() if "=" in kv) for line in out.splitlines() if line.strip()]


def test_demo_through_sbatch_equals_the_local_run(slurm_cluster, tiny_ames, tmp_path):
    wd = tmp_path / "cluster"
    wd.mkdir()
    ncpu = os.cpu_count() or 1
    env = {**os.environ, "PYTHONHASHSEED": "0", "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    cmd = [
        "timeout",
        "-k",
        "30",
        "1500",
        sys.executable,
        "-m",
        "snakemake",
        "--snakefile",
        str(REPO / "Snakefile"),
        "--directory",
        str(wd),
        "--profile",
        str(PROFILE),
        "--max-threads",
        str(min(2, ncpu)),
        "results/demo_ames.json",
        "results/demo_ames_binary.json",
        "--configfile",
        str(TINY),
    ]
    t0 = time.time()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    slurm_cluster["timings"]["run_s"] = round(time.time() - t0, 1)
    assert proc.returncode == 0, (
        f"cluster run failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    )

    # every job went through sbatch: one SLURM log per job, and the controller knows each job by its rule
    jobs = [j for j in _jobs() if j.get("WorkDir") == str(wd)]
    rules = {}
    for j in jobs:
        m = re.match(r"rule_(.+?)(?:_wildcards_.*)?$", j.get("Comment", ""))
        assert m, f"job {j.get('JobId')} has no rule comment: {j.get('Comment')}"
        rules.setdefault(m.group(1), []).append(j)
    assert GPU_RULES | CPU_RULES <= set(rules), sorted(rules)
    assert all(j["JobState"] == "COMPLETED" for j in jobs), [(j["JobId"], j["JobState"]) for j in jobs]
    logs = list((wd / "logs" / "slurm").rglob("*.log"))
    assert len(logs) == len(jobs)
    slurm_cluster["timings"]["jobs"] = len(jobs)

    # model stages asked for the GPU, the others for none
    def wants_gpu(j):
        return "gpu" in j.get("TresPerJob", "") + j.get("TresPerNode", "")

    for rule in GPU_RULES:
        assert all(wants_gpu(j) for j in rules[rule]), (rule, [j.get("TresPerJob") for j in rules[rule]])
    for rule in CPU_RULES:
        assert not any(wants_gpu(j) for j in rules[rule]), rule

    # the same numbers as the local run of the same configuration
    for method in ("ames", "ames_binary"):
        remote = load_json(wd / "results" / f"demo_{method}.json")
        local = load_json(tiny_ames / "results" / f"demo_{method}.json")
        assert remote["versions"] == local["versions"]
        assert remote["metrics"] == local["metrics"] and remote["chosen"] == local["chosen"]
        assert remote["baseline"]["metrics"] == local["baseline"]["metrics"]


def _sbatch_calls(output: str) -> dict[str, list[list[str]]]:
    """The plugin's logged submissions (`sbatch call: ...`, shown with --verbose) by rule, as argument lists without
    the --wrap command."""

    calls: dict[str, list[list[str]]] = {}
    for line in output.splitlines():
        if "sbatch call: " not in line:
            continue
        args = shlex.split(line.split("sbatch call: ", 1)[1].split(" --wrap=", 1)[0])
        rule = re.match(r"rule_(.+?)(?:_wildcards_.*)?$", args[args.index("--comment") + 1]).group(1)
        calls.setdefault(rule, []).append(args)
    return calls


def test_gres_only_cluster_gets_only_gres(slurm_cluster, tiny_ames, tmp_path):
    """gpu_request: gres on the real scheduler: the GPU rules send --gres=gpu:1 and no --gpus (the plugin's logged
    sbatch arguments and the controller's TRES both say so); the CPU rules send neither; results are unchanged."""

    pinned = re.search(r"snakemake-executor-plugin-slurm==([\d.]+)", (REPO / "requirements.txt").read_text()).group(1)
    assert version("snakemake-executor-plugin-slurm") == pinned == "2.8.0"  # the mapping asserted below is 2.8.0's
    wd = tmp_path / "gres"
    shutil.copytree(tiny_ames, wd, symlinks=True)
    env = {**os.environ, "PYTHONHASHSEED": "0", "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    cmd = [
        "timeout",
        "-k",
        "30",
        "900",
        sys.executable,
        "-m",
        "snakemake",
        "--snakefile",
        str(REPO / "Snakefile"),
        "--directory",
        str(wd),
        "--profile",
        str(PROFILE),
        "--max-threads",
        "1",
        "--verbose",
        "--forcerun",
        "ames_store",
        "results/demo_ames.json",
        "--configfile",
        str(TINY),
        "--config",
        "gpu_request=gres",
    ]
    t0 = time.time()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    slurm_cluster["timings"]["gres_run_s"] = round(time.time() - t0, 1)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"GRES run failed ({proc.returncode}):\n{out[-6000:]}"
    calls = _sbatch_calls(out)
    assert {"ames_store", "ames_logits", "evaluate_ames"} <= set(calls), sorted(calls)
    for rule, runs in calls.items():
        for args in runs:
            gpu_args = [a for a in args if a.startswith(("--gres", "--gpus", "--gpus-per", "--cpus-per-gpu"))]
            want = ["--gres=gpu:1"] if rule in GPU_RULES else []
            assert gpu_args == want, (rule, args)
    jobs = {j["JobId"]: j for j in _jobs() if j.get("WorkDir") == str(wd)}
    by_rule = {}
    for j in jobs.values():
        by_rule.setdefault(re.match(r"rule_(.+?)(?:_wildcards_.*)?$", j["Comment"]).group(1), []).append(j)
    for rule in ("ames_store", "ames_logits"):
        for j in by_rule[rule]:
            assert "gpu" in j.get("TresPerNode", "") and "gpu" not in j.get("TresPerJob", ""), j
            assert j["JobState"] == "COMPLETED"
    assert not any("gpu" in j.get("TresPerNode", "") + j.get("TresPerJob", "") for j in by_rule["evaluate_ames"])
    remote, local = (load_json(d / "results" / "demo_ames.json") for d in (wd, tiny_ames))
    assert remote["versions"] == local["versions"] and remote["metrics"] == local["metrics"]
