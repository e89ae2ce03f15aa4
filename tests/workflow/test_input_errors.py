"""An input function's error that Snakemake drops (snakemake#3953) is said: retrieval/input_errors.py, run by the
pinned Snakemake on small Snakefiles of the issue's shape, and installed over every rule of this workflow."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from PIL import Image

from conftest import REPO, snakemake

pytestmark = pytest.mark.workflow

# the example: `final` needs out.txt; `make` (which makes it) has an input function that raises
SNAKEFILE = """\
import sys
sys.path.insert(0, {scripts!r})
from snakemake.logging import logger
from retrieval import input_errors


def f(wildcards):
    raise RuntimeError("boom in f")


def named(wildcards):
    raise ValueError("bad key in named")


def unpacked(wildcards):
    raise input_errors.mark_said(KeyError("said already")) if {said_already} else OSError("no such folder: x/")


rule all:
    input:
        "final_{{which}}.txt".format(which={which!r}),


rule final:
    input:
        "out_{{which}}.txt",
    output:
        "final_{{which}}.txt",
    shell:
        "touch {{output}}"


rule make:
    input:
        f,
    output:
        "out_plain.txt",
    shell:
        "touch {{output}}"


rule make_named:
    input:
        x=named,
    output:
        "out_named.txt",
    shell:
        "touch {{output}}"


rule make_unpacked:
    input:
        unpack(unpacked),
    output:
        "out_unpacked.txt",
    shell:
        "touch {{output}}"


if {wrap}:
    print("wrapped", input_errors.say_input_errors(workflow.rules, logger.warning))
"""


def _run(tmp_path, which, wrap=True, said_already=False, present=True):
    wd = tmp_path / f"{which}_{wrap}_{said_already}_{present}"
    wd.mkdir()
    (wd / "Snakefile").write_text(
        SNAKEFILE.format(scripts=str(REPO / "workflow_scripts"), which=which, wrap=wrap, said_already=said_already)
    )
    if present:
        (wd / f"out_{which}.txt").touch()
        (wd / f"final_{which}.txt").touch()
        os.utime(wd / f"out_{which}.txt", (1, 1))  # older than final: up to date
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "--cores", "1", "-d", str(wd), "-s", str(wd / "Snakefile")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    return proc, proc.stdout + proc.stderr


def test_the_pinned_snakemake_still_drops_the_error(tmp_path):
    """Without the wrapper the error is lost and the run 'succeeds': the reason for input_errors (if a Snakemake
    upgrade fixes snakemake#3953, this fails and the workaround can go)."""
    proc, out = _run(tmp_path, "plain", wrap=False)
    assert proc.returncode == 0 and "Nothing to be done" in out
    assert "boom" not in out


@pytest.mark.parametrize(
    "which, said",
    [
        ("plain", "rule make: its inputs cannot be named: RuntimeError: boom in f."),
        ("named", "rule make_named: its inputs cannot be named: bad key in named."),
        ("unpacked", "rule make_unpacked: its inputs cannot be named: no such folder: x/."),
    ],
)
def test_a_dropped_error_is_said_once_with_the_file_snakemake_kept(tmp_path, which, said):
    proc, out = _run(tmp_path, which)
    assert "wrapped 3" in out  # a function, a named one, an unpack(...): every input function of the rules
    assert proc.returncode == 0 and "Nothing to be done" in out  # Snakemake's own handling is unchanged
    assert out.count(said) == 1, out
    assert f"the rule's file is present (out_{which}.txt)" in out and "snakemake#3953" in out


def test_an_error_snakemake_reports_is_not_said_twice(tmp_path):
    """Where the rule's file is missing, Snakemake stops with the error itself: no warning beside it."""
    proc, out = _run(tmp_path, "plain", present=False)
    assert proc.returncode == 1 and "boom in f" in out
    assert "its inputs cannot be named" not in out


def test_an_error_warned_of_already_is_not_said_again(tmp_path):
    """dag_lists says its own errors (better worded) and marks them: the wrapper leaves those alone."""
    proc, out = _run(tmp_path, "unpacked", said_already=True)
    assert proc.returncode == 0 and "Nothing to be done" in out
    assert "its inputs cannot be named" not in out


def test_the_workflow_wraps_every_input_function_after_its_rules(tmp_path):
    """The workflow's Snakefile installs the wrapper once every rule is defined (an include after it would leave its
    rules' errors unsaid); a dry run of the main job says nothing of it (no input function fails)."""
    text = (REPO / "Snakefile").read_text()
    call = text.index("input_errors.say_input_errors(workflow.rules")
    assert call > text.rindex("include:") and call > text.rindex("\nrule ")
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--cores", "1", "-s", str(REPO / "Snakefile"), "-d", str(tmp_path)]
        + ["results/demo_ames.json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "its inputs cannot be named" not in proc.stdout + proc.stderr


def test_a_collections_folder_gone_is_named_as_gone(tmp_path):
    """The real workflow: a plain folder's database list is made, then the folder is moved away. Asking for the list
    again names the folder as not found (database_list said "its database is named by its ground truth"), and, the
    list being present, the warning says Snakemake would keep it."""
    photos = tmp_path / "data" / "coll"
    photos.mkdir(parents=True)
    for i in range(3):
        Image.new("RGB", (64, 48), (40 * i, 90, 160)).save(photos / f"{i}.jpg")
    wd = tmp_path / "wd"
    base = ("--config", f"data_root={tmp_path / 'data'}")
    snakemake(wd, "results/search/coll/coll.html", "--until", "database_list", *base)
    (db,) = sorted((wd / "results" / "lists" / "coll").glob("*/db.json"))
    photos.rename(tmp_path / "moved")
    proc = snakemake(wd, str(db.relative_to(wd)), *base, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1 and f"folder {photos} not found" in out, out[-3000:]
    assert "named by its ground truth" not in out
    assert f"the rule's file is present ({db.relative_to(wd)})" in out
