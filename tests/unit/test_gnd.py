"""Ground truth: JSON and pickle readers, the restricted unpickler, validation errors that name the problem."""

import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from retrieval.data.gnd import UnsafePickleError, load_ground_truth, restricted_pickle_load

SHARED = Path(__file__).resolve().parents[3] / "shared" / "datasets" / "landmarks-mini"


def revisitop_dict():
    return {
        "imlist": ["a", "b", "c"],
        "qimlist": ["q"],
        "gnd": [
            {
                "easy": np.array([0]),
                "hard": np.array([2], dtype=np.int64),
                "junk": np.array([], dtype=np.int64),
                "bbx": np.array([1.5, 2.0, 30.0, 40.0]),
            }
        ],
    }


@pytest.mark.parametrize("protocol", [2, 4])
def test_reads_revisitop_style_pickle_with_numpy_arrays(tmp_path, protocol):
    p = tmp_path / "gnd_x.pkl"
    p.write_bytes(pickle.dumps(revisitop_dict(), protocol=protocol))
    gt = load_ground_truth(p)
    assert gt.imlist == ["a", "b", "c"] and gt.qimlist == ["q"]
    assert gt.gnd[0]["easy"] == [0] and gt.gnd[0]["hard"] == [2] and gt.gnd[0]["bbx"] == [1.5, 2.0, 30.0, 40.0]


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_refuses_pickle_that_would_run_code(tmp_path):
    marker = tmp_path / "pwned"
    p = tmp_path / "gnd_evil.pkl"
    p.write_bytes(pickle.dumps({"imlist": [], "qimlist": [], "gnd": [], "x": _Evil(marker)}))
    with pytest.raises(UnsafePickleError, match="os|posix|system"):
        restricted_pickle_load(p)
    assert not marker.exists()


def test_indices_outside_imlist_are_named(tmp_path):
    d = revisitop_dict()
    d["gnd"][0]["junk"] = [7]
    p = tmp_path / "gnd.json"
    p.write_text(
        json.dumps({**d, "gnd": [{k: (v.tolist() if hasattr(v, "tolist") else v) for k, v in d["gnd"][0].items()}]})
    )
    with pytest.raises(ValueError, match=r"gnd\[0\].*'junk'.*\[7\]"):
        load_ground_truth(p)


def test_truncated_pickle_is_a_clear_error(tmp_path):
    p = tmp_path / "gnd_t.pkl"
    p.write_bytes(pickle.dumps(revisitop_dict())[:40])
    with pytest.raises(ValueError, match="gnd_t.pkl"):
        load_ground_truth(p)


@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/datasets/landmarks-mini is absent")
def test_landmarks_mini_pickle_and_json_agree():
    a = load_ground_truth(SHARED / "gnd.json")
    b = load_ground_truth(SHARED / "gnd_landmarks-mini.pkl")
    assert a.imlist == b.imlist and a.qimlist == b.qimlist and a.gnd == b.gnd
    assert sum(len(g["easy"]) for g in a.gnd) == 53 and sum(len(g["hard"]) for g in a.gnd) == 36
