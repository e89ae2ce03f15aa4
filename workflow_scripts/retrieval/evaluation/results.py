"""The results writer every method uses: ranking file, neighbour CSV and results JSON (the README's
contract), images without features ranked last."""

from __future__ import annotations

import csv
import html
import json
import logging
import os
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import h5py
import numpy as np
import yaml

from retrieval.evaluation.metrics import bootstrap_difference, evaluate_ground_truth, headline
from retrieval.featureless import rank_featureless_last
from retrieval.names import split_result_name
from retrieval.runtime import LISTS_REMEDY, atomic_path, check_recorded, open_h5, read_json, write_json
from retrieval.stores.global_store import read_featureless, read_first_stage

log = logging.getLogger(__name__)

DEFAULT_KS = (1, 5, 10)  # evaluate_ground_truth's, for a rule that sets no evaluate.ks
DEFAULT_N_BOOTSTRAP = 10000


@dataclass(frozen=True)
class EvaluationContext:
    """What every evaluation job shares, whatever the method: where its results go and what they are labelled with.

    Built once per job (:meth:`from_snakemake` in the rule's entry point) and handed to the stage and the results
    writer, so a stage's signature holds only its method's inputs and configuration.

    ``lists_path`` / ``gnd_path``: the lists stage's ``lists.json`` and ``gnd.json`` (``gnd`` null without ground
    truth). ``out_json``, ``out_ranking``, ``out_csv``: the results JSON, the ranking file (HDF5, ``ranks``
    ``(n_queries, n_db)`` int32) and the neighbour CSV (top ``csv_top`` per query). ``ks``: the k of mP@k (revisitop
    datasets). ``n_bootstrap``: resamples of the paired bootstrap against the baseline. ``baseline_json``: the
    global results JSON the method is compared with (recorded under ``artifacts.baseline``; ``None`` for the global
    evaluation itself). ``versions``, ``hyperparameters``, ``preset``: copied into the results JSON as they are."""

    dataset: str
    lists_path: str | Path
    gnd_path: str | Path
    out_json: str | Path
    out_ranking: str | Path
    out_csv: str | Path
    csv_top: int
    versions: dict[str, str]
    hyperparameters: dict[str, Any]
    preset: str
    ks: Sequence[int] = DEFAULT_KS
    n_bootstrap: int = DEFAULT_N_BOOTSTRAP
    baseline_json: str | Path | None = None

    @classmethod
    def from_snakemake(cls, smk: Any) -> EvaluationContext:
        """From an evaluation rule's ``snakemake`` object: inputs ``lists``, ``gnd`` (and ``baseline`` where the
        rule compares with the global results), outputs ``json``, ``ranking``, ``csv``, the ``dataset`` wildcard,
        params ``csv_top``, ``versions``, ``hyperparameters``, ``preset`` (and ``ks``, ``n_bootstrap`` where the
        rule sets them; the defaults otherwise). A missing required name raises AttributeError; a ``lists`` or
        ``gnd`` file that is not what ``image_lists`` recorded in its manifest, ValueError (``check_recorded``)."""
        params, inputs = smk.params, smk.input
        for path in (inputs.lists, inputs.gnd):  # the workflow's copies, as image_lists wrote them (helper-143)
            check_recorded(path, stage="image_lists", remedy=LISTS_REMEDY.format(path=path))
        return cls(
            dataset=smk.wildcards.dataset,
            lists_path=inputs.lists,
            gnd_path=inputs.gnd,
            out_json=smk.output.json,
            out_ranking=smk.output.ranking,
            out_csv=smk.output.csv,
            csv_top=params.csv_top,
            versions=params.versions,
            hyperparameters=params.hyperparameters,
            preset=params.preset,
            ks=params.get("ks", DEFAULT_KS),
            n_bootstrap=params.get("n_bootstrap", DEFAULT_N_BOOTSTRAP),
            baseline_json=inputs.get("baseline"),
        )


def without_features(
    knn_path: str | Path, lists: dict[str, Any], ranking: np.ndarray, scores: np.ndarray
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Every method's final ranking passes here: the images without features that the knn file records rank last
    with score -inf, a featureless query gets the database order (featureless.py); returns the ranking, the
    scores and the results-JSON fields ``queries_without_features`` (names) and ``db_images_without_features``."""

    q_none, db_none = read_featureless(knn_path, len(lists["query"]), len(lists["db"]))
    ranking, scores = rank_featureless_last(ranking, scores, q_none, db_none)
    flags = {
        "queries_without_features": [q["name"] for q, f in zip(lists["query"], q_none) if f],
        "db_images_without_features": int(db_none.sum()),
    }
    return ranking, scores, flags


def retrieved_nothing(lists: dict[str, Any], flags: dict[str, Any] | None) -> np.ndarray | None:
    """``(n_queries,)`` bool: the queries that ``flags["queries_without_features"]`` names (the metrics score them
    AP 0, see :data:`retrieval.evaluation.metrics.NOTHING_RETRIEVED`); None when there are none."""
    names = set((flags or {}).get("queries_without_features") or ())
    return np.array([q["name"] in names for q in lists["query"]]) if names else None


def write_neighbours_csv(
    path: str | Path,
    lists: dict[str, Any],
    ids: np.ndarray,
    sims: np.ndarray,
    top: int,
    columns: dict[str, tuple[np.ndarray, np.ndarray]] | None = None,
) -> None:
    """``query,rank,image,score`` rows of the top ``top`` of each query; an image without features (or any pair of a
    query without features) has the score ``-inf``: not a match. ``columns``: more integer columns, each given as
    ``(pair_ids, values)``, both ``(n_queries, m)``: the value of (query i, database image ``pair_ids[i, c]``);
    a listed image not among them gets an empty cell (e.g. beyond spatial verification's ``num_rerank``)."""
    extra = columns or {}
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["query", "rank", "image", "score", *extra])
        for qi, q in enumerate(lists["query"]):
            lookups = [dict(zip(pair_ids[qi].tolist(), values[qi].tolist())) for pair_ids, values in extra.values()]
            for r in range(min(top, ids.shape[1])):
                j = int(ids[qi, r])
                cells = [lookup.get(j, "") for lookup in lookups]
                w.writerow([q["path"], r + 1, lists["db"][j]["path"], f"{sims[qi, r]:.6f}", *cells])


def write_ranking(path: str | Path, ranks: np.ndarray, n_db: int, extra: dict[str, np.ndarray] | None = None) -> None:
    """The ranking file: ``ranks (n_queries, n_db)`` int32, plus any extra per-query arrays."""

    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        f.create_dataset("ranks", data=ranks.astype(np.int32))
        for name, arr in (extra or {}).items():
            f.create_dataset(name, data=arr)
        f.attrs.update({"schema_version": 1, "kind": "ranking", "n_db": n_db, "layout": "(n_queries, n_db)"})


def read_ranking(path: str | Path, arrays: Sequence[str] = ("ranks",), writer: str = "") -> dict[str, np.ndarray]:
    """The named ``arrays`` of a ranking file (:func:`write_ranking`; ``ranks (n_queries, n_db)`` int32 and a
    re-ranker's extra arrays, such as evaluate_sv's ``inliers``). ValueError naming the file when its ``kind`` is
    not ``ranking`` (another of the workflow's HDF5 files given in its place) or it lacks one of ``arrays`` (then
    naming ``writer``, the rule whose ranking was expected, where given); FileNotFoundError / ValueError from
    :func:`~retrieval.runtime.open_h5` for a missing or unreadable file."""
    with open_h5(path) as f:
        kind = f.attrs.get("kind")
        if kind != "ranking":
            raise ValueError(f"{path}: not a ranking file (kind={kind!r}; evaluate_* writes *_ranking.h5)")
        missing = [a for a in arrays if a not in f]
        if missing:
            named = f" (not an {writer} ranking)" if writer else ""
            raise ValueError(f"{path}: a ranking file without {', '.join(repr(a) for a in missing)}{named}")
        return {a: f[a][:] for a in arrays}


def rerank_depth(setting: str, requested: int, shortlist: int, n_db: int) -> int:
    """How many images of each shortlist a re-ranker re-ranks: ``requested`` (the value of ``setting``, e.g.
    ``sv.num_rerank``) capped by the shortlist's length ``shortlist`` (the neighbours file's columns). Recorded in
    the results (``num_rerank_applied``) beside the setting; where the shortlist (``knn.k``) caps it below the
    setting while the database (``n_db`` images) holds more, a warning says so (a new user's trial: knn.k 10 had sv
    verify 10 images a query, and the JSON said sv.num_rerank 100 without a word). A database smaller than the
    setting is re-ranked whole without one."""
    applied = min(requested, shortlist)
    if applied < requested and shortlist < n_db:
        log.warning(
            "%s is %d, but the shortlist holds %d neighbours a query (knn.k): only those are re-ranked "
            "(num_rerank_applied %d in the results); set knn.k to at least %d, or 0 for every image",
            setting,
            requested,
            shortlist,
            applied,
            requested,
        )
    return applied


def cost_timing(
    n_queries: int, reads: float = 0.0, rerank: float = 0.0, offline: float = 0.0, **extra: Any
) -> dict[str, Any]:
    """The timing block every method writes: seconds and milliseconds per query of descriptor reads and
    re-ranking (the first stage is the knn file's search time), and per-database work done once (offline)."""
    n = max(1, n_queries)
    return {
        "n_queries": n_queries,
        "reads_seconds": round(reads, 6),
        "rerank_seconds": round(rerank, 6),
        "offline_seconds": round(offline, 6),
        "ms_per_query": {"reads": round(1000 * reads / n, 3), "rerank": round(1000 * rerank / n, 3)},
        **extra,
    }


def write_results(
    ctx: EvaluationContext,
    *,
    method: str,
    lists: dict[str, Any],
    gnd: dict[str, Any] | None,
    evaluation: dict[str, Any] | None,
    artifacts: dict[str, str],
    timing: dict[str, Any],
    baseline: tuple[str, dict[str, Any]] | None = None,
    flags: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write the results JSON of any method (the README's "Results" contract) to ``ctx.out_json`` and return it;
    ``dataset``, ``preset``, ``hyperparameters`` and ``versions`` come from ``ctx``.

    ``evaluation``: this method's metrics as :func:`retrieval.evaluation.metrics.evaluate_ground_truth` returns
    them (revisitop E/M/H or GLDv2's Public/Private; ``None`` without ground truth: ``metrics`` is then null).
    ``baseline``: ``(name, evaluation)`` of the ranking this method starts from: adds ``baseline``,
    ``paired_difference`` (mean per-query AP difference x 100 with a 95% bootstrap interval of ``ctx.n_bootstrap``
    resamples, better / worse counts) and ``baseline_ap`` next to each query's AP. ``flags``: the images-without-
    features fields of :func:`without_features`. ``extra``: method-specific keys (AMES's ``chosen`` and ``grid``,
    SSP's ``alongside``, ...), which may not replace a contract key. Where ``artifacts`` names a ``knn`` file that
    ASMK ranked, ``first_stage`` records its codebook size and multiple assignments
    (:func:`~retrieval.stores.global_store.read_first_stage`), for every method reading that shortlist."""
    dataset = ctx.dataset
    result: dict[str, Any] = {
        "dataset": dataset,
        "method": method,
        "preset": ctx.preset,
        "n_queries": len(lists["query"]),
        "n_db": len(lists["db"]),
        # what was done, not the setting: a plain folder's queries have no box (it said true for them)
        "crop_queries": any(q.get("crop") is not None for q in lists["query"]),
    }
    if gnd is None or evaluation is None:
        log.warning("%s has no ground truth: writing rankings and neighbours only", dataset)
        result["metrics"] = None
    else:
        deep = [k for k in ctx.ks if k > len(lists["db"])]
        if deep and gnd.get("protocol") != "gldv2":  # reported without a word (a new user's trial: mP@500 of 85)
            log.warning(
                "evaluate.ks: mP@%s reach(es) past the %d database images of %s, and equal(s) mP@%d there: "
                "revisitop's precision at k stops at the rank of the last positive (compute_map's min(k, last rank))",
                "/".join(map(str, deep)),
                len(lists["db"]),
                dataset,
                len(lists["db"]),
            )
        if not any(evaluation["n_evaluated"].values()):  # every metric null: a new user's trial saw a silent success
            log.warning(
                "%s: no query has a positive in its ground truth under any protocol (%s), so every mAP and mP@k is "
                "null (n_evaluated_queries 0); queries without a positive are left out, as revisitop's compute_map "
                "does",
                dataset,
                "/".join(evaluation["n_evaluated"]),
            )
        names = [q["name"] for q in lists["query"]]
        subsets = list(evaluation["per_query_ap"])  # E/M/H, or GLDv2's Public/Private
        result["metrics"] = headline(evaluation)
        result["n_evaluated_queries"] = evaluation["n_evaluated"]
        result["per_query_ap"] = {p: {"query": names, "ap": evaluation["per_query_ap"][p]} for p in subsets}
        if baseline is not None:
            name, base = baseline
            result["baseline"] = {"method": name, "metrics": headline(base)}
            result["paired_difference"] = {
                p: bootstrap_difference(base["per_query_ap"][p], evaluation["per_query_ap"][p], ctx.n_bootstrap)
                for p in subsets
            }
            for p in subsets:
                result["per_query_ap"][p]["baseline_ap"] = base["per_query_ap"][p]
        if gnd.get("subset"):  # a ground truth restricted to the images present (GLDv2 ``present_only``)
            result["ground_truth_subset"] = gnd["subset"]
        log.info(
            "%s %s: %s%s",
            dataset,
            method,
            result["metrics"],
            f" ({baseline[0]} {result['baseline']['metrics']})" if baseline is not None else "",
        )
    clash = set(extra or {}) & (set(result) | {"hyperparameters", "versions", "artifacts", "timing"})
    if clash:
        raise ValueError(f"results of {method}: extra keys {sorted(clash)} would replace the contract's")
    result.update(extra or {})
    if "knn" in artifacts:  # a shortlist ranked by ASMK (shortlist.source: asmk, or the asmk method) says so
        first_stage = read_first_stage(artifacts["knn"])
        if first_stage is not None:
            result["first_stage"] = first_stage
    result.update(flags or {})
    result["hyperparameters"] = ctx.hyperparameters
    result["versions"] = ctx.versions
    result["artifacts"] = {"lists": str(ctx.lists_path), **artifacts}
    result["timing"] = timing
    write_json(ctx.out_json, result)
    return result


def write_reranked_evaluation(
    ctx: EvaluationContext,
    method: str,
    ranking: np.ndarray,
    scores: np.ndarray,
    base_ids: np.ndarray,
    lists: dict[str, Any],
    gnd: dict[str, Any] | None,
    knn_path: str | Path,
    timing: dict[str, Any],
    extra_datasets: dict[str, np.ndarray] | None = None,
    extra: dict[str, Any] | None = None,
    artifacts: dict[str, str] | None = None,
    flags: dict[str, Any] | None = None,
    csv_columns: dict[str, tuple[np.ndarray, np.ndarray]] | None = None,
) -> dict[str, Any]:
    """Ranking file, neighbour CSV and results JSON of a method that re-orders the global ranking (or, for
    ``asmk``, replaces it): its metrics next to the global baseline's (:func:`write_results`).

    ``ranking`` / ``scores``: ``(n_queries, n)`` database indices (int) and their scores, best first; ``base_ids``:
    the global ranking ``(n_queries, n)`` the baseline metrics come from. ``knn_path``: the neighbours file whose
    images without features rank last (recorded as ``artifacts.knn``). ``extra_datasets``: more per-query arrays
    for the ranking file. ``csv_columns``: more neighbour-CSV columns, values per (query, database
    image) pair (see :func:`write_neighbours_csv`). ``flags`` replace the images-without-features fields computed from ``knn_path``.
    ``ctx.baseline_json`` must be set (ValueError otherwise): the global results file, recorded as
    ``artifacts.baseline``; the baseline's metrics are computed here again from ``base_ids``, with this evaluation's
    queries without features and the same bootstrap pairing, rather than read from it."""
    if ctx.baseline_json is None:
        raise ValueError(f"{method}: a re-ranked evaluation records its baseline, but the context has none")
    n_db = len(lists["db"])
    ranking, scores, computed = without_features(knn_path, lists, ranking, scores)
    flags = {**computed, **(flags or {})}
    write_ranking(ctx.out_ranking, ranking, n_db, extra_datasets)
    write_neighbours_csv(ctx.out_csv, lists, ranking, scores, ctx.csv_top, csv_columns)
    evaluation = baseline = None
    if gnd is not None:
        nothing = retrieved_nothing(lists, flags)
        evaluation = evaluate_ground_truth(ranking, gnd, n_db, ctx.ks, nothing)
        baseline = ("global", evaluate_ground_truth(base_ids, gnd, n_db, ctx.ks, nothing))
    return write_results(
        ctx,
        method=method,
        lists=lists,
        gnd=gnd,
        evaluation=evaluation,
        baseline=baseline,
        flags=flags,
        extra=extra,
        timing=timing,
        artifacts={
            "ranking": str(ctx.out_ranking),
            "neighbours_csv": str(ctx.out_csv),
            "knn": str(knn_path),
            "baseline": str(ctx.baseline_json),
            **(artifacts or {}),
        },
    )


# what every published result holds (the README's "Results" contract) and the compare table and the report read
PUBLISHED_KEYS = ("dataset", "method", "metrics", "n_queries", "n_db")


def read_published(path: str | Path, method: str) -> dict[str, Any]:
    """A published ``results/{dataset}_{method}.json`` as the compare table and the report read it, checked against
    what it claims to be. ValueError naming ``path`` and the way to make it again (``-R path``; asking for it again
    finds nothing to do, its evaluation being up to date) when it is not JSON, lacks a key of
    :data:`PUBLISHED_KEYS`, is another method's result (a copy of ``_aqe.json`` at ``_sv.json`` was shown as the
    ``sv`` row), or differs from the versioned evaluation it names (``artifacts.evaluation``, of which ``publish``
    writes a copy with ``fitted_on``): a hand-edited Medium of 12.34 was shown, beside a mean difference outside its
    own interval (helper-143). An evaluation no longer on disk is not compared."""
    remedy = f"make it again: add -R {path} after your target (snakemake --cores all ... -R {path})"
    try:
        result = read_json(path)
    except ValueError as e:
        raise ValueError(f"{e}; {remedy}") from None
    if not isinstance(result, dict):
        raise ValueError(f"{path}: not a published result (a JSON {type(result).__name__}); {remedy}")
    missing = [k for k in PUBLISHED_KEYS if k not in result]
    if missing:
        raise ValueError(f"{path}: not a whole published result, {', '.join(missing)} missing; {remedy}")
    if result["method"] != method:
        raise ValueError(f"{path}: holds the results of method '{result['method']}', not '{method}'; {remedy}")
    evaluation = (result.get("artifacts") or {}).get("evaluation")
    if isinstance(evaluation, str) and os.path.isfile(evaluation):
        published = {k: v for k, v in result.items() if k != "fitted_on"}
        published["artifacts"] = {k: v for k, v in result["artifacts"].items() if k != "evaluation"}
        source = read_json(evaluation)
        if published != source:
            changed = sorted(k for k in set(published) | set(source) if published.get(k) != source.get(k))
            raise ValueError(
                f"{path}: differs from the evaluation it names, {evaluation} ({', '.join(changed[:5])}): edited, or "
                f"another file copied over it? {remedy}"
            )
    return result


REPORT_INPUTS_META = "retrieval-inputs"  # the report's <meta>: the files it was made from (read by stale_published)
REPORT_SHOWN_META = "retrieval-shown"  # its <meta>: each published result's evaluation it shows


def report_inputs_meta(paths: Sequence[str], shown: dict[str, str | None] | None = None) -> str:
    """The ``<meta>`` tags a report's head carries: the files it was made from (sorted, JSON in an attribute), so
    that :func:`stale_published` can tell a report older than one of them, and ``shown``, {published result: the
    evaluation (``artifacts.evaluation``) it held}, so that it can tell a result published since from another."""
    names = html.escape(json.dumps(sorted(str(p) for p in paths)), quote=True)
    tags = f"<meta name='{REPORT_INPUTS_META}' content='{names}'>"
    if shown:
        tags += f"<meta name='{REPORT_SHOWN_META}' content='{html.escape(json.dumps(shown), quote=True)}'>"
    return tags


def _report_meta(path: Path, name: str) -> Any:
    """The JSON a report's head holds in its ``<meta name=name>`` (:func:`report_inputs_meta`), or None."""
    with open(path, "rb") as fh:
        head = fh.read(65536).decode("utf-8", "replace")
    found = re.search(f"<meta name='{name}' content='([^']*)'>", head)
    try:
        return json.loads(html.unescape(found.group(1))) if found else None
    except ValueError:
        return None


def _report_inputs(path: Path) -> list[str]:
    """The files a report names in its head (:func:`report_inputs_meta`), or [] (an older report names none)."""
    names = _report_meta(path, REPORT_INPUTS_META)
    return [n for n in names if isinstance(n, str)] if isinstance(names, list) else []


def _published(results_dir: Path) -> Iterator[tuple[Path, list[str]]]:
    """(published file, the files it was made from) of every published file under ``results_dir``: the results
    ``{dataset}_{method}.json``, the method tables ``{dataset}_compare.json`` and the searches
    ``search/{collection}/{photos}.json`` (their ``artifacts``), and the reports ``report/{dataset}.html`` (their
    ``<meta>``). Files that are none of these, or cannot be read, are passed over."""
    for pattern, keys in (("*.json", ("method", "rows")), ("search/*/*.json", ("collection",))):
        for path in sorted(results_dir.glob(pattern)):
            try:
                result = read_json(path)
            except (OSError, ValueError):
                continue
            known = isinstance(result, dict) and any(k in result for k in keys)
            if known and isinstance(result.get("artifacts"), dict):
                yield path, sorted(v for v in result["artifacts"].values() if isinstance(v, str))
    for path in sorted(results_dir.glob("report/*.html")):
        try:
            yield path, _report_inputs(path)
        except OSError:
            continue


def _shown(path: Path) -> dict[str, Any]:
    """{published result: the evaluation it held} for what a method table (its rows' ``evaluation``, with its
    ``artifacts``' ``result_{method}``) or a report (its ``<meta>``) shows; {} for any other file, or an older
    table or report that records none."""
    if path.name.endswith("_compare.json"):
        table = read_json(path)
        rows, artifacts = table.get("rows"), table.get("artifacts")
        if not isinstance(rows, list) or not isinstance(artifacts, dict):
            return {}
        pairs = [(artifacts.get(f"result_{r.get('method')}"), r) for r in rows if isinstance(r, dict)]
        return {p: r["evaluation"] for p, r in pairs if isinstance(p, str) and "evaluation" in r}
    if path.suffix == ".html":
        shown = _report_meta(path, REPORT_SHOWN_META)
        return {p: e for p, e in shown.items() if isinstance(p, str)} if isinstance(shown, dict) else {}
    return {}


def _disagrees(path: Path) -> str | None:
    """The published result a method table or a report shows whose evaluation is no longer the one it showed
    (another configuration's version published since, computed before the table, so no time says so: they
    disagreed without a word), else None; None for a file that cannot be read."""
    try:
        for result_path, evaluation in _shown(path).items():
            result = read_json(result_path)
            now = result.get("artifacts", {}).get("evaluation") if isinstance(result, dict) else None
            if now != evaluation:
                return result_path
    except (OSError, ValueError, AttributeError):
        return None
    return None


def _manifest_inputs(path: Path) -> list[str]:
    """The input files a stage's manifest records for ``path`` (``{stem}.manifest.json`` or ``manifest.json``
    beside it, the one whose ``outputs`` name it; :class:`retrieval.runtime.Manifest`), or [] (no manifest, or not
    readable: a root such as a database list, or a file of no stage)."""
    for manifest in (path.parent / f"{path.stem}.manifest.json", path.parent / "manifest.json"):
        try:
            record = read_json(manifest)
        except (OSError, ValueError):
            continue
        outputs = record.get("outputs") if isinstance(record, dict) else None
        here = os.path.abspath(path)  # inputs are recorded relative or absolute
        if not isinstance(outputs, dict) or not any(os.path.abspath(o) == here for o in outputs):
            continue
        found: list[str] = []
        stack: list[Any] = [record.get("inputs")]
        while stack:  # inputs are {name: {"path": ...}} or lists of them, nested
            item = stack.pop()
            if isinstance(item, dict):
                found += [v for k, v in item.items() if k == "path" and isinstance(v, str)]
                stack += [v for k, v in item.items() if k != "path"]
            elif isinstance(item, list):
                stack += item
        return sorted(found)
    return []


def stale_published(results_dir: str | Path = "results") -> list[tuple[str, str]]:
    """The published files older than a file they were made from: a later run re-computed that file in place
    (photos, ``gnd.csv`` or ``query_boxes.csv`` edited; the versions hash none of them) for another target, and the
    published file still holds the numbers, the indices or the neighbours of before. Published: the results
    ``{dataset}_{method}.json`` (the copies ``publish`` makes; made from the files under their ``artifacts``: the
    lists, the neighbours, the baseline's or their own evaluation), the method tables ``{dataset}_compare.json``
    (made from the published results they list), the searches ``search/{collection}/{photos}.json``
    (``publish_search``'s; made from the search's files and both sides' lists) and the reports
    ``report/{dataset}.html`` (made from the published results they show, the lists and the ground truth).

    "Made from" is transitive through the stages' manifests, to the files under ``results_dir``: a search that re-computed the
    collection's global descriptors in place (photos added) leaves ``{collection}_global.json`` stale although its
    knn file was not made again (a new user's trial: ``n_db`` 30 against 37 photos, not named). The files it names
    come first, then their inputs, breadth first; the first newer one is returned. A published result named by a
    table or a report is not compared by its own time (``publish`` copies it again whenever another configuration's
    version is asked for: switching back named the table stale), only by what it was made from; a method table or
    a report that shows another evaluation than a result it lists now holds is named with that result
    (:func:`_disagrees`: another configuration's version, computed before it, published since).

    Returns ``(published, newer file)`` pairs, sorted within each kind; files that are not published files, and
    files that cannot be read, are passed over; a named file no longer on disk (a temporary one, another
    configuration's) is not newer itself, but what its manifest names still counts. Reads each published file once
    and each named file's manifest once (a ``manifest.json`` shared by several outputs once per output): called when
    a run ends. Never raises for what it finds on disk (a link loop, a NUL byte in a path, a malformed manifest)."""
    root = Path(results_dir).resolve()
    published_files = list(_published(Path(results_dir)))
    # file -> what it was made from: a published file's own list, else its manifest's inputs (memo)
    inputs: dict[str, list[str]] = {str(path): made_from for path, made_from in published_files}

    def upstream(name: str) -> list[str]:
        """What ``name`` was made from, those files under ``results_dir`` only: a file outside it (``gnd.csv``, a
        release file) is edited, not re-computed by a run, and an absolute path into another tree is not this one's."""
        if name not in inputs:
            inputs[name] = [f for f in _manifest_inputs(Path(name)) if inside(f)] if inside(name) else []
        return inputs[name]

    def inside(name: str) -> bool:
        try:  # never fails the run it ends: a link loop, an unreadable folder or a NUL byte pass over the file
            return Path(name).resolve().is_relative_to(root)
        except (OSError, RuntimeError, ValueError):
            return False

    # a published result named by a table or a report counts by what it was made from, not by its copy's time:
    # publish copies it again whenever another configuration's version is asked for, and switching back copied the
    # same numbers again, which named the table and the report stale (a researcher's trial)
    copies = {os.path.abspath(path) for path, _ in published_files}
    out = []
    for path, made_from in published_files:
        try:
            published = path.stat().st_mtime
        except OSError:
            continue
        other = _disagrees(path)
        if other is not None:
            out.append((str(path), other))
            continue
        queue, seen = list(made_from), {os.path.abspath(n) for n in made_from}
        while queue:
            name = queue.pop(0)
            try:
                newer = os.path.abspath(name) not in copies and Path(name).stat().st_mtime > published
            except (OSError, ValueError):  # gone (a temporary file, another configuration's): its inputs still count
                newer = False
            if newer:
                out.append((str(path), name))
                break
            for parent in upstream(name):
                if os.path.abspath(parent) not in seen:
                    seen.add(os.path.abspath(parent))
                    queue.append(parent)
    return out


# the files a published result names that its own evaluation job wrote (with the evaluation JSON it copies)
OWN_OUTPUTS = ("evaluation", "ranking", "neighbours_csv")


def published_outputs_gone(results_dir: str | Path = "results") -> list[tuple[str, str]]:
    """(published result, the first of its evaluation job's files it names that is gone) for every published
    ``{dataset}_{method}.json`` under ``results_dir`` whose ``artifacts`` name an evaluation, ranking or neighbour
    CSV no longer on disk. Snakemake removes the outputs of a job that failed (a refused SLURM submission, a time
    limit), keeps the published copy, and then finds nothing to do for it: a deleted intermediate is not made
    again while what used it is up to date (helper-149). Files that cannot be read are passed over; never raises
    for what it finds on disk."""
    found = ((str(path), output_gone(path)) for path in sorted(Path(results_dir).glob("*.json")))
    return [(path, gone) for path, gone in found if gone is not None]


def output_gone(published: str | Path) -> str | None:
    """The first of the evaluation, ranking and neighbour CSV that the published result ``published`` names and
    that is no longer on disk, or None (also for a file that is not a readable published result)."""
    try:
        result = read_json(published)
    except (OSError, ValueError):
        return None
    artifacts = result.get("artifacts") if isinstance(result, dict) and "method" in result else None
    if not isinstance(artifacts, dict):
        return None
    for key in OWN_OUTPUTS:
        name = artifacts.get(key)
        try:
            if isinstance(name, str) and not os.path.exists(name):
                return name
        except (OSError, ValueError):  # a NUL byte in a path
            continue
    return None


def outputs_gone_message(published: str, gone: str) -> str:
    """The warning for a pair of :func:`published_outputs_gone`, with the remedy that works: ``-R`` with the gone
    file runs its job again, and ``publish`` after it (asking for the published file again finds nothing to do)."""
    return (
        f"{published} names {gone}, which is gone (Snakemake removes the files of a job that failed, and then finds "
        f"nothing to do for the published copy): make it again with -R {gone} after the target (snakemake ... "
        f"{published} -R {gone})"
    )


CHANGED = "which changed since (re-computed in place by a later run, or edited)"  # the warning cannot tell which
# said once after the stale files: asking again cannot make a file whose dataset folder is gone ("did you mean")
RETIRE = (
    "a stale published file whose dataset or photos folder was moved or removed cannot be brought up to date (asking "
    "for it again names the missing folder): delete it, and it is no longer checked"
)


def run_options(configfiles: Sequence[str | Path], overrides: dict[str, Any] | None) -> str:
    """Said after the stale warnings of a run given ``--configfile`` files or ``--config`` values (``overrides``,
    Snakemake's parsed ``--config``): the ``snakemake ...`` of :func:`stale_message` stands for the options a file was
    made with, which no file records; this run's are named as a reminder, not as the remedy (a table made with
    another --configfile, asked for with this run's, planned AMES's training: helper-143), since without options
    the file is made under the defaults (a ``data_root`` left out names the dataset folder as missing). ``""`` for a
    run with neither. The values are written as ``--config`` takes them (``key=value``, YAML for a mapping)."""
    options = [f"--configfile {shlex.quote(str(f))}" for f in configfiles]
    if overrides:
        pairs = (f"{k}={_flow_yaml(v)}" for k, v in overrides.items())
        options.append("--config " + " ".join(shlex.quote(p) for p in pairs))
    if not options:
        return ""
    return (
        "(`snakemake ...` above: with the options each file was made with, which this run cannot tell; this run's "
        f"were {' '.join(options)}. Asked for with other options, a file is made with their settings, with none "
        "under the defaults)"
    )


def _flow_yaml(value: Any) -> str:
    """A --config value as YAML on one line (``{b: 1}``), or the scalar as it was given."""
    if isinstance(value, (dict, list)):
        return yaml.safe_dump(value, default_flow_style=True, width=10**6).strip()
    return str(value)


def published_datasets(published: str, methods: Sequence[str]) -> list[str]:
    """The datasets a published file is of: ``results/{dataset}_{method}.json`` (``methods``: the known ones, for
    :func:`retrieval.names.split_result_name`; a table is ``{dataset}_compare``), ``results/report/{dataset}.html``,
    and a search's collection and photos, ``results/search/{collection}/{photos}.json``; [] for a name it cannot
    read."""
    parts = os.path.normpath(published).split(os.sep)
    stem = os.path.splitext(parts[-1])[0]
    if len(parts) >= 3 and parts[-3] == "search":
        return [parts[-2], stem]
    if len(parts) >= 2 and parts[-2] == "report":
        return [stem]
    try:
        return [split_result_name(stem, methods)[0]]
    except ValueError:
        return []


def stale_message(published: str, newer: str) -> str:
    """The warning for a pair of :func:`stale_published`: what is out of date, and the target that brings it up to
    date (a search's .json stands for its .csv and .html, published with it). A table or a report paired with a
    published result (``results/{dataset}_{method}.json``, which is never compared by time) is one that shows
    another evaluation than that result holds now (:func:`_disagrees`), and is said so."""
    if Path(published).parent.parent.name == "search":
        stem = published.removesuffix(".json")
        return (
            f"{stem}.json (.csv, .html) is older than {newer}, {CHANGED}: its neighbours are from before; ask for it "
            f"again (snakemake ... {stem}.html) to bring it up to date{_or_rerun(newer)}"
        )
    if published.endswith("_compare.json"):  # published with its .md
        stem = published.removesuffix(".json")
        if Path(newer).parent == Path(published).parent:  # a result it lists (copies are not compared by time)
            return (
                f"{stem}.json (.md) shows other numbers than {newer} holds now (another configuration's, published "
                f"since): ask for it again (snakemake ... {stem}.md) to bring it up to date"
            )
        return (
            f"{stem}.json (.md) is older than {newer}, {CHANGED}: its table is from before; ask for it again "
            f"(snakemake ... {stem}.md) to bring it up to date{_or_rerun(newer)}"
        )
    if published.endswith(".html") and Path(newer).parent == Path(published).parent.parent:  # a result it shows
        return (
            f"{published} shows other numbers than {newer} holds now (another configuration's, published since): "
            f"ask for it again (snakemake ... {published}) to bring it up to date"
        )
    what = "what it shows is" if published.endswith(".html") else "its numbers (and its ranking's indices) are"
    return (
        f"{published} is older than {newer}, {CHANGED}: {what} from before; ask for it again (snakemake ... "
        f"{published}) to bring it up to date{_or_rerun(newer)}"
    )


def _or_rerun(newer: str) -> str:
    """The second remedy of a stale published file: where asking again finds nothing to do (``newer`` changed
    outside the workflow, e.g. a ranking's CSV saved from a spreadsheet, which is not an input of ``publish``; a
    new user's trial got the same warning after every run; or damaged, when a job above failed reading it; or made
    by a run that failed before its publish step, helper-149), ``-R`` with ``newer`` makes it again, and what
    follows."""
    return (
        f" (if that finds nothing to do, {newer} was changed outside the workflow, or the run that made it failed "
        f"before publishing: add -R {newer} after the target)"
    )
