"""The ``evaluate_ames`` stage: the fusion grid over the logits (and sv's inliers), the point chosen on the
validation split or fixed, the re-ranked ranking, its metrics, neighbour CSV and results."""

from __future__ import annotations

import csv
import logging
import time
from pathlib import Path
from typing import Any, Sequence

import h5py
import numpy as np

from retrieval.data.gnd import check_validation_positives
from retrieval.evaluation.metrics import (
    GLDV2_USAGES,
    PROTOCOLS,
    evaluate_gldv2,
    evaluate_ground_truth,
)
from retrieval.evaluation.results import (
    EvaluationContext,
    cost_timing,
    read_ranking,
    retrieved_nothing,
    without_features,
    write_results,
)
from retrieval.methods.ames.operating_point import fixed_point
from retrieval.methods.ames.rerank import (
    GridSweep,
    evaluate_protocol_rankings,
    fused_score,
    fusion_logits,
    geometric_evidence,
    grid_rankings,
    lookup_inliers,
    lookup_logits,
    protocol_shortlists,
    rerank,
)
from retrieval.runtime import atomic_path, read_json, read_lists
from retrieval.search.exact import similarity_along
from retrieval.stores.ames import read_logits
from retrieval.stores.global_store import featureless_queries, read_neighbours

log = logging.getLogger(__name__)


def read_sv_inliers(sv: dict[str, str], knn_path: str | Path) -> tuple[np.ndarray, dict[str, Any]]:
    """Spatial verification's inlier counts (Nq, k_sv) int32, aligned with the global shortlist ``knn_path``'s
    ``ids[:, :k_sv]``, from evaluate_sv's outputs ``sv["json"]`` (its results, for the timing) and ``sv["ranking"]``
    (dataset ``inliers``), and sv's timing block. ValueError, naming the file, when sv verified another shortlist or
    the file has no inliers."""
    res = read_json(sv["json"])
    verified = res.get("artifacts", {}).get("knn")
    if verified is None or Path(verified).resolve() != Path(knn_path).resolve():
        raise ValueError(f"{sv['json']}: spatial verification re-ranked {verified}, AMES re-ranks {knn_path}")
    return read_ranking(sv["ranking"], ("inliers",), "evaluate_sv")["inliers"], res.get("timing", {})


def _evidence(shortlists, ids, inliers, cap, k) -> dict[str, np.ndarray]:
    """Per protocol, the geometric evidence (Nq, k) aligned with its shortlist (0 where sv did not verify)."""
    out, done = {}, {}
    for p in PROTOCOLS:
        key = id(shortlists[p])
        if key not in done:
            done[key] = geometric_evidence(lookup_inliers(ids, inliers, shortlists[p], k)[0], cap)
        out[p] = done[key]
    return out


def _unverified(ids, inliers, shortlist, k, name) -> int:
    """How many of the top ``k`` entries of the (Medium) ``shortlist`` sv did not verify (they get evidence 0; with
    junk_mode ames, images from beyond sv's depth move up when junk moves out); logged as a warning when any."""
    missing = lookup_inliers(ids, inliers, shortlist, k)[1]
    if missing:
        log.warning(
            "%s: %d shortlisted entries (top %d, Medium) were not verified by sv and get no geometric evidence; "
            "raise sv.num_rerank to cover them",
            name,
            missing,
            k,
        )
    return missing


def _sweep(ids, sims, gnd, pairs, logits, n_db, junk_mode, grid, geometry=None, nothing=None, depth=0):
    """Every grid point's mAP (rows), the protocols' shortlists and similarities, the geometric evidence (None without
    ``geometry``: ``{"inliers", "inliers_cap", "weight"}``), as deep as the grid's largest num_rerank or ``depth``
    (a fixed point's num_rerank beyond the grid). ``nothing``: the queries without features (AP 0)."""
    shortlists = protocol_shortlists(ids, gnd, junk_mode)
    sl_sims = {p: (sims if shortlists[p] is ids else similarity_along(shortlists[p], ids, sims)) for p in PROTOCOLS}
    evidence = None
    if geometry is not None:
        deepest = max(max(grid["num_rerank"]), depth)
        evidence = _evidence(shortlists, ids, geometry["inliers"], geometry["inliers_cap"], deepest)
    rows: list[dict[str, Any]] = []
    if gnd is None:  # the shortlists and evidence only: no metrics without ground truth
        return rows, shortlists, sl_sims, evidence
    sweep = GridSweep(shortlists, sl_sims, pairs, logits, gnd, n_db, grid["num_rerank"], evidence, nothing)
    for k in grid["num_rerank"]:
        for lam in grid["lambda"]:
            for gamma in grid["gamma"]:
                for mu in geometry["weight"] if geometry is not None else [None]:
                    m = sweep.mean_ap(lam, gamma, k, mu or 0.0)
                    point = {"num_rerank": k, "lambda": lam, "gamma": gamma}
                    if mu is not None:
                        point["geometry_weight"] = mu
                    rows.append({**point, **{f"mAP_{p}": m[p] for p in PROTOCOLS}})
    return rows, shortlists, sl_sims, evidence


POINT_AXES = ("num_rerank", "lambda", "gamma", "geometry_weight")


def _best(rows: list[dict[str, Any]], key: str = "mAP_M") -> dict[str, Any]:
    """Highest ``key`` (Medium mAP; for GLDv2 mAP@100 of a part; rows without a score never win, and if none has one
    the first row is returned). Points that tie (a validation split that cannot tell them apart: on ``demo-val`` the
    geometry often fixes the ranking over dozens of points) go to the tied point nearest the tied points' centroid,
    in grid steps along the axes present (the middle of the tied region, where grid order alone took its edge: the
    smallest num_rerank, lambda, gamma and geometry weight); equal distances keep grid order."""
    scored = [r for r in rows if r[key] is not None]
    if not scored:
        return rows[0]
    top = max(r[key] for r in scored)
    tied = [r for r in scored if r[key] == top]
    if len(tied) == 1:
        return tied[0]
    axes = [a for a in POINT_AXES if a in rows[0]]
    # grid steps: each axis's values (the config's lists, so equal values are equal floats) in sorted order
    index = {a: {v: i for i, v in enumerate(sorted({r[a] for r in rows}))} for a in axes}
    cells = np.array([[index[a][r[a]] for a in axes] for r in tied], dtype=np.float64)
    distance = np.round(np.linalg.norm(cells - cells.mean(axis=0), axis=1), 9)  # mirror-image points stay equal
    return tied[int(np.argmin(distance))]  # argmin keeps the first of equals: grid order


def _point(row: dict[str, Any]) -> dict[str, Any]:
    return {k: row[k] for k in ("num_rerank", "lambda", "gamma", "geometry_weight") if k in row}


def _without_geometry(selection, rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """AMES alone next to the fused result: the point with geometric weight 0 that the same validation choice
    (``selection``: its rows and key) prefers, and that point's row of the evaluated grid (``rows``). None without a
    validation choice or without a weight 0 in the grid."""
    if selection is None:
        return None
    zero = [r for r in selection[0] if r.get("geometry_weight") == 0]
    if not zero:
        return None
    point = _point(_best(zero, selection[1]))
    row = next((r for r in rows if _point(r) == point), None)  # None: no ground truth, no evaluated grid
    return {"chosen": point, "metrics": None if row is None else {k: v for k, v in row.items() if k not in point}}


def _sweep_gldv2(ids, sims, gnd, pairs, logits, n_db, grid, geometry=None, nothing=None):
    """The grid for GLDv2: each point re-ranks the shortlist and scores mAP@100 on the Public and the Private
    queries (the official metric has no junk, so one ranking serves both); ``nothing``: the queries without
    features (no predictions)."""

    rows = []
    for k in grid["num_rerank"]:
        lk = lookup_logits(pairs, logits, ids, k)
        ev = None
        if geometry is not None:
            ev = geometric_evidence(lookup_inliers(ids, geometry["inliers"], ids, k)[0], geometry["inliers_cap"])
        for lam in grid["lambda"]:
            for gamma in grid["gamma"]:
                for mu in geometry["weight"] if geometry is not None else [None]:
                    ranks = rerank(ids, sims, lk, lam, gamma, k, mu or 0.0, ev)
                    m = evaluate_gldv2(ranks, gnd, n_db, retrieved_nothing=nothing)["mAP@100"]
                    point = {"num_rerank": k, "lambda": lam, "gamma": gamma}
                    if mu is not None:
                        point["geometry_weight"] = mu
                    rows.append({**point, **{f"mAP@100_{u}": m[u] for u in GLDV2_USAGES}})
    return rows


def _ames_timing(
    lattrs: dict[str, Any],
    n_queries: int,
    selection: float,
    grid: float,
    grid_points: int,
    point: float,
    sv_timing: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Descriptor reads and re-ranking (logits of every shortlisted pair + the final score; with geometry, also the
    spatial verification of the same shortlist, whose timing block is ``sv_timing``) per query, in seconds; the
    database store's preparation (``store_seconds`` of the logits file) as the work done once per database."""

    total, reads = float(lattrs.get("seconds", 0.0)), lattrs.get("read_seconds")
    reads = float(reads) if reads is not None else 0.0
    sv_reads = float((sv_timing or {}).get("reads_seconds", 0.0))
    sv_rerank = float((sv_timing or {}).get("rerank_seconds", 0.0))
    geometry = {"geometry_seconds": round(sv_reads + sv_rerank, 3)} if sv_timing is not None else {}
    return cost_timing(
        n_queries,
        reads=reads + sv_reads,
        rerank=total - reads + point + sv_rerank,
        offline=float(lattrs.get("store_seconds", 0.0)),  # the database store, prepared once for the model
        logits_seconds=round(total, 3),
        logit_pairs=int(lattrs.get("n_pairs", 0)),
        device=str(lattrs.get("device", "")),
        **({"dtype": str(lattrs["dtype"])} if "dtype" in lattrs else {}),  # absent in files written before it
        selection_seconds=round(selection, 3),
        grid_seconds=round(grid, 3),
        grid_points=grid_points,
        single_point_seconds=round(point, 3),
        reads_measured=lattrs.get("read_seconds") is not None,
        **geometry,
    )


def _write_neighbours_csv(fh, lists, ranking, ids, sims, top, fused, top_inliers, csv_top: int) -> None:
    """The neighbour CSV of an AMES evaluation: per query its first ``csv_top`` images of ``ranking`` (Medium) with
    ``score``, the fused score they were re-ranked by (empty beyond the re-ranked ``top`` (Nq, k), which keeps the
    global order; ``-inf`` for an image without features), ``global_score``, and with the geometry sv's ``inliers``
    (``top_inliers`` (Nq, k) aligned with ``top``, 0 where sv did not verify)."""
    w = csv.writer(fh)
    w.writerow(["query", "rank", "image", "score", "global_score"] + ([] if top_inliers is None else ["inliers"]))
    for qi, q in enumerate(lists["query"]):
        gs = dict(zip(ids[qi].tolist(), sims[qi].tolist()))
        at = {int(j): c for c, j in enumerate(top[qi])}
        for r, j in enumerate(ranking[qi, :csv_top]):
            c = at.get(int(j))
            row = [q["path"], r + 1, lists["db"][j]["path"], "" if c is None else f"{fused[qi, c]:.6f}"]
            row.append(f"{gs[int(j)]:.6f}")
            if top_inliers is not None:
                row.append("" if c is None else int(top_inliers[qi, c]))
            w.writerow(row)


def evaluate_ames_stage(
    ctx: EvaluationContext,
    logits_path: str | Path,
    knn_path: str | Path,
    out_grid: str | Path,
    method: str,
    grid: dict[str, Sequence[float]],
    select: str,
    fixed: dict[str, float],
    val_paths: dict[str, str] | None,
    validation_split: str | None,
    junk_mode: str,
    fusion: str = "sigmoid",
    geometry: dict[str, Any] | None = None,
    sv_paths: dict[str, str] | None = None,
) -> None:
    """Method ``ames`` / ``ames_binary``: sweep ``grid`` (``num_rerank`` x ``lambda`` x ``gamma``) over the logits
    of ``logits_path`` on the global shortlist ``knn_path``, choose the point (``select``: ``validation`` on
    ``val_paths``' logits, knn, lists and gnd, or GLDv2's Public queries; else ``fixed``), and evaluate it next to
    the global ranking. Writes the grid (``out_grid``, CSV, one row per point) besides the context's outputs; the
    ranking file holds ``ranks`` (Medium) and, in ``junk_mode`` ``ames``, ``ranks_E`` / ``ranks_H``.
    ``fusion``: how the logits enter the fused score (``ames_rerank.fusion_logits``), on the validation split and
    the evaluated dataset alike. ``geometry`` (config ``ames.geometry``, or None): spatial verification's inliers of
    the same shortlist (``sv_paths``, and ``val_paths["sv_json"]`` / ``["sv_ranking"]``: evaluate_sv's results and
    ranking) enter the score as ``weight x min(inliers, inliers_cap) / inliers_cap``, the weight one more axis of the
    grid. Without ground truth (a collection of photos) the shortlist is re-ranked at the point chosen on the
    validation split (or the fixed point) and written with ``metrics`` null, an empty evaluated grid and no oracle.
    ValueError when the grid asks more ``num_rerank`` than the logits cover, when geometry is asked without sv's
    outputs, or without ground truth and without a validation split to choose on."""

    t0 = time.time()
    ids, sims, _ = read_neighbours(knn_path)
    lists, gnd = read_json(ctx.lists_path), read_json(ctx.gnd_path)
    dataset = ctx.dataset
    n_db = len(lists["db"])
    pairs, logits, lattrs = read_logits(logits_path)
    logits = fusion_logits(logits, fusion)
    if max(grid["num_rerank"]) > lattrs["max_rerank"]:
        raise ValueError(
            f"{logits_path}: logits cover num_rerank <= {lattrs['max_rerank']}, grid asks {max(grid['num_rerank'])}"
        )

    geo = v_geo = sv_timing = v_unverified = None
    if geometry is not None:
        if sv_paths is None or (select == "validation" and not (val_paths or {}).get("sv_json")):
            raise ValueError(f"{dataset}: ames.geometry needs spatial verification's inliers (evaluate_sv outputs)")
        inliers, sv_timing = read_sv_inliers(sv_paths, knn_path)
        geo = {**geometry, "inliers": inliers}
    gldv2 = gnd is not None and gnd.get("protocol") == "gldv2"
    if gnd is None and select == "validation" and not val_paths:
        raise ValueError(f"{dataset}: no ground truth, and no validation split to choose the AMES point on")
    nothing = featureless_queries(
        knn_path, len(lists["query"]), len(lists["db"])
    )  # AP 0 at every grid point, as in the evaluated metrics
    gldv2_rows = _sweep_gldv2(ids, sims, gnd["gnd"], pairs, logits, n_db, grid, geo, nothing) if gldv2 else None
    selection = None  # (the rows a validation choice read, its key): AMES alone is chosen from them too
    if gldv2 and select == "validation":  # AMES's practice on GLDv2: choose on the Public queries, report Private
        selection = (gldv2_rows, "mAP@100_Public")
        chosen = _best(gldv2_rows, "mAP@100_Public")
        chosen = {
            **_point(chosen),
            "selected_on": f"{dataset} Public queries (report Private)",
            "validation_mAP@100": {"Public": chosen["mAP@100_Public"]},
        }
    elif select == "validation":
        v_ids, v_sims, _ = read_neighbours(val_paths["knn"])
        v_gnd, v_lists = read_lists(val_paths["gnd"]), read_lists(val_paths["lists"])
        check_validation_positives(v_gnd["gnd"], val_paths["gnd"], "ames.validation_split", str(validation_split))
        v_pairs, v_logits, _ = read_logits(val_paths["logits"])
        v_logits = fusion_logits(v_logits, fusion)
        if geo is not None:
            v_sv = {"json": val_paths["sv_json"], "ranking": val_paths["sv_ranking"]}
            v_geo = {**geometry, "inliers": read_sv_inliers(v_sv, val_paths["knn"])[0]}
        v_nothing = featureless_queries(val_paths["knn"], len(v_lists["query"]), len(v_lists["db"]))
        v_rows, v_shortlists = _sweep(
            v_ids, v_sims, v_gnd["gnd"], v_pairs, v_logits, len(v_lists["db"]), junk_mode, grid, v_geo, v_nothing
        )[:2]
        if v_geo is not None:
            v_unverified = _unverified(
                v_ids, v_geo["inliers"], v_shortlists["M"], max(grid["num_rerank"]), validation_split
            )
        selection = (v_rows, "mAP_M")
        chosen = _best(v_rows)
        chosen = {
            **_point(chosen),
            "selected_on": validation_split,
            "validation_mAP": {p: chosen[f"mAP_{p}"] for p in PROTOCOLS},
        }
    else:
        chosen = fixed_point(fixed, method)
        weight = chosen.pop("geometry_weight", 0.0)
        chosen["selected_on"] = "fixed (configuration)"
        if geo is not None:
            chosen["geometry_weight"] = weight
    chosen["fusion"] = fusion
    t_sel = time.time()
    evidence = None
    if gldv2:
        rows = gldv2_rows
        shortlists, sl_sims = {p: ids for p in PROTOCOLS}, {p: sims for p in PROTOCOLS}
        if geo is not None:
            evidence = _evidence(shortlists, ids, inliers, geometry["inliers_cap"], chosen["num_rerank"])
    else:  # without ground truth (a collection of photos): the shortlists only, re-ranked at the point chosen above
        g = gnd["gnd"] if gnd is not None else None
        rows, shortlists, sl_sims, evidence = _sweep(
            ids, sims, g, pairs, logits, n_db, junk_mode, grid, geo, nothing, chosen["num_rerank"]
        )
    unverified = None
    if geo is not None:
        unverified = _unverified(ids, inliers, shortlists["M"], chosen["num_rerank"], dataset)
    t_grid = time.time()
    oracle = _best(rows, "mAP@100_Private" if gldv2 else "mAP_M") if rows else None
    alone = _without_geometry(selection, rows) if geo is not None else None
    rankings = grid_rankings(
        shortlists,
        sl_sims,
        pairs,
        logits,
        chosen["lambda"],
        chosen["gamma"],
        chosen["num_rerank"],
        chosen.get("geometry_weight", 0.0),
        evidence,
    )
    guarded = {}
    for p in PROTOCOLS:  # images without features last (the fusion keeps them there already: g = -inf)
        if p == "M" or rankings[p] is not rankings["M"]:
            guarded[p], _, flags = without_features(
                knn_path, lists, rankings[p], np.zeros(rankings[p].shape, np.float32)
            )
    rankings = {p: guarded.get(p, guarded["M"]) for p in PROTOCOLS}
    m = base = None
    nothing = retrieved_nothing(lists, flags)
    if gldv2:
        m = evaluate_ground_truth(rankings["M"], gnd, n_db, ctx.ks, nothing)
    elif gnd is not None:
        m = evaluate_protocol_rankings(rankings, gnd["gnd"], n_db, ctx.ks, nothing)
    if gnd is not None:
        base = evaluate_ground_truth(ids, gnd, n_db, ctx.ks, nothing)
    t_point = time.time()

    with atomic_path(ctx.out_ranking) as tmp, h5py.File(tmp, "w") as f:
        for p in PROTOCOLS:
            if p == "M" or rankings[p] is not rankings["M"]:
                f.create_dataset("ranks" if p == "M" else f"ranks_{p}", data=rankings[p].astype(np.int32))
        f.attrs.update(
            {
                "schema_version": 1,
                "kind": "ranking",
                "n_db": n_db,
                "layout": "(n_queries, n_db)",
                "junk_mode": junk_mode,
                "note": "ranks: the Medium-protocol ranking; ranks_E/H per protocol in junk_mode ames",
            }
        )
    # without ground truth the grid has no rows: its columns only
    columns = list(rows[0]) if rows else [a for a in POINT_AXES if a != "geometry_weight" or geo is not None]
    with atomic_path(out_grid) as tmp, open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=columns)
        w.writeheader()
        w.writerows(rows)
    # the score each re-ranked image was sorted by (the Medium protocol's shortlist at the chosen point)
    k = min(chosen["num_rerank"], shortlists["M"].shape[1])
    chosen["num_rerank_applied"] = int(k)  # a shortlist shorter than num_rerank (a small database) is re-ranked whole
    top = shortlists["M"][:, :k]
    fused = fused_score(
        sl_sims["M"][:, :k],
        lookup_logits(pairs, logits, shortlists["M"], k),
        chosen["lambda"],
        chosen["gamma"],
        chosen.get("geometry_weight", 0.0),
        None if evidence is None else evidence["M"][:, :k],
    )
    top_inliers = None if geo is None else lookup_inliers(ids, inliers, shortlists["M"], k)[0]
    with atomic_path(ctx.out_csv) as tmp, open(tmp, "w", newline="") as fh:
        _write_neighbours_csv(fh, lists, rankings["M"], ids, sims, top, fused, top_inliers, ctx.csv_top)
    write_results(
        ctx,
        method=method,
        lists=lists,
        gnd=gnd,
        evaluation=m,
        baseline=("global", base) if base is not None else None,
        flags=flags,
        extra={
            "junk_mode": junk_mode,
            "chosen": chosen,
            "oracle": (
                {
                    "note": f"the grid maximum of {'Private mAP@100' if gldv2 else 'Medium mAP'} on the "
                    "evaluated queries: not a fair result",
                    **oracle,
                }
                if oracle is not None
                else None  # no ground truth: nothing to sweep on the evaluated queries
            ),
            "grid": rows,
            **(
                {
                    "geometry": {
                        **geometry,
                        "source": "sv",
                        "unverified_pairs": unverified,
                        "validation_unverified_pairs": v_unverified,
                    },
                    "without_geometry": alone,
                }
                if geometry is not None
                else {}
            ),
        },
        artifacts={
            "ranking": str(ctx.out_ranking),
            "neighbours_csv": str(ctx.out_csv),
            "grid_csv": str(out_grid),
            "logits": str(logits_path),
            "knn": str(knn_path),
            "baseline": str(ctx.baseline_json),
            **({"sv": str(sv_paths["json"])} if geometry is not None else {}),
        },
        timing=_ames_timing(
            lattrs, len(lists["query"]), t_sel - t0, t_grid - t_sel, len(rows), t_point - t_grid, sv_timing
        ),
    )
    log.info("%s %s chosen at %s", dataset, method, chosen)
