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
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

log = logging.getLogger(__name__)


def fit_pq_anchors(
    x: np.ndarray,
    m: int,
    nbits: int,
    niter: int = 10,
    nredo: int = 2,
    seed: int = 0,
    min_points_per_centroid: int = 39,
    source: str = "training data",
    max_points_per_centroid: int = 1000,
) -> np.ndarray:
    """Codewords (m, 2^nbits, d/m) float32 of a faiss product quantizer trained on the rows of x (n, d). ValueError
    naming ``ssp.anchors`` and ``source`` when ``m`` does not divide d, or when n is below
    ``min_points_per_centroid`` x 2^nbits, or when ``max_points_per_centroid`` is below it.

    k-means per sub-space: ``niter`` iterations, the best of ``nredo`` runs, on at most ``max_points_per_centroid`` x
    2^nbits rows (faiss samples them; its own default is 256): SSP's ``Anchor_points_generation.py`` sets 10, 2 and
    1000, so 256,000 rows per sub-space at nbits 8."""
    import faiss  # noqa: PLC0415

    x = np.ascontiguousarray(x, np.float32)
    n, d = x.shape
    if d % m:
        raise ValueError(f"ssp.anchors.m = {m} must divide the descriptor dimension {d} of {source}")
    if max_points_per_centroid < min_points_per_centroid:
        raise ValueError(
            f"ssp.anchors.max_points_per_centroid ({max_points_per_centroid}) is below "
            f"ssp.anchors.min_points_per_centroid ({min_points_per_centroid}): k-means would sample fewer vectors per "
            f"codeword than the split is required to have"
        )
    need = min_points_per_centroid * 2**nbits
    if n < need:
        raise ValueError(
            f"ssp.anchors: {n} descriptors of {source} are too few for 2^{nbits} = {2**nbits} codewords per "
            f"sub-space (min_points_per_centroid {min_points_per_centroid} -> {need}); lower ssp.anchors.nbits "
            f"(the CPU preset uses 5) or train on a larger split"
        )
    pq = faiss.ProductQuantizer(d, m, nbits)
    pq.cp.niter, pq.cp.nredo, pq.cp.seed = niter, nredo, seed
    pq.cp.min_points_per_centroid = 1  # checked above; faiss would only warn
    pq.cp.max_points_per_centroid = max_points_per_centroid
    pq.train(x)
    return faiss.vector_to_array(pq.centroids).reshape(m, 2**nbits, d // m).copy()


def structure_similarity(x: torch.Tensor, anchors: torch.Tensor, tau: float, log_prob: bool = False) -> torch.Tensor:
    """(n, D) vectors, (M, K, dsub) anchors -> (n, M, K) softmax over codewords of cos(x_m, c_mk) / tau."""
    n = x.shape[0]
    m, _, dsub = anchors.shape
    xs = F.normalize(x.reshape(n, m, dsub), dim=-1)
    cos = torch.einsum("nmd,mkd->nmk", xs, F.normalize(anchors, dim=-1))
    return F.log_softmax(cos / tau, dim=-1) if log_prob else F.softmax(cos / tau, dim=-1)


# a sub-vector below this L2 norm has no direction, so no structure similarity (float32 descriptors of norm 1)
NO_DIRECTION = 1e-6


def has_direction(x: torch.Tensor, m: int) -> torch.Tensor:
    """(n, D) vectors -> (n, m) bool: which of their ``m`` sub-vectors have an L2 norm above ``NO_DIRECTION``. An
    unwhitened VLAD has exact zeros where no local feature fell in a visual word (96% of the images of demo-train
    have such a sub-vector at M 32 x 256-d)."""
    return x.reshape(x.shape[0], m, -1).norm(dim=-1) > NO_DIRECTION


def ssp_loss(
    query: torch.Tensor,
    gallery: torch.Tensor,
    anchors: torch.Tensor,
    tau: float,
    valid: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean over images and sub-spaces of KL(S^gallery || S^query), summed over codewords (SSP, Wu et al., 2024).

    ``valid`` (n, M) bool: the (image, sub-space) terms to average, by default every one. A zero sub-vector has no
    cosine to any anchor: its L2 normalisation divides by the 1e-12 floor, and its gradient (1e12 per unit) wrecked
    the adapter at its first step (a new user's trial on landmarks-mini: a gradient norm of 5e10, every output
    then pointing the same way). :func:`train_adapter` passes the terms where both the gallery's and the light
    input's sub-vector have a direction (:func:`has_direction`); the others carry no structure to match."""
    target = structure_similarity(gallery, anchors, tau)
    log_q = structure_similarity(query, anchors, tau, log_prob=True)
    kl = (target * (torch.log(target.clamp_min(1e-12)) - log_q)).sum(-1)
    if valid is None:
        return kl.mean()
    # the terms left out count neither in the sum nor in the mean's denominator; their gradient is exactly 0 (the
    # normalisation's Jacobian at a zero sub-vector is large but finite)
    return torch.where(valid, kl, torch.zeros_like(kl)).sum() / valid.sum().clamp_min(1)


class Adapter(torch.nn.Module):
    """SSP's light-model head (Wu et al., 2024; the FC the official code calls ``whiten``): a Linear D -> D with bias,
    initialised to the identity, then L2 normalisation."""

    def __init__(self, dim: int):
        super().__init__()
        self.fc = torch.nn.Linear(dim, dim)
        with torch.no_grad():
            self.fc.weight.copy_(torch.eye(dim))
            self.fc.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(n, D) -> (n, D) float: ``fc(x)`` L2-normalised per row."""
        return F.normalize(self.fc(x), dim=-1)


@dataclass(frozen=True)
class SSPTrainConfig:
    """The adapter's training (config ``ssp.train``; the optimiser is SSP's, Wu et al., 2024; the epoch count, early
    stopping and the held-out choice of the kept epoch are this workflow's): SGD with Nesterov ``momentum``
    and ``weight_decay``, the base ``lr`` scaled by ``batch_size`` / 256, ``warmup_epochs`` of linear warmup then cosine
    decay over ``epochs``; ``tau``: the structure-similarity temperature; ``val_fraction``: the images held out to
    choose the epoch kept; ``seed``: the held-out split and the batch order; ``patience``: early stopping
    (0: every epoch)."""

    epochs: int = 100
    batch_size: int = 64
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 1e-6
    warmup_epochs: int = 5
    tau: float = 0.1
    val_fraction: float = 0.1
    seed: int = 11
    # stop once this many epochs in a row have not improved the kept epoch's criterion (the best epoch is kept either
    # way); 0: every epoch. Longer than the warmup, so the learning rate has peaked before it can stop.
    patience: int = 10
    # what chooses the kept epoch (the identity start, epoch 0, included): "validation", the Medium mAP of a labelled
    # validation split's light queries through the adapter (train_adapter's ``score``), or "loss", the held-out loss
    # (SSP's own, unlabelled)
    select: str = "validation"


def train_adapter(
    light: np.ndarray,
    gallery: np.ndarray,
    anchors: np.ndarray,
    cfg: SSPTrainConfig,
    score: Callable[[Adapter], float] | None = None,
) -> tuple[Adapter, list[dict[str, float]], int]:
    """SGD (Nesterov) with a linear warmup and cosine decay, lr scaled by batch/256 as SSP. The kept epoch (epoch 0:
    the identity start) is the one with the highest ``score(model)`` where one is given (``cfg.select``
    "validation": a labelled validation split's Medium mAP, recorded as ``val_score``; the earliest of equal ones),
    else the lowest loss on a held-out fraction of the (unlabelled) training images. Training stops early after
    ``cfg.patience`` epochs without a better criterion (the schedule stays that of ``cfg.epochs``). Returns the
    model, per-epoch curves and the kept epoch. ValueError for fewer than 2 images, or for ``cfg.select``
    "validation" without a ``score``.

    Why a labelled criterion by default: with the synthetic demo-train the held-out SSP loss fell at every epoch while
    the adapter cost 22.6 Medium on demo-val and 17.7 on landmarks-mini (README, SSP)."""
    if cfg.select not in ("validation", "loss"):
        raise ValueError(f"ssp.train.select: {cfg.select!r} is not one of validation, loss")
    if cfg.select == "validation" and score is None:
        raise ValueError("ssp.train.select: validation needs the validation split's score (train_adapter's score)")
    g = torch.Generator().manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    n, d = light.shape
    if n < 2:
        raise ValueError(f"SSP adapter: {n} training image(s); it needs at least 2 (one is held out to keep an epoch)")
    perm = torch.randperm(n, generator=g)
    n_val = min(n - 1, max(1, int(round(cfg.val_fraction * n))))  # at least one image each side
    val, tr = perm[:n_val], perm[n_val:]
    xl, xg, a = torch.from_numpy(light).float(), torch.from_numpy(gallery).float(), torch.from_numpy(anchors).float()
    # the terms with a direction on both sides (ssp_loss): fixed by the inputs, whatever the adapter makes of them
    valid = has_direction(xl, a.shape[0]) & has_direction(xg, a.shape[0])
    model = Adapter(d)
    # the linear scaling rule (Goyal et al. 2017, as SSP) on the batch actually drawn: a batch_size above the training
    # images is one full batch, and scaling by the configured size gave lr 3.9 for batch_size 1e6
    batch = min(cfg.batch_size, len(tr))
    lr = cfg.lr * batch / 256
    if batch < cfg.batch_size:
        log.warning(
            "ssp.train.batch_size %d is above the %d training images (after the held-out %d): one batch of %d per "
            "epoch, lr %.3g (scaled by %d/256)",
            cfg.batch_size,
            len(tr),
            n_val,
            batch,
            lr,
            batch,
        )
    if 0 < cfg.patience <= cfg.warmup_epochs:
        log.warning(
            "ssp.train.patience %d is not above warmup_epochs %d: training can stop before the learning rate has "
            "peaked (the defaults: patience 10, twice the warmup)",
            cfg.patience,
            cfg.warmup_epochs,
        )
    opt = torch.optim.SGD(
        model.parameters(), lr=lr, momentum=cfg.momentum, nesterov=True, weight_decay=cfg.weight_decay
    )
    steps_per_epoch = max(1, -(-len(tr) // batch))
    total, warm = cfg.epochs * steps_per_epoch, cfg.warmup_epochs * steps_per_epoch
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / warm if s < warm else 0.5 * (1 + np.cos(np.pi * (s - warm) / max(1, total - warm)))
    )

    def criterion() -> tuple[float, float, float | None]:
        """(what is minimised to choose the epoch, the held-out loss, the score or None)."""
        model.eval()
        with torch.no_grad():
            v = float(ssp_loss(model(xl[val]), xg[val], a, cfg.tau, valid[val]))
            sc = None if score is None else float(score(model))
        model.train()
        return (v if sc is None else -sc), v, sc

    crit, v0, s0 = criterion()
    best = (crit, 0, {k: t.clone() for k, t in model.state_dict().items()})
    curves = [{"epoch": 0, "train_loss": None, "val_loss": v0, **({} if s0 is None else {"val_score": s0})}]
    log.info(
        "SSP adapter %d x %d on %d images (%d held out): %d epochs x %d steps; held-out loss at the identity %.4f%s",
        d,
        d,
        len(tr),
        n_val,
        cfg.epochs,
        steps_per_epoch,
        v0,
        "" if s0 is None else f", validation Medium mAP {s0:.2f}",
    )
    t0 = time.time()
    for epoch in range(1, cfg.epochs + 1):
        order = tr[torch.randperm(len(tr), generator=g)]
        losses = []
        for s in range(0, len(order), batch):
            idx = order[s : s + batch]
            loss = ssp_loss(model(xl[idx]), xg[idx], a, cfg.tau, valid[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            losses.append(float(loss.detach()))
        crit, v, sc = criterion()
        curves.append(
            {
                "epoch": epoch,
                "train_loss": float(np.mean(losses)),
                "val_loss": v,
                **({} if sc is None else {"val_score": sc}),
            }
        )
        if crit < best[0]:
            best = (crit, epoch, {k: t.clone() for k, t in model.state_dict().items()})
        stop = cfg.patience > 0 and epoch - best[1] >= cfg.patience
        if stop or epoch % 10 == 0 or epoch == cfg.epochs:  # progress every 10 epochs (a tenth of the default 100)
            elapsed = time.time() - t0
            log.info(
                "epoch %d/%d: train loss %.4f, held-out %.4f%s (kept: epoch %d); %.0f s, about %.0f s left",
                epoch,
                cfg.epochs,
                curves[-1]["train_loss"],
                v,
                "" if sc is None else f", validation Medium mAP {sc:.2f}",
                best[1],
                elapsed,
                elapsed / epoch * (cfg.epochs - epoch),
            )
        if stop:
            log.info(
                "early stop after epoch %d: %d epochs without a better %s",
                epoch,
                cfg.patience,
                "held-out loss" if score is None else "validation mAP",
            )
            break
    model.load_state_dict(best[2])
    return model, curves, best[1]
