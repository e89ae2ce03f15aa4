"""An input function's error that Snakemake drops (snakemake#3953) is said when the run ends: retrieval/input_errors.py,
run by the pinned Snakemake on small Snakefiles of the issue's shape, and over this workflow's rules."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from conftest import REPO, SHARED, TINY, load_json, snakemake

pytestmark = pytest.mark.workflow

LANDMARKS = SHARED / "datasets" / "landmarks-mini" / "jpg"

# the example: `final` needs `mid`, which needs a file `make_*` makes, whose input function raises
SNAKEFILE = """\
import sys
sys.path.insert(0, {scripts!r})
from snakemake.logging import logger
from retrieval import input_errors


def f(wildcards):
    print("f called", file=sys.stderr)
    raise RuntimeError("boom in f")


def named(wildcards):
    raise ValueError("bad key in named")


def unpacked(wildcards):
    raise input_errors.mark_said(KeyError("said already")) if {said_already} else OSError("no such folder: x/")


rule all:
    input:
        "final_{which}.txt",


rule final:
    input:
        "mid_{{which}}.txt",
    output:
        "final_{{which}}.txt",
    shell:
        "touch {{output}}"


rule mid:
    input:
        "out_{{which}}.txt",
    output:
        "mid_{{which}}.txt",
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


# two jobs whose input function raises the same error (for p=a and p=b)
rule twice:
    input:
        "pair_a.txt",
        "pair_b.txt",
    output:
        "final_twice.txt",
    shell:
        "touch {{output}}"


rule pair:
    input:
        "src_{{p}}.txt",
    output:
        "pair_{{p}}.txt",
    shell:
        "touch {{output}}"


rule src:
    input:
        f,
    output:
        "src_{{p}}.txt",
    shell:
        "touch {{output}}"


if {wrap}:
    print("wrapped", input_errors.say_input_errors(workflow.rules, logger))
"""


def _run(tmp_path, which, wrap=True, said_already=False, present=("out", "mid", "final")):
    """Run the Snakefile above for ``final_{which}.txt`` with the files ``present`` already made (oldest first)."""
    wd = tmp_path / f"{which}_{wrap}_{said_already}_{'_'.join(present)}"
    wd.mkdir()
    (wd / "Snakefile").write_text(
        SNAKEFILE.format(scripts=str(REPO / "workflow_scripts"), which=which, wrap=wrap, said_already=said_already)
    )
    for age, stem in enumerate(present):
        name = stem if stem.endswith(".txt") else f"{stem}_{which}.txt"
        (wd / name).touch()
        t = 1_000_000 + age
        os.utime(wd / name, (t, t))
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
    assert "f called" in out and "boom" not in out


@pytest.mark.parametrize(
    "which, said",
    [
        ("plain", "rule make: an input function failed, and Snakemake dropped the error"),
        ("named", "rule make_named: an input function failed, and Snakemake dropped the error"),
        ("unpacked", "rule make_unpacked: an input function failed, and Snakemake dropped the error"),
    ],
)
def test_a_dropped_error_is_said_once_when_the_run_ends(tmp_path, which, said):
    proc, out = _run(tmp_path, which)
    assert "wrapped 4" in out  # a function (twice), a named one, an unpack(...): every input function of the rules
    assert proc.returncode == 0 and "Nothing to be done" in out  # Snakemake's own handling is unchanged
    assert out.count(said) == 1, out
    error = {"plain": "RuntimeError: boom in f", "named": "bad key in named", "unpacked": "no such folder: x/"}[which]
    line = next(line for line in out.splitlines() if said in line)
    assert error in line and "snakemake#3953" in line and "This run did not resolve it." in line
    assert out.index(said) > out.index("Nothing to be done")  # the last word of the run
    # and in the run's log file, read where a run on a cluster or in the background is looked at later
    logs = list((tmp_path.glob("*/.snakemake/log/*.snakemake.log")))
    assert len(logs) == 1, logs
    log = logs[0].read_text()
    assert log.count(said) == 1 and error in log and log.index(said) > log.index("Nothing to be done"), log


def test_an_error_dropped_one_job_further_up_is_said(tmp_path):
    """out_plain.txt missing, mid_plain.txt present: `make`'s error travels up to `mid`'s job and is dropped there."""
    proc, out = _run(tmp_path, "plain", present=("mid", "final"))
    assert proc.returncode == 0 and "Nothing to be done" in out
    assert out.count("rule make: an input function failed") == 1 and "boom in f" in out


def test_an_error_said_often_by_its_function_is_said_once(tmp_path):
    """The same error raised by two jobs (the wildcards p=a and p=b) is one line: the first job's."""
    proc, out = _run(tmp_path, "twice", present=("pair_a.txt", "pair_b.txt", "final"))
    assert proc.returncode == 0 and "Nothing to be done" in out
    assert out.count("f called") == 2  # the check itself: the function did raise more than once
    assert out.count("boom in f") == 1 and "rule src (p=a): an input function failed" in out


def test_an_error_snakemake_reports_is_not_said_twice(tmp_path):
    """With no file present Snakemake stops with the error itself: nothing is added after it."""
    proc, out = _run(tmp_path, "plain", present=())
    assert proc.returncode == 1 and "InputFunctionException in rule make" in out and "boom in f" in out
    assert "an input function failed" not in out
    assert not any("an input function failed" in f.read_text() for f in tmp_path.glob("*/.snakemake/log/*.log"))


def test_an_error_warned_of_already_is_not_said_again(tmp_path):
    """dag_lists says its own errors (better worded) and marks them: the wrapper leaves those alone."""
    proc, out = _run(tmp_path, "unpacked", said_already=True)
    assert proc.returncode == 0 and "Nothing to be done" in out
    assert "an input function failed" not in out


RULEORDER = """\
import sys
sys.path.insert(0, {scripts!r})
from snakemake.logging import logger
from retrieval import input_errors


def only_a(wildcards):
    if wildcards.x == "b":
        raise ValueError("rule a does not make x_b")
    return []


ruleorder: a > b


rule a:
    input:
        only_a,
    output:
        "x_{{x}}.txt",
    shell:
        "touch {{output}}"


rule b:
    output:
        "x_b.txt",
    shell:
        "touch {{output}}"


input_errors.say_input_errors(workflow.rules, logger)
"""


def test_an_error_snakemake_passes_over_for_another_rule_is_not_said(tmp_path):
    """Two rules make x_b.txt: Snakemake warns of the first's error and makes the file with the second. Nothing was
    dropped, and the run did resolve it (helper-134 found the line said there, all three of its claims false)."""
    (tmp_path / "Snakefile").write_text(RULEORDER.format(scripts=str(REPO / "workflow_scripts")))
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "--cores", "1", "-d", str(tmp_path), "-s", str(tmp_path / "Snakefile")]
        + ["x_b.txt"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0 and (tmp_path / "x_b.txt").exists(), out[-3000:]
    assert "rule a does not make x_b" in out  # Snakemake's own warning: the check itself
    assert "an input function failed" not in out


def test_the_workflow_installs_it_after_its_last_rule():
    """An include after the call would leave its rules' input functions unwrapped."""
    text = (REPO / "Snakefile").read_text()
    call = text.index("input_errors.say_input_errors(workflow.rules")
    assert call > text.rindex("include:") and call > text.rindex("\nrule ")


@pytest.mark.skipif(not LANDMARKS.is_dir(), reason="../shared/datasets/landmarks-mini is not beside the repository")
def test_a_collection_moved_away_is_refused_and_its_results_kept(tmp_path):
    """The real workflow, on a folder with gnd.json evaluated and searched with new photos, and a folder listed by
    image_list.txt evaluated with and without its gnd.json (a rename and back); asked again: nothing to do and
    nothing said. With the folders moved away, their evaluations and the search stop on the error naming the folder,
    nothing added to it, and every published file is as it was:
    - the search was run again with every thumbnail crossed out and exit status 0 (helper-133);
    - the image_list.txt folder had the version of itself without its ground truth: its evaluation found those
      files on disk, Snakemake dropped the error, and the results without metrics were published over the ones with,
      exit status 0 (helper-138). A moved folder's lists now have a version of their own.
    """
    data = tmp_path / "data"
    stems = sorted(p.stem for p in LANDMARKS.glob("*.jpg"))[:9]
    for name in ("coll", "lst", "newp"):
        (data / name / "jpg").mkdir(parents=True)
    for stem in stems[:8]:
        shutil.copy(LANDMARKS / f"{stem}.jpg", data / "coll" / "jpg" / f"{stem}.jpg")
        shutil.copy(LANDMARKS / f"{stem}.jpg", data / "lst" / "jpg" / f"{stem}.jpg")
    shutil.copy(LANDMARKS / f"{stems[8]}.jpg", data / "newp" / "jpg" / "new.jpg")
    gnd = {"imlist": stems[1:8], "qimlist": stems[:1], "gnd": [{"easy": [0, 1], "hard": [], "junk": []}]}
    (data / "coll" / "gnd.json").write_text(json.dumps(gnd))
    (data / "lst" / "gnd.json").write_text(json.dumps(gnd))  # as landmarks-mini: gnd.json beside image_list.txt
    (data / "lst" / "image_list.txt").write_text("".join(f"jpg/{stem}.jpg\n" for stem in stems[1:8]))
    wd = tmp_path / "wd"
    config = ("--configfile", str(TINY), "--config", f"data_root={data}")
    evaluated, searched, listed = "results/coll_global.json", "results/search/coll/newp.html", "results/lst_global.json"
    snakemake(wd, evaluated, searched, listed, *config)
    assert load_json(wd / listed)["metrics"] is not None
    (data / "lst" / "gnd.json").rename(data / "lst" / "gnd.json.bak")
    snakemake(wd, listed, *config)
    assert load_json(wd / listed)["metrics"] is None  # beside the evaluation with metrics
    (data / "lst" / "gnd.json.bak").rename(data / "lst" / "gnd.json")
    snakemake(wd, listed, *config)
    assert load_json(wd / listed)["metrics"] is not None
    made = {t: (wd / t).stat().st_mtime_ns for t in (evaluated, searched, listed)}
    again = snakemake(wd, evaluated, searched, listed, *config)
    assert "Nothing to be done" in again.stderr and "an input function failed" not in again.stdout + again.stderr
    (data / "coll").rename(tmp_path / "moved")
    (data / "lst").rename(tmp_path / "moved_lst")
    for target, name in ((evaluated, "coll"), (searched, "coll"), (listed, "lst")):
        proc = snakemake(wd, target, *config, check=False)
        out = proc.stdout + proc.stderr
        assert proc.returncode == 1 and f"folder {data / name} not found" in out, out[-3000:]
        assert "an input function failed" not in out
    assert {t: (wd / t).stat().st_mtime_ns for t in (evaluated, searched, listed)} == made
    assert load_json(wd / listed)["metrics"] is not None


DRIVE_TWICE = """\
import sys
from snakemake.cli import main

for _ in range(2):
    try:
        main(["--cores", "1", "-d", sys.argv[1], "-s", sys.argv[1] + "/Snakefile"])
    except SystemExit as e:
        print("exit", e.code, file=sys.stderr)
"""


def test_two_runs_in_one_process_say_the_error_once_and_log_it_in_both(tmp_path):
    """Snakemake's API run twice in one Python process (a notebook, a driver script) parses the Snakefile twice: the
    error was said twice at exit (helper-134). It is said once, and written to each run's log file."""
    proc, out = _run(tmp_path, "plain")  # makes the folder, and a first log file
    wd = next(p for p in tmp_path.iterdir() if p.is_dir())
    for log in (wd / ".snakemake" / "log").glob("*.log"):
        log.unlink()
    (tmp_path / "drive.py").write_text(DRIVE_TWICE)
    proc = subprocess.run(
        [sys.executable, str(tmp_path / "drive.py"), str(wd)], capture_output=True, text=True, timeout=120
    )
    out = proc.stdout + proc.stderr
    assert out.count("exit 0") == 2 and out.count("Nothing to be done") == 2, out
    assert out.count("rule make: an input function failed") == 1, out
    logs = sorted((wd / ".snakemake" / "log").glob("*.log"))
    assert len(logs) == 2 and all(log.read_text().count("boom in f") == 1 for log in logs), logs
