"""Supervised (Lw) whitening as a method: learned on the labelled training split's global descriptors, applied to
the query and database global descriptors of any dataset, then a new exact search (results/{dataset}_whiten.json).

The global descriptors it starts from are the workflow's own (VLAD + PCA-whitening, power ``whiten.power``), so the
method measures what the labels add over the unsupervised whitening.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from .runtime import Manifest, atomic_path, read_json

log = logging.getLogger(__name__)


def fit_lw_stage(global_path: str | Path, lists_path: str | Path, out_path: str | Path, manifest_path: str | Path,
                 cfg: dict[str, Any], version: str, preset: str, training_split: str, global_version: str) -> None:
    from .global_store import read_global  # noqa: PLC0415
    from .vlad import fit_lw_whitening, positive_pairs  # noqa: PLC0415

    m = Manifest("lw_whiten", version, cfg, preset, fitted_on=training_split)
    m.add_input("global", global_path, version=global_version)
    x = read_global(global_path)
    labels = np.array([-1 if e.get("label") is None else e["label"] for e in read_json(lists_path)["db"]])
    if len(labels) != len(x):
        raise ValueError(f"{lists_path}: {len(labels)} database images but {global_path} has {len(x)} rows")
    if (labels >= 0).sum() == 0:
        raise ValueError(f"{lists_path}: training split '{training_split}' has no labelled database images "
                         "(Lw whitening learns from same-label pairs)")
    pairs = positive_pairs(labels, int(cfg["max_pairs"]), int(cfg["seed"]))
    log.info("Lw whitening: %d matching pairs of %d labelled images, dimension %d", len(pairs), (labels >= 0).sum(), x.shape[1])
    w = fit_lw_whitening(x, pairs, float(cfg["ridge"]))
    with atomic_path(out_path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **w)
    m.write(manifest_path, outputs=[out_path], n_pairs=len(pairs), n_training_vectors=len(x))


def evaluate_lw_stage(query_global: str, db_global: str, lw_path: str, knn_path: str, lists_path: str, gnd_path: str,
                      baseline_json: str, out_json: str, out_ranking: str, out_csv: str, dataset: str,
                      n_bootstrap: int, ks, csv_top: int, versions: dict[str, str], hyperparameters: dict[str, Any],
                      preset: str) -> None:
    from .global_store import read_global, read_neighbours  # noqa: PLC0415
    from .pipeline import cost_timing, load_npz, write_reranked_evaluation  # noqa: PLC0415
    from .vlad import apply_whitening, topk_neighbours  # noqa: PLC0415

    t0 = time.time()
    q, db = read_global(query_global), read_global(db_global)
    w = load_npz(lw_path)
    base_ids, _, _ = read_neighbours(knn_path)
    lists, gnd = read_json(lists_path), read_json(gnd_path)
    t1 = time.time()
    dbw = apply_whitening(db, w, power=0.0)  # once per database
    t2 = time.time()
    qw = apply_whitening(q, w, power=0.0)
    ids, sims = topk_neighbours(qw, dbw, len(dbw))
    t3 = time.time()
    write_reranked_evaluation("whiten", ids, sims, base_ids, lists, gnd, dataset, out_json, out_ranking, out_csv,
                              baseline_json, knn_path, n_bootstrap, ks, csv_top, versions, hyperparameters, preset,
                              timing=cost_timing(len(q), reads=t1 - t0, rerank=t3 - t2, offline=t2 - t1))
