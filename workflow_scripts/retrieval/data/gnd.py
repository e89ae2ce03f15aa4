"""Revisited Oxford/Paris ground truth: reading (JSON, or pickle through a restricted unpickler) and validation.

The structure is revisitop's: ``imlist`` (database names), ``qimlist`` (query names) and ``gnd``, one dict per
query with 0-based ``easy``/``hard``/``junk`` indices into ``imlist`` and a query box ``bbx = [x1, y1, x2, y2]``.
Training splits carry ``labels`` (one instance id per ``imlist`` entry, -1 for distractors) and no queries.
"""

from __future__ import annotations

import io
import json
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Globals a revisitop-style pickle may reference: numpy array reconstruction, and the codec numpy's
# protocol-2 pickles use for raw bytes. Anything else (os.system, eval, ...) is refused.
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
    ("builtins", "bytes"),
    ("__builtin__", "bytes"),  # protocol-2 pickles name builtins the Python 2 way
}


PROTOCOL_NAMES = ("revisitop", "gldv2")


class UnsafePickleError(ValueError):
    pass


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file: io.BufferedIOBase, source: str):
        super().__init__(file)
        self.source = source

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise UnsafePickleError(
            f"{self.source}: refusing to load global '{module}.{name}'; ground-truth pickles may only hold plain "
            "containers and numpy arrays"
        )


def restricted_pickle_load(path: str | Path) -> Any:
    """Load a pickle that may contain only plain containers, numbers, strings and numpy arrays."""
    with open(path, "rb") as f:
        try:
            return _RestrictedUnpickler(f, str(path)).load()
        except UnsafePickleError:
            raise
        except Exception as e:  # truncated or garbled file: name it
            raise ValueError(f"{path}: not a readable pickle ({type(e).__name__}: {e})") from e


@dataclass
class GroundTruth:
    imlist: list[str]
    qimlist: list[str]
    gnd: list[dict[str, Any]]
    labels: list[int] | None = None
    source: str = field(default="<memory>")
    image_dir: str = "jpg"  # names are paths under this subfolder of the dataset folder ("" = the folder itself)
    protocol: str = "revisitop"  # which metrics apply: revisitop (E/M/H) or gldv2 (mAP@100 Public/Private)
    subset: dict[str, Any] | None = None  # set when the ground truth was restricted to the images present

    @property
    def n_db(self) -> int:
        return len(self.imlist)

    @property
    def n_queries(self) -> int:
        return len(self.qimlist)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"imlist": self.imlist, "qimlist": self.qimlist, "gnd": self.gnd}
        if self.labels is not None:
            out["labels"] = self.labels
        if self.image_dir != "jpg":
            out["image_dir"] = self.image_dir
        if self.protocol != "revisitop":
            out["protocol"] = self.protocol
        if self.subset is not None:
            out["subset"] = self.subset
        return out


def _as_int_list(x: Any, where: str) -> list[int]:
    try:
        values = [int(v) for v in (x.tolist() if hasattr(x, "tolist") else x)]
    except (TypeError, ValueError) as e:
        raise ValueError(f"{where}: expected a list of integer indices") from e
    return values


def parse_ground_truth(raw: Any, source: str) -> GroundTruth:
    """Normalise and validate a revisitop-structured dict (from JSON or pickle)."""
    if not isinstance(raw, dict):
        raise ValueError(f"{source}: expected a dict with keys imlist, qimlist, gnd; got {type(raw).__name__}")
    for key in ("imlist", "qimlist"):
        if key not in raw:
            raise ValueError(f"{source}: missing key '{key}'")
    imlist = [str(x) for x in raw["imlist"]]
    qimlist = [str(x) for x in raw["qimlist"]]
    gnd_raw = raw.get("gnd", [])
    if len(gnd_raw) != len(qimlist):
        raise ValueError(f"{source}: 'gnd' has {len(gnd_raw)} entries but 'qimlist' has {len(qimlist)}")
    n = len(imlist)
    gnd = []
    for i, g in enumerate(gnd_raw):
        where = f"{source}: gnd[{i}] (query '{qimlist[i]}')"
        if not isinstance(g, dict):
            raise ValueError(f"{where}: expected a dict")
        entry: dict[str, Any] = {}
        for key in ("easy", "hard", "junk"):
            idx = _as_int_list(g.get(key, []), f"{where}['{key}']")
            bad = [v for v in idx if not 0 <= v < n]
            if bad:
                raise ValueError(f"{where}['{key}']: indices {bad[:5]} outside imlist (0..{n - 1})")
            entry[key] = idx
        if "bbx" in g and g["bbx"] is not None:
            bbx = [float(v) for v in (g["bbx"].tolist() if hasattr(g["bbx"], "tolist") else g["bbx"])]
            if len(bbx) != 4 or not (bbx[2] > bbx[0] and bbx[3] > bbx[1]):
                raise ValueError(f"{where}['bbx']: expected [x1, y1, x2, y2] with x2 > x1 and y2 > y1, got {bbx}")
            entry["bbx"] = bbx
        else:
            entry["bbx"] = None
        if "usage" in g:  # GLDv2: the query's Public / Private part of the solution
            entry["usage"] = str(g["usage"])
        gnd.append(entry)
    labels = raw.get("labels")
    if labels is not None:
        labels = _as_int_list(labels, f"{source}['labels']")
        if len(labels) != n:
            raise ValueError(f"{source}: 'labels' has {len(labels)} entries but 'imlist' has {n}")
    image_dir = raw.get("image_dir", "jpg")
    if not isinstance(image_dir, str):
        raise ValueError(f"{source}: 'image_dir' must be a string, got {image_dir!r}")
    protocol = raw.get("protocol", "revisitop")
    if protocol not in PROTOCOL_NAMES:
        raise ValueError(f"{source}: 'protocol' is {protocol!r}, expected one of {PROTOCOL_NAMES}")
    if protocol == "gldv2":
        bad = [i for i, g in enumerate(gnd) if g.get("usage") not in ("Public", "Private")]
        if bad:
            raise ValueError(f"{source}: gnd[{bad[0]}] needs usage Public or Private for the gldv2 protocol")
    return GroundTruth(imlist, qimlist, gnd, labels, source, image_dir, protocol, raw.get("subset"))


def load_ground_truth(path: str | Path) -> GroundTruth:
    """Read ``gnd.json`` or a revisitop ``gnd_*.pkl`` (restricted unpickler) into a validated GroundTruth."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ground truth not found: {path}")
    if path.suffix == ".json":
        try:
            raw = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not valid JSON ({e})") from e
    elif path.suffix in (".pkl", ".pickle"):
        raw = restricted_pickle_load(path)
    else:
        raise ValueError(f"{path}: unknown ground-truth format (expected .json or .pkl)")
    return parse_ground_truth(raw, str(path))
