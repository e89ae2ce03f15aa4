"""The per-rule time table summed from Snakemake benchmark files."""

import subprocess
import sys
from pathlib import Path

import pytest

from retrieval.evaluation.rule_times import markdown, rule_times

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
    rows = rule_times(tmp_path)
    assert [r["rule"] for r in rows] == ["extract_local", "train_ames", "knn", "publish"]
    assert (rows[3]["cpu_seconds"], rows[3]["max_rss_mb"]) == (0.0, None)  # never sampled: no peak, not 0 MB
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
    assert "| extract_local | 2 | 40.0 | 65% | 30.0 | 34.0 | 120 |" in table and "| total | 5 | 62.0 |" in table
    assert "| publish | 1 | 0.5 | 1% | 0.5 | 0.0 | - |" in table


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
