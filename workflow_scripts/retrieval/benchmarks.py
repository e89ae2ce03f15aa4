"""Benchmarks written as JSON by workflow targets; ratios are taken within one run (machines here are shared)."""

from __future__ import annotations

import logging
import time
from typing import Any, Callable

import numpy as np
import torch

from .ames import AMES, AmesConfig, reference_forward

log = logging.getLogger(__name__)


def ames_flops(n_q: int, n_t: int, cfg: AmesConfig, masked: bool) -> float:
    """Multiply-add FLOPs (x2) of one pair through the decoder and classifier, projections excluded.

    ``masked=False`` counts the useful attention entries (what the block implementation computes);
    ``masked=True`` counts the full (1+Q+T)^2 attention the masked reference computes for each of its two blocks.
    """
    c, f, length = cfg.model_dim, cfg.dim_feedforward, 1 + n_q + n_t
    linear = 2 * (length * c * 3 * c * 2) + 2 * (length * c * c * 2) + length * c * f * 2 * 2
    if masked:
        entries = 2 * length * length
    else:
        self_e = length + n_q * (1 + n_q) + n_t * (1 + n_t)
        cross_e = length + n_q * (1 + n_t) + n_t * (1 + n_q)
        entries = self_e + cross_e
    attention = entries * c * 4  # QK^T and AV, 2 FLOPs per multiply-add
    return float(cfg.num_layers * (linear + attention) + c * 2)


def _time(fn: Callable[[], Any], repeats: int) -> float:
    fn()  # warm-up
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / repeats


def gemm_peak(device: str, n: int = 2048, repeats: int = 5) -> float:
    """FLOP/s of a float32 torch matrix product, the ceiling the model's achieved FLOP/s is compared with."""
    a, b = torch.randn(2 * n, n, device=device), torch.randn(n, n, device=device)
    return 2 * 2 * n * n * n / _time(lambda: a @ b, repeats)


@torch.no_grad()
def ames_throughput(sizes: list[list[int]], local_dim: int, batch: int, repeats: int, device: str, seed: int = 0) -> dict[str, Any]:
    """Pairs/s of the pipeline path (tokens prepared once, block attention) and of the reference (projection of both
    sides per pair and masked attention), with the largest logit difference between them."""
    torch.manual_seed(seed)
    cfg = AmesConfig(local_dim=local_dim)
    model = AMES(cfg).eval().to(device)
    peak = gemm_peak(device)
    rows = []
    for n_q, n_t in sizes:
        src = torch.randn(batch, n_q, local_dim, device=device)
        tgt = torch.randn(batch, n_t, local_dim, device=device)
        sm = torch.zeros(batch, n_q, dtype=torch.bool, device=device)
        tm = torch.zeros(batch, n_t, dtype=torch.bool, device=device)
        q_tok, d_tok = model.project(src), model.project_db(tgt)
        fast_t = _time(lambda: model.score_tokens(q_tok, sm, d_tok, tm), repeats)
        ref_t = _time(lambda: reference_forward(model, src, sm, tgt, tm), repeats)
        diff = float((model.score_tokens(q_tok, sm, d_tok, tm) - reference_forward(model, src, sm, tgt, tm)).abs().max())
        useful = ames_flops(n_q, n_t, cfg, masked=False)
        fast_ps = batch / fast_t
        rows.append({
            "q_desc": n_q, "db_desc": n_t, "batch": batch,
            "fast_pairs_per_s": fast_ps, "reference_pairs_per_s": batch / ref_t, "speedup": ref_t / fast_t,
            "max_abs_logit_difference": diff,
            "useful_gflop_per_pair": useful / 1e9, "reference_gflop_per_pair": ames_flops(n_q, n_t, cfg, masked=True) / 1e9,
            "achieved_useful_gflops": useful * fast_ps / 1e9, "fraction_of_gemm_peak": useful * fast_ps / peak,
        })
        log.info("%d/%d: fast %.1f pairs/s, reference %.1f pairs/s (x%.2f), %.1f%% of GEMM peak, max diff %.2e",
                 n_q, n_t, fast_ps, batch / ref_t, ref_t / fast_t, 100 * useful * fast_ps / peak, diff)
    return {"device": device, "threads": torch.get_num_threads(), "gemm_peak_gflops": peak / 1e9,
            "local_dim": local_dim, "sizes": rows}


def grid_cost(n_queries: int, n_db: int, k: int, n_points: int, seed: int = 0) -> dict[str, Any]:
    """Cost of sweeping ``n_points`` (lambda, gamma, num_rerank) points over cached logits vs one point,
    both on top of computing the logits once (timed separately by ``ames_throughput``)."""
    from .ames_rerank import GridSweep, evaluate_protocol_rankings, grid_rankings, protocol_shortlists  # noqa: PLC0415

    rng = np.random.default_rng(seed)
    ids = np.stack([rng.permutation(n_db) for _ in range(n_queries)]).astype(np.int64)
    sims = np.sort(rng.uniform(0, 1, (n_queries, n_db)).astype(np.float32), axis=1)[:, ::-1].copy()
    gnd = [{"easy": rng.choice(n_db, 5, replace=False).tolist(), "hard": [], "junk": []} for _ in range(n_queries)]
    sl = protocol_shortlists(ids, gnd, "none")
    pairs = [np.sort(ids[i, :k]) for i in range(n_queries)]
    logits = [rng.normal(size=k).astype(np.float32) for _ in range(n_queries)]
    sm = {p: sims for p in sl}
    lams = np.linspace(0, 0.9, 10)
    gammas = np.linspace(0.1, 2.0, max(1, n_points // 10))
    # one point: the re-ranked ranking evaluated in full (what the final result of a fixed point needs); after a
    # warm-up, the fastest of three
    evaluate_protocol_rankings(grid_rankings(sl, sm, pairs, logits, 0.5, 0.5, k), gnd, n_db)
    single = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        evaluate_protocol_rankings(grid_rankings(sl, sm, pairs, logits, 0.5, 0.5, k), gnd, n_db)
        single = min(single, time.perf_counter() - t0)
    # the grid as evaluate_ames sweeps it: GridSweep set up once, then mAP per point, then the chosen point in full
    t0 = time.perf_counter()
    sweep = GridSweep(sl, sm, pairs, logits, gnd, n_db, [k])
    n = 0
    for lam in lams:
        for gamma in gammas:
            sweep.mean_ap(float(lam), float(gamma), k)
            n += 1
    evaluate_protocol_rankings(grid_rankings(sl, sm, pairs, logits, 0.5, 0.5, k), gnd, n_db)
    return {"queries": n_queries, "db": n_db, "num_rerank": k, "points": n, "single_point_seconds": single,
            "grid_seconds": time.perf_counter() - t0}


def extraction_throughput(image_paths: list[str], backbone: str, backbone_config: dict[str, Any], repeats: int = 1
                          ) -> dict[str, Any]:
    """Images per second of deep extraction (decode, resize, forward, detector, top-k, global) on real images, one
    image at a time as the extraction rule runs; the first image is a warm-up and not timed."""
    from .deep import DeepConfig, DeepExtractor  # noqa: PLC0415
    from .images import load_bgr  # noqa: PLC0415

    ex = DeepExtractor(DeepConfig.from_dict(backbone, backbone_config))
    ex.extract(load_bgr(image_paths[0]))
    sync = torch.cuda.synchronize if ex.device.startswith("cuda") else (lambda: None)
    sync()
    t0 = time.perf_counter()
    for _ in range(repeats):
        for p in image_paths:
            ex.extract(load_bgr(p))
    sync()
    seconds = time.perf_counter() - t0
    n = repeats * len(image_paths)
    return {"backbone": backbone, "model": backbone_config.get("model"), "weights": ex.source,
            "image_size": backbone_config.get("image_size"), "scales": backbone_config.get("scales"),
            "device": ex.device, "device_name": torch.cuda.get_device_name(0) if ex.device.startswith("cuda") else "cpu",
            "threads": torch.get_num_threads(), "images": n, "seconds": round(seconds, 3),
            "images_per_second": round(n / seconds, 3)}
