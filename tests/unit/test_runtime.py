"""Atomic writes: nothing under the final name until complete, and leftovers of a killed attempt removed."""

import pytest

from retrieval.runtime import atomic_path, write_json


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
