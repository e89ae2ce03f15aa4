"""Where the workflow's time goes: a per-rule table from Snakemake's ``benchmark:`` files.

Every slow rule declares ``benchmark: "benchmarks/{rule}/..."`` (see rules/*.smk); Snakemake writes there a TSV with
a header (``s``, ``h:m:s``, ``max_rss``, ..., ``cpu_time``) and one row per run. This module sums them per rule.

    python -m retrieval.evaluation.rule_times ../benchmarks       (from workflow_scripts/; or `make rule-times`)
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path
from typing import Any, Iterable


def rule_times(root: str | Path) -> list[dict[str, Any]]:
    """Per rule (the first folder under ``root``): jobs, wall seconds summed and the longest job, CPU seconds,
    peak RSS (MB); sorted by wall seconds, largest first. Raises ValueError naming a file without an ``s`` column,
    FileNotFoundError naming ``root`` when it is not a folder (an empty table said nothing of a mistyped path)."""
    if not Path(root).is_dir():
        raise FileNotFoundError(f"{root}: no such folder of benchmark files (Snakemake writes them under benchmarks/)")
    return summarise(sorted(Path(root).rglob("*.tsv")), root)


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
                    cpu, rss = _measured(rec.get("cpu_time")) or 0.0, _measured(rec.get("max_rss"))
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
                        "cpu_seconds": 0.0,
                        "max_rss_mb": None,  # None: no job of the rule lasted until Snakemake's first sample
                    },
                )
                r["jobs"] += 1
                r["seconds"] += s
                r["longest_job_seconds"] = max(r["longest_job_seconds"], s)
                r["cpu_seconds"] += cpu
                if rss is not None:
                    r["max_rss_mb"] = max(r["max_rss_mb"] or 0.0, rss)
    return sorted(rows.values(), key=lambda r: -r["seconds"])


def _measured(value: str | None) -> float | None:
    return None if value in (None, "", "-", "NA") else float(value)


def rss_text(mb: float | None) -> str:
    """A peak RSS in MB as the tables print it: ``-`` when never sampled (a job shorter than Snakemake's first
    sample), not 0."""
    return "-" if mb is None else f"{mb:.0f}"


def markdown(rows: list[dict[str, Any]]) -> str:
    total = sum(r["seconds"] for r in rows)
    out = [
        "| rule | jobs | wall s (sum) | share | longest job s | CPU s | peak RSS MB |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        out.append(
            f"| {r['rule']} | {r['jobs']} | {r['seconds']:.1f} | {100 * r['seconds'] / max(total, 1e-9):.0f}% | "
            f"{r['longest_job_seconds']:.1f} | {r['cpu_seconds']:.1f} | {rss_text(r['max_rss_mb'])} |"
        )
    out.append(
        f"| total | {sum(r['jobs'] for r in rows)} | {total:.1f} | 100% | | "
        f"{sum(r['cpu_seconds'] for r in rows):.1f} | |"
    )
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    if len(sys.argv) == 2 and sys.argv[1] in ("-h", "--help"):
        print(__doc__)
        sys.exit(0)
    if len(sys.argv) != 2 or sys.argv[1].startswith("-"):
        sys.exit(__doc__)
    try:
        print(markdown(rule_times(sys.argv[1])), end="")
    except (FileNotFoundError, ValueError) as e:
        sys.exit(f"rule_times: {e}")
