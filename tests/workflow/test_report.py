"""The HTML report (tiny preset): every section present, figures embedded, numbers equal to the results JSON."""

import base64
import io
import re
import shutil

import pytest
import yaml
from PIL import Image

from conftest import TINY, copy_tree, load_json, snakemake

pytestmark = pytest.mark.workflow


def test_report_page(tiny_ames, tmp_path):
    snakemake(tiny_ames, "results/report/demo.html", "--configfile", str(TINY))
    page = (tiny_ames / "results" / "report" / "demo.html").read_text()
    for section in (
        "Metrics",
        "ames: Medium mAP over the grid",
        "mAP vs num_rerank",
        "Per-query AP",
        "retrieved by",
        "Training curves",
        "Per-rule times",
    ):
        assert section in page, section
    for method in ("global", "sv", "ames", "ames_binary"):
        m = load_json(tiny_ames / "results" / f"demo_{method}.json")["metrics"]["mAP"]
        row = re.search(rf"<tr><td>{method}</td><td>([\d.]+)</td><td>([\d.]+)</td><td>([\d.]+)</td>", page)
        assert row and [float(x) for x in row.groups()] == [round(m[p], 2) for p in "EMH"], method
    # the retrieved photos by name, under the figure: the first query's row, in the shown method's order
    lists = load_json(tiny_ames / load_json(tiny_ames / "results" / "demo_global.json")["artifacts"]["lists"])
    assert f"<tr><td style='text-align:left'>{lists['query'][0]['name']}</td>" in page
    pngs = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(pngs) >= 6
    for b in pngs:  # every figure decodes as a real, non-trivial image
        im = Image.open(io.BytesIO(base64.b64decode(b)))
        assert im.size[0] > 100 and im.size[1] > 50
    for rule in ("train_ames", "evaluate_sv", "ames_logits", "knn"):
        assert f"<tr><td>{rule}</td>" in page, rule
    # the demo's own extraction: every chunk of both sides
    n_chunks = yaml.safe_load(TINY.read_text())["extract"]["n_chunks"]
    assert f"<tr><td>extract_local</td><td>{2 * n_chunks}</td>" in page
    # the timing table's files are read where they exist, not required: without benchmarks/ (deleted, or results
    # copied without it) the report is written again from what is there, and nothing is trained or extracted again
    wd = copy_tree(tiny_ames, tmp_path / "wd")
    shutil.rmtree(wd / "benchmarks")
    (wd / "results" / "report" / "demo.html").unlink()
    plan = snakemake(wd, "-n", "results/report/demo.html", "--configfile", str(TINY)).stdout
    assert re.findall(r"^rule (\w+):", plan, re.M) == ["report"], plan
