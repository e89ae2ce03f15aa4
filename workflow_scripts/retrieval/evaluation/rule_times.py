"""Where the workflow's time goes: a per-rule table from Snakemake's ``benchmark:`` files.

Every rule that runs a job declares ``benchmark: "benchmarks/{rule}/..."`` (see rules/*.smk); Snakemake writes there a TSV with
a header (``s``, ``h:m:s``, ``max_rss``, ..., ``cpu_time``) and one row per run. This module sums them per rule.

    python -m retrieval.evaluation.rule_times ../benchmarks [--all]     (from workflow_scripts/; or `make rule-times`)

By default only the files of the last Snakemake run that wrote any are summed: each job writes its own file, and the
files of other configurations (other version folders) and of earlier runs stay beside them. That run is found by
the start time Snakemake writes in its log's name (``.snakemake/log/2026-12-02T061500.123456.snakemake.log``, local
time, beside ``benchmarks/``); dry runs write no log. ``--all`` sums every file under the folder.
"""

from __future__ import annotations

import csv
import os
import sys
from datetime import datetime
from pathlib import Path
from typing import Any, Iterable

# Snakemake samples a job's process tree every few seconds; a job that ends soon after its first sample can be
# caught as the shell that starts its Python (2-7 MB and 0 CPU seconds in the benchmark file, helper-154). Every
# entry point's Python holds numpy and h5py (37 MB), so a peak below this is the shell's: left out, as unsampled.
WRAPPER_RSS_MB = 20.0


def rule_times(root: str | Path, since: float | None = None) -> list[dict[str, Any]]:
    """Per rule (the first folder under ``root``): jobs, wall seconds summed and the longest job, CPU seconds,
    peak RSS (MB); sorted by wall seconds, largest first. ``since`` (seconds since the epoch): only files modified
    at or after it. Raises ValueError naming a file without an ``s`` column, FileNotFoundError naming ``root`` when
    it is not a folder (an empty table said nothing of a mistyped path)."""
    return summarise(benchmark_files(root, since), root)


def benchmark_files(root: str | Path, since: float | None = None) -> list[Path]:
    """The ``*.tsv`` files under ``root``, sorted; with ``since``, those modified at or after it (seconds since the
    epoch). Raises FileNotFoundError naming ``root`` when it is not a folder."""
    if not Path(root).is_dir():
        raise FileNotFoundError(f"{root}: no such folder of benchmark files (Snakemake writes them under benchmarks/)")
    paths = sorted(Path(root).rglob("*.tsv"))
    return paths if since is None else [p for p in paths if p.stat().st_mtime >= since]


def last_run_start(log_dir: str | Path, files: Iterable[str | Path]) -> float | None:
    """The start (seconds since the epoch) of the last Snakemake run that wrote one of ``files``: the latest start
    among the logs in ``log_dir`` (Snakemake names each ``%Y-%m-%dT%H%M%S.%f.snakemake.log``, local time) that is
    not after the newest file's modification time. None when ``files`` is empty or no log qualifies (no folder, or
    every log newer: files copied from elsewhere). Log names in another form are ignored."""
    newest = max((Path(f).stat().st_mtime for f in files), default=None)
    if newest is None or not Path(log_dir).is_dir():
        return None
    starts = []
    for log in Path(log_dir).glob("*.snakemake.log"):
        stamp = log.name.removesuffix(".snakemake.log")
        for form in ("%Y-%m-%dT%H%M%S.%f", "%Y-%m-%dT%H%M%S"):  # isoformat() drops .%f at 0 microseconds
            try:
                starts.append(datetime.strptime(stamp, form).timestamp())
                break
            except ValueError:
                continue
    return max((t for t in starts if t <= newest), default=None)


def summarise(paths: Iterable[str | Path], root: str | Path) -> list[dict[str, Any]]:
    """:func:`rule_times` over the given benchmark files, each under ``root`` (its first folder names the rule)."""
    root = Path(root)
    rows: dict[str, dict[str, Any]] = {}
    for path in map(Path, paths):
        with open(path, newline="") as f:
            reader = csv.DictReader(f, delimiter="\t")
            if reader.fieldnames is None or "s" not in reader.fieldnames:
                raise ValueError(f"{path}: not a Snakemake benchmark file (no 's' column)")
            for line, rec in enumerate(reader, start=2):
                try:
                    s = float(rec["s"])
                    # a job that ends before Snakemake's first sample has NA (or -) in every resource column
                    cpu, rss = _measured(rec.get("cpu_time")), _measured(rec.get("max_rss"))
                    if rss is not None and rss < WRAPPER_RSS_MB:  # the sample caught the shell, not the job's Python
                        cpu, rss = None, None
                except ValueError as e:
                    raise ValueError(f"{path}, line {line}: {e}") from None
                rule = path.relative_to(root).parts[0].removesuffix(".tsv")
                r = rows.setdefault(
                    rule,
                    {
                        "rule": rule,
                        "jobs": 0,
                        "seconds": 0.0,
                        "longest_job_seconds": 0.0,
                        "cpu_seconds": None,  # None: no job of the rule was sampled (as max_rss_mb)
                        "max_rss_mb": None,  # None: no job of the rule lasted until Snakemake's first sample
                    },
                )
                r["jobs"] += 1
                r["seconds"] += s
                r["longest_job_seconds"] = max(r["longest_job_seconds"], s)
                if cpu is not None:
                    r["cpu_seconds"] = (r["cpu_seconds"] or 0.0) + cpu
                if rss is not None:
                    r["max_rss_mb"] = max(r["max_rss_mb"] or 0.0, rss)
    return sorted(rows.values(), key=lambda r: -r["seconds"])


def _measured(value: str | None) -> float | None:
    return None if value in (None, "", "-", "NA") else float(value)


def cpu_text(seconds: float | None) -> str:
    """CPU seconds as the tables print them: ``-`` when no job of the rule was sampled, not 0."""
    return "-" if seconds is None else f"{seconds:.1f}"


def rss_text(mb: float | None) -> str:
    """A peak RSS in MB as the tables print it: ``-`` when never sampled (a job shorter than Snakemake's first
    sample), not 0."""
    return "-" if mb is None else f"{mb:.0f}"


def markdown(rows: list[dict[str, Any]]) -> str:
    """The rows of :func:`rule_times` as a Markdown table (jobs, wall seconds, share of the total, longest job, CPU
    seconds, peak RSS in MB) with a total row."""
    total = sum(r["seconds"] for r in rows)
    out = [
        "| rule | jobs | wall s (sum) | share | longest job s | CPU s | peak RSS MB |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        out.append(
            f"| {r['rule']} | {r['jobs']} | {r['seconds']:.1f} | {100 * r['seconds'] / max(total, 1e-9):.0f}% | "
            f"{r['longest_job_seconds']:.1f} | {cpu_text(r['cpu_seconds'])} | {rss_text(r['max_rss_mb'])} |"
        )
    out.append(
        f"| total | {sum(r['jobs'] for r in rows)} | {total:.1f} | 100% | | "
        f"{sum(r['cpu_seconds'] or 0.0 for r in rows):.1f} | |"
    )
    return "\n".join(out) + "\n"


def main(argv: list[str]) -> int:
    """The command line (see the module's docstring): the table on stdout, which run on stderr; exit status 1 with
    a message for a missing folder or a file that is not a benchmark."""
    if argv and argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    every = "--all" in argv
    args = [a for a in argv if a != "--all"]
    if len(args) != 1 or args[0].startswith("-"):
        sys.exit(__doc__)
    root = Path(args[0])
    try:
        files = benchmark_files(root)
        if not every:
            logs = Path(os.path.abspath(root)).parent / ".snakemake" / "log"  # beside benchmarks/, even a link
            start = last_run_start(logs, files)
            if start is None:
                print(f"rule_times: no Snakemake log in {logs} for these files: summing all of them", file=sys.stderr)
            else:
                kept = [p for p in files if p.stat().st_mtime >= start]
                print(
                    f"rule_times: the run started {datetime.fromtimestamp(start):%Y-%m-%d %H:%M:%S}: {len(kept)} of "
                    f"{len(files)} benchmark files (--all: every one)",
                    file=sys.stderr,
                )
                files = kept
        print(markdown(summarise(files, root)), end="")
    except (FileNotFoundError, ValueError) as e:
        sys.exit(f"rule_times: {e}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
