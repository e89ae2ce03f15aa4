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


# the first stage's rules, one per shortlist.source, share benchmarks/knn/: the report reads it as the first stage
SHARED = {"import_nn": "knn", "asmk_shortlist": "knn"}


def rule_blocks() -> dict[str, str]:
    """Rule name -> its text, over rules/*.smk: top-level rules, rules defined under an ``if`` (indented), and
    ``use rule ... as NAME with:``."""
    blocks = {}
    header = r"^[ \t]*(?:(?:rule|checkpoint) (\w+)|use rule \w+ as (\w+) with):\n"
    for path in sorted((REPO / "rules").glob("*.smk")):
        parts = re.split(header, path.read_text(), flags=re.M)
        blocks.update((a or b, text) for a, b, text in zip(parts[1::3], parts[2::3], parts[3::3]))
    return blocks


def benchmark_path(block: str) -> str | None:
    """The benchmark directive's path: a literal, or a retrieval.plan constant (BENCH_*)."""
    m = re.search(r"^[ \t]+benchmark:\n[ \t]+(.+?),?$", block, flags=re.M)
    if m is None:
        return None
    value = m.group(1).strip()
    return value.strip('"') if value.startswith('"') else getattr(plan, value)


def test_every_job_rule_writes_its_benchmark_under_its_own_name():
    blocks = rule_blocks()
    # the parse found the rules, the nested ones too, and the exemptions exist
    assert len(blocks) > 40 and {"knn", *WITHOUT, *SHARED} <= set(blocks)
    missing = [r for r in blocks if r not in WITHOUT and benchmark_path(blocks[r]) is None]
    assert not missing, f"rules without a benchmark: file: {missing}"
    misplaced = {
        r: p
        for r in blocks
        if r not in WITHOUT and not (p := benchmark_path(blocks[r])).startswith(f"benchmarks/{SHARED.get(r, r)}/")
    }
    assert not misplaced, f"benchmark files outside benchmarks/{{rule}}/ (rule-times names rows by it): {misplaced}"
