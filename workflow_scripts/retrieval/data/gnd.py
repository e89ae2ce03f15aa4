"""Revisited Oxford/Paris ground truth: reading (JSON, or pickle through a restricted unpickler) and validation.

The structure is revisitop's: ``imlist`` (database names), ``qimlist`` (query names) and ``gnd``, one dict per
query with 0-based ``easy``/``hard``/``junk`` indices into ``imlist`` and a query box ``bbx = [x1, y1, x2, y2]``.
Training splits carry ``labels`` (one instance id per ``imlist`` entry, -1 for distractors) and no queries.
"""

from __future__ import annotations

import io
import json
import logging
import math
import numbers
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from retrieval.runtime import check_recorded, read_utf8

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
TOP_KEYS = ("imlist", "qimlist", "gnd", "labels", "image_dir", "protocol", "subset")  # what parse_ground_truth reads
ENTRY_KEYS = ("easy", "hard", "junk", "bbx", "usage")  # what a gnd[i] entry may hold ("usage": GLDv2's part)

log = logging.getLogger(__name__)
MIN_VALIDATION_QUERIES = 5  # a validation split's queries with positives under which its choice is warned of


class UnsafePickleError(ValueError):
    """A ground-truth pickle referencing a global outside the allowed ones (numpy arrays, bytes), refused before
    anything in it runs; the message names the file and the global."""

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
            f.seek(0)
            if f.read(2) == b"PK":  # torch.save's zip archive: unpickling says "A load persistent id instruction ..."
                raise ValueError(
                    f"{path}: a torch.save archive, not a pickle: save the ground truth with pickle.dump (revisitop's "
                    "dict of lists and numpy arrays)"
                ) from None
            raise ValueError(f"{path}: not a readable pickle ({type(e).__name__}: {e})") from e


@dataclass
class GroundTruth:
    """A dataset's ground truth in revisitop's structure: ``imlist`` database and ``qimlist`` query names (paths under
    ``image_dir`` of the dataset folder); ``gnd``, one dict per query (``easy`` / ``hard`` / ``junk`` 0-based indices
    into ``imlist``, ``bbx`` [x1, y1, x2, y2] in pixels or None, GLDv2's ``usage``); ``labels``, one instance id per
    database image (-1: distractor) in training splits; ``source``, the file it was read from; ``protocol``, the metrics
    that apply (revisitop E/M/H, or gldv2 mAP@100 Public/Private); ``subset``, set when it was restricted to the images
    present."""

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
        """The number of database images, ``len(imlist)``."""
        return len(self.imlist)

    @property
    def n_queries(self) -> int:
        """The number of queries, ``len(qimlist)``."""
        return len(self.qimlist)

    def to_json(self) -> dict[str, Any]:
        """The ``gnd.json`` form: ``imlist``, ``qimlist``, ``gnd``, then ``labels``, ``image_dir``, ``protocol`` and
        ``subset`` only where they differ from their defaults; ``source`` is not written."""
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


def _plain(values: list) -> list:
    """Values as a message shows them: numpy scalars as the Python numbers they hold (``2.5``, not
    ``np.float32(2.5)``)."""
    return [v.item() if isinstance(v, np.generic) else v for v in values]


def _shown(value: Any, limit: int = 80) -> str:
    """``repr(value)`` with numpy scalars, alone or in a list or tuple, as the Python values they hold (``2``, not
    ``np.int64(2)``), cut to ``limit`` characters."""
    if isinstance(value, np.generic):
        value = value.item()
    elif isinstance(value, (list, tuple)):
        value = type(value)(_plain(list(value)))
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def as_int_list(x: Any, where: str, what: str = "integer indices") -> list[int]:
    """Integer indices from a list, tuple or array (a whole float such as 2.0 is that index). ValueError naming
    ``where`` for anything else: a string ("12" was read as [1, 2]), a bare number, booleans or strings among the
    values (True and "1" were read as index 1: a new user's trial saw AP move without a word). ``what`` names the
    values in the message (``labels`` are instance ids, not indices: helper-140)."""
    if hasattr(x, "ndim") and x.ndim > 1 and sum(d > 1 for d in x.shape) <= 1:  # a row or column (MATLAB's (1, n))
        x = x.ravel()
    if isinstance(x, (str, bytes, dict)) or (hasattr(x, "ndim") and x.ndim != 1 and x.size):
        raise ValueError(f"{where}: expected a list of {what}, got {_shown(x)}")
    try:
        raw = list(x.tolist() if hasattr(x, "tolist") else x)
    except TypeError as e:
        raise ValueError(f"{where}: expected a list of {what}, got {_shown(x)}") from e
    odd = [v for v in raw if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Real)]
    if odd:
        mask = all(isinstance(v, (bool, np.bool_)) for v in raw)  # a boolean mask, one per image (helper-118)
        raise ValueError(
            f"{where}: expected a list of {what}; {_plain(odd[:5])} are not numbers"
            + ("; a mask of booleans? give the indices where it is true (numpy.flatnonzero(mask))" if mask else "")
        )
    try:
        values = [int(v) for v in raw]
    except (TypeError, ValueError, OverflowError) as e:  # NaN, infinity
        raise ValueError(f"{where}: expected a list of {what}; {_plain(raw[:5])} are not all whole numbers") from e
    # int(2.5) is 2: a fractional index named another image without a word (a researcher's trial: 2.5 among the
    # positives moved sv's Medium mAP by 1.5); 2.0 is the index 2, as JSON or a float array may write it
    fractional = [v for v, i in zip(raw, values) if v != i]  # np.float32(2.5) too, which is not a Python float
    if fractional:
        raise ValueError(f"{where}: expected a list of {what}; {_plain(fractional[:5])} are not whole numbers")
    return values


def _box(value: Any, where: str) -> list[float]:
    """``[x1, y1, x2, y2]`` (pixels, float) from a list, tuple or array of 4 numbers; ValueError naming ``where``."""
    if isinstance(value, (str, bytes, dict)) or not hasattr(value, "__len__"):
        raise ValueError(f"{where}: expected 4 numbers [x1, y1, x2, y2], got {_shown(value)}")
    try:
        bbx = [float(v) for v in (value.tolist() if hasattr(value, "tolist") else value)]
    except (TypeError, ValueError):
        raise ValueError(f"{where}: expected 4 numbers [x1, y1, x2, y2], got {_shown(value)}") from None
    if not all(map(math.isfinite, bbx)):  # int(inf) failed in the lists' input function, naming no file
        raise ValueError(f"{where}: expected 4 finite numbers [x1, y1, x2, y2] (pixels), got {bbx}")
    if len(bbx) != 4 or not (bbx[2] > bbx[0] and bbx[3] > bbx[1]):
        raise ValueError(f"{where}: expected [x1, y1, x2, y2] with x2 > x1 and y2 > y1, got {bbx}")
    return bbx


def _first_repeat(names: list[str], what: str, source: str) -> None:
    """ValueError naming the first name listed twice in ``names`` (both positions)."""
    seen: dict[str, int] = {}
    for i, name in enumerate(names):
        if name in seen:
            raise ValueError(f"{source}: '{what}' lists {name!r} twice ({what}[{seen[name]}] and {what}[{i}])")
        seen[name] = i


def _near_top_key(raw: dict[Any, Any], key: str) -> str:
    """``"; found 'gnds': is it a misspelling of 'gnd'?"``: text naming a key of ``raw`` one edit from the missing ``key``
    (case aside), else ``""``."""
    near = next((str(k) for k in raw if k not in TOP_KEYS and _one_edit(str(k).lower(), key)), None)
    return f"; found {near!r}: is it a misspelling of {key!r}?" if near else ""


def _one_edit(a: str, b: str) -> bool:
    """Whether ``a`` and ``b`` differ by at most one insertion, deletion, substitution or swap of neighbours."""
    if a == b:
        return True
    if abs(len(a) - len(b)) > 1:
        return False
    if len(a) == len(b):
        diff = [i for i in range(len(a)) if a[i] != b[i]]
        swap = len(diff) == 2 and diff[1] == diff[0] + 1 and a[diff[0]] == b[diff[1]] and a[diff[1]] == b[diff[0]]
        return len(diff) == 1 or swap
    short, long_ = (a, b) if len(a) < len(b) else (b, a)
    return any(long_[:i] + long_[i + 1 :] == short for i in range(len(long_)))


def _check_entry_keys(g: dict[str, Any], where: str) -> None:
    """ValueError for a gnd entry key one edit from a key that is read (``hrad``, ``Easy``, ``bbox``, ``junks``): its
    positives, or its box, would be dropped without a word. Other keys (the demo's ``instance``, a dataset's own
    annotations such as ``image`` or ``hardness``) are not read, and neither is ``ok`` beside ``easy``/``hard``."""
    for key in (str(k) for k in g if k not in ENTRY_KEYS and k != "ok"):
        near = next((k for k in ENTRY_KEYS if _one_edit(key.lower(), k)), None)
        if near is not None:
            raise ValueError(f"{where}: unknown key {key!r}; did you mean {near!r}? (read: {', '.join(ENTRY_KEYS)})")


def first_names(names: list[str], shown: int = 5) -> str:
    """The first ``shown`` names, comma-separated, with ``, ...`` where there are more: the warnings' lists."""
    return ", ".join(names[:shown]) + (", ..." if len(names) > shown else "")


def _warn_missing_kinds(gnd_raw: list[Any], qimlist: list[str], source: str) -> None:
    """Warn of entries without an ``easy``, ``hard`` or ``junk`` key that other entries have: read as an empty list,
    so a deleted ``hard`` turned that query's hard positives into negatives without a word (helper-154: Medium 97.74
    to 94.92). A key no entry has (a ground truth without junk) is not said; nor are cirtorch's ``ok`` entries."""
    entries = {
        i: g
        for i, g in enumerate(gnd_raw)
        if isinstance(g, dict) and not ("ok" in g and "easy" not in g and "hard" not in g)
    }
    for key in ("easy", "hard", "junk"):
        have = sum(key in g for g in entries.values())
        lack = [qimlist[i] for i, g in entries.items() if key not in g]
        if have and lack:
            log.warning(
                "%s: %d entries of 'gnd' have no '%s' key, which %d others have: read as none (%s); write '%s': [] "
                "where that is meant",
                source,
                len(lack),
                key,
                have,
                first_names(lack),
                key,
            )


MAX_GND_PROBLEMS = 20  # entries named in one error; the rest counted


def _parse_entry(
    g: Any, i: int, qimlist: list[str], imlist: list[str], source: str, queries: dict[tuple[Any, ...], int]
) -> dict[str, Any]:
    """One ``gnd`` entry checked and read (``easy``/``hard``/``junk`` index lists, ``bbx``, GLDv2's ``usage``);
    ``queries`` records each (query, box, labels) seen, to refuse a repeat. ValueError naming the entry."""
    n = len(imlist)
    where = f"{source}: gnd[{i}] (query '{qimlist[i]}')"
    if not isinstance(g, dict):
        raise ValueError(f"{where}: expected a dict")
    _check_entry_keys(g, where)
    entry: dict[str, Any] = {}
    marked = dict(g)  # the entry's index lists by kind
    if "ok" in g and "easy" not in g and "hard" not in g:  # cirtorch's Oxford5k/Paris6k: ok and junk
        marked["easy"] = g["ok"]
    for key in ("easy", "hard", "junk"):
        idx = as_int_list(marked.get(key, []), f"{where}['{key}']")
        bad = [v for v in idx if not 0 <= v < n]
        if bad:
            raise ValueError(f"{where}['{key}']: indices {bad[:5]} outside imlist (0..{n - 1})")
        if len(set(idx)) < len(idx):  # compute_map counts a repeat twice among the positives: AP off, or > 1
            twice = next(v for k, v in enumerate(idx) if v in idx[:k])
            raise ValueError(f"{where}['{key}']: index {twice} ({imlist[twice]!r}) listed twice; list each once")
        entry[key] = idx
    both = sorted(set(entry["easy"]) & set(entry["hard"]))
    if both:
        raise ValueError(
            f"{where}: index {both[0]} ({imlist[both[0]]!r}) is both 'easy' and 'hard' (one label per image "
            "and query; revisitop's files never overlap)"
        )
    entry["bbx"] = _box(g["bbx"], f"{where}['bbx']") if g.get("bbx") is not None else None
    box = None if entry["bbx"] is None else tuple(entry["bbx"])
    first = queries.setdefault((qimlist[i], box, *(tuple(sorted(entry[k])) for k in ("easy", "hard", "junk"))), i)
    if first != i:  # the same photo with another box or other positives is another query (two objects)
        raise ValueError(
            f"{source}: query {qimlist[i]!r} is listed twice with the same box and labels (gnd[{first}], gnd[{i}])"
        )
    if "usage" in g:  # GLDv2: the query's Public / Private part of the solution
        entry["usage"] = str(g["usage"])
    return entry


def parse_ground_truth(raw: Any, source: str) -> GroundTruth:
    """Normalise and validate a revisitop-structured dict (from JSON or pickle). ValueError naming ``source``, the
    query and the key for: an index outside ``imlist`` or listed twice in one list, an image both easy and hard, a
    box that is not 4 numbers with x2 > x1 and y2 > y1, a key one edit from a read key (``hrad``, ``bbox``), a name
    listed twice in ``imlist``, a query listed twice with the same box and labels. ``ok`` (cirtorch's original
    Oxford5k / Paris6k files hold ``ok`` and ``junk``) is read as ``easy`` in an entry without ``easy`` and
    ``hard``; other keys are not read (``ENTRY_KEYS`` are). Ground truth where no query has a positive (every
    metric would be null) is warned about."""
    if not isinstance(raw, dict):
        raise ValueError(f"{source}: expected a dict with keys imlist, qimlist, gnd; got {type(raw).__name__}")
    for key in ("imlist", "qimlist"):
        if key not in raw:
            raise ValueError(f"{source}: missing key '{key}'{_near_top_key(raw, key)}")
    for key, what in (("imlist", "database image"), ("qimlist", "query"), ("gnd", "query")):
        if key in raw and not isinstance(raw[key], (list, tuple)):  # a dict {"0": {...}} read as gnd[0] "not a dict"
            raise ValueError(f"{source}: '{key}' must be a list, one entry per {what}; got {type(raw[key]).__name__}")
    imlist = [str(x) for x in raw["imlist"]]
    qimlist = [str(x) for x in raw["qimlist"]]
    _first_repeat(imlist, "imlist", source)  # a positive's index would name one of two images
    if "gnd" not in raw and qimlist:  # it read as "'gnd' has 0 entries", as if the list were there and empty
        raise ValueError(
            f"{source}: missing key 'gnd' (one entry per query of 'qimlist', {len(qimlist)} here)"
            f"{_near_top_key(raw, 'gnd')}"
        )
    gnd_raw = raw.get("gnd", [])
    if len(gnd_raw) != len(qimlist):
        raise ValueError(f"{source}: 'gnd' has {len(gnd_raw)} entries but 'qimlist' has {len(qimlist)}")
    n = len(imlist)
    gnd = []
    queries: dict[tuple[Any, ...], int] = {}
    read_ok = 0
    problems: list[str] = []  # every entry's first problem, said in one error (one at a time took a run each)
    for i, g in enumerate(gnd_raw):
        try:
            entry = _parse_entry(g, i, qimlist, imlist, source, queries)
        except ValueError as e:
            problems.append(str(e))
            continue
        if "ok" in g and "easy" not in g and "hard" not in g:
            read_ok += 1
        gnd.append(entry)
    if len(problems) == 1:
        raise ValueError(problems[0])
    if problems:
        shown = problems[:MAX_GND_PROBLEMS]
        more = len(problems) - len(shown)
        raise ValueError(
            f"{source}: {len(problems)} entries of 'gnd' are invalid (the first problem of each):\n  "
            + "\n  ".join(shown)
            + (f"\n  ... and {more} more" if more else "")
        )
    if read_ok:
        log.info(
            "%s: 'ok' read as the positives ('easy') in %d entries without 'easy' or 'hard', as cirtorch's "
            "compute_map reads the original Oxford5k/Paris6k ground truth ('hard' is then empty: no Hard protocol)",
            source,
            read_ok,
        )
    _warn_self_matches(imlist, qimlist, gnd, source)
    _warn_missing_kinds(gnd_raw, qimlist, source)
    if gnd and not any(g["easy"] or g["hard"] for g in gnd):
        log.warning("%s: no query has a positive ('easy' or 'hard'): every metric will be null", source)
    else:
        none = [qimlist[i] for i, g in enumerate(gnd) if not g["easy"] and not g["hard"]]
        if none:  # as gnd.csv's junk-only queries: said, in case a list was deleted or misplaced (helper-154)
            log.warning(
                "%s: %d queries have no positive ('easy' or 'hard') in any protocol (AP null, left out of the means): "
                "%s",
                source,
                len(none),
                first_names(none),
            )
    labels = raw.get("labels")
    if labels is not None:
        labels = as_int_list(labels, f"{source}['labels']", "integer instance ids (one per imlist image, -1 for none)")
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


def _warn_self_matches(imlist: list[str], qimlist: list[str], gnd: list[dict[str, Any]], source: str) -> None:
    """A warning naming the queries that are database images (by name) whose own index none of their lists holds:
    each ranks itself first as a negative and loses AP (a new user's trial: Medium 98.51 to 91.80 without a
    word). revisitop's queries are not in ``imlist``; ``gnd.csv`` makes the self-match junk itself."""
    index = {name: j for j, name in enumerate(imlist)}
    selfs = [
        q
        for q, g in zip(qimlist, gnd)
        if q in index and not any(index[q] in g.get(k, []) for k in ("easy", "hard", "junk"))
    ]
    if selfs:
        log.warning(
            "%s: %d queries are also database images (the same name in imlist) and their own image is in none of "
            "their lists: each ranks itself first as a negative, which lowers its AP; list its own index under 'junk' "
            "to ignore the self-match (as gnd.csv does): %s",
            source,
            len(selfs),
            first_names(selfs),
        )


def check_validation_positives(gnd: list[dict[str, Any]], source: str | Path, key: str, split: str) -> None:
    """ValueError where no query of a validation split's ground truth (``gnd``: revisitop's per-query dicts, read from
    ``source``) has a positive ('easy' or 'hard'): its mAP, which ``key`` (e.g. ``ames.validation_split``) chooses
    by, is undefined. AMES's training scored such a split 0.0 every epoch and its evaluation chose the grid point
    by ties of null (helper-140); an evaluated dataset without positives is only warned of, as its metrics are
    reported null."""
    n = sum(1 for g in gnd if g.get("easy") or g.get("hard"))
    if not n:
        raise ValueError(
            f"{source}: {key} '{split}': none of its {len(gnd)} queries has a positive ('easy' or 'hard'), so its "
            f"mAP, which {key} chooses by, is undefined: give its queries positives, or choose another {key}"
        )
    if n < MIN_VALIDATION_QUERIES:  # accepted without a word before (helper-140's one-query split)
        log.warning(
            "%s '%s': only %d of its queries %s a positive; what it chooses (an epoch, a fusion point) follows the "
            "mAP of so few queries, a step of 1/%d per query: give it more (the default demo-val has 20, revisitop's 70)",
            key,
            split,
            n,
            "has" if n == 1 else "have",
            n,
        )


def load_ground_truth(path: str | Path) -> GroundTruth:
    """Read ``gnd.json`` or a revisitop ``gnd_*.pkl`` (restricted unpickler) into a validated GroundTruth."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ground truth not found: {path}")
    return parse_ground_truth(load_ground_truth_raw(path), str(path))


def holds_labels(path: str | Path) -> bool:
    """Whether a ``gnd.json`` or revisitop pickle gives database ``labels`` (what Lw and AMES are fitted on); False
    for any other file (``gnd.csv``, INSTRE's ``.mat``, GLDv2's retrieval solution hold none). A file that cannot be
    read counts as labelled: the lists stage names its problem."""
    path = Path(path)
    if path.suffix not in (".json", ".pkl", ".pickle"):
        return False
    try:
        raw = load_ground_truth_raw(path)
    except Exception:  # noqa: BLE001 -- unreadable: the lists stage names the file and its problem
        return True
    return isinstance(raw, dict) and raw.get("labels") is not None


def load_ground_truth_raw(path: Path) -> Any:
    """The unvalidated content of ``gnd.json`` or a revisitop ``gnd_*.pkl`` (restricted unpickler). ValueError for
    invalid JSON or another format."""
    if path.suffix == ".json":
        try:
            return json.loads(read_utf8(path))  # a byte-order mark (as Notepad saves UTF-8) dropped
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not valid JSON ({e})") from e
    if path.suffix in (".pkl", ".pickle"):
        check_recorded(path)  # an exported folder's gnd_{dataset}.pkl: what its export wrote
        return restricted_pickle_load(path)
    raise ValueError(f"{path}: unknown ground-truth format (expected .json or .pkl)")


def query_box(bbx: list[float], width: int, height: int) -> list[int]:
    """The pixel box a query is cropped to.

    Rule: each coordinate is rounded with Python's ``round`` (half to even), exactly as Pillow's
    ``Image.crop`` does in revisitop's Python example, then clamped to the image (Pillow would pad the part
    outside with black instead; the two agree whenever the box lies inside the image).

    Raises ValueError for a box empty inside the image, and for one within [0, 1] on an image larger than 8 pixels
    (fractions of the image's size, as some tools write them: it cropped a query to about one pixel, silently).
    """
    # x2 > x1 >= 0 within one pixel: fractions of the image's size (a box at negative coordinates is not: it is told
    # it lies outside the image, below; helper-115's trial was told of fractions)
    if min(bbx) >= 0.0 and max(bbx) <= 1.0 and max(width, height) > 8:
        raise ValueError(
            f"query box {list(bbx)} lies within [0, 1]: boxes are in pixels (x1, y1, x2, y2), not fractions of the "
            f"image; multiply by its width and height ({width}x{height})"
        )
    x1, y1, x2, y2 = (int(round(v)) for v in bbx)
    x1, x2 = min(max(x1, 0), width), min(max(x2, 0), width)
    y1, y2 = min(max(y1, 0), height), min(max(y2, 0), height)
    if x2 <= x1 or y2 <= y1:
        raise ValueError(f"query box {bbx} is empty inside a {width}x{height} image")
    return [x1, y1, x2, y2]
