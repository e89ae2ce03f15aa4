"""The per-rule time table summed from Snakemake benchmark files."""

import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

from retrieval.evaluation.rule_times import last_run_start, markdown, rule_times

HEADER = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"


def test_sums_jobs_per_rule_and_sorts_by_wall_time(tmp_path):
    (tmp_path / "extract_local" / "demo" / "v1").mkdir(parents=True)
    (tmp_path / "extract_local" / "demo" / "v1" / "db_0.tsv").write_text(
        HEADER + "10.0\t0:00:10\t100\t1\t1\t1\t0\t0\t50\t9.0\n"
    )
    (tmp_path / "extract_local" / "demo" / "v1" / "db_1.tsv").write_text(
        HEADER + "30.0\t0:00:30\t120\t1\t1\t1\t0\t0\t50\t25.0\n"
    )
    (tmp_path / "train_ames").mkdir()
    (tmp_path / "train_ames" / "abc.tsv").write_text(HEADER + "20.5\t0:00:20\t500\t1\t1\t1\t0\t0\t90\t40.0\n")
    (tmp_path / "knn.tsv").write_text(HEADER + "1.0\t0:00:01\t-\t1\t1\t1\t0\t0\t90\t1.0\n")
    # a job shorter than Snakemake's first sample: NA in every resource column
    (tmp_path / "publish.tsv").write_text(HEADER + "0.5\t0:00:00\tNA\tNA\tNA\tNA\tNA\tNA\tNA\tNA\n")
    # a sample of the shell that starts the job's Python (helper-154: 2 MB and 0.0 CPU s printed for real jobs)
    (tmp_path / "evaluate_global.tsv").write_text(HEADER + "0.4\t0:00:00\t2.11\t8.9\t0.6\t1.0\t0\t0\t0\t0.00\n")
    rows = rule_times(tmp_path)
    assert [r["rule"] for r in rows] == ["extract_local", "train_ames", "knn", "publish", "evaluate_global"]
    assert (rows[3]["cpu_seconds"], rows[3]["max_rss_mb"]) == (None, None)  # never sampled: no peak, not 0 MB
    assert (rows[4]["cpu_seconds"], rows[4]["max_rss_mb"]) == (None, None)  # the shell's sample: as unsampled
    assert rows[2]["cpu_seconds"] == 1.0  # CPU sampled without a peak: kept
    assert rows[2]["max_rss_mb"] is None
    ex = rows[0]
    assert (ex["jobs"], ex["seconds"], ex["longest_job_seconds"], ex["cpu_seconds"], ex["max_rss_mb"]) == (
        2,
        40.0,
        30.0,
        34.0,
        120,
    )
    table = markdown(rows)
    assert "| extract_local | 2 | 40.0 | 64% | 30.0 | 34.0 | 120 |" in table and "| total | 6 | 62.4 |" in table
    assert "| publish | 1 | 0.5 | 1% | 0.5 | - | - |" in table
    assert "| evaluate_global | 1 | 0.4 | 1% | 0.4 | - | - |" in table


def test_a_file_that_is_not_a_benchmark_is_named(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "bad.tsv").write_text("a\tb\n1\t2\n")
    with pytest.raises(ValueError, match="bad.tsv"):
        rule_times(tmp_path)
    (tmp_path / "x" / "bad.tsv").write_text(HEADER + "oops\t0\t0\t0\t0\t0\t0\t0\t0\t0\n")
    with pytest.raises(ValueError, match="bad.tsv, line 2"):
        rule_times(tmp_path)


def test_a_missing_folder_is_named_and_help_is_not_read_as_a_folder(tmp_path):
    """A mistyped path printed an empty table with exit status 0, and --help was read as a folder (a new user)."""
    with pytest.raises(FileNotFoundError, match="nowhere"):
        rule_times(tmp_path / "nowhere")
    run = [sys.executable, "-m", "retrieval.evaluation.rule_times"]
    cwd = Path(__file__).resolve().parents[2] / "workflow_scripts"
    missing = subprocess.run([*run, str(tmp_path / "nowhere")], capture_output=True, text=True, cwd=cwd)
    assert missing.returncode == 1 and "nowhere: no such folder" in missing.stderr
    helped = subprocess.run([*run, "--help"], capture_output=True, text=True, cwd=cwd)
    assert helped.returncode == 0 and "per-rule table" in helped.stdout and "../benchmarks" in helped.stdout
    bare = subprocess.run(run, capture_output=True, text=True, cwd=cwd)
    assert bare.returncode == 1 and "per-rule table" in bare.stderr  # the folder is required: no silent default


def _bench(path: Path, seconds: float, mtime: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(HEADER + f"{seconds}\t0:00:00\t100\t1\t1\t1\t0\t0\t50\t1.0\n")
    os.utime(path, (mtime, mtime))


def _log(log_dir: Path, start: float) -> None:
    log_dir.mkdir(parents=True, exist_ok=True)
    (log_dir / f"{datetime.fromtimestamp(start):%Y-%m-%dT%H%M%S.%f}.snakemake.log").write_text("")


def test_only_the_last_run_is_summed_unless_all_is_asked(tmp_path):
    """Each job writes its own file, and other configurations' files stayed beside them: `make rule-times` summed
    every run ever made in the workdir (two trainings for one main job after a config change and back)."""
    t0 = 1_800_000_000.0
    bench, logs = tmp_path / "benchmarks", tmp_path / ".snakemake" / "log"
    _log(logs, t0)  # an earlier run: another configuration's training
    _bench(bench / "train_ames" / "old.tsv", 100.0, t0 + 50)
    _log(logs, t0 + 1000)  # the last run that wrote files
    _bench(bench / "train_ames" / "new.tsv", 30.0, t0 + 1100)
    _bench(bench / "knn" / "d" / "v.tsv", 2.0, t0 + 1200)
    _log(logs, t0 + 5000)  # a later run that had nothing to do
    (logs / "notes.snakemake.log").write_text("")  # another name: ignored
    # Snakemake names a log by datetime.now().isoformat(), which drops the microseconds when they are 0
    (logs / f"{datetime.fromtimestamp(t0 + 900):%Y-%m-%dT%H%M%S}.snakemake.log").write_text("")
    files = sorted(bench.rglob("*.tsv"))
    assert last_run_start(logs, files) == pytest.approx(t0 + 1000)
    os.remove(next(logs.glob(f"{datetime.fromtimestamp(t0 + 1000):%Y-%m-%dT%H%M%S}.*.snakemake.log")))
    assert last_run_start(logs, files) == pytest.approx(t0 + 900)  # the log without microseconds is read
    _log(logs, t0 + 1000)
    assert last_run_start(logs, []) is None and last_run_start(tmp_path / "none", files) is None
    assert [r["jobs"] for r in rule_times(bench, since=t0 + 1000)] == [1, 1]
    assert rule_times(bench, since=t0 + 1000)[0]["seconds"] == 30.0 and rule_times(bench)[0]["seconds"] == 130.0
    run = [sys.executable, "-m", "retrieval.evaluation.rule_times", str(bench)]
    cwd = Path(__file__).resolve().parents[2] / "workflow_scripts"
    last = subprocess.run(run, capture_output=True, text=True, cwd=cwd)
    assert last.returncode == 0 and "| train_ames | 1 | 30.0 |" in last.stdout and "| total | 2 | 32.0 |" in last.stdout
    assert "2 of 3 benchmark files" in last.stderr
    every = subprocess.run([*run, "--all"], capture_output=True, text=True, cwd=cwd)
    assert every.returncode == 0 and "| train_ames | 2 | 130.0 |" in every.stdout
    # no log beside the folder (copied benchmarks): every file, and a line that says so
    (tmp_path / "copy").mkdir()
    os.rename(bench, tmp_path / "copy" / "benchmarks")
    copied = subprocess.run([*run[:-1], str(tmp_path / "copy" / "benchmarks")], capture_output=True, text=True, cwd=cwd)
    assert "| total | 3 | 132.0 |" in copied.stdout and "summing all of them" in copied.stderr
