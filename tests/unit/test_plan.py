"""The version graph and artifact paths (retrieval/plan.py), without Snakemake: what a configuration change
invalidates and what it leaves alone, the fit split of each unsupervised_fit mode, errors naming the key, and a golden
file recorded from rules/common.smk before the graph moved here (the same version strings and paths)."""

import copy
import json
from pathlib import Path

import pytest

from retrieval.plan import Plan, PlanError

GOLDEN = Path(__file__).parent / "data" / "plan_golden.json"
# (name, the configuration overlay): recorded by running rules/common.smk's functions under `snakemake -n` on the
# default config/config.yaml with this overlay (and validated by the schema), for the demo splits
GOLDEN_CASES = json.loads(GOLDEN.read_text())


def answer(plan: Plan, name: str, args: list):
    try:
        return json.loads(json.dumps(getattr(plan, name)(*args), sort_keys=True, default=str))
    except PlanError as e:
        return {"__error__": "WorkflowError", "message": str(e)}


@pytest.mark.parametrize("case", sorted(GOLDEN_CASES))
def test_plan_reproduces_common_smk(case):
    recorded = GOLDEN_CASES[case]
    plan = Plan(copy.deepcopy(recorded["config"]))
    wrong = {}
    for key, want in recorded["values"].items():
        name, args = json.loads(key)
        got = answer(plan, name, args)
        if got != want:
            wrong[key] = (got, want)
    assert not wrong, f"{len(wrong)} of {len(recorded['values'])} differ, e.g. {next(iter(wrong.items()))}"
