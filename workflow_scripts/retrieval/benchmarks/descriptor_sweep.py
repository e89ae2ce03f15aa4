"""mAP against database descriptors per image, with the bytes each image costs (AMES's central trade-off).

For every count in the sweep, the same global shortlist is re-ranked with only that many database descriptors
(strongest first): AMES full precision and binary at the parameters chosen on the validation split (in their
results JSON; AMES alone, the point with geometric weight 0, when the published result fuses sv's inliers), and
spatial verification. Bytes per image are what the database side stores for re-ranking:
AMES full precision the 128-d projection in float16 (256 B per descriptor), binary 128 packed bits (16 B),
sv the raw descriptor in float16 plus its position as two float16 (2 D + 4 B); each plus a 4-byte count.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from retrieval.evaluation.metrics import evaluate_rankings
from retrieval.methods.ames.infer import resolve_precision
from retrieval.methods.ames.model import load_checkpoint
from retrieval.methods.ames.rerank import compute_logits, fusion_logits, rerank
from retrieval.methods.sv import SVConfig, rerank_by_inliers, verify_shortlists
from retrieval.runtime import atomic_path, read_json, resolve_device, write_json
from retrieval.stores.global_store import read_neighbours
from retrieval.stores.local_store import open_local, read_row_runs

log = logging.getLogger(__name__)


def bytes_per_image(method: str, n_desc: int, dim: int) -> int:
    """Bytes per image the database side stores for re-ranking with ``n_desc`` descriptors of dimension ``dim``:
    ``ames`` 256 per descriptor (128 float16 token values), ``ames_binary`` 16 (128 packed bits), ``sv`` 2 ``dim`` + 4
    (the float16 descriptor and its position as two float16); plus a 4-byte count. KeyError for another method."""
    per = {"ames": 128 * 2, "ames_binary": 128 // 8, "sv": 2 * dim + 4}[method]
    return n_desc * per + 4


def descriptor_sweep_stage(
    model_paths: dict[str, str],
    ames_results: dict[str, str],
    query_local: str,
    db_local: str,
    knn_path: str,
    gnd_path: str,
    dataset: str,
    sv_cfg: dict[str, Any],
    ames_counts: Sequence[int],
    sv_counts: Sequence[int],
    q_desc: int,
    batch: int,
    device: str,
    out_json: str,
    out_png: str,
    out_md: str,
    versions: dict[str, Any],
    precision: str = "auto",
) -> None:
    """The descriptor sweep of ``dataset`` (rule ``descriptor_sweep``): the global shortlist of ``knn_path`` re-ranked
    with each of ``sv_counts`` database descriptors per image by spatial verification (``sv_cfg``) and with each of
    ``ames_counts`` by every AMES model of ``model_paths`` (at the num_rerank, lambda, gamma and fusion chosen in its
    ``ames_results`` JSON: the point without geometry when it fused sv), the queries fixed at ``q_desc`` descriptors
    (AMES) / ``sv_cfg["q_desc"]`` (sv); AMES scores ``batch`` pairs at a time on ``device`` in ``precision``
    (``ames.precision``). Writes E/M/H mAP, bytes per image (:func:`bytes_per_image`) and seconds per point to
    ``out_json``, Medium mAP against descriptors and bytes to ``out_png``, and a Markdown table to ``out_md``.

    ValueError naming the dataset without ground truth, and naming ``benchmark.descriptors.{sv,ames}`` for a count above
    the descriptors the database stores."""

    ids, sims, attrs = read_neighbours(knn_path)
    gnd = read_json(gnd_path)
    if gnd is None:
        raise ValueError(f"{dataset}: the descriptor sweep needs ground truth ({gnd_path})")
    gnd = gnd["gnd"]
    n_db = int(attrs.get("n_db", ids.shape[1]))
    if ids.shape[1] < n_db:  # the metrics rank every image: a truncated shortlist is refused here, naming it
        raise ValueError(
            f"{knn_path}: a shortlist of {ids.shape[1]} of {n_db} images; the descriptor sweep's revisitop metrics "
            "need the full ranking (knn.k: 0, knn.search: exact)"
        )
    base = evaluate_rankings(ids, gnd, n_db)["mAP"]
    rows: list[dict[str, Any]] = []

    def add(method: str, count: int, ranking: np.ndarray, seconds: float, dim: int) -> None:
        m = evaluate_rankings(ranking, gnd, n_db)["mAP"]
        rows.append(
            {
                "method": method,
                "db_desc": int(count),
                "bytes_per_image": bytes_per_image(method, count, dim),
                **{f"mAP_{p}": m[p] for p in "EMH"},
                "seconds": round(seconds, 2),
            }
        )
        log.info("%s, %d descriptors per image: mAP M %.2f (%.1f s)", method, count, m["M"], seconds)

    with open_local(query_local) as fq, open_local(db_local) as fd:
        dim = int(fd["descriptors"].shape[2])
        stored = int(fd["descriptors"].shape[1])
        # a count above what extraction stored would time nothing: refused before any work, naming the key (it was
        # skipped with a log line, and a sweep of only such counts wrote an empty table over the previous one)
        for key, counts in (("sv", sv_counts), ("ames", ames_counts)):
            above = [int(c) for c in counts if c > stored]
            if above:
                raise ValueError(
                    f"benchmark.descriptors.{key}: {above} descriptors per image asked, but the database stores "
                    f"{stored} ({db_local}; extract.sift.k or the backbone's k sets it): ask at most {stored}"
                )
        for c in sv_counts:
            t0 = time.time()
            cfg = SVConfig(**{**sv_cfg, "db_desc": int(c)})
            inliers, _ = verify_shortlists(fq, fd, ids, cfg)
            add("sv", c, rerank_by_inliers(ids, sims, inliers, cfg.num_rerank), time.time() - t0, dim)
        q_all, q_count = fq["descriptors"][:, :q_desc], fq["count"][:]
        device = resolve_device(device)
        dtype = resolve_precision(precision, device)  # ames.precision, as the published results' logits
        for method, path in model_paths.items():
            published = read_json(ames_results[method])
            # AMES alone (its database side is what the bytes count): with geometric fusion, the point with weight 0
            # the validation split chose; fusion and the fixed point's lambda and gamma otherwise
            chosen = {**published["chosen"], **((published.get("without_geometry") or {}).get("chosen") or {})}
            k, lam, gamma = int(chosen["num_rerank"]), float(chosen["lambda"]), float(chosen["gamma"])
            model, _ = load_checkpoint(str(path))
            pairs = [ids[i, :k] for i in range(ids.shape[0])]
            for c in ames_counts:
                t0 = time.time()

                def reader(rows_: np.ndarray, c=c) -> tuple[np.ndarray, np.ndarray]:
                    return read_row_runs(fd["descriptors"], rows_, c), read_row_runs(fd["count"], rows_)

                logits = np.stack(
                    fusion_logits(
                        compute_logits(
                            model,
                            q_all,
                            q_count,
                            reader,
                            pairs,
                            q_all.shape[1],
                            int(c),
                            batch=batch,
                            device=device,
                            dtype=dtype,
                        ),
                        chosen.get("fusion", "sigmoid"),
                    )
                )
                add(method, c, rerank(ids, sims, logits, lam, gamma, k), time.time() - t0, dim)

    result = {
        "dataset": dataset,
        "global_mAP": base,
        "q_desc": {"ames": q_desc, "sv": sv_cfg["q_desc"]},
        "note": "database descriptors per image varied; query side fixed; AMES at the parameters chosen on "
        "the validation split",
        "rows": rows,
        "precision": precision,
        "versions": versions,
    }
    write_json(out_json, result)
    _plot(rows, base, dataset, out_png)
    lines = [
        f"# mAP vs database descriptors per image: {dataset}",
        "",
        f"Global only: E/M/H {base['E']:.2f} / {base['M']:.2f} / {base['H']:.2f}.",
        "",
        "| method | descriptors per image | bytes per image | mAP E | mAP M | mAP H | seconds |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['method']} | {r['db_desc']} | {r['bytes_per_image']} | {r['mAP_E']:.2f} | {r['mAP_M']:.2f} | "
        f"{r['mAP_H']:.2f} | {r['seconds']:.1f} |"
        for r in rows
    ]
    with atomic_path(out_md) as tmp:
        tmp.write_text("\n".join(lines) + "\n")


def _plot(rows: list[dict[str, Any]], base: dict[str, float], dataset: str, out_png: str | Path) -> None:
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.6))
    for method in dict.fromkeys(r["method"] for r in rows):
        rs = [r for r in rows if r["method"] == method]
        a1.plot([r["db_desc"] for r in rs], [r["mAP_M"] for r in rs], "o-", label=method)
        a2.plot([r["bytes_per_image"] for r in rs], [r["mAP_M"] for r in rs], "o-", label=method)
    for ax, xl in ((a1, "database descriptors per image"), (a2, "bytes per image")):
        ax.axhline(base["M"], color="k", ls=":", lw=1, label="global")
        ax.set_xscale("log", base=2)
        ax.set_xlabel(xl)
        ax.set_ylabel("mAP Medium")
    a1.legend(fontsize=8)
    a1.set_title(dataset)
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
