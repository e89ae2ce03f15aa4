"""One table of every method on the same global shortlist: E/M/H mAP, the paired Medium difference to global-only
with its bootstrap interval, and the cost per query split into the first stage (the global search, or for a
first-stage method such as asmk its own search), descriptor reads and re-ranking. Work done once per database
(database augmentation, whitening the database, building ASMK's inverted file) is listed apart.
"""

from __future__ import annotations

import json
from typing import Any


def _ms(x: float | None) -> str:
    return "n/a" if x is None else (f"{x:.3g}" if x < 10 else f"{x:.0f}")


def metric_set(metrics: dict[str, Any] | None) -> tuple[str, tuple[str, ...], str]:
    """(headline metric, its parts, the part differences are read on): revisitop's ("mAP", E/M/H, "M") or, for a
    GLDv2 result, ("mAP@100", Public/Private, "Private": parameters are chosen on Public)."""
    if metrics and "mAP@100" in metrics and "mAP" not in metrics:
        return "mAP@100", ("Public", "Private"), "Private"
    return "mAP", ("E", "M", "H"), "M"


def compare_rows(results: dict[str, dict[str, Any]], search_seconds: float | None) -> list[dict[str, Any]]:
    """Rows in the given method order. ``search_seconds``: the first stage for all queries (knn file attribute)."""
    rows = []
    for method, r in results.items():
        n_q = r["n_queries"]
        t = r.get("timing") or {}
        per_q = t.get("ms_per_query") or {}
        first = per_q.get("first_stage")  # a first-stage method (asmk) times its own search
        if first is None:
            first = None if search_seconds is None else 1000 * search_seconds / max(1, n_q)
        reads, rerank = per_q.get("reads"), per_q.get("rerank")
        total = None if None in (first, reads, rerank) else first + reads + rerank
        key, _, main = metric_set(r.get("metrics"))
        row = {
            "method": method,
            "n_queries": n_q,
            "n_evaluated_queries": r.get("n_evaluated_queries"),  # per protocol: queries with a positive there
            "n_db": r["n_db"],
            key: r["metrics"][key] if r.get("metrics") else None,
            f"difference_{main}": None,
            "ms_per_query": {"first_stage": first, "reads": reads, "rerank": rerank, "total": total},
            "offline_seconds": t.get("offline_seconds"),
            "device": t.get("device") or "cpu",
            "evaluation": r.get("artifacts", {}).get("evaluation"),
        }
        if method != "global" and r.get("paired_difference"):
            row[f"difference_{main}"] = r["paired_difference"][main]
        if "chosen" in r:
            row["chosen"] = {
                k: r["chosen"][k]
                for k in ("lambda", "gamma", "geometry_weight", "num_rerank", "selected_on")
                if k in r["chosen"]
            }
        rows.append(row)
    return rows


def _check_same_shortlist(results: dict[str, dict[str, Any]]) -> None:
    # a first-stage method (asmk) ranks by itself; the global baseline it is compared with must be the shared one
    knn = {
        m: r.get("artifacts", {}).get("baseline_knn") or r.get("artifacts", {}).get("knn") for m, r in results.items()
    }
    distinct = {k for k in knn.values() if k}
    if len(distinct) > 1:
        raise ValueError(f"methods were evaluated on different global shortlists: {knn}")


def uses_random_weights(result: dict[str, Any]) -> bool:
    """A deep backbone with ``checkpoint: random`` (tests only) fed this result."""

    return '"checkpoint": "random"' in json.dumps(result.get("hyperparameters", {}))


SHORTLIST_TITLES = {
    "vlad": "the same global shortlist",
    "backbone": "the same global shortlist (a deep backbone's global descriptor)",
    "import": "the same global shortlist (imported global descriptors)",
    "ames_nn": "the same shortlist (an AMES release file, shortlist.source: ames_nn)",
    "asmk": "the same shortlist: the ASMK ranking (shortlist.source: asmk; the global row is that ranking)",
}


def shortlist_source(results: dict[str, dict[str, Any]]) -> str:
    """``shortlist.source`` as the results record it (``hyperparameters.shortlist`` of ``global``, else
    ``hyperparameters.global.shortlist`` of a re-ranker); ``vlad`` when none records it (older results)."""
    for r in results.values():
        hp = r.get("hyperparameters") or {}
        for where in (hp, hp.get("global") or {}):
            source = (where.get("shortlist") or {}).get("source")
            if source:
                return str(source)
    return "vlad"


def render_markdown(
    dataset: str, rows: list[dict[str, Any]], random_weights: bool = False, shortlist: str = "vlad"
) -> str:
    """The comparison of ``dataset`` as Markdown from :func:`compare_rows`: per method the headline metric's parts
    (E/M/H mAP, or mAP@100 Public/Private), the paired difference to global-only with its 95% bootstrap interval,
    milliseconds per query (first stage, reads, re-rank, total) and the seconds of work once per database; then the
    query and database counts and the devices; a bold warning first when ``random_weights``. ``rows`` must not be empty:
    the first sets the metric and the counts. ``shortlist``: the ``shortlist.source`` they share (the title names it)."""
    lines = [f"# {dataset}: methods on {SHORTLIST_TITLES.get(shortlist, SHORTLIST_TITLES['vlad'])}", ""]
    if random_weights:
        lines += ["**RANDOM WEIGHTS (checkpoint: random): a test of the machinery, not a result to report.**", ""]
    key = "mAP@100" if "mAP@100" in rows[0] else "mAP"
    _, parts, main = metric_set({key: None})
    if key == "mAP@100":
        lines += ["mAP@100 (the official GLDv2 metric) on the Public and the Private queries.", ""]
    lines += [
        f"| method | {' | '.join(parts)} | {main} − global [95% CI] | first stage | reads | re-rank | total ms/query "
        "| once per database |",
        "|---|" + "---|" * len(parts) + "---|---|---|---|---|---|",
    ]
    for r in rows:
        m = r[key] or {}
        d = r[f"difference_{main}"]
        diff = "" if d is None else f"{d['mean']:+.2f} [{d['ci95'][0]:+.2f}, {d['ci95'][1]:+.2f}]"
        c = r["ms_per_query"]
        off = r["offline_seconds"]
        lines.append(
            f"| {r['method']} | "
            + " | ".join("-" if m.get(p) is None else f"{m[p]:.2f}" for p in parts)
            + f" | {diff} | {_ms(c['first_stage'])} | {_ms(c['reads'])} | {_ms(c['rerank'])} | {_ms(c['total'])} | "
            f"{'' if not off else f'{off:.2f} s'} |"
        )
    n = rows[0]
    scored = n.get("n_evaluated_queries") or {}
    unscored = {p: c for p, c in scored.items() if c != n["n_queries"]}
    also = " (the means score fewer: " + ", ".join(f"{p} {c}" for p, c in unscored.items()) + ")" if unscored else ""
    lines += [
        "",
        f"{n['n_queries']} queries{also}, {n['n_db']} database images. Times are milliseconds per query on the machine "
        "that ran each rule (device: " + ", ".join(sorted({r["device"] for r in rows})) + "); the first stage is "
        "the search that made the shortlist, the knn file's (the exact global search by default, IVF-PQ's under "
        "knn.search: ivfpq, 0 for a shortlist imported with shortlist.source: ames_nn; asmk: its own inverted-file "
        "search of the query's local descriptors, building the inverted file its work once per database; ames: "
        "preparing the database store, once per model). Parameters of each method: its results JSON.",
    ]
    if shortlist == "asmk":
        lines[-1] += (
            " The global row is the ASMK ranking itself (its difference to global is 0 by construction); its "
            "inverted file's cost once per database is on the asmk row."
        )
    return "\n".join(lines) + "\n"
