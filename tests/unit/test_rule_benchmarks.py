"""Every rule that runs a job writes a Snakemake benchmark file under benchmarks/{rule}/: `make rule-times` names a
row by that folder, and a rule without one was missing from the per-rule table (15 of the main job's 59 steps)."""

import re
from pathlib import Path

import retrieval.plan as plan

REPO = Path(__file__).resolve().parents[2]
# the benchmark targets time themselves; downloads and the two publishing copies are not the workflow's compute
WITHOUT = {
    "benchmark_ames",
    "descriptor_sweep",
    "benchmark_scale",
    "benchmark_extract",
    "download_revisitop",
    "download_gldv2",
    "publish",
    "publish_search",
}


def rule_blocks() -> dict[str, str]:
    """Rule name -> its text, over rules/*.smk."""
    blocks = {}
    for path in sorted((REPO / "rules").glob("*.smk")):
        parts = re.split(r"^(?:rule|checkpoint) (\w+):\n", path.read_text(), flags=re.M)
        blocks.update(zip(parts[1::2], parts[2::2]))
    return blocks


def benchmark_path(block: str) -> str | None:
    """The benchmark directive's path: a literal, or a retrieval.plan constant (BENCH_*)."""
    m = re.search(r"^    benchmark:\n        (.+?),?$", block, flags=re.M)
    if m is None:
        return None
    value = m.group(1).strip()
    return value.strip('"') if value.startswith('"') else getattr(plan, value)


def test_every_job_rule_writes_its_benchmark_under_its_own_name():
    blocks = rule_blocks()
    assert len(blocks) > 40 and set(WITHOUT) <= set(blocks)  # the parse found the rules, the exemptions exist
    missing = [r for r in blocks if r not in WITHOUT and benchmark_path(blocks[r]) is None]
    assert not missing, f"rules without a benchmark: file: {missing}"
    misplaced = {
        r: p for r in blocks if r not in WITHOUT and not (p := benchmark_path(blocks[r])).startswith(f"benchmarks/{r}/")
    }
    assert not misplaced, f"benchmark files outside benchmarks/{{rule}}/ (rule-times names rows by it): {misplaced}"
