"""The supervised Lw whitening stages (method ``lw``): ``lw_fit`` learns it from the training split's same-label
pairs of global descriptors (Radenovic et al., "Fine-tuning CNN image retrieval with no human annotation"),
``evaluate_lw`` searches the whitened descriptors and evaluates them next to the global shortlist."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from retrieval.evaluation.results import EvaluationContext, cost_timing, write_reranked_evaluation
from retrieval.featureless import featureless_rows
from retrieval.features.vlad import apply_whitening
from retrieval.methods.lw import fit_lw_whitening, pair_span, positive_pairs
from retrieval.runtime import Manifest, atomic_path, load_npz, read_json, read_lists
from retrieval.search.exact import stream_topk
from retrieval.stores.global_store import BlockReader, check_dim, open_global, read_global, read_neighbours

log = logging.getLogger(__name__)


def fit_lw_stage(
    global_path: str | Path,
    lists_path: str | Path,
    out_path: str | Path,
    manifest_path: str | Path,
    cfg: dict[str, Any],
    version: str,
    preset: str,
    training_split: str,
    global_version: str,
) -> None:

    m = Manifest("lw_whiten", version, cfg, preset, fitted_on=training_split)
    m.add_input("global", global_path, version=global_version)
    m.add_input("lists", lists_path)
    x = read_global(global_path)
    labels = np.array([-1 if e.get("label") is None else e["label"] for e in read_lists(lists_path)["db"]])
    if len(labels) != len(x):
        raise ValueError(f"{lists_path}: {len(labels)} database images but {global_path} has {len(x)} rows")
    without = featureless_rows(x)  # no features, no evidence: a zero vector would enter pairs, mean and rotation
    if without.any():
        log.info("Lw whitening: %d of %d images have no features and are left out", without.sum(), len(x))
        x, labels = x[~without], labels[~without]
    if (labels >= 0).sum() == 0:
        raise ValueError(
            f"{lists_path}: training split '{training_split}' has no labelled database images "
            "(Lw whitening learns from same-label pairs)"
        )
    pairs = positive_pairs(labels, int(cfg["max_pairs"]), int(cfg["seed"]))
    if len(pairs) < 2:  # fit_lw_whitening's own error named neither the split nor its file (helper-140)
        raise ValueError(
            f"{lists_path}: training split '{training_split}' gives Lw whitening {len(pairs)} same-label pair(s) of "
            f"its {(labels >= 0).sum()} labelled images with features; it needs at least 2: give several images of "
            "each object one label (gnd.json 'labels'), or choose another training_split"
        )
    log.info(
        "Lw whitening: %d matching pairs of %d labelled images, dimension %d",
        len(pairs),
        (labels >= 0).sum(),
        x.shape[1],
    )
    span = pair_span(pairs)  # the directions the kept pairs can fix (helper-151, 154: not the pair count)
    if span < x.shape[1]:  # accepted silently before (the ridge makes S invertible)
        used = np.unique(pairs)
        sizes = np.unique(labels[labels >= 0], return_counts=True)[1]
        capped = int((sizes * (sizes - 1) // 2).sum()) > len(pairs)  # lw.max_pairs drew a subset
        log.warning(
            "Lw whitening: %s: training split '%s' gives %d same-label pairs (of %d images in %d labels) for "
            "dimension %d: their differences span at most %d of the %d directions (the images they use minus the "
            "groups they link), and lw.ridge (%g x the mean eigenvalue) alone sets the other %d, so Lw is little more "
            "than PCA whitening there. %s",
            lists_path,
            training_split,
            len(pairs),
            len(used),
            len(np.unique(labels[used])),
            x.shape[1],
            span,
            x.shape[1],
            float(cfg["ridge"]),
            x.shape[1] - span,
            f"lw.max_pairs ({cfg['max_pairs']}) kept only these: raise it, or add images per label"
            if capped
            else "More images per label, or more labels, in the training split fit them from data",
        )
    w = fit_lw_whitening(x, pairs, float(cfg["ridge"]))
    with atomic_path(out_path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **w)
    m.write(
        manifest_path,
        outputs=[out_path],
        n_pairs=len(pairs),
        n_training_vectors=len(x),
        n_without_features=int(without.sum()),
    )


def streamed_lw(
    q: np.ndarray, db_path: str | Path, w: dict[str, np.ndarray], depth: int | None = None
) -> tuple[np.ndarray, np.ndarray, float, float]:
    """The queries ``q`` (Nq, D) and a global-descriptor file's database Lw-whitened (``w``: ``lw_fit``'s arrays,
    applied with power 0) and searched exhaustively, the database read, whitened and searched in blocks of at most
    256 MiB. Returns ids (Nq, depth) int64 and similarities (Nq, depth) float32 (best first; ``depth`` None: the full
    ranking, N), the seconds
    spent reading the file and those spent whitening the database (work done once per database). ValueError
    naming the file for a dimension that is not the queries'."""
    whitening = 0.0
    with open_global(db_path) as f:
        check_dim(db_path, f["descriptors"].shape[1], q.shape[1])
        reader = BlockReader(db_path, f["descriptors"])

        def read(s: int, e: int) -> np.ndarray:
            nonlocal whitening
            x = reader(s, e)
            tw = time.perf_counter()
            x = apply_whitening(x, w, power=0.0)
            whitening += time.perf_counter() - tw
            return x

        n = len(reader.featureless)
        depth = n if depth is None else min(depth, n)
        ids, sims = stream_topk(apply_whitening(q, w, power=0.0), read, n, depth, n)
    return ids, sims, reader.seconds, whitening


def evaluate_lw_stage(ctx: EvaluationContext, query_global: str, db_global: str, lw_path: str, knn_path: str) -> None:
    """Supervised Lw whitening (``lw_path``: the ``.npz`` of ``lw_fit``) of the global descriptors ``(n, D)``
    float32, searched exhaustively and evaluated next to the global shortlist in ``knn_path`` (method ``lw``); the
    ranking is as long as that shortlist (``knn.k``; the full ranking under ``knn.k: 0``).
    The database is whitened and searched in blocks of at most 256 MiB, never held whole (a million 8192-d
    descriptors are 32 GB); whitening it is the work done once per database (``timing.offline_seconds``)."""

    t0 = time.time()
    q = read_global(query_global)
    w = load_npz(lw_path)
    base_ids, _, _ = read_neighbours(knn_path)
    lists, gnd = read_json(ctx.lists_path), read_json(ctx.gnd_path)
    t1 = time.time()
    ids, sims, db_reads, whitening = streamed_lw(q, db_global, w, depth=base_ids.shape[1])  # as long as knn.k's
    rerank = time.time() - t1 - db_reads - whitening
    write_reranked_evaluation(
        ctx,
        "lw",
        ids,
        sims,
        base_ids,
        lists,
        gnd,
        knn_path,
        timing=cost_timing(len(q), reads=t1 - t0 + db_reads, rerank=rerank, offline=whitening),
    )
