"""SSP (Wu et al., 2024): asymmetric retrieval with product-quantizer anchors.

A heavy gallery model embeds the database; a light query model is trained so that its similarity structure to
fixed anchors matches the gallery model's on the same (unlabelled) images:

- anchors: a faiss product quantizer fitted on gallery global descriptors; its codewords (M, 2^nbits, dsub);
- per sub-space m: S_m = softmax_k(cos(x_m, c_mk) / tau), sub-vectors and codewords L2-normalised, tau 0.1;
- loss: mean over images and sub-spaces of KL(S^gallery_m || S^query_m), summed over the codewords.

Here the gallery model is the workflow's global pipeline (its extraction, VLAD over the training codebook, PCA-
whitening) and the light query model is a cheaper extraction (fewer local features from a smaller image,
``ssp.query_sift``) through the same VLAD and whitening, followed by a small adapter (Linear D -> D with bias,
initialised to the identity, L2-normalised output) trained with the SSP loss. Without the adapter the light model
is the naive baseline: same pipeline, cheaper features.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .runtime import Manifest, atomic_path, read_json, write_json

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------------ anchors
def fit_pq_anchors(x: np.ndarray, m: int, nbits: int, niter: int = 10, nredo: int = 2, seed: int = 0,
                   min_points_per_centroid: int = 39, source: str = "training data") -> np.ndarray:
    """Codewords (m, 2^nbits, d/m) of a faiss product quantizer trained on the rows of x."""
    import faiss  # noqa: PLC0415

    x = np.ascontiguousarray(x, np.float32)
    n, d = x.shape
    if d % m:
        raise ValueError(f"ssp.anchors.m = {m} must divide the descriptor dimension {d} of {source}")
    need = min_points_per_centroid * 2**nbits
    if n < need:
        raise ValueError(f"ssp.anchors: {n} descriptors of {source} are too few for 2^{nbits} = {2**nbits} codewords per "
                         f"sub-space (min_points_per_centroid {min_points_per_centroid} -> {need}); lower ssp.anchors.nbits "
                         f"(the CPU preset uses 5) or train on a larger split")
    pq = faiss.ProductQuantizer(d, m, nbits)
    pq.cp.niter, pq.cp.nredo, pq.cp.seed = niter, nredo, seed
    pq.cp.min_points_per_centroid = 1  # checked above; faiss would only warn
    pq.train(x)
    return faiss.vector_to_array(pq.centroids).reshape(m, 2**nbits, d // m).copy()


def structure_similarity(x: torch.Tensor, anchors: torch.Tensor, tau: float, log_prob: bool = False) -> torch.Tensor:
    """(n, D) vectors, (M, K, dsub) anchors -> (n, M, K) softmax over codewords of cos(x_m, c_mk) / tau."""
    n = x.shape[0]
    m, _, dsub = anchors.shape
    xs = F.normalize(x.reshape(n, m, dsub), dim=-1)
    cos = torch.einsum("nmd,mkd->nmk", xs, F.normalize(anchors, dim=-1))
    return F.log_softmax(cos / tau, dim=-1) if log_prob else F.softmax(cos / tau, dim=-1)


def ssp_loss(query: torch.Tensor, gallery: torch.Tensor, anchors: torch.Tensor, tau: float) -> torch.Tensor:
    """Mean over images and sub-spaces of KL(S^gallery || S^query), summed over codewords."""
    target = structure_similarity(gallery, anchors, tau)
    log_q = structure_similarity(query, anchors, tau, log_prob=True)
    kl = (target * (torch.log(target.clamp_min(1e-12)) - log_q)).sum(-1)
    return kl.mean()


# ------------------------------------------------------------------------------------------------ adapter
class Adapter(torch.nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.fc = torch.nn.Linear(dim, dim)
        with torch.no_grad():
            self.fc.weight.copy_(torch.eye(dim))
            self.fc.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.fc(x), dim=-1)


@dataclass(frozen=True)
class SSPTrainConfig:
    epochs: int = 100
    batch_size: int = 64
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 1e-6
    warmup_epochs: int = 5
    tau: float = 0.1
    val_fraction: float = 0.1
    seed: int = 11


def train_adapter(light: np.ndarray, gallery: np.ndarray, anchors: np.ndarray, cfg: SSPTrainConfig
                  ) -> tuple[Adapter, list[dict[str, float]], int]:
    """SGD (Nesterov) with a linear warmup and cosine decay, lr scaled by batch/256 as SSP; the epoch with the lowest
    loss on a held-out fraction of the (unlabelled) training images is kept."""
    g = torch.Generator().manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    n, d = light.shape
    perm = torch.randperm(n, generator=g)
    n_val = max(1, int(round(cfg.val_fraction * n)))
    val, tr = perm[:n_val], perm[n_val:]
    xl, xg, a = torch.from_numpy(light).float(), torch.from_numpy(gallery).float(), torch.from_numpy(anchors).float()
    model = Adapter(d)
    lr = cfg.lr * cfg.batch_size / 256
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=cfg.momentum, nesterov=True, weight_decay=cfg.weight_decay)
    steps_per_epoch = max(1, -(-len(tr) // cfg.batch_size))
    total, warm = cfg.epochs * steps_per_epoch, cfg.warmup_epochs * steps_per_epoch
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: (s + 1) / warm if s < warm else
                                              0.5 * (1 + np.cos(np.pi * (s - warm) / max(1, total - warm))))
    with torch.no_grad():
        best = (float(ssp_loss(model(xl[val]), xg[val], a, cfg.tau)), 0, {k: v.clone() for k, v in model.state_dict().items()})
    curves = [{"epoch": 0, "train_loss": None, "val_loss": best[0]}]
    for epoch in range(1, cfg.epochs + 1):
        order = tr[torch.randperm(len(tr), generator=g)]
        losses = []
        for s in range(0, len(order), cfg.batch_size):
            idx = order[s:s + cfg.batch_size]
            loss = ssp_loss(model(xl[idx]), xg[idx], a, cfg.tau)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            losses.append(float(loss.detach()))
        with torch.no_grad():
            v = float(ssp_loss(model(xl[val]), xg[val], a, cfg.tau))
        curves.append({"epoch": epoch, "train_loss": float(np.mean(losses)), "val_loss": v})
        if v < best[0]:
            best = (v, epoch, {k: t.clone() for k, t in model.state_dict().items()})
    model.load_state_dict(best[2])
    return model, curves, best[1]


# ------------------------------------------------------------------------------------------------ features
def light_global(local_path: str | Path, codebook_path: str | Path, whiten_path: str | Path, alpha: float,
                 power: float) -> np.ndarray:
    """The light model's global descriptors before the adapter: VLAD over the gallery codebook, gallery whitening."""
    from .local_store import open_local  # noqa: PLC0415
    from .pipeline import load_npz  # noqa: PLC0415
    from .vlad import apply_whitening, vlad  # noqa: PLC0415

    centroids = load_npz(codebook_path)["centroids"]
    w = load_npz(whiten_path)
    with open_local(local_path) as f:
        desc, counts = f["descriptors"][:], f["count"][:]
    v = np.stack([vlad(d[:c].astype(np.float32), centroids, alpha) for d, c in zip(desc, counts)]) if len(counts) else \
        np.zeros((0, centroids.size), np.float32)
    return apply_whitening(v, w, power)


def extraction_seconds(entries: list[dict[str, Any]], sift_config: dict[str, Any], n: int) -> float:
    """Seconds per image of SIFT extraction (decode, crop, resize, detect, describe) on the first n entries."""
    from .images import load_gray  # noqa: PLC0415
    from .sift import SiftConfig, extract_sift  # noqa: PLC0415

    cfg = SiftConfig(**sift_config)
    sample = entries[:n]
    t0 = time.perf_counter()
    for e in sample:
        extract_sift(load_gray(e["path"]), cfg, e.get("crop"))
    return (time.perf_counter() - t0) / max(1, len(sample))


# ------------------------------------------------------------------------------------------------ stages
def anchors_stage(global_path: str | Path, out_path: str | Path, manifest_path: str | Path, cfg: dict[str, Any],
                  version: str, preset: str, fitted_on: str) -> None:
    from .global_store import read_global  # noqa: PLC0415

    m = Manifest("anchors", version, cfg, preset, fitted_on=fitted_on)
    m.add_input("gallery_global", global_path)
    x = read_global(global_path)
    t0 = time.time()
    c = fit_pq_anchors(x, int(cfg["m"]), int(cfg["nbits"]), int(cfg["niter"]), int(cfg["nredo"]), int(cfg["seed"]),
                       int(cfg["min_points_per_centroid"]), source=f"{global_path} ({fitted_on})")
    with atomic_path(out_path) as tmp, open(tmp, "wb") as fh:
        np.save(fh, c)
    m.write(manifest_path, outputs=[out_path], shape=list(c.shape), n_training_vectors=len(x),
            seconds=round(time.time() - t0, 3))


def train_query_stage(light_local: str, codebook: str, whiten: str, gallery_global: str, anchors: str, out_model: str,
                      out_curves: str, manifest_path: str, alpha: float, power: float, cfg: dict[str, Any], version: str,
                      preset: str, fitted_on: str) -> None:
    from .global_store import read_global  # noqa: PLC0415

    m = Manifest("train_query", version, cfg, preset, fitted_on=fitted_on)
    for name, p in (("light_local", light_local), ("gallery_global", gallery_global), ("anchors", anchors)):
        m.add_input(name, p, checksum=False)
    light = light_global(light_local, codebook, whiten, alpha, power)
    gallery = read_global(gallery_global)
    a = np.load(anchors, allow_pickle=False)
    if light.shape != gallery.shape:
        raise ValueError(f"{light_local} gives {light.shape} light descriptors, {gallery_global} holds {gallery.shape}")
    if a.shape[0] * a.shape[2] != gallery.shape[1]:
        raise ValueError(f"{anchors}: anchors {a.shape} do not split the {gallery.shape[1]}-d gallery space")
    t0 = time.time()
    model, curves, best = train_adapter(light, gallery, a, SSPTrainConfig(**cfg))
    log.info("SSP adapter: best held-out loss %.4f at epoch %d (identity start %.4f) in %.1f s",
             curves[best]["val_loss"], best, curves[0]["val_loss"], time.time() - t0)
    with atomic_path(out_model) as tmp:
        torch.save({"state": model.state_dict(), "dim": light.shape[1], "best_epoch": best, "config": cfg}, tmp)
    write_json(out_curves, {"curves": curves, "best_epoch": best})
    m.write(manifest_path, outputs=[out_model, out_curves], n_training_images=len(light), best_epoch=best,
            seconds=round(time.time() - t0, 3))


def evaluate_ssp_stage(light_query_local: str, codebook: str, whiten: str, adapter: str, query_global: str,
                       db_global: str, lists_path: str, gnd_path: str, out_json: str, out_ranking: str, out_csv: str,
                       dataset: str, alpha: float, power: float, light_sift: dict[str, Any], gallery_sift: dict[str, Any],
                       cost_images: int, n_bootstrap: int, ks, csv_top: int, versions: dict[str, str],
                       hyperparameters: dict[str, Any], preset: str) -> None:
    from .ames_rerank import bootstrap_difference  # noqa: PLC0415
    from .global_store import read_global  # noqa: PLC0415
    from .featureless import featureless_rows  # noqa: PLC0415
    from .metrics import GLDV2_K, evaluate_ground_truth, headline, needs_full_ranking  # noqa: PLC0415
    from .pipeline import add_subset_note, result_header, write_neighbours_csv, write_ranking  # noqa: PLC0415
    from .vlad import topk_neighbours  # noqa: PLC0415

    lists, gnd = read_json(lists_path), read_json(gnd_path)
    db, q_gallery = read_global(db_global), read_global(query_global)
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
    ranks = {k: topk_neighbours(v, db, top) for k, v in runs.items()}
    ids, sims = ranks["ssp"]
    write_ranking(out_ranking, ids, n_db)
    write_neighbours_csv(out_csv, lists, ids, sims, csv_top)
    result = result_header(dataset, "ssp", preset, lists)
    if gnd is None:
        result["metrics"] = None
    else:
        ev = {k: evaluate_ground_truth(r[0], gnd, n_db, ks) for k, r in ranks.items()}
        parts = list(ev["ssp"]["per_query_ap"])  # E/M/H, or GLDv2's Public/Private
        result["metrics"] = headline(ev["ssp"])
        result["alongside"] = {k: {"metrics": headline(ev[k])}
                               for k in ("light_without_adapter", "symmetric_gallery")}
        result["baseline"] = {"method": "light_without_adapter", "metrics": result["alongside"]["light_without_adapter"]["metrics"]}
        result["paired_difference"] = {p: bootstrap_difference(ev["light_without_adapter"]["per_query_ap"][p],
                                                               ev["ssp"]["per_query_ap"][p], n_bootstrap) for p in parts}
        result["per_query_ap"] = {p: {"query": [q["name"] for q in lists["query"]], "ap": ev["ssp"]["per_query_ap"][p],
                                      "baseline_ap": ev["light_without_adapter"]["per_query_ap"][p]} for p in parts}
        add_subset_note(result, gnd)
        log.info("%s ssp: %s (light without adapter %s, symmetric gallery %s)", dataset, result["metrics"],
                 result["alongside"]["light_without_adapter"]["metrics"], result["alongside"]["symmetric_gallery"]["metrics"])
    result["cost_per_image"] = {"query_model_extract_ms": round(1000 * light_s, 2),
                                "gallery_model_extract_ms": round(1000 * gallery_s, 2),
                                "ratio": round(gallery_s / max(light_s, 1e-12), 2),
                                "images_timed": min(cost_images, len(lists["query"])),
                                "note": "SIFT extraction of the (cropped) query images, 1 thread, measured in this job; "
                                        "VLAD, whitening and the adapter are common to both or under a millisecond"}
    result["hyperparameters"] = hyperparameters
    result["versions"] = versions
    result["artifacts"] = {"ranking": str(out_ranking), "neighbours_csv": str(out_csv), "adapter": str(adapter)}
    write_json(out_json, result)
