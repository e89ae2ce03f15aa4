"""The ASMK stages as plain functions (what rules/asmk.smk calls): codebook on the training split, the database's
inverted file, the queries' search (a full ranking in the neighbours format, so it can be the shortlist every
re-ranker reads), and the ``asmk`` results JSON next to the global baseline."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from retrieval.evaluation.results import EvaluationContext, cost_timing, write_reranked_evaluation
from retrieval.featureless import rank_featureless_last
from retrieval.runtime import Manifest, atomic_path, read_json, read_lists
from retrieval.search.asmk import (
    ASMKConfig,
    ASMKIndex,
    aggregate_images,
    codebook_size,
    fit_codebook,
    read_ivf,
    search_queries,
    write_ivf,
)
from retrieval.stores.global_store import read_neighbours, write_neighbours
from retrieval.stores.local_store import open_local, read_row_runs

log = logging.getLogger(__name__)


def _read_descriptors(f, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Descriptors of ``rows`` (sorted) of an open local store, concatenated: (M, D) float32 and their row (M,)."""
    if len(rows) == 0:
        return np.zeros((0, f["descriptors"].shape[2]), np.float32), np.zeros(0, np.int64)
    desc = read_row_runs(f["descriptors"], rows)
    counts = read_row_runs(f["count"], rows)
    x = np.concatenate([d[:c] for d, c in zip(desc, counts)]).astype(np.float32)
    return x, np.repeat(rows, counts)


def fit_asmk_codebook(
    local_path: str | Path,
    out_path: str | Path,
    manifest_path: str | Path,
    k: int,
    max_descriptors: int,
    seed: int,
    version: str,
    config: dict[str, Any],
    preset: str,
    training_split: str,
    local_version: str,
) -> None:
    """ASMK visual words from the fit split's database descriptors (whole images in a seeded random order until
    ``max_descriptors``), saved as ``centroids (k, D)`` float32 in ``.npz``; ``k`` is the most words, fewer
    (:func:`retrieval.search.asmk.codebook_size`) when the split has too few descriptors for it."""

    m = Manifest("asmk_codebook", version, config, preset, fitted_on=training_split)
    m.add_input("local", local_path, version=local_version, checksum=False)
    rng = np.random.default_rng(seed)
    with open_local(local_path) as f:
        counts = f["count"][:]
        order = rng.permutation(len(counts))
        take = np.sort(order[: int(np.searchsorted(np.cumsum(counts[order]), max_descriptors)) + 1])
        x, _ = _read_descriptors(f, take)
    n_available = int(counts.sum())
    if len(x) > max_descriptors:
        x = x[np.sort(rng.choice(len(x), max_descriptors, replace=False))]
    try:
        k_requested, k = k, codebook_size(len(x), k)
    except ValueError as e:  # a collection of a few blank or tiny photos fitted on itself
        raise ValueError(
            f"{local_path}: the ASMK codebook of {training_split} ({len(counts)} images): {e}; fit it on a larger "
            "collection (unsupervised_fit: training, or a dataset's name; for the training split's own fit, a larger "
            "training_split)"
        ) from None
    if k != k_requested:
        log.warning(
            "asmk codebook: %d descriptors of %s support %d words, not asmk.codebook.k %d (>= 39 per word)",
            len(x),
            training_split,
            k,
            k_requested,
        )
    log.info(
        "asmk codebook: k=%d on %d descriptors of %d images of %s (%d available, %.1f per word)",
        k,
        len(x),
        len(take),
        training_split,
        n_available,
        len(x) / k,
    )
    t0 = time.time()
    centroids = fit_codebook(x, k, source=f"{local_path} (training_split {training_split})")
    with atomic_path(out_path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, centroids=centroids)
    m.write(
        manifest_path,
        outputs=[out_path],
        n_training_descriptors=len(x),
        n_available_descriptors=n_available,
        n_training_images=len(take),
        k_requested=k_requested,
        k=k,
        points_per_word=round(len(x) / k, 1),
        fit_seconds=round(time.time() - t0, 3),
    )


def load_centroids(path: str | Path) -> np.ndarray:
    with np.load(path, allow_pickle=False) as z:
        if "centroids" not in z.files:
            raise ValueError(f"{path}: no 'centroids' array (an ASMK codebook .npz holds centroids (k, D))")
        return z["centroids"].astype(np.float32)


def kernel_config(cfg: dict[str, Any], centroids: np.ndarray, codebook_path: str | Path, side: str) -> ASMKConfig:
    """The ``asmk`` configuration on this codebook: a multiple assignment beyond its words (a small collection's
    codebook is reduced to what its descriptors support) is capped at them, with a warning naming the key for the
    ``side`` (``db`` or ``query``) this job assigns (each warning once per run)."""
    asked = ASMKConfig.from_config(cfg)
    conf = asked.for_codebook(len(centroids))
    n = getattr(asked, f"{side}_multiple_assignment")
    if n != getattr(conf, f"{side}_multiple_assignment"):
        log.warning(
            "asmk.multiple_assignment.%s %d is beyond the %d visual words of %s: each descriptor is assigned to all %d",
            side,
            n,
            len(centroids),
            codebook_path,
            len(centroids),
        )
    return conf


def build_asmk_ivf(
    local_path: str | Path,
    codebook_path: str | Path,
    out_path: str | Path,
    cfg: dict[str, Any],
    version: str,
    block: int = 256,
) -> None:
    """The database's inverted file (see ``retrieval.search.asmk.write_ivf``), aggregated ``block`` images at a time."""

    centroids = load_centroids(codebook_path)
    conf = kernel_config(cfg, centroids, codebook_path, "db")
    t0 = time.time()
    parts = []
    with open_local(local_path) as f:
        n = f["count"].shape[0]
        if n and f["descriptors"].shape[2] != centroids.shape[1]:
            raise ValueError(
                f"{local_path}: {f['descriptors'].shape[2]}-d descriptors, codebook {codebook_path} is "
                f"{centroids.shape[1]}-d"
            )
        for s in range(0, n, block):
            x, rows = _read_descriptors(f, np.arange(s, min(n, s + block)))
            parts.append(aggregate_images(centroids, x, rows, conf))
    agg = {
        k: np.concatenate([p[k] for p in parts])
        if parts
        else aggregate_images(centroids, np.zeros((0, centroids.shape[1]), np.float32), np.zeros(0, np.int64), conf)[k]
        for k in ("codes", "words", "images")
    }
    seconds = time.time() - t0
    write_ivf(out_path, agg, n, centroids, conf, version=version, build_seconds=seconds)
    log.info(
        "asmk ivf: %d images, %d (image, word) rows, %d words used of %d, %.1f s",
        n,
        len(agg["words"]),
        len(np.unique(agg["words"])),
        centroids.shape[0],
        seconds,
    )


def asmk_search(
    query_local: str | Path,
    ivf_path: str | Path,
    codebook_path: str | Path,
    lists_path: str | Path,
    out_path: str | Path,
    cfg: dict[str, Any],
    version: str,
) -> None:
    """Every query against the inverted file: the full ranking in the neighbours format (``ids``, ``sims`` = ASMK
    scores, ``-inf`` for database images without descriptors), with ``search_seconds`` (the query side:
    quantisation, aggregation, inverted-file search and ranking), ``reads_seconds``, ``build_seconds``, the
    ``codebook_size`` and the multiple assignments used, and the images without features (``query_featureless``,
    ``db_featureless``: a featureless query's row is then the database order, every score ``-inf``, as in every
    other method's ranking; see featureless.py)."""

    centroids = load_centroids(codebook_path)
    conf = kernel_config(cfg, centroids, codebook_path, "query")
    arrays, attrs = read_ivf(ivf_path, centroids, conf)
    lists = read_lists(lists_path)
    n_db = int(attrs["n_images"])
    if n_db != len(lists["db"]):
        raise ValueError(f"{ivf_path}: {n_db} database images, {lists_path} lists {len(lists['db'])}")
    index = ASMKIndex(centroids, arrays, n_db, conf)
    with open_local(query_local) as fq:
        if fq["count"].shape[0] != len(lists["query"]):
            raise ValueError(
                f"{query_local}: {fq['count'].shape[0]} rows, {lists_path} lists {len(lists['query'])} queries"
            )
        ids, sims, t = search_queries(index, fq, arrays["n_words"] > 0)
    if t["queries_without_features"]:
        log.warning(
            "%d queries have no descriptors: their ranking is the database order (no match)",
            len(t["queries_without_features"]),
        )
    log.info(
        "asmk search: %d queries x %d database images in %.3f s (%.2f ms per query)",
        len(ids),
        n_db,
        t["search_seconds"],
        1000 * t["search_seconds"] / max(1, len(ids)),
    )
    q_none = np.zeros(len(ids), bool)
    q_none[t["queries_without_features"]] = True
    db_none = arrays["n_words"] == 0
    ids, sims = rank_featureless_last(ids, sims, q_none, db_none)
    write_neighbours(
        out_path,
        ids,
        sims,
        featureless=(q_none, db_none),
        k=n_db,
        n_db=n_db,
        version=version,
        search="asmk",
        search_seconds=t["search_seconds"],
        reads_seconds=t["reads_seconds"],
        build_seconds=float(attrs["build_seconds"]),
        queries_without_features=np.asarray(t["queries_without_features"], np.int64),
        codebook_size=len(centroids),
        db_multiple_assignment=conf.db_multiple_assignment,
        query_multiple_assignment=conf.query_multiple_assignment,
    )


def evaluate_asmk(ctx: EvaluationContext, asmk_knn: str | Path, global_knn: str | Path) -> None:
    """The ASMK ranking (``asmk_knn``, of ``asmk_search``) in the results contract, next to the global ranking
    (``global_knn``: baseline, paired difference); both must be full rankings ``(n_queries, n_db)`` (ValueError
    otherwise). Its first stage is its own search (``timing.ms_per_query.first_stage``); building the inverted
    file is the work done once per database (``offline_seconds``)."""

    ids, sims, attrs = read_neighbours(asmk_knn)
    base_ids, _, _ = read_neighbours(global_knn)
    lists, gnd = read_json(ctx.lists_path), read_json(ctx.gnd_path)
    n_q, n_db = len(lists["query"]), len(lists["db"])
    for path, arr in ((asmk_knn, ids), (global_knn, base_ids)):
        if arr.shape != (n_q, n_db):
            raise ValueError(f"{path}: shape {arr.shape}, expected the full ranking {(n_q, n_db)} of {ctx.lists_path}")
    search = float(attrs["search_seconds"])
    timing = cost_timing(
        n_q,
        reads=float(attrs["reads_seconds"]),
        offline=float(attrs["build_seconds"]),
        first_stage_seconds=round(search, 6),
    )
    timing["ms_per_query"]["first_stage"] = round(1000 * search / max(1, n_q), 3)
    write_reranked_evaluation(
        ctx,
        "asmk",
        ids,
        sims,
        base_ids,
        lists,
        gnd,
        asmk_knn,
        timing=timing,
        artifacts={"baseline_knn": str(global_knn)},
    )
