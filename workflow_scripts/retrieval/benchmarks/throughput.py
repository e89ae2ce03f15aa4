"""Benchmarks written as JSON by workflow targets; ratios are taken within one run (machines here are shared)."""

from __future__ import annotations

import logging
import time
from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor

from retrieval.methods.ames.infer import auto_kernel, fast_dtype, prepare_side, score_prepared
from retrieval.methods.ames.model import AMES, AmesConfig, reference_forward
from retrieval.methods.ames.rerank import GridSweep, evaluate_protocol_rankings, grid_rankings, protocol_shortlists
from retrieval.methods.sv import SVConfig, verify_shortlists, verify_shortlists_reference
from retrieval.runtime import package_versions, resolve_device, write_json
from retrieval.stores.global_store import read_neighbours
from retrieval.stores.local_store import open_local

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


def _time_interleaved(fns: dict[str, Callable[[], Any]], repeats: int) -> dict[str, float]:
    """Seconds per call of each function: after one warm-up each, ``repeats`` rounds that call every function once
    in turn; the fastest round of each. On a shared machine the load then falls on all of them alike."""
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    for fn in fns.values():
        fn()
    best = {k: float("inf") for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            sync()
            t0 = time.perf_counter()
            fn()
            sync()
            best[k] = min(best[k], time.perf_counter() - t0)
    return best


def gemm_peak(device: str, n: int = 2048, repeats: int = 5, dtype: torch.dtype = torch.float32) -> float:
    """FLOP/s of a torch matrix product (float32 by default), the ceiling the model's achieved FLOP/s is compared
    with."""
    a, b = torch.randn(2 * n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    return 2 * 2 * n * n * n / _time(lambda: a @ b, repeats)


@torch.no_grad()
def ames_throughput(
    sizes: list[list[int]], local_dim: int, batch: int, repeats: int, device: str, seed: int = 0
) -> dict[str, Any]:
    """Pairs/s of three implementations of the same logits, timed interleaved in one process:

    * ``reference``: ``reference_forward``, the official computation (projection of both sides per pair, one
      masked (1+Q+T) sequence through torch's MultiheadAttention); frozen.
    * ``block``: ``AMES.score_tokens`` on tokens prepared once (the previous pipeline path).
    * ``prepared``: ``ames_infer`` as ``compute_logits`` runs it for ``batch`` pairs of one query: the query
      prepared once for the batch and every database image prepared inside the timed call (no sharing of database
      images between queries is credited), then ``score_prepared`` in float32 and, where ``fast_dtype`` says the
      hardware runs it natively, in bfloat16 (``prepared_bf16``, with the attention kernel the workflow chooses,
      ``attention_kernel``), and in bfloat16 with the kernel it does not choose (``prepared_bf16_fused`` or
      ``prepared_bf16_matmul``), so the choice is checked on each machine.
    Logit differences are against the reference; FLOP/s use the block form's useful FLOPs (``ames_flops``).
    """

    torch.manual_seed(seed)
    if torch.cuda.is_available():  # float32 means float32: no TF32 in the reference or the peak
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    cfg = AmesConfig(local_dim=local_dim)
    model = AMES(cfg).eval()
    with torch.no_grad():  # weights further from the initialisation, so logits vary with the pair and the
        for p in model.parameters():  # comparison with the reference means something (at init they are near-constant)
            p.add_(0.05 * torch.randn_like(p))
    model.to(device)
    peak = gemm_peak(device)
    fast = fast_dtype(device)
    peak_bf16 = gemm_peak(device, dtype=torch.bfloat16) if fast == torch.bfloat16 else None
    chosen_name = auto_kernel(device, torch.bfloat16)
    other = "fused" if chosen_name == "matmul" else "matmul"
    rows = []
    for n_q, n_t in sizes:
        src = torch.randn(1, n_q, local_dim, device=device).expand(batch, -1, -1)  # one query, as re-ranking runs
        tgt = torch.randn(batch, n_t, local_dim, device=device)
        sm = torch.zeros(batch, n_q, dtype=torch.bool, device=device)
        tm = torch.zeros(batch, n_t, dtype=torch.bool, device=device)
        q_tok, d_tok = model.project(src), model.project_db(tgt)
        same = torch.zeros(batch, dtype=torch.long, device=device)

        def prepared(dtype: torch.dtype, kernel: str = "auto") -> Tensor:
            qs = prepare_side(model, q_tok[:1], sm[:1]).take(same)
            return score_prepared(model, qs, prepare_side(model, d_tok, tm), dtype, kernel)

        fns = {
            "reference": lambda: reference_forward(model, src, sm, tgt, tm),
            "block": lambda: model.score_tokens(q_tok, sm, d_tok, tm),
            "prepared": lambda: prepared(torch.float32),
        }
        if fast == torch.bfloat16:
            fns["prepared_bf16"] = lambda: prepared(torch.bfloat16)
            fns[f"prepared_bf16_{other}"] = lambda: prepared(torch.bfloat16, other)
        t = _time_interleaved(fns, repeats)
        ref = reference_forward(model, src, sm, tgt, tm)
        useful = ames_flops(n_q, n_t, cfg, masked=False)
        row: dict[str, Any] = {
            "q_desc": n_q,
            "db_desc": n_t,
            "batch": batch,
            "useful_gflop_per_pair": useful / 1e9,
            "reference_gflop_per_pair": ames_flops(n_q, n_t, cfg, masked=True) / 1e9,
        }
        for name in fns:
            row[f"{name}_pairs_per_s"] = batch / t[name]
            if name != "reference":
                out = fns[name]()
                row[f"{name}_speedup"] = t["reference"] / t[name]
                row[f"{name}_max_abs_logit_difference"] = float((out - ref).abs().max())
                row[f"{name}_max_relative_logit_difference"] = float((out - ref).abs().max() / ref.abs().max())
                row[f"{name}_fraction_of_gemm_peak"] = useful * batch / t[name] / peak
        if "prepared_bf16" in fns:
            row["prepared_bf16_fraction_of_bf16_gemm_peak"] = useful * batch / t["prepared_bf16"] / peak_bf16
        best = "prepared_bf16" if "prepared_bf16" in fns else "prepared"
        row.update(
            {
                "fast_pairs_per_s": row[f"{best}_pairs_per_s"],
                "speedup": row[f"{best}_speedup"],
                "max_abs_logit_difference": row[f"{best}_max_abs_logit_difference"],
                "achieved_useful_gflops": useful * row[f"{best}_pairs_per_s"] / 1e9,
                "fraction_of_gemm_peak": row[f"{best}_fraction_of_gemm_peak"],
            }
        )
        rows.append(row)
        log.info("%d/%d: %s", n_q, n_t, ", ".join(f"{k} {batch / v:.1f} pairs/s" for k, v in t.items()))
    return {
        "device": device,
        "device_name": torch.cuda.get_device_name(0) if device.startswith("cuda") else "cpu",
        "threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "fast_dtype": str(fast).removeprefix("torch."),
        "bf16_attention_kernel": chosen_name if fast == torch.bfloat16 else None,
        "gemm_peak_gflops": peak / 1e9,
        "bf16_gemm_peak_gflops": None if peak_bf16 is None else peak_bf16 / 1e9,
        "local_dim": local_dim,
        "sizes": rows,
    }


def sv_throughput(
    query_local: str, db_local: str, knn_path: str, sv_cfg: dict[str, Any], repeats: int = 1
) -> dict[str, Any]:
    """Spatial verification of a dataset's shortlists, per query: ``verify_shortlists`` against the previous
    implementation (``verify_shortlists_reference``, frozen), interleaved in one process, with how many inlier
    counts agree."""

    ids, _, _ = read_neighbours(knn_path)
    cfg = SVConfig(**sv_cfg)
    out: dict[str, Any] = {}
    with open_local(query_local) as fq, open_local(db_local) as fd:
        res = {}
        t = _time_interleaved(
            {
                "reference": lambda: res.__setitem__("reference", verify_shortlists_reference(fq, fd, ids, cfg)),
                "batched": lambda: res.__setitem__("batched", verify_shortlists(fq, fd, ids, cfg)),
            },
            repeats,
        )
    a, b = res["reference"][0], res["batched"][0]
    nq = ids.shape[0]
    out.update(
        {
            "queries": nq,
            "pairs": int(a.size),
            "q_desc": res["batched"][1]["q_desc"],
            "db_desc": res["batched"][1]["db_desc"],
            "threads": torch.get_num_threads(),
            "reference_seconds_per_query": t["reference"] / nq,
            "batched_seconds_per_query": t["batched"] / nq,
            "speedup": t["reference"] / t["batched"],
            "identical_inlier_fraction": float((a == b).mean()),
            "max_inlier_difference": int(np.abs(a.astype(np.int64) - b).max()) if a.size else 0,
        }
    )
    log.info(
        "sv: reference %.3f s/query, batched %.3f s/query (x%.2f), identical inliers %.4f",
        out["reference_seconds_per_query"],
        out["batched_seconds_per_query"],
        out["speedup"],
        out["identical_inlier_fraction"],
    )
    return out


def grid_cost(n_queries: int, n_db: int, k: int, n_points: int, seed: int = 0) -> dict[str, Any]:
    """Cost of sweeping ``n_points`` (lambda, gamma, num_rerank) points over cached logits vs one point,
    both on top of computing the logits once (timed separately by ``ames_throughput``)."""

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
    return {
        "queries": n_queries,
        "db": n_db,
        "num_rerank": k,
        "points": n,
        "single_point_seconds": single,
        "grid_seconds": time.perf_counter() - t0,
    }


def ames_benchmark(
    cfg: dict[str, Any],
    out_path: str,
    sv_inputs: dict[str, str] | None = None,
    sv_config: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Rule benchmark_ames: :func:`ames_throughput` at ``cfg["sizes"]`` on ``cfg["device"]`` (``benchmark.ames``),
    :func:`grid_cost`, and with ``cfg["sv_dataset"]`` :func:`sv_throughput` on ``sv_inputs`` (``sv_query``,
    ``sv_db``, ``sv_knn`` paths) with ``sv_config``; written as JSON to ``out_path`` with the configuration and
    package versions, and returned. The grid's whole cost against one point's adds the logits of
    ``grid_queries x grid_num_rerank`` pairs at the rate measured for ``grid_logits_size`` (both paths compute them
    once): ``grid_over_single_point = (logits + grid) / (logits + one point)``, in seconds. RuntimeError naming
    ``benchmark.ames.device`` for a CUDA device that is not there."""
    device = resolve_device(cfg["device"], "benchmark.ames.device")
    out = ames_throughput(cfg["sizes"], cfg["local_dim"], cfg["batch"], cfg["repeats"], device)
    grid = grid_cost(cfg["grid_queries"], cfg["grid_db"], cfg["grid_num_rerank"], cfg["grid_points"])
    pairs = cfg["grid_queries"] * cfg["grid_num_rerank"]
    size = [r for r in out["sizes"] if [r["q_desc"], r["db_desc"]] == list(cfg["grid_logits_size"])]
    if size:
        logits_s = pairs / size[0]["fast_pairs_per_s"]
        grid["logits_seconds_estimated"] = logits_s
        grid["grid_over_single_point"] = (logits_s + grid["grid_seconds"]) / (logits_s + grid["single_point_seconds"])
    result: dict[str, Any] = {"ames": out, "grid": grid}
    if cfg["sv_dataset"]:
        sv_inputs = sv_inputs or {}
        result["sv"] = {
            "dataset": cfg["sv_dataset"],
            **sv_throughput(sv_inputs["sv_query"], sv_inputs["sv_db"], sv_inputs["sv_knn"], sv_config),
        }
    result = {**result, "config": cfg, "packages": package_versions()}
    write_json(out_path, result)
    return result
