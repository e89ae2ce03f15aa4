"""The HTML report of one dataset: metrics of every method, the AMES grid, per-query AP, retrieved images,
training curves and per-rule times. One self-contained file (figures embedded as PNG)."""

from __future__ import annotations

import base64
import html
import io
import logging
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image

from retrieval.data.images import BadImageError, decode_image
from retrieval.evaluation.compare import metric_set
from retrieval.evaluation.results import read_published, read_ranking, report_inputs_meta
from retrieval.evaluation.rule_times import cpu_text, rss_text, summarise
from retrieval.runtime import atomic_path, read_json

log = logging.getLogger(__name__)

GREEN, RED, GREY = (40, 170, 60), (210, 40, 40), (150, 150, 150)


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _img(src: str, alt: str) -> str:
    return f'<img src="{src}" alt="{html.escape(alt)}">'


def headline_metric(results: dict[str, dict[str, Any]]) -> tuple[str, tuple[str, ...], str]:
    """The results' metric set (:func:`retrieval.evaluation.compare.metric_set`): revisitop's ("mAP", E/M/H, "M")
    or GLDv2's ("mAP@100", Public/Private, "Private")."""
    return metric_set(next((r["metrics"] for r in results.values() if r.get("metrics")), None))


def precision_key(results: dict[str, dict[str, Any]]) -> str | None:
    """The mP@k column of the table: ``mP@10`` when the results have it, else their largest k (``evaluate.ks`` sets
    which k are computed: with ``[1, 5, 20]`` the column showed "mP@10" and a dash for every method); None without
    any."""
    ks = {
        int(name.removeprefix("mP@"))
        for r in results.values()
        for name in (r.get("metrics") or {})
        if name.startswith("mP@") and name.removeprefix("mP@").isdigit()
    }
    return None if not ks else "mP@10" if 10 in ks else f"mP@{max(ks)}"


def own_settings(result: dict[str, Any], method: str) -> str:
    """``k=v, ...`` (HTML-escaped) of the scalar settings a result records for its own method under
    ``hyperparameters[method]`` (``results[...]["method"]`` where the table's row name differs); "" if none."""
    own = (result.get("hyperparameters") or {}).get(result.get("method") or method)
    if not isinstance(own, dict):
        return ""
    scalars = [(k, v) for k, v in own.items() if isinstance(v, (str, int, float, bool)) or v is None]
    return html.escape(", ".join(f"{k}={v}" for k, v in scalars))


def metrics_table(results: dict[str, dict[str, Any]]) -> str:
    """The HTML table of every method: the headline metric's parts (E/M/H mAP or GLDv2's mAP@100 Public/Private, in
    percent), mP@k on the main protocol (:func:`precision_key`), the paired difference to the baseline with its 95% CI
    and, for a method with ``chosen`` parameters, num_rerank, lambda, gamma, the geometric weight and the split they
    were chosen on; for another, the scalar settings its results record under its own name in ``hyperparameters``
    (sv's num_rerank, ratio, model, threshold...; the column was empty for them, a new user's trial)."""
    key, parts, main = headline_metric(results)
    pk = precision_key(results)
    rows = [
        "<tr><th>method</th>"
        + "".join(f"<th>{key} {p}</th>" for p in parts)
        + (f"<th>{pk} {main}</th>" if pk else "")
        + f"<th>paired {main} difference to the baseline [95% CI]</th><th>parameters</th></tr>"
    ]
    for method, r in results.items():
        m = r.get("metrics") or {}
        mAP = m.get(key, {})
        diff = r.get("paired_difference", {}).get(main)
        d = f"{diff['mean']:+.2f} [{diff['ci95'][0]:+.2f}, {diff['ci95'][1]:+.2f}]" if diff else ""
        chosen = r.get("chosen")
        par = (
            (
                f"k={chosen['num_rerank']}"
                # the entries actually re-ranked where the shortlist is shorter (a small database: all of it)
                + (
                    f" ({chosen['num_rerank_applied']} re-ranked: the whole shortlist)"
                    if chosen.get("num_rerank_applied", chosen["num_rerank"]) < chosen["num_rerank"]
                    else ""
                )
                + f", &lambda;={chosen['lambda']}, &gamma;={chosen['gamma']}"
                + (f", &mu;={chosen['geometry_weight']} (sv inliers)" if "geometry_weight" in chosen else "")
                + f" (chosen on {html.escape(str(chosen['selected_on']))})"
            )
            if chosen
            else own_settings(r, method)
        )
        cells = [f"{mAP.get(p, float('nan')):.2f}" if mAP.get(p) is not None else "-" for p in parts]
        pk_value = m.get(pk, {}).get(main) if pk else None
        rows.append(
            f"<tr><td>{html.escape(method)}</td>"
            + "".join(f"<td>{c}</td>" for c in cells)
            + (f"<td>{'-' if pk_value is None else f'{pk_value:.2f}'}</td>" if pk else "")
            + f"<td>{d}</td><td>{par}</td></tr>"
        )
    return "<table>" + "".join(rows) + "</table>"


def grid_at(grid: Sequence[dict[str, Any]], chosen: dict[str, Any]) -> tuple[list[dict[str, Any]], float | None]:
    """The rows of an AMES grid at the chosen geometric weight (``chosen["geometry_weight"]``; the smallest when the
    choice has none; the grid's nearest when a fixed point's weight is not on the grid, whose slice was empty and
    failed the heatmaps) and that weight; a grid without a geometric axis as it is, with None."""
    if not any("geometry_weight" in g for g in grid):
        return list(grid), None
    weights = sorted({g["geometry_weight"] for g in grid})
    mu = chosen.get("geometry_weight")
    mu = weights[0] if mu is None else min(weights, key=lambda w: (abs(w - mu), w))
    return [g for g in grid if g["geometry_weight"] == mu], mu


def grid_heatmaps(method: str, grid: Sequence[dict[str, Any]], column: str = "mAP_M", mu: float | None = None) -> str:
    """Heatmaps of ``column`` over lambda x gamma, one per num_rerank, of a grid at one geometric weight ``mu``
    (``grid_at``; None: no geometric axis), which the titles name."""
    import matplotlib.pyplot as plt  # noqa: PLC0415

    ks = sorted({g["num_rerank"] for g in grid})
    lams = sorted({g["lambda"] for g in grid})
    gams = sorted({g["gamma"] for g in grid})
    # constrained layout: titles, labels and the shared colour bar do not run into the next panel
    fig, axes = plt.subplots(1, len(ks), figsize=(3.2 * len(ks) + 1, 3.4), squeeze=False, layout="constrained")
    lookup = {(g["num_rerank"], g["lambda"], g["gamma"]): g[column] for g in grid}
    vals = np.array([[[lookup.get((k, lam, gam), np.nan) for gam in gams] for lam in lams] for k in ks], float)
    vmin, vmax = np.nanmin(vals), np.nanmax(vals)
    for ax, k, v in zip(axes[0], ks, vals):
        im = ax.imshow(v, origin="lower", aspect="auto", vmin=vmin, vmax=vmax, cmap="viridis")
        ax.set_xticks(range(len(gams)), [f"{g:g}" for g in gams])
        ax.set_yticks(range(len(lams)), [f"{lam:g}" for lam in lams])
        ax.set_xlabel("gamma")
        ax.set_ylabel("lambda")
        ax.set_title(f"num_rerank {k}")
    if mu is not None:
        fig.suptitle(f"{method}, geometric weight {mu:g}")
    fig.colorbar(im, ax=axes[0].tolist(), label=column)
    return _img(_png(fig), f"{method} grid")


def map_vs_num_rerank(results: dict[str, dict[str, Any]]) -> str:
    """An ``<img>`` (embedded PNG) of the main protocol's metric against num_rerank for every method with a grid: at the
    chosen lambda and gamma (at the geometric weight of :func:`grid_at`) and the grid's maximum per num_rerank
    (an oracle), with the global baseline as a dotted line."""
    import matplotlib.pyplot as plt  # noqa: PLC0415

    key, _, main = headline_metric(results)
    column = f"{key}_{main}"
    fig, ax = plt.subplots(figsize=(5.5, 4.6), layout="constrained")
    for method, r in results.items():
        if not r.get("grid"):  # absent, or empty: a dataset without ground truth
            continue
        ks = sorted({g["num_rerank"] for g in r["grid"]})
        best = [max(g[column] for g in r["grid"] if g["num_rerank"] == k) for k in ks]
        ch = r["chosen"]
        at_mu, mu = grid_at(r["grid"], ch)
        at = [
            next(
                (
                    g[column]
                    for g in at_mu
                    if (g["num_rerank"], g["lambda"], g["gamma"]) == (k, ch["lambda"], ch["gamma"])
                ),
                np.nan,
            )
            for k in ks
        ]
        label = "chosen lambda, gamma" + (f", geometric weight {mu:g}" if mu is not None else "")
        ax.plot(ks, at, "o-", label=f"{method} ({label})")
        ax.plot(ks, best, "x--", label=f"{method} (grid max, oracle)")
    base = next(iter(results.values())).get("baseline", {}).get("metrics", {}).get(key, {}).get(main)
    if base is None and "global" in results:
        base = results["global"]["metrics"][key][main]
    if base is not None:
        ax.axhline(base, color="k", lw=1, ls=":", label="global")
    ax.set_xlabel("num_rerank")
    ax.set_ylabel(f"{key} {main}")
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.18))  # below the axes: it covered curves
    return _img(_png(fig), "mAP vs num_rerank")


def per_query_scatter(results: dict[str, dict[str, Any]]) -> str:
    """An ``<img>`` (embedded PNG), one panel per method with per-query baseline APs: each query's AP under the method
    (main protocol, fractions) against the baseline's, green above the diagonal, red below, the counts better and worse
    in the title; "" when no method has them."""
    import matplotlib.pyplot as plt  # noqa: PLC0415

    _, _, main = headline_metric(results)
    methods = [m for m, r in results.items() if "baseline_ap" in r.get("per_query_ap", {}).get(main, {})]
    if not methods:
        return ""
    fig, axes = plt.subplots(1, len(methods), figsize=(3.6 * len(methods), 3.6), squeeze=False, layout="constrained")
    for ax, m in zip(axes[0], methods):
        pq = results[m]["per_query_ap"][main]
        pairs = [(b, a) for a, b in zip(pq["ap"], pq["baseline_ap"]) if a is not None and b is not None]
        x, y = np.array(pairs).T if pairs else (np.zeros(0), np.zeros(0))
        ax.scatter(x, y, s=12, c=np.where(y > x, "tab:green", np.where(y < x, "tab:red", "tab:grey")))
        ax.plot([0, 1], [0, 1], "k:", lw=1)
        ax.set_xlim(0, 1.02)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel(f"AP {results[m].get('baseline', {}).get('method', 'baseline')} ({main})")
        ax.set_ylabel(f"AP {m}")
        ax.set_title(f"{m}: {int((y > x).sum())} better, {int((y < x).sum())} worse")
    return _img(_png(fig), "per-query AP")


def training_curves(curves: dict[str, list[dict[str, float]]]) -> str:
    """The training curves as an embedded PNG ("" without curves); see curves_figure."""
    return _img(_png(curves_figure(curves)), "training curves") if curves else ""


def curves_figure(curves: dict[str, list[dict[str, float]]]):
    """A matplotlib figure of curves.json per model: training loss (log scale: the binary model's loss, distillation
    included, is about 15x the teacher's, which a shared linear axis flattened), pair accuracy and, where training
    validated, the validation split's best Medium mAP over the fusion grid, with the epoch kept marked."""
    import matplotlib.pyplot as plt  # noqa: PLC0415

    validated = any("validation" in e for c in curves.values() for e in c)
    fig, axes = plt.subplots(1, 3 if validated else 2, figsize=(11 if validated else 8, 3.2))
    for name, c in curves.items():
        ep = [e["epoch"] for e in c]
        axes[0].plot(ep, [e["loss"] for e in c], "o-", label=name)
        axes[1].plot(ep, [e["pair_accuracy"] for e in c], "o-", label=name)
        val = [(e["epoch"], e["validation"]) for e in c if e.get("validation") is not None]
        if validated and val:
            (line,) = axes[2].plot(*zip(*val), "o-", label=name)
            kept = [(e["epoch"], e["validation"]) for e in c if e.get("kept")]
            if kept:
                axes[2].plot(*zip(*kept), "*", ms=14, color=line.get_color(), label=f"{name}: kept")
    axes[0].set_yscale("log")
    axes[0].set_ylabel("training loss (log)")
    axes[1].set_ylabel("pair accuracy")
    if validated:
        axes[2].set_ylabel("validation mAP Medium")
        axes[2].legend(fontsize=7)
    for ax in axes:
        ax.set_xlabel("epoch")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def _unreadable(side: int) -> np.ndarray:
    """The thumbnail of an image that cannot be decoded (one skipped under on_bad_image: skip): grey, crossed."""
    a = np.full((side, side, 3), 225, np.uint8)
    i = np.arange(side)
    for d in (-1, 0, 1):
        j = np.clip(i + d, 0, side - 1)
        a[i, j] = a[i, side - 1 - j] = 120
    return a


def _thumb(path: str, side: int, colour: tuple[int, int, int] | None, box=None) -> np.ndarray:
    """A ``(side, side, 3)`` uint8 thumbnail framed in ``colour``; an unreadable image is drawn crossed out (it
    still takes its place in a ranking)."""
    try:
        decoded = decode_image(path, "rgb")  # as displayed: the box is in displayed coordinates
    except BadImageError as e:
        log.warning("thumbnail of %s drawn crossed out: %s", path, e)
        decoded = None
    if decoded is None:
        a = _unreadable(side - 8)
    else:
        im = Image.fromarray(decoded.pixels)
        if box is not None:
            fx, fy = decoded.factor
            im = im.crop((round(box[0] * fx), round(box[1] * fy), round(box[2] * fx), round(box[3] * fy)))
        im.thumbnail((side - 8, side - 8))
        a = np.asarray(im)
    out = np.full((side, side, 3), 255, np.uint8)
    if colour is not None:
        out[:] = colour
        out[4:-4, 4:-4] = 255
    y, x = (side - a.shape[0]) // 2, (side - a.shape[1]) // 2
    out[y : y + a.shape[0], x : x + a.shape[1]] = a
    return out


def retrieved_images(
    ranks: np.ndarray,
    lists: dict[str, Any],
    gnd: list[dict[str, Any]] | None,
    queries: Sequence[int],
    top: int,
    side: int = 110,
) -> str:
    """Query (cropped to its box) then its top images: green a positive (easy or hard), red a negative, grey junk."""
    import matplotlib.pyplot as plt  # noqa: PLC0415

    rows = []
    for q in queries:
        qe = lists["query"][q]
        row = [_thumb(qe["path"], side, None, qe.get("crop"))]
        g = gnd[q] if gnd else None
        for j in ranks[q, :top]:
            colour = None
            if g is not None:
                colour = GREEN if j in g["easy"] or j in g.get("hard", ()) else GREY if j in g.get("junk", ()) else RED
            row.append(_thumb(lists["db"][int(j)]["path"], side, colour))
        rows.append(np.concatenate(row, 1))
    grid = np.concatenate(rows, 0)
    fig, ax = plt.subplots(figsize=(grid.shape[1] / 90, grid.shape[0] / 90))
    ax.imshow(grid)
    ax.axis("off")
    return _img(_png(fig), "retrieved images")


def retrieved_names(
    ranks: np.ndarray, lists: dict[str, Any], gnd: list[dict[str, Any]] | None, queries: Sequence[int], top: int
) -> str:
    """The names under the thumbnails of :func:`retrieved_images`, as an HTML table: per query its name, then its top
    ``top`` database names in rank order, each marked ``+`` positive, ``-`` negative or ``junk`` with ground truth
    (a figure alone named no photo: a new user's report of a folder without ground truth could not be read)."""
    top = min(top, ranks.shape[1])
    head = "<tr><th>query</th>" + "".join(f"<th>{r}</th>" for r in range(1, top + 1)) + "</tr>"
    rows = []
    for q in queries:
        g = gnd[q] if gnd else None
        cells = []
        for j in ranks[q, :top]:
            name = html.escape(str(lists["db"][int(j)]["name"]))
            if g is not None:
                mark = "+" if j in g["easy"] or j in g.get("hard", ()) else "junk" if j in g.get("junk", ()) else "-"
                name += f" ({mark})"
            cells.append(f"<td style='text-align:left'>{name}</td>")
        query = html.escape(str(lists["query"][q]["name"]))
        rows.append(f"<tr><td style='text-align:left'>{query}</td>{''.join(cells)}</tr>")
    return "<table class='retrieved'>" + head + "".join(rows) + "</table>"


def benchmark_table(paths: Sequence[str]) -> str:
    """The per-rule table (:mod:`retrieval.evaluation.rule_times`) of the given ``benchmarks/<rule>/...`` files."""
    rows = summarise(paths, "benchmarks")
    total = sum(r["seconds"] for r in rows)
    out = [
        "<tr><th>rule</th><th>jobs</th><th>wall s (sum)</th><th>share</th><th>longest job s</th><th>CPU s (sum)</th>"
        "<th>peak RSS MB</th></tr>"
    ]
    for r in rows:
        out.append(
            f"<tr><td>{html.escape(r['rule'])}</td><td>{r['jobs']}</td><td>{r['seconds']:.1f}</td>"
            f"<td>{100 * r['seconds'] / max(total, 1e-9):.0f}%</td><td>{r['longest_job_seconds']:.1f}</td>"
            f"<td>{cpu_text(r['cpu_seconds'])}</td><td>{rss_text(r['max_rss_mb'])}</td></tr>"
        )
    return "<table>" + "".join(out) + "</table>"


def write_report(
    out_html: str | Path,
    dataset: str,
    result_paths: dict[str, str],
    ranking_paths: dict[str, str],
    curves_paths: dict[str, str],
    benchmark_paths: Sequence[str],
    lists_path: str,
    gnd_path: str,
    n_queries: int,
    top: int,
) -> None:
    """Write the self-contained HTML report of ``dataset`` to ``out_html`` (atomically): the metrics table
    (with ground truth), grid heatmaps and the metric against num_rerank for the methods with a grid, per-query AP
    scatters, the top ``top`` images of the first ``n_queries`` queries as ranked by the method best on the main
    protocol (without metrics the last one listed), the training curves and the per-rule times. ``result_paths``,
    ``ranking_paths`` (HDF5 with ``ranks``) and ``curves_paths``: per method; ``lists_path`` / ``gnd_path``: the image
    lists and the ground-truth JSON (null: none)."""
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    results = {m: read_published(p, m) for m, p in result_paths.items()}
    lists, gnd = read_json(lists_path), read_json(gnd_path)
    gnd_list = gnd["gnd"] if gnd else None
    key, _, main = headline_metric(results)
    scored = {
        m: r["metrics"][key][main]
        for m, r in results.items()
        if r.get("metrics") and r["metrics"][key][main] is not None
    }
    # without metrics none is best: the last method listed (report.methods runs from global to the re-rankers), which
    # the heading says; the first (global) hid the re-ranker a user asked for
    show = max(scored, key=scored.get) if scored else list(results)[-1]
    ranks = read_ranking(ranking_paths[show])["ranks"]
    queries = list(range(min(n_queries, len(lists["query"]))))
    parts = [
        f"<h1>Retrieval report: {html.escape(dataset)}</h1>",
        f"<p>{len(lists['query'])} queries, {len(lists['db'])} database images; preset "
        f"{html.escape(str(next(iter(results.values())).get('preset')))}.</p>",
        "<h2>Metrics</h2>",
        metrics_table(results) if gnd else "<p>No ground truth: rankings only.</p>",
    ]
    for m, r in results.items():
        if r.get("grid"):
            label = "Medium mAP" if key == "mAP" else f"{key} {main}"
            sliced, mu = grid_at(r["grid"], r["chosen"])
            parts += [
                f"<h2>{html.escape(m)}: {label} over the grid</h2>",
                grid_heatmaps(m, sliced, f"{key}_{main}", mu),
            ]
    if any(r.get("grid") for r in results.values()):
        parts += [f"<h2>{key} vs num_rerank</h2>", map_vs_num_rerank(results)]
    if gnd:
        parts += ["<h2>Per-query AP, baseline vs re-ranked</h2>", per_query_scatter(results)]
    parts += [
        f"<h2>Top {min(top, len(lists['db']))} retrieved by {html.escape(show)}"  # report.top above the database
        + (
            " (green: positive, red: negative, grey: junk)"
            if gnd
            else " (the last method listed: no metrics to choose by)"
        )
        + "</h2>",
        retrieved_images(ranks, lists, gnd_list, queries, top),
        "<p>The same rows by name (the database images in rank order):</p>",
        retrieved_names(ranks, lists, gnd_list, queries, top),
    ]
    if curves_paths:
        parts += ["<h2>Training curves</h2>", training_curves({k: read_json(v) for k, v in curves_paths.items()})]
    if benchmark_paths:
        parts += ["<h2>Per-rule times (Snakemake benchmark files)</h2>", benchmark_table(benchmark_paths)]
    page = (
        "<!doctype html><html><head><meta charset='utf-8'>"
        + report_inputs_meta(
            [p for p in (*result_paths.values(), lists_path, gnd_path) if p],
            {p: results[m].get("artifacts", {}).get("evaluation") for m, p in result_paths.items()},
        )
        + "<title>"
        + html.escape(dataset)
        + " report</title>"
        "<style>body{font-family:sans-serif;margin:2em;max-width:1400px}table{border-collapse:collapse}"
        "td,th{border:1px solid #bbb;padding:3px 8px;text-align:right}img{max-width:100%}</style></head><body>"
        + "\n".join(parts)
        + "</body></html>"
    )
    with atomic_path(out_html) as tmp:
        tmp.write_text(page)
    log.info("report for %s: %s (%d methods)", dataset, out_html, len(results))
