"""Training of the AMES re-ranker (full precision) and distillation of its binary student.

Pairs come from the global kNN of a labelled training split: for each anchor, among its top ``num_candidates``
neighbours with positive similarity, one positive (same label) and one negative (different label), each drawn
with probability proportional to sim^3; anchors need at least ``min_pos`` positives and ``min_neg`` negatives
there. Batches are (anchor, positive, negative) triplets; every batch draws the query and database descriptor
counts at random in [min_desc, q_desc) and [min_desc, db_desc) (the "universal" model). Loss: BCE on the logit,
plus ``beta`` x MSE between the student's final hidden states and the teacher's when distilling (teacher on the
full-length sequences, student on the truncated ones). AdamW with a cosine schedule stepped per iteration.

``init: mimetic`` initialises every attention block as Trockman & Kolter (ICML 2023, "Mimetic initialization of
self-attention layers") do: per head W_q^T W_k ~ alpha Z + beta I and W_o W_v ~ alpha Z - beta I (Z Gaussian with
variance 1/C). Only the starting point changes (the architecture and checkpoints are the same); with a small
training set it is what lets the cross-attention find matching descriptors (README, "AMES re-ranking").
"""

from __future__ import annotations

import copy
import logging
import math
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from retrieval.methods.ames.model import AMES, AmesConfig
from retrieval.runtime import fault_point

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    """AMES training (config ``ames.train``; defaults as the official training of Suma et al., ECCV 2024, except the
    additions that default to off): AdamW at ``lr`` and ``weight_decay`` with a cosine schedule over ``epochs`` (after
    ``warmup_epochs`` of linear warmup; ``grad_clip`` on the gradient's global L2 norm, 0: off); batches of
    ``batch_size`` images (``batch_size // 3`` triplets) from the top ``num_candidates`` neighbours of anchors with at
    least ``min_pos`` positives and ``min_neg`` negatives there; descriptor counts drawn in [``min_desc``, ``q_desc``)
    and [``min_desc``, ``db_desc``); ``beta``: the distillation weight; ``init``: ``default`` or ``mimetic`` (Trockman &
    Kolter, ICML 2023, with the (alpha, beta) pairs ``mimetic_qk`` / ``mimetic_vo``); early stopping on a validation
    split by ``patience`` / ``min_delta``, re-ranking its top ``validation_rerank``.

    ValueError naming the ``ames.train`` key for a negative ``patience``, a negative or non-finite ``grad_clip``, a
    ``min_desc`` below 1, a ``q_desc`` or ``db_desc`` not above ``min_desc``, a ``validation_rerank`` below 1, an
    ``init`` other than default / mimetic, or a mimetic pair that is not two finite numbers."""

    epochs: int = 15
    batch_size: int = 300  # images: batch_size // 3 triplets
    lr: float = 2e-4
    weight_decay: float = 5e-4
    q_desc: int = 400
    db_desc: int = 400
    min_desc: int = 10
    num_candidates: int = 300
    min_pos: int = 5
    min_neg: int = 5
    beta: float = 10.0  # distillation weight (used only with a teacher)
    warmup_epochs: float = 0.0  # linear learning-rate warmup before the cosine decay (0 as in the paper)
    grad_clip: float = 0.0  # clip the gradient's global L2 norm to this before each step (0: off, as in the paper)
    seed: int = 0
    init: str = "default"  # default (torch's, as the official code) | mimetic
    mimetic_qk: tuple[float, float] = (0.7, 0.7)  # (alpha, beta) of W_q^T W_k ~ alpha Z + beta I
    mimetic_vo: tuple[float, float] = (0.4, 0.4)  # (alpha, beta) of W_o W_v ~ alpha Z - beta I
    # Early stopping on a validation split (used only when the caller passes a validation function): after every
    # epoch the model is scored there; training stops once ``patience`` epochs in a row have not beaten the best
    # score by more than ``min_delta``, and the best epoch's weights are returned. 0: no validation, all epochs.
    patience: int = 0
    min_delta: float = 0.0
    validation_rerank: int = 25  # the shortlist length re-ranked on the validation split (read by the caller)

    def __post_init__(self) -> None:
        if self.patience < 0:
            raise ValueError(f"ames.train.patience: expected >= 0, got {self.patience}")
        if not math.isfinite(self.grad_clip) or self.grad_clip < 0:
            raise ValueError(f"ames.train.grad_clip: expected >= 0 (0: off), got {self.grad_clip}")
        if self.min_desc < 1:
            raise ValueError(f"ames.train.min_desc: expected >= 1, got {self.min_desc}")
        for key in ("q_desc", "db_desc"):
            if getattr(self, key) <= self.min_desc:
                raise ValueError(
                    f"ames.train.{key}: expected more than ames.train.min_desc ({self.min_desc}; each step draws a "
                    f"descriptor count in [min_desc, {key})), got {getattr(self, key)}"
                )
        if self.validation_rerank < 1:
            raise ValueError(f"ames.train.validation_rerank: expected >= 1, got {self.validation_rerank}")
        if self.init not in ("default", "mimetic"):
            raise ValueError(f"ames.train.init: '{self.init}' is not one of default, mimetic")
        for key in ("mimetic_qk", "mimetic_vo"):
            given = getattr(self, key)
            try:  # a sequence of two numbers; not text or a mapping, whose characters or keys would be iterated
                value = None if isinstance(given, (str, bytes, dict)) else tuple(float(v) for v in given)
            except (TypeError, ValueError):  # not a sequence, or an entry that is not a number
                value = None
            if value is None or len(value) != 2 or not all(map(math.isfinite, value)):
                raise ValueError(f"ames.train.{key}: expected [alpha, beta], two numbers, got {given!r}")
            object.__setattr__(self, key, value)

    def to_dict(self) -> dict[str, Any]:
        """The configuration as a plain dict of its fields (:func:`dataclasses.asdict`)."""
        return asdict(self)


def valid_anchors(
    ids: np.ndarray, sims: np.ndarray, labels: np.ndarray, num_candidates: int, min_pos: int, min_neg: int
) -> np.ndarray:
    """Anchors with enough same-label and different-label neighbours of positive similarity (labels < 0: none)."""
    ids, sims = ids[:, :num_candidates], sims[:, :num_candidates]
    ok = sims > 0
    same = (labels[ids] == labels[:, None]) & ok
    diff = (labels[ids] != labels[:, None]) & ok
    return np.flatnonzero((labels >= 0) & (same.sum(1) >= min_pos) & (diff.sum(1) >= min_neg))


def sample_triplets(
    anchors: np.ndarray,
    ids: np.ndarray,
    sims: np.ndarray,
    labels: np.ndarray,
    num_candidates: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """One epoch of AMES's training triplets (the official ``TripletSampler``, Suma et al., ECCV 2024): every valid
    anchor of ``anchors`` (n,) int (:func:`valid_anchors`) once, in ``rng``'s random order, with one positive (same
    label) and one negative (another label) among its first ``num_candidates`` global neighbours ``ids``
    (N, >= num_candidates) int with similarity ``sims`` (N, >= num_candidates) float above 0, each drawn with probability proportional to sim^3 (hard
    mining). ``labels`` (N,) int. Returns (n, 3) int64 rows (anchor, positive, negative) of database ids."""
    out = np.zeros((len(anchors), 3), np.int64)
    for row, a in enumerate(rng.permutation(anchors)):
        cand, s = ids[a, :num_candidates], sims[a, :num_candidates].astype(np.float64)
        keep = s > 0
        cand, s = cand[keep], s[keep]
        same = labels[cand] == labels[a]
        pos_w, neg_w = np.where(same, s**3, 0.0), np.where(~same, s**3, 0.0)
        out[row] = (a, rng.choice(cand, p=pos_w / pos_w.sum()), rng.choice(cand, p=neg_w / neg_w.sum()))
    return out


def fit_itq(x: np.ndarray, bits: int = 128, n_iter: int = 50, seed: int = 0) -> dict[str, np.ndarray]:
    """ITQ (Gong & Lazebnik 2011) on L2-normalised descriptors: PCA to ``bits`` dims, then the orthogonal rotation
    minimising the quantisation error. Returns ``mean`` (D,) and ``W`` (D, bits) with sign((x - mean) @ W) the code.
    The data are centred for the PCA; the binarisation layer subtracts ``mean`` before ``W``. ValueError when the
    descriptor dimension D is below ``bits`` or there are at most ``bits`` descriptors."""
    x = np.asarray(x, np.float64)
    x = x / (np.linalg.norm(x, axis=1, keepdims=True) + 1e-12)
    if x.shape[1] < bits:
        raise ValueError(f"ITQ: descriptor dimension {x.shape[1]} is smaller than {bits} bits")
    if len(x) <= bits:
        raise ValueError(f"ITQ: {len(x)} training descriptors are too few for {bits} bits")
    mean = x.mean(0)
    xc = x - mean
    _, _, vt = np.linalg.svd(xc, full_matrices=False)
    pca = vt[:bits].T  # (D, bits)
    v = xc @ pca
    rng = np.random.default_rng(seed)
    r, _ = np.linalg.qr(rng.normal(size=(bits, bits)))
    for _ in range(n_iter):
        b = np.where(v @ r >= 0, 1.0, -1.0)
        u, _, wt = np.linalg.svd(b.T @ v)
        r = (u @ wt).T
    return {"mean": mean.astype(np.float32), "W": (pca @ r).astype(np.float32)}


def mimetic_init_(model: AMES, qk: tuple[float, float] = (0.7, 0.7), vo: tuple[float, float] = (0.4, 0.4)) -> None:
    """Mimetic initialisation of every attention block (self and cross) of ``model``, in place.

    For head h with query/key rows Wq_h, Wk_h (dh x C): Wq_h^T Wk_h is the best rank-dh approximation of
    M_h = alpha Z_h + beta I (by SVD, split as U sqrt(S) and sqrt(S) V^T), so a token attends to similar tokens
    from the start. Value and output projections: W_o W_v = alpha Z - beta I (full rank). Z ~ N(0, 1/C).
    Uses torch's global generator (seeded by the caller)."""
    with torch.no_grad():
        for layer in model.decoder.layers:
            for attn in (layer.self_attn, layer.cross_attn):
                c, h = attn.embed_dim, attn.num_heads
                dh = c // h
                w = attn.in_proj_weight
                for i in range(h):
                    m = qk[0] * torch.randn(c, c) / math.sqrt(c) + qk[1] * torch.eye(c)
                    u, s, vt = torch.linalg.svd(m)
                    r = s[:dh].sqrt()
                    w[i * dh : (i + 1) * dh] = (u[:, :dh] * r).T.to(w)
                    w[c + i * dh : c + (i + 1) * dh] = (r[:, None] * vt[:dh]).to(w)
                m = vo[0] * torch.randn(c, c) / math.sqrt(c) - vo[1] * torch.eye(c)
                u, s, vt = torch.linalg.svd(m)
                r = s.sqrt()
                w[2 * c :] = (r[:, None] * vt).to(w)
                attn.out_proj.weight.copy_(u * r)


def _gather(desc: np.ndarray, counts: np.ndarray, rows: np.ndarray, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """First ``length`` descriptors of the given images (fewer where the store holds fewer per image: ``desc`` is
    (N, K, D), so (len(rows), min(length, K), D) float32), padded, with masks (len(rows), min(length, K)) bool, True
    = padding."""
    x = torch.from_numpy(desc[rows, :length].astype(np.float32))
    mask = torch.arange(x.shape[1])[None, :] >= torch.from_numpy(counts[rows].astype(np.int64))[:, None]
    return x, mask


def train_ames(
    desc: np.ndarray,
    counts: np.ndarray,
    labels: np.ndarray,
    ids: np.ndarray,
    sims: np.ndarray,
    model_cfg: AmesConfig,
    cfg: TrainConfig,
    teacher: AMES | None = None,
    init_itq: dict[str, np.ndarray] | None = None,
    device: str = "cpu",
    validate: Callable[[AMES], float] | None = None,
    dtype: torch.dtype = torch.float32,
) -> tuple[AMES, list[dict[str, float]]]:
    """Train (or, with ``teacher``, distil) an AMES model; returns the model and per-epoch curves.

    ``validate(model) -> score`` (higher is better; e.g. Medium mAP on a validation split), when given and
    ``cfg.patience`` > 0, is called after every epoch (the model is put back in training mode after it); the weights
    of the best epoch are returned and training stops after ``patience`` epochs without an improvement of more than
    ``cfg.min_delta``. The learning-rate schedule stays the one of ``cfg.epochs``.

    ``dtype`` bfloat16: mixed precision (``torch.autocast``): the matrix products of the forward and backward passes
    in bfloat16, the weights, optimiser state, loss and (on the CPU) the trained model's attention kernels in float32
    (a distillation teacher, run without gradients, keeps them in bfloat16); no loss
    scaling is needed with bfloat16's float32 exponent range.

    ValueError for a binary model without ``init_itq``, or when no anchor has ``cfg.min_pos`` positives and
    ``cfg.min_neg`` negatives among its ``cfg.num_candidates`` neighbours."""
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    model = AMES(model_cfg)
    if cfg.init == "mimetic":
        mimetic_init_(model, cfg.mimetic_qk, cfg.mimetic_vo)
    if model_cfg.binarized:
        if init_itq is None:
            raise ValueError("the binary model needs an ITQ initialisation")
        with torch.no_grad():
            model.remap_local[0].W.copy_(torch.from_numpy(init_itq["W"]))
            model.remap_local[0].mean.copy_(torch.from_numpy(init_itq["mean"]))
    model.to(device).train()
    if teacher is not None:
        teacher.to(device).eval()
    anchors = valid_anchors(ids, sims, labels, cfg.num_candidates, cfg.min_pos, cfg.min_neg)
    if len(anchors) == 0:
        raise ValueError(
            "training: no anchor has enough positives and negatives among its neighbours "
            f"(num_candidates={cfg.num_candidates}, min_pos={cfg.min_pos}, min_neg={cfg.min_neg})"
        )
    per_batch = max(1, cfg.batch_size // 3)
    if cfg.batch_size % 3:  # accepted silently, a researcher's batch of 5 trained 1 triplet a step (helper-140)
        log.warning(
            "ames.train.batch_size %d is not a multiple of 3 (a triplet's images): %d triplet(s) per step, the "
            "batch's other %d image(s) unused",
            cfg.batch_size,
            per_batch,
            cfg.batch_size - 3 * per_batch,
        )
    if cfg.warmup_epochs >= cfg.epochs > 0:  # the learning rate never peaked, with no word (helper-140)
        log.warning(
            "ames.train.warmup_epochs %g is not below epochs %d: the learning rate rises for the whole training "
            "and reaches %.2g of ames.train.lr at most",
            cfg.warmup_epochs,
            cfg.epochs,
            cfg.epochs / cfg.warmup_epochs,
        )
    steps_per_epoch = math.ceil(len(anchors) / per_batch)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    total = cfg.epochs * steps_per_epoch
    warm = int(round(cfg.warmup_epochs * steps_per_epoch))

    def lr_factor(step: int) -> float:  # linear warmup, then cosine annealing to 0, stepped per iteration
        if step < warm:
            return (step + 1) / warm
        return 0.5 * (1.0 + math.cos(math.pi * (step - warm) / max(1, total - warm)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor)
    log.info(
        "training on %d valid anchors of %d images: %d epochs x %d steps, %d triplets per step, teacher: %s",
        len(anchors),
        len(labels),
        cfg.epochs,
        steps_per_epoch,
        per_batch,
        teacher is not None,
    )
    autocast = torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=dtype == torch.bfloat16)
    curves = []
    use_val = validate is not None and cfg.patience > 0
    best_score, best_epoch, best_state, since_best = -math.inf, 0, None, 0
    for epoch in range(cfg.epochs):
        t0 = time.time()
        triplets = sample_triplets(anchors, ids, sims, labels, cfg.num_candidates, rng)
        tot_loss = tot_acc = tot_mse = n_pairs = 0.0
        grad_norms = []
        for s in range(0, len(triplets), per_batch):
            t = triplets[s : s + per_batch]
            b = len(t)
            ql = int(rng.integers(cfg.min_desc, cfg.q_desc))
            gl = int(rng.integers(cfg.min_desc, cfg.db_desc))
            rows_q = np.concatenate([t[:, 0], t[:, 0]])
            rows_d = np.concatenate([t[:, 1], t[:, 2]])
            target = torch.cat([torch.ones(b), torch.zeros(b)]).to(device)
            q, qm = _gather(desc, counts, rows_q, ql)
            d, dm = _gather(desc, counts, rows_d, gl)
            ql, gl = q.shape[1], d.shape[1]  # capped by what extraction kept, as at re-ranking
            q, qm, d, dm = q.to(device), qm.to(device), d.to(device), dm.to(device)
            with autocast:
                logits, hidden = model(q, d, qm, dm, return_hidden=True)
            logits, hidden = logits.float(), hidden.float()
            loss = F.binary_cross_entropy_with_logits(logits, target)
            mse = torch.zeros((), device=device)
            if teacher is not None:
                with torch.no_grad(), autocast:
                    fq, fqm = _gather(desc, counts, rows_q, cfg.q_desc)
                    fd, fdm = _gather(desc, counts, rows_d, cfg.db_desc)
                    _, th = teacher(fq.to(device), fd.to(device), fqm.to(device), fdm.to(device), return_hidden=True)
                th = th.float()
                n_q_full = fq.shape[1]
                sel = torch.cat([th[:, : 1 + ql], th[:, 1 + n_q_full : 1 + n_q_full + gl]], 1)
                mse = F.mse_loss(hidden, sel)
                loss = loss + cfg.beta * mse
            opt.zero_grad(set_to_none=True)
            loss.backward()
            norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip if cfg.grad_clip > 0 else math.inf)
            grad_norms.append(float(norm))
            opt.step()
            sched.step()
            tot_loss += float(loss.detach()) * 2 * b
            tot_mse += float(mse.detach()) * 2 * b
            tot_acc += float(((logits > 0).float() == target).float().sum())
            n_pairs += 2 * b
        curves.append(
            {
                "epoch": epoch + 1,
                "loss": tot_loss / n_pairs,
                "pair_accuracy": tot_acc / n_pairs,
                "distill_mse": tot_mse / n_pairs,
                "lr": sched.get_last_lr()[0],
                "grad_norm_median": float(np.median(grad_norms)),
                "grad_norm_max": float(np.max(grad_norms)),
                "seconds": time.time() - t0,
            }
        )
        log.info(
            "epoch %d: loss %.4f, pair accuracy %.3f, mse %.4f, gradient norm median %.3g max %.3g, %.1f s",
            epoch + 1,
            curves[-1]["loss"],
            curves[-1]["pair_accuracy"],
            curves[-1]["distill_mse"],
            curves[-1]["grad_norm_median"],
            curves[-1]["grad_norm_max"],
            curves[-1]["seconds"],
        )
        fault_point("train")
        if use_val:
            tv = time.time()
            model.eval()  # as at re-ranking (database tokens rounded through float16)
            with torch.no_grad():
                score = float(validate(model))
            model.train()
            curves[-1].update({"validation": score, "validation_seconds": time.time() - tv})
            if score > best_score + cfg.min_delta:
                best_score, best_epoch, since_best = score, epoch + 1, 0
                best_state = copy.deepcopy(model.state_dict())
            else:
                since_best += 1
            log.info(
                "epoch %d: validation %.4f (best %.4f at epoch %d), %.1f s",
                epoch + 1,
                score,
                best_score,
                best_epoch,
                curves[-1]["validation_seconds"],
            )
            if since_best >= cfg.patience:
                log.info("early stop after epoch %d: %d epochs without improvement", epoch + 1, since_best)
                break
    if best_state is not None:
        model.load_state_dict(best_state)
        for c in curves:
            c["kept"] = c["epoch"] == best_epoch
    return model.eval(), curves
