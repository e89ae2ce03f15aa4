"""Atomic writes: nothing under the final name until complete, and leftovers of a killed attempt removed."""

import json
import subprocess
import sys

import pytest

from retrieval.runtime import Manifest, Progress, atomic_path, write_json


def test_atomic_write_removes_a_killed_attempts_leftover(tmp_path):
    out = tmp_path / "x.json"
    stale = tmp_path / ".x.json.abc123.part"
    stale.write_text("half")
    other = tmp_path / ".y.json.abc123.part"  # another file's temporary: not ours to remove
    other.write_text("half")
    write_json(out, {"a": 1})
    assert out.read_text().strip().startswith("{") and not stale.exists() and other.exists()


def test_failed_block_leaves_neither_the_file_nor_a_temporary(tmp_path):
    out = tmp_path / "r.h5"
    with pytest.raises(RuntimeError):
        with atomic_path(out) as tmp:
            tmp.write_text("partial")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_progress_logs_every_tenth_and_the_end_once_each():

    class Rec:
        def __init__(self):
            self.lines = []

        def info(self, fmt, *args):
            self.lines.append(fmt % args)

    rec = Rec()
    p = Progress(rec, "logits", 95, "pairs")
    for done in range(1, 96):
        p.update(done)
    assert len(rec.lines) == 11 and rec.lines[-1].startswith("logits: 95/95 pairs (100%)")
    assert rec.lines[0].startswith("logits: 9/95")


def test_manifest_records_the_hardware_results_depend_on(tmp_path):

    m = Manifest("x", "v1", {"a": 1}, "tiny")
    m.write(tmp_path / "manifest.json")
    hw = json.loads((tmp_path / "manifest.json").read_text())["hardware"]
    assert hw["cpu_count"] >= 1 and set(hw["cpu_flags"]) <= {
        "avx2",
        "fma",
        "avx512f",
        "avx512_bf16",
        "avx512_vnni",
        "amx_bf16",
    }
    # recording it imports nothing heavy: a job that never loaded torch does not pay for it
    code = "import sys; from retrieval.runtime import hardware; h = hardware(); print('torch' in sys.modules, h.get('torch_threads'))"
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=str(__import__("pathlib").Path(__file__).parents[2] / "workflow_scripts"),
    ).stdout
    assert out.split() == ["False", "None"]
