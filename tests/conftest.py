"""Shared fixtures. The tiny demo workflow runs once per test session and is shared by the workflow tests."""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from retrieval.evaluation.results import EvaluationContext

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
TINY = REPO / "config" / "presets" / "tiny.yaml"


def with_overrides(config: dict, **overrides) -> dict:
    """A deep copy of ``config`` with dotted keys overridden: with_overrides(c, **{"codebook.k": 32})."""
    config = copy.deepcopy(config)
    for key, value in overrides.items():
        *path, last = key.split(".")
        node = config
        for k in path:
            node = node[k]
        node[last] = value
    return config


def snakemake(
    workdir: Path, *args: str, check: bool = True, timeout: int = 900, prefix: tuple[str, ...] = ()
) -> subprocess.CompletedProcess:
    """Run Snakemake on this repository's Snakefile inside ``workdir``; ``prefix``: a command it runs under (e.g.
    ``setpriv`` options)."""
    cmd = [
        *prefix,
        sys.executable,
        "-m",
        "snakemake",
        "--snakefile",
        str(REPO / "Snakefile"),
        "--directory",
        str(workdir),
        "--cores",
        "2",
        *args,
    ]
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"snakemake {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}"
        )
    return proc


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """A working directory in which results/demo_global.json was produced with the tiny preset."""
    wd = tmp_path_factory.mktemp("tiny_run")
    snakemake(wd, "results/demo_global.json", "--configfile", str(TINY))
    return wd


@pytest.fixture(scope="session")
def tiny_ames(tiny_run) -> Path:
    """The tiny run, with results/demo_ames.json and results/demo_ames_binary.json added."""
    snakemake(tiny_run, "results/demo_ames.json", "results/demo_ames_binary.json", "--configfile", str(TINY))
    return tiny_run


def evaluation_context(folder: Path, method: str, **fields):
    """The EvaluationContext of an evaluation job whose files all lie in ``folder``: ``lists.json``, ``gnd.json``,
    ``global.json`` as the baseline, and ``{method}.json``, ``{method}_ranking.h5``, ``{method}.csv`` as outputs;
    dataset ``mine``, preset ``cpu``, the top 5 in the CSV. ``fields`` replace any of these."""
    folder = Path(folder)
    defaults = dict(
        dataset="mine",
        lists_path=folder / "lists.json",
        gnd_path=folder / "gnd.json",
        out_json=folder / f"{method}.json",
        out_ranking=folder / f"{method}_ranking.h5",
        out_csv=folder / f"{method}.csv",
        csv_top=5,
        versions={},
        hyperparameters={},
        preset="cpu",
        baseline_json=folder / "global.json",
    )
    return EvaluationContext(**{**defaults, **fields})


def load_json(path: Path):
    return json.loads(Path(path).read_text())


def copy_tree(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, symlinks=True)
    return dst
