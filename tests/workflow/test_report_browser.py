"""Opt-in: render the tiny demo's report in headless Chromium and check the screenshot is a real page.

Run with RETRIEVAL_BROWSER_TEST=1 (and chromium installed: apt-get install chromium); the screenshot is
written next to the report (results/report/demo.png, outside git). Not part of the default CI run.
"""

import os
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from conftest import TINY, snakemake

pytestmark = [
    pytest.mark.workflow,
    pytest.mark.skipif(os.environ.get("RETRIEVAL_BROWSER_TEST") != "1", reason="opt-in: set RETRIEVAL_BROWSER_TEST=1"),
]


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def screenshot(html, png, width=1400, height=2600) -> None:
    browser = chromium()
    if browser is None:
        pytest.skip("no chromium on PATH (apt-get install chromium)")
    subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            f"--window-size={width},{height}",
            f"--screenshot={png}",
            html.resolve().as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )


def test_report_renders_in_chromium(tiny_ames):
    snakemake(tiny_ames, "results/report/demo.html", "--configfile", str(TINY))
    html = tiny_ames / "results" / "report" / "demo.html"
    png = html.with_suffix(".png")
    screenshot(html, png)
    im = np.asarray(Image.open(png).convert("RGB")).astype(np.float32)
    non_white = (im.min(axis=2) < 235).mean()
    colourful = (im.max(axis=2) - im.min(axis=2) > 60).mean()  # heatmaps, borders, photos
    assert im.shape[0] >= 2000 and 0.05 < non_white < 0.9 and colourful > 0.01, (non_white, colourful)
