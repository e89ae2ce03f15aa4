"""The SSP stages (``anchors``, ``train_query``, ``evaluate_ssp``): a light query model mapped into the
database's descriptor space (asymmetric retrieval)."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from retrieval.data.images import load_gray
from retrieval.evaluation.metrics import (
    GLDV2_K,
    evaluate_ground_truth,
    headline,
    needs_full_ranking,
)
from retrieval.evaluation.results import (
    EvaluationContext,
    cost_timing,
    retrieved_nothing,
    write_neighbours_csv,
    write_ranking,
    write_results,
)
from retrieval.featureless import featureless_rows
from retrieval.features.sift import SiftConfig, extract_sift
from retrieval.features.vlad import apply_whitening, vlad
from retrieval.methods.ssp import Adapter, SSPTrainConfig, fit_pq_anchors, train_adapter
from retrieval.runtime import Manifest, atomic_path, load_npz, read_json, write_json
from retrieval.search.exact import stream_topk
from retrieval.stores.global_store import BlockReader, check_dim, open_global, read_global
from retrieval.stores.local_store import open_local

log = logging.getLogger(__name__)


def light_global(
    local_path: str | Path, codebook_path: str | Path, whiten_path: str | Path, alpha: float, power: float
) -> np.ndarray:
    """The light model's global descriptors before the adapter: VLAD over the gallery codebook, gallery whitening."""

    centroids = load_npz(codebook_path)["centroids"]
    w = load_npz(whiten_path)
    with open_local(local_path) as f:
        desc, counts = f["descriptors"][:], f["count"][:]
    v = (
        np.stack([vlad(d[:c].astype(np.float32), centroids, alpha) for d, c in zip(desc, counts)])
        if len(counts)
        else np.zeros((0, centroids.size), np.float32)
    )
    return apply_whitening(v, w, power)


def extraction_seconds(entries: list[dict[str, Any]], sift_config: dict[str, Any], n: int) -> float:
    """Seconds per image of SIFT extraction (decode, crop, resize, detect, describe) on the first n entries."""

    cfg = SiftConfig(**sift_config)
    sample = entries[:n]
    t0 = time.perf_counter()
    for e in sample:
        extract_sift(load_gray(e["path"]), cfg, e.get("crop"))
    return (time.perf_counter() - t0) / max(1, len(sample))


def anchors_stage(
    global_path: str | Path,
    out_path: str | Path,
    manifest_path: str | Path,
    cfg: dict[str, Any],
    version: str,
    preset: str,
    fitted_on: str,
) -> None:

    m = Manifest("anchors", version, cfg, preset, fitted_on=fitted_on)
    m.add_input("gallery_global", global_path)
    x = read_global(global_path)
    without = featureless_rows(x)  # an all-zero row is no image's descriptor: it would pull a codeword to 0
    if without.any():
        log.info("SSP anchors: %d of %d images have no features and are left out", without.sum(), len(x))
        x = x[~without]
    t0 = time.time()
    c = fit_pq_anchors(
        x,
        int(cfg["m"]),
        int(cfg["nbits"]),
        int(cfg["niter"]),
        int(cfg["nredo"]),
        int(cfg["seed"]),
        int(cfg["min_points_per_centroid"]),
        source=f"{global_path} ({fitted_on})",
        max_points_per_centroid=int(cfg["max_points_per_centroid"]),
    )
    with atomic_path(out_path) as tmp, open(tmp, "wb") as fh:
        np.save(fh, c)
    m.write(
        manifest_path,
        outputs=[out_path],
        shape=list(c.shape),
        n_training_vectors=len(x),
        n_without_features=int(without.sum()),
        seconds=round(time.time() - t0, 3),
    )


def validation_score(light_query: np.ndarray, db: np.ndarray, gnd: dict[str, Any]):
    """``score(adapter) -> float``: the Medium mAP (percent) of a labelled validation split's light query
    descriptors ``light_query`` (Nq, D) float32, through the adapter, searching its gallery database ``db`` (N, D)
    float32 exactly (revisitop's protocol; ``gnd``: the lists stage's gnd.json). What ssp.train.select: validation
    chooses the kept epoch by, the identity start included. ValueError for descriptors of two dimensions, or a
    ground truth without a Medium protocol (GLDv2's)."""
    if light_query.shape[1] != db.shape[1]:
        raise ValueError(f"validation split: light queries {light_query.shape} and database {db.shape} differ")
    if gnd.get("protocol") == "gldv2":
        raise ValueError("ssp.train.select: validation needs a revisitop ground truth (E/M/H), not GLDv2's")
    q = torch.from_numpy(np.ascontiguousarray(light_query, np.float32))
    without = featureless_rows(light_query)
    d = np.ascontiguousarray(db, np.float32)

    def score(model: Adapter) -> float:
        with torch.no_grad():
            out = model(q).numpy()
        out[without] = 0.0  # a query without features stays one, as in evaluate_ssp
        ranks = np.argsort(-(out @ d.T), axis=1, kind="stable")
        return float(evaluate_ground_truth(ranks, gnd, d.shape[0])["mAP"]["M"] or 0.0)

    return score


def train_query_stage(
    light_local: str,
    codebook: str,
    whiten: str,
    gallery_global: str,
    anchors: str,
    out_model: str,
    out_curves: str,
    manifest_path: str,
    alpha: float,
    power: float,
    cfg: dict[str, Any],
    version: str,
    preset: str,
    fitted_on: str,
    validation: dict[str, str] | None = None,
) -> None:
    """Rule train_query: the adapter of SSP's light query model (:func:`retrieval.methods.ssp.train_adapter`) on
    the ``ssp_split``'s light and gallery descriptors, against the anchors. ``validation`` (``light_query``, ``db``,
    ``gnd`` paths; ssp.train.select: validation): the labelled split whose Medium mAP chooses the kept epoch."""

    m = Manifest("train_query", version, cfg, preset, fitted_on=fitted_on)
    for name, p in (("light_local", light_local), ("gallery_global", gallery_global), ("anchors", anchors)):
        m.add_input(name, p, checksum=False)
    m.add_input("codebook", codebook)
    m.add_input("whiten", whiten)
    light = light_global(light_local, codebook, whiten, alpha, power)
    gallery = read_global(gallery_global)
    a = np.load(anchors, allow_pickle=False)
    if light.shape != gallery.shape:
        raise ValueError(f"{light_local} gives {light.shape} light descriptors, {gallery_global} holds {gallery.shape}")
    if a.shape[0] * a.shape[2] != gallery.shape[1]:
        raise ValueError(f"{anchors}: anchors {a.shape} do not split the {gallery.shape[1]}-d gallery space")
    without = featureless_rows(light) | featureless_rows(gallery)  # either side without features: nothing to map
    if without.any():
        log.info("SSP adapter: %d of %d images have no features on a side and are left out", without.sum(), len(light))
        light, gallery = light[~without], gallery[~without]
    score = None
    if validation:  # ssp.train.select: validation (labelled queries of the validation split, in this gallery space)
        for name in ("light_query", "db", "gnd"):
            m.add_input(f"validation_{name}", validation[name], checksum=False)
        score = validation_score(
            light_global(validation["light_query"], codebook, whiten, alpha, power),
            read_global(validation["db"]),
            read_json(validation["gnd"]),
        )
    t0 = time.time()
    model, curves, best = train_adapter(light, gallery, a, SSPTrainConfig(**cfg), score=score)
    log.info(
        "SSP adapter: kept epoch %d (held-out loss %.4f, identity start %.4f%s) in %.1f s",
        best,
        curves[best]["val_loss"],
        curves[0]["val_loss"],
        ""
        if score is None
        else f"; validation Medium mAP {curves[best]['val_score']:.2f}, identity {curves[0]['val_score']:.2f}",
        time.time() - t0,
    )
    with atomic_path(out_model) as tmp, open(tmp, "wb") as fh:  # a handle: the same bytes for the same model
        torch.save({"state": model.state_dict(), "dim": light.shape[1], "best_epoch": best, "config": cfg}, fh)
    write_json(out_curves, {"curves": curves, "best_epoch": best})
    m.write(
        manifest_path,
        outputs=[out_model, out_curves],
        n_training_images=len(light),
        n_without_features=int(without.sum()),
        best_epoch=best,
        seconds=round(time.time() - t0, 3),
    )


def search_file(
    runs: dict[str, np.ndarray], db_path: str | Path, top: int
) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], int]:
    """Each query set of ``runs`` (name -> (Nq, D) float32) searched in one pass over a global-descriptor file read
    in blocks of at most 256 MiB (a million 8192-d descriptors are 32 GB): name -> (ids (Nq, top) int64,
    similarities (Nq, top) float32), best first, and the number of database images without features. ValueError
    naming the file for a dimension that is not the queries'."""
    with open_global(db_path) as f:
        for q in runs.values():
            check_dim(db_path, f["descriptors"].shape[1], q.shape[1])
        read = BlockReader(db_path, f["descriptors"])
        n = len(read.featureless)
        ids, sims = stream_topk(np.concatenate(list(runs.values())), read, n, top, n)
    featureless = int(read.featureless.sum())
    bounds = np.cumsum([0] + [len(v) for v in runs.values()])
    return {k: (ids[a:b], sims[a:b]) for k, a, b in zip(runs, bounds[:-1], bounds[1:])}, featureless


def evaluate_ssp_stage(
    ctx: EvaluationContext,
    light_query_local: str,
    codebook: str,
    whiten: str,
    adapter: str,
    query_global: str,
    db_global: str,
    alpha: float,
    power: float,
    light_sift: dict[str, Any],
    gallery_sift: dict[str, Any],
    cost_images: int,
) -> None:
    """Method ``ssp``: the queries' light-model descriptors (``light_query_local``, VLAD over ``codebook``,
    ``whiten``, then the ``adapter``) search the gallery model's database descriptors ``db_global``; evaluated next
    to the light model without the adapter (the baseline) and the symmetric gallery model (``query_global``,
    ``alongside``). ``cost_per_image``: SIFT extraction of the first ``cost_images`` queries with ``light_sift`` and
    ``gallery_sift``, in milliseconds, timed in this job."""
    t0 = time.time()
    lists, gnd = read_json(ctx.lists_path), read_json(ctx.gnd_path)
    q_gallery = read_global(query_global)
    light = light_global(light_query_local, codebook, whiten, alpha, power)
    ckpt = torch.load(adapter, map_location="cpu", weights_only=True)
    model = Adapter(int(ckpt["dim"]))
    model.load_state_dict(ckpt["state"])
    with torch.no_grad():
        q_ssp = model(torch.from_numpy(light)).numpy()
    q_ssp[featureless_rows(light)] = 0.0  # a query without features stays one (featureless.py), whatever the adapter
    # cost per image, measured here on the same query images, one after the other, 1 thread
    light_s = extraction_seconds(lists["query"], light_sift, cost_images)
    gallery_s = extraction_seconds(lists["query"], gallery_sift, cost_images)
    n_db = len(lists["db"])
    runs = {"ssp": q_ssp, "light_without_adapter": light, "symmetric_gallery": q_gallery}
    top = n_db if gnd is None or needs_full_ranking(gnd) else min(n_db, GLDV2_K)  # GLDv2 keeps the top 100
    ranks, db_without_features = search_file(runs, db_global, top)
    ids, sims = ranks["ssp"]
    write_ranking(ctx.out_ranking, ids, n_db)
    write_neighbours_csv(ctx.out_csv, lists, ids, sims, ctx.csv_top)
    evaluation = baseline = None
    alongside = {}
    flags = {
        "queries_without_features": [q["name"] for q, f in zip(lists["query"], featureless_rows(light)) if f],
        "db_images_without_features": db_without_features,
    }
    if gnd is not None:
        # each run's queries without features (AP 0, featureless.py) are its own: the gallery model may describe a
        # query the light model finds nothing in, and the other way round
        gallery_nothing = featureless_rows(q_gallery)
        nothing = {
            "ssp": retrieved_nothing(lists, flags),
            "light_without_adapter": retrieved_nothing(lists, flags),
            "symmetric_gallery": gallery_nothing if gallery_nothing.any() else None,
        }
        ev = {k: evaluate_ground_truth(r[0], gnd, n_db, ctx.ks, nothing[k]) for k, r in ranks.items()}
        evaluation, baseline = ev["ssp"], ("light_without_adapter", ev["light_without_adapter"])
        alongside = {
            "alongside": {k: {"metrics": headline(ev[k])} for k in ("light_without_adapter", "symmetric_gallery")}
        }
    cost = {
        "query_model_extract_ms": round(1000 * light_s, 2),
        "gallery_model_extract_ms": round(1000 * gallery_s, 2),
        "ratio": round(gallery_s / max(light_s, 1e-12), 2),
        "images_timed": min(cost_images, len(lists["query"])),
        "note": "SIFT extraction of the (cropped) query images, 1 thread, measured in this job; "
        "VLAD, whitening and the adapter are common to both or under a millisecond",
    }
    write_results(
        ctx,
        method="ssp",
        lists=lists,
        gnd=gnd,
        evaluation=evaluation,
        baseline=baseline,
        extra={**alongside, "cost_per_image": cost},
        flags=flags,
        artifacts={"ranking": str(ctx.out_ranking), "neighbours_csv": str(ctx.out_csv), "adapter": str(adapter)},
        timing=cost_timing(len(lists["query"]), reads=0.0, rerank=0.0, evaluate_seconds=round(time.time() - t0, 3)),
    )
