"""AMES stages as plain functions: training kNN, ITQ, training / distillation, the database store and the logits
(``ames_evaluate.py``: the grid, the chosen point and the evaluated ranking)."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from retrieval.data.gnd import check_validation_positives
from retrieval.evaluation.metrics import (
    PROTOCOLS,
)
from retrieval.methods.ames.infer import resolve_precision
from retrieval.methods.ames.model import AmesConfig, load_checkpoint, save_checkpoint
from retrieval.methods.ames.payload import decode, encode, model_digest, payload_layout
from retrieval.methods.ames.rerank import (
    GridSweep,
    compute_logits,
    fusion_logits,
    needed_pairs,
    protocol_shortlists,
)
from retrieval.methods.ames.train import TrainConfig, fit_itq, train_ames, valid_anchors
from retrieval.runtime import Manifest, atomic_path, load_npz, read_lists, resolve_device, write_json
from retrieval.search.exact import similarity_along, topk_neighbours
from retrieval.stores.ames import DbStore, write_db_store, write_logits
from retrieval.stores.global_store import featureless_queries, read_global, read_neighbours, write_neighbours
from retrieval.stores.local_store import open_local

log = logging.getLogger(__name__)


def training_neighbours(global_path: str | Path, out_path: str | Path, k: int, version: str) -> None:
    """Database-vs-database neighbours of the training split (self excluded) for pair sampling."""

    x = read_global(global_path)
    ids, sims = topk_neighbours(x, x, min(k, len(x) - 1), exclude_self=True)
    write_neighbours(out_path, ids, sims, k=ids.shape[1], n_db=len(x), exclude_self=True, version=version)


def _load_local(path: str | Path, max_desc: int | None = None) -> tuple[np.ndarray, np.ndarray]:

    with open_local(path) as f:
        desc = f["descriptors"][:, :max_desc] if max_desc else f["descriptors"][:]
        return desc, f["count"][:]


def make_validator(
    query_local: str | Path,
    db_local: str | Path,
    knn_path: str | Path,
    gnd_path: str | Path,
    lists_path: str | Path,
    q_desc: int,
    db_desc: int,
    num_rerank: int,
    lambdas: Sequence[float],
    gammas: Sequence[float],
    junk_mode: str = "none",
    batch: int = 128,
    device: str = "cpu",
    fusion: str = "sigmoid",
    precision: str = "auto",
    split: str = "the validation split",
):
    """``validate(model) -> float``: the best Medium mAP over the ``lambdas x gammas`` fusion grid at ``num_rerank`` on
    a validation split (its global shortlist re-ranked with the model's logits), as the evaluation selects a point
    there. Descriptors and shortlists are read once; each call computes the logits of the shortlisted pairs, in the
    dtype ``precision`` resolves to (``ames.precision``)."""
    fusion_logits([], fusion)  # an unknown fusion fails before training starts
    dtype = resolve_precision(precision, device)
    ids, sims, _ = read_neighbours(knn_path)
    gnd = read_lists(gnd_path)["gnd"]
    check_validation_positives(gnd, gnd_path, "ames.validation_split", split)
    lists = read_lists(lists_path)
    n_db = len(lists["db"])
    nothing = featureless_queries(
        knn_path, len(lists["query"]), len(lists["db"])
    )  # AP 0, as the evaluation scores them
    q_descriptors, q_counts = _load_local(query_local, q_desc)
    db_descriptors, d_counts = _load_local(db_local, db_desc)
    shortlists = protocol_shortlists(ids, gnd, junk_mode)
    sl_sims = {p: (sims if shortlists[p] is ids else similarity_along(shortlists[p], ids, sims)) for p in PROTOCOLS}
    pairs = needed_pairs(shortlists, num_rerank)

    def validate(model) -> float:
        logits = compute_logits(
            model,
            q_descriptors,
            q_counts,
            lambda rows: (db_descriptors[rows], d_counts[rows]),
            pairs,
            q_desc,
            db_desc,
            batch=batch,
            device=device,
            dtype=dtype,
        )
        sweep = GridSweep(
            shortlists, sl_sims, pairs, fusion_logits(logits, fusion), gnd, n_db, [num_rerank], None, nothing
        )
        return max(sweep.mean_ap(lam, gamma, num_rerank)["M"] or 0.0 for lam in lambdas for gamma in gammas)

    return validate


def fit_itq_stage(
    local_path: str | Path,
    out_path: str | Path,
    manifest_path: str | Path,
    cfg: dict[str, Any],
    version: str,
    preset: str,
    training_split: str,
) -> None:

    m = Manifest("itq", version, cfg, preset, fitted_on=training_split)
    m.add_input("local", local_path, checksum=False)  # by path (its version in it): a large store is not hashed again
    desc, counts = _load_local(local_path)
    rng = np.random.default_rng(cfg["seed"])
    x = np.concatenate([d[:c] for d, c in zip(desc, counts)]).astype(np.float32)
    if len(x) > cfg["max_descriptors"]:
        x = x[rng.choice(len(x), cfg["max_descriptors"], replace=False)]
    itq = fit_itq(x, bits=cfg["bits"], n_iter=cfg["n_iter"], seed=cfg["seed"])
    with atomic_path(out_path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **itq)
    m.write(manifest_path, outputs=[out_path], n_training_descriptors=len(x))


def check_training_anchors(
    lists_path: str | Path,
    training_split: str,
    labels: np.ndarray,
    ids: np.ndarray,
    sims: np.ndarray,
    tcfg: TrainConfig,
) -> None:
    """ValueError naming the split, its lists and the keys when no training image can be an anchor (``min_pos``
    same-label and ``min_neg`` other images among its ``num_candidates`` nearest): before the model is built, where
    train_ames said "training: no anchor ..." with neither (helper-140's splits of unique or all -1 labels).
    ``labels``: (N,) int, -1 unlabelled; ``ids``, ``sims``: the split's kNN (N, k)."""
    if len(valid_anchors(ids, sims, labels, tcfg.num_candidates, tcfg.min_pos, tcfg.min_neg)):
        return
    labelled = labels[labels >= 0]
    shared = int((np.unique(labelled, return_counts=True)[1] >= 2).sum()) if len(labelled) else 0
    why = (
        "no image is labelled (gnd.json 'labels': -1 for all)"
        if not len(labelled)
        else f"no two of its {len(labelled)} labelled images share a label"
        if not shared
        else f"{shared} label(s) are shared, but no image has its same-label and other images among its nearest"
    )
    raise ValueError(
        f"{lists_path}: training split '{training_split}' gives AMES no training anchor: {why} (an anchor needs "
        f"ames.train.min_pos={tcfg.min_pos} same-label and ames.train.min_neg={tcfg.min_neg} other images among its "
        f"ames.train.num_candidates={tcfg.num_candidates} nearest); give several images of each object one label, "
        "or choose another training_split"
    )


def train_stage(
    local_path: str | Path,
    lists_path: str | Path,
    knn_path: str | Path,
    out_model: str | Path,
    out_curves: str | Path,
    manifest_path: str | Path,
    model_cfg: dict[str, Any],
    train_cfg: dict[str, Any],
    version: str,
    preset: str,
    training_split: str,
    device: str,
    teacher_path: str | None = None,
    itq_path: str | None = None,
    validation: dict[str, Any] | None = None,
    precision: str = "auto",
) -> None:
    """``validation``: early stopping on a validation split (``train.patience`` > 0): the paths ``query``, ``db``
    (local stores), ``knn``, ``gnd``, ``lists`` and the arguments of ``make_validator`` (``q_desc``, ``db_desc``,
    ``num_rerank``, ``lambdas``, ``gammas``, ``junk_mode``, ``split``). ``precision`` (``ames.precision``): the
    dtype of the matrix products of training and of its validation's logits; the manifest records it (``dtype``)."""

    device = resolve_device(device)
    dtype = resolve_precision(precision, device)
    binarized = teacher_path is not None
    m = Manifest(
        "train_ames_binary" if binarized else "train_ames",
        version,
        {"model": model_cfg, "train": train_cfg},
        preset,
        fitted_on=training_split,
        device=device,
    )
    m.add_input("local", local_path, checksum=False)  # by path (its version in it): a large store is not hashed again
    m.add_input("lists", lists_path)
    m.add_input("knn", knn_path)
    if teacher_path:
        m.add_input("teacher", teacher_path)
    if itq_path:
        m.add_input("itq", itq_path)
    tcfg = TrainConfig(**train_cfg)
    desc, counts = _load_local(local_path, max(tcfg.q_desc, tcfg.db_desc))
    lists = read_lists(lists_path)
    if any("label" not in e for e in lists["db"]):
        raise ValueError(f"{lists_path}: training split '{training_split}' has no labels (gnd.json 'labels')")
    labels = np.array([e["label"] for e in lists["db"]])
    ids, sims, _ = read_neighbours(knn_path)
    check_training_anchors(lists_path, training_split, labels, ids, sims, tcfg)
    cfg = AmesConfig(local_dim=int(desc.shape[2]), binarized=binarized, **model_cfg)
    teacher = load_checkpoint(teacher_path)[0] if teacher_path else None
    itq = load_npz(itq_path) if itq_path else None
    validate = None
    if validation and tcfg.patience > 0:
        v = validation
        validate = make_validator(
            v["query"],
            v["db"],
            v["knn"],
            v["gnd"],
            v["lists"],
            v["q_desc"],
            v["db_desc"],
            v["num_rerank"],
            v["lambdas"],
            v["gammas"],
            v.get("junk_mode", "none"),
            device=device,
            fusion=v.get("fusion", "sigmoid"),
            precision=precision,
            split=v.get("split", "the validation split"),
        )
        for name in ("query", "db"):
            m.add_input(f"validation_{name}", v[name], checksum=False)
        for name in ("knn", "gnd", "lists"):
            m.add_input(f"validation_{name}", v[name])
    model, curves = train_ames(
        desc,
        counts,
        labels,
        ids,
        sims,
        cfg,
        tcfg,
        teacher=teacher,
        init_itq=itq,
        device=device,
        validate=validate,
        dtype=dtype,
    )
    save_checkpoint(
        str(out_model),
        model.cpu(),
        {"trained_on": training_split, "version": version, "teacher": teacher_path, "train": train_cfg},
    )
    write_json(out_curves, curves)
    kept = next((c for c in curves if c.get("kept")), curves[-1] if curves else None)
    m.write(
        manifest_path,
        outputs=[out_model, out_curves],
        final=curves[-1] if curves else None,
        kept=kept,
        validation_split=(validation or {}).get("split") if validate else None,
        dtype=str(dtype).removeprefix("torch."),
    )


def _model_for(model_path: str | Path, method: str):
    """The AMES model of ``method`` (``ames``: full precision, ``ames_binary``: the binary student) from its file;
    ValueError naming ``ames.checkpoint.{method}`` when the file holds the other kind (a binary model given as
    ``ames`` was re-ranked as if it were the full-precision one, and reported under its name)."""
    model, _ = load_checkpoint(str(model_path))
    if model.cfg.binarized != (method == "ames_binary"):
        kind, want = ("binary", "full-precision") if model.cfg.binarized else ("full-precision", "binary")
        raise ValueError(
            f"ames.checkpoint.{method}: {model_path} holds a {kind} AMES model, and {method} needs a {want} one"
        )
    return model


def ames_store_stage(
    model_path: str | Path,
    db_local: str | Path,
    out_path: str | Path,
    manifest_path: str | Path,
    db_desc: int,
    method: str,
    device: str,
    version: str,
    config: dict[str, Any],
    preset: str,
) -> None:
    """The database side of one dataset prepared once for one model: packed codes (binary) or float16 tokens."""

    device = resolve_device(device)
    m = Manifest("ames_store", version, config, preset)
    m.add_input("model", model_path, checksum=False)
    m.add_input("db_local", db_local, checksum=False)  # the local store it reads, by path, as the model
    model = _model_for(model_path, method)
    model.eval().to(device)
    t0 = time.time()
    with open_local(db_local) as f:
        payload, width = payload_layout(model)
        info = write_db_store(
            out_path,
            f,
            db_desc,
            lambda desc: encode(model, desc, device),
            payload=payload,
            width=width,
            method=method,
            model_digest=model_digest(model),
        )
    m.write(
        manifest_path,
        outputs=[out_path],
        store=info,
        seconds=round(time.time() - t0, 3),
        file_bytes=Path(out_path).stat().st_size,
    )


def logits_stage(
    model_path: str | Path,
    query_local: str | Path,
    db_store: str | Path,
    knn_path: str | Path,
    gnd_path: str | Path,
    out_path: str | Path,
    q_desc: int,
    db_desc: int,
    max_rerank: int,
    junk_mode: str,
    batch: int,
    device: str,
    version: str,
    precision: str = "auto",
) -> None:
    """AMES logits for every (query, database) pair some protocol's top ``max_rerank`` needs, computed once; the
    database side comes from the prepared store (only shortlisted rows are read). ``precision`` (``ames.precision``)
    sets the dtype of the per-pair matrix products; the one used is stored as the attribute ``dtype``."""

    device = resolve_device(device)
    dtype = resolve_precision(precision, device)
    model, _ = load_checkpoint(str(model_path))  # its kind was checked by ames_store, whose store it reads
    ids, _, _ = read_neighbours(knn_path)
    gnd = read_lists(gnd_path)
    pairs = needed_pairs(protocol_shortlists(ids, gnd["gnd"] if gnd else None, junk_mode), max_rerank)
    t0 = time.time()
    q_descriptors, q_counts = _load_local(query_local, q_desc)
    bad = np.flatnonzero(~np.isfinite(q_descriptors).all(axis=(1, 2)))
    if len(bad):  # named here, not as the model's NaN logits below
        raise ValueError(f"{query_local}: non-finite local descriptors in query row(s) {bad[:5].tolist()}")
    read_seconds = [time.time() - t0]
    store = DbStore(db_store, model_digest(model), payload_layout(model)[0])
    try:

        def reader(rows: np.ndarray):
            tr = time.time()
            payload, counts = store.read(rows, db_desc)
            read_seconds.append(time.time() - tr)
            return decode(model, payload, device), counts

        logits = compute_logits(
            model,
            q_descriptors,
            q_counts,
            reader,
            pairs,
            q_desc,
            db_desc,
            batch=batch,
            device=device,
            prepared=True,
            dtype=dtype,
        )
    finally:
        store.close()
    seconds = time.time() - t0
    bad = sum(int((~np.isfinite(lg)).sum()) for lg in logits)
    if bad:  # a NaN sorts to an arbitrary place in the fused score: the re-ranked order would be meaningless
        raise ValueError(
            f"{model_path}: the model gives {bad} non-finite logit(s) of {sum(len(p) for p in pairs)} pairs (NaN or "
            f"infinite weights, or a diverged training; the descriptors are checked finite by stores written since 2026-12-02); nothing was written to "
            f"{out_path}"
        )
    write_logits(
        out_path,
        pairs,
        logits,
        version=version,
        q_desc=q_desc,
        db_desc=db_desc,
        max_rerank=max_rerank,
        junk_mode=junk_mode,
        device=device,
        dtype=str(dtype).removeprefix("torch."),
        seconds=seconds,
        read_seconds=float(sum(read_seconds)),
        store_seconds=store.seconds,  # preparing the database side, once (the ames_store job)
    )
