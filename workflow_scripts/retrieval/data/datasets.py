"""Datasets on disk and the image lists built from them.

Accepted layouts under ``{data_root}/{dataset}/``:

* revisitop: ``jpg/{name}.jpg`` + ``gnd_{dataset}.pkl`` (ROxford5k, RParis6k);
* ``jpg/`` + ``gnd.json`` with the same structure (``landmarks-mini``, the generated ``demo`` splits);
* ``gnd.csv`` (``query,positive[,kind]``, optional ``query_boxes.csv``) next to the images: the database is
  ``image_list.txt`` or every image under ``jpg/``; names are paths relative to the folder (see gnd_formats);
* INSTRE: ``gnd_instre.mat`` (Iscen et al.'s protocol) with the images at the paths it names, relative to the
  folder;
* a distractor set (R1M): ``revisitop1m.txt`` naming each image as a path under ``jpg/``; database only, no
  queries;
* AMES release folders (descriptors without the photos): ground truth plus ``test_gallery.txt`` /
  ``test_query.txt`` (path, ..., width, height, in list order); a listed image that is not on disk takes its size
  from them, so ``extract.backbone: ames_import`` runs without the images;
* a plain folder of images without ground truth: ``image_list.txt``/``query_list.txt`` (paths relative to the
  folder) when present, otherwise every image under ``jpg/`` (or the folder itself) is both a database image
  and a query. Such a dataset gets rankings and neighbour lists but no metrics.

When several ground truths exist the first of ``gnd.json``, ``gnd_{dataset}.pkl``, ``gnd.csv``,
``gnd_instre.mat`` is used; a warning names those ignored, except a revisitop pickle equal to the ``gnd.json``
beside it (read with the restricted unpickler).
"""

from __future__ import annotations

import csv
import functools
import io
import logging
import os
import posixpath
import unicodedata
from pathlib import Path
from typing import Any, Callable, Iterator

from retrieval.data.gnd import GroundTruth, load_ground_truth, query_box
from retrieval.data.gnd_formats import (
    BOXES_CSV,
    GLDV2_SOLUTION,
    GLDV2_TRAIN_LISTS,
    GND_CSV,
    INSTRE_MAT,
    DiskNames,
    LineErrors,
    box_line,
    check_comment,
    gldv2_image_lines,
    nearest_sibling,
    read_gldv2,
    read_gldv2_train,
    read_gnd_csv,
    read_instre,
)
from retrieval.data.images import (
    CAMERA_RENDERED_SUFFIXES,
    DEFAULT_MAX_IMAGE_PIXELS,
    IMAGE_SUFFIXES,
    RAW_SUFFIXES,
    image_header,
    raw_pair_key,
)
from retrieval.runtime import is_readable, read_json, read_utf8
from retrieval.stores.ames_release import read_release_list

log = logging.getLogger(__name__)

GLDV2_LISTS = ("index.csv", "test.csv")  # GLDv2's image lists, beside its retrieval solution


ALIASES = {"roxford": "roxford5k", "rparis": "rparis6k"}


DISTRACTOR_LIST = "revisitop1m.txt"


def canonical_name(name: str) -> str:
    """The name revisitop's files use for a dataset: ``roxford`` -> ``roxford5k``, ``rparis`` -> ``rparis6k``
    (``ALIASES``); any other name unchanged."""
    return ALIASES.get(name, name)


def ground_truth_path(dataset_dir: str | Path, name: str) -> Path | None:
    """The dataset's ground-truth file: the first of ``gnd.json``, ``gnd_{dataset}.pkl``, ``gnd.csv``,
    ``gnd_instre.mat``, GLDv2's files that exists, or None (a plain folder). When several exist, a warning names the
    one used and those ignored (a ``gnd.json`` left beside an edited ``gnd.csv`` wins over it). ValueError when
    none exists but a ``gnd_*.pkl`` of another name does (``gnd_roxford5k.pkl`` in a folder ``oxford``), or a
    ``gnd.pkl``."""
    d = Path(dataset_dir)
    found = [
        c
        for c in (
            d / "gnd.json",
            d / f"gnd_{canonical_name(name)}.pkl",
            d / GND_CSV,
            d / INSTRE_MAT,
            d / GLDV2_SOLUTION,
            *(d / n for n in GLDV2_TRAIN_LISTS),
        )
        if c.is_file()
    ]
    if len(found) > 1 and not all(c.name in GLDV2_TRAIN_LISTS + (GLDV2_SOLUTION,) for c in found):
        states = tuple((c.name, c.stat().st_mtime_ns, c.stat().st_size) for c in found)
        _warn_several_ground_truths(str(d), states)
    if not found and d.is_dir():  # a revisitop pickle named after another dataset made the folder a plain one
        other = _other_pickles(str(d), d.stat().st_mtime_ns)
        if other:
            raise ValueError(
                f"{d}: holds {', '.join(other)}, but the ground truth of dataset '{name}' is read from "
                f"gnd_{canonical_name(name)}.pkl (revisitop's naming): rename the file, or name the folder after "
                "it (or give gnd.json or gnd.csv)"
            )
        near = _misnamed_ground_truths(str(d), d.stat().st_mtime_ns)
        if near:
            _warn_misnamed(str(d), near)
    return found[0] if found else None


# the names a ground truth is read from (a revisitop pickle is named after its dataset: not guessed at)
_GROUND_TRUTH_NAMES = ("gnd.json", GND_CSV, INSTRE_MAT)


@functools.lru_cache(maxsize=256)
def _misnamed_ground_truths(folder: str, mtime_ns: int) -> tuple[tuple[str, str], ...]:
    """``(file, meant)`` for each file of a folder without a ground truth that looks meant as one: a name the
    workflow reads in another case (``gnd.CSV``, ``GND.json``) or with a suffix added (``gnd.csv.txt``, as an editor
    saves it). Listed once per folder state (``mtime_ns``), as :func:`_other_pickles`."""
    out = []
    for p in sorted(Path(folder).iterdir()):
        low = p.name.lower()
        meant = next((n for n in _GROUND_TRUTH_NAMES if low == n or low.startswith(n + ".")), None)
        if meant is not None and p.is_file():
            out.append((p.name, meant))
    return tuple(out)


@functools.cache
def _warn_misnamed(folder: str, near: tuple[tuple[str, str], ...]) -> None:
    """Once per folder and set of files: no ground truth is read, but a file looks meant as one."""
    log.warning(
        "%s: no ground truth is read, so the results have rankings and no metrics; found %s: did you mean %s? (the "
        "names read are exactly gnd.json, gnd_<dataset>.pkl, gnd.csv, gnd_instre.mat)",
        folder,
        ", ".join(f for f, _ in near),
        " or ".join(sorted({m for _, m in near})),
    )


@functools.lru_cache(maxsize=256)
def _other_pickles(folder: str, mtime_ns: int) -> tuple[str, ...]:
    """The pickles of a folder named as a ground truth (``gnd_*.pkl``, and ``gnd.pkl`` or ``GND-x.pkl``: a new
    user's ``gnd.pkl`` made the folder a plain one without a word), listed once per folder state (``mtime_ns``): a
    plan asks hundreds of times, and a flat folder of 100k photos takes 0.1 s to list."""
    return tuple(
        sorted(
            p.name
            for p in Path(folder).iterdir()
            if p.name.lower().startswith("gnd") and p.name.lower().endswith(".pkl") and p.is_file()
        )
    )


@functools.cache
def _warn_several_ground_truths(folder: str, states: tuple[tuple[str, int, int], ...]) -> None:
    """A warning naming the ground truth used and those ignored, once per folder state (name, mtime, size of each);
    none when they are only ``gnd.json`` and a revisitop pickle holding the same ground truth (revisitop-style
    folders ship both, landmarks-mini among them)."""
    names = [n for n, _, _ in states]
    if len(names) == 2 and names[0] == "gnd.json" and names[1].endswith(".pkl"):
        try:
            a, b = (load_ground_truth(Path(folder) / n).to_json() for n in names)
        except (OSError, ValueError):
            a, b = None, ()  # an unreadable file is named by the job that reads it; here it is only a difference
        if a == b:
            log.debug("%s: %s and %s hold the same ground truth", folder, *names)
            return
    what = "%s: several ground truths; %s is used, %s ignored (remove what is not meant)"
    log.warning(what, folder, names[0], ", ".join(names[1:]))


def list_files_read(dataset_dir: str | Path, name: str, database: bool = False) -> list[str]:
    """The names (sorted) of the files directly in ``dataset_dir`` that the lists of dataset ``name`` are read from
    besides its images, as ``Plan.folder_source`` watches them: the chosen ground truth (:func:`ground_truth_path`),
    with ``query_boxes.csv`` and ``image_list.txt`` beside a ``gnd.csv``, or ``image_list.txt`` and
    ``query_list.txt`` for a plain folder; with ``database``, only ``image_list.txt`` (what a database listed apart
    reads). [] for a folder that does not exist; ValueError as :func:`ground_truth_path`.

    The lists' manifests record it, and the workflow's plan compares it with the folder's when it reuses the lists
    it planned from: removing such a file leaves every remaining source older than the lists, so modification
    times alone do not show that the lists were built with it. Files the format does not read are left out, so
    adding one does not make every later plan build the lists again."""
    d = Path(dataset_dir)
    if not d.is_dir():
        return []
    if database:
        return ["image_list.txt"] if (d / "image_list.txt").is_file() else []
    gt = ground_truth_path(d, name)
    if gt is not None and gt.name != GND_CSV:
        return [gt.name]
    beside = (BOXES_CSV, "image_list.txt") if gt is not None else ("image_list.txt", "query_list.txt")
    return sorted(([gt.name] if gt is not None else []) + [n for n in beside if (d / n).is_file()])


def fresh_lists(
    path: str | Path,
    sources_of: Callable[[Any], list[str]],
    manifest: str | Path,
    dataset_dir: str | Path,
    name: str,
    database: bool = False,
) -> Any | None:
    """The JSON value in ``path`` (lists written by ``image_lists`` or ``database_list``) when it can still be used
    as the lists of dataset ``name`` in ``dataset_dir``, else None (build them again):

    * ``path`` exists and reads as JSON (a damaged file is built again, not an error);
    * its modification time is at or after that of every file ``sources_of(value)`` names (the folder's sources and
      the listed images); a file gone, or in a folder without search permission, counts as changed;
    * the list files it was built with, ``list_files`` of its ``manifest`` where recorded, are those the folder
      holds now (:func:`list_files_read`, ``database`` as there): removing ``query_boxes.csv`` or ``image_list.txt``
      leaves every remaining source older than the lists, so times alone would keep the old lists (the plan kept a
      cropped query, extracted nothing, and the run stopped at the merge).

    The workflow calls it while it builds the DAG, so a dry run plans from the lists the jobs will write."""
    try:
        content, t = read_json(path), os.path.getmtime(path)
        recorded = read_json(manifest).get("list_files") if os.path.isfile(manifest) else None
    except (OSError, ValueError, AttributeError):  # absent, unreadable or damaged: built again
        return None
    try:
        if recorded is not None and recorded != list_files_read(dataset_dir, name, database):
            return None
    except ValueError:  # a ground truth of another name: building the lists says so
        return None
    try:
        return content if all(os.path.getmtime(p) <= t for p in sources_of(content)) else None
    except OSError:
        return None
    except (KeyError, TypeError):  # not the lists' structure: built again
        return None


def image_file(dataset_dir: Path, name: str, image_dir: str = "jpg") -> Path:
    """revisitop names carry no extension: ``jpg/{name}.jpg``; names that already end in an image suffix are kept,
    and so is a name ending in another suffix (``.gif``, ``.dng``) that is a file where ``{name}.jpg`` is not (a
    gnd.csv query ``q.gif`` was looked for as ``q.gif.jpg``: helper-127). ``image_dir`` is the subfolder names
    are relative to ("" for the dataset folder itself)."""
    base = dataset_dir / image_dir if image_dir else dataset_dir
    suffix = Path(name).suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        return base / name
    # os.path.isfile: False, not an OSError, for a name too long or a folder without search permission; a stat for
    # names of another suffix only (revisitop's and GLDv2's have none)
    if suffix and os.path.isfile(base / name) and not os.path.isfile(base / f"{name}.jpg"):
        return base / name
    return base / f"{name}.jpg"


def database_of_folder(root: Path, check_present: bool = False) -> list[Path]:
    """A folder's database images: ``image_list.txt`` (paths relative to the folder; ``check_present``: see
    :func:`_read_list`) or every image under ``jpg/`` (or the folder itself when it has no ``jpg/``)."""
    listed = root / "image_list.txt"
    return _read_list(listed, root, check_present) if listed.is_file() else _scan_images(root)


def database_apart(root: Path, gpath: Path | None) -> bool:
    """Whether the dataset's database is listed without its queries and ground truth: a plain folder or a ``gnd.csv``
    dataset, whose database is ``image_list.txt`` or the scanned folder. :func:`build_database_list` then lists it
    on its own (the ``database_list`` rule), so editing the queries or the ground truth leaves the database side
    alone. Not for a ground-truth file naming both sides, nor a distractor set."""
    return (gpath is None or gpath.name == GND_CSV) and not (root / DISTRACTOR_LIST).is_file()


def build_database_list(
    dataset_dir: str | Path, name: str, on_bad_image: str = "error", max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS
) -> dict[str, Any]:
    """The database list of a dataset whose database is listed apart (:func:`database_apart`): ``{"dataset",
    "root", "db": [{"name", "path", "width", "height"}, ...]}`` (sizes as displayed, from the file headers), plus
    ``on_bad_image`` and ``skipped`` under ``on_bad_image="skip"``, as in :func:`build_image_lists`.

    Raises FileNotFoundError for a missing folder, an empty database or listed images that are missing, ValueError
    naming every unreadable image (``on_bad_image="error"``) or for a dataset whose database is not listed apart."""
    out, skipped = _database_list(dataset_dir, name, on_bad_image, max_pixels)
    _raise_unreadable(skipped, Path(out["root"]), on_bad_image)
    return out


def _database_list(
    dataset_dir: str | Path, name: str, on_bad_image: str, max_pixels: int
) -> tuple[dict[str, Any], list[dict[str, str]]]:
    """:func:`build_database_list` and its unreadable images, not raised (the caller names them with the queries')."""
    root = Path(dataset_dir).resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"dataset folder not found: {root}")
    gpath = ground_truth_path(root, name)
    if not database_apart(root, gpath):
        raise ValueError(f"{root}: the database is named by {gpath or root / DISTRACTOR_LIST}, not listed apart")
    # beside gnd.csv a name without a suffix gets .jpg and an AMES release list may give the size of an image not on
    # disk (below): the presence of those is checked after, by _check_present
    paths = database_of_folder(root, check_present=on_bad_image == "error" and gpath is None)
    listed = root / "image_list.txt"
    if not paths:
        where = (
            f"{listed} lists no images"
            if listed.is_file()
            else f"{image_folder(root)} holds no images (files ending in {', '.join(IMAGE_SUFFIXES)}, any case)"
        )
        raise FileNotFoundError(f"{gpath or root}: no images to index or search: {where}; {where_images_go(root)}")
    # names relative to the folder; a list may also give absolute paths or paths outside it (../other/x.jpg)
    names = [Path(os.path.relpath(p, root)).as_posix() for p in paths]
    release: dict[str, dict[str, tuple[int, int]]] = {}
    if gpath is not None:
        # gnd.csv names images as its ground truth does: revisitop-style names without a suffix get .jpg, and an
        # AMES release list (test_gallery.txt) gives the sizes of images that are not on disk
        paths = [image_file(root, n, "") for n in names]
        release = {"db": _release_sizes(root / "test_gallery.txt", names)}
    if on_bad_image == "error":
        _check_present(
            [p for p, n in zip(paths, names) if n not in release.get("db", {})],
            "database",
            listed if listed.is_file() else None,
            _held_by(paths),  # a name the list already holds is never offered (helper-166: a duplicate line)
        )
    skipped: list[dict[str, str]] = []
    db = []
    for n, p in zip(names, paths):
        w, h = _size(p, n, "db", release, max_pixels, on_bad_image, skipped)
        db.append({"name": n, "path": str(p), "width": w, "height": h})
    out: dict[str, Any] = {"dataset": name, "root": str(root), "db": db}
    if on_bad_image == "skip":
        out["on_bad_image"] = "skip"
        out["skipped"] = skipped
    return out, skipped


def _same_image_twice(gt: GroundTruth, db_paths: list[Path], q_paths: list[Path]) -> None:
    """ValueError naming the ground truth and both entries when two ``imlist`` names resolve to one path
    (``lego_01`` and ``lego_01.jpg``, or ``./lego_01``), or two ``qimlist`` names do with the same box and lists.
    parse_ground_truth compares the names as written; a second spelling made the image a second database entry,
    ranked beside the first and counted as a negative (a researcher's trial: AP 0.76 for 1.0, no warning). Two
    paths to one file (a symbolic or hard link, another case on a case-insensitive file system) are warned about,
    not refused: a benchmark may link duplicates to one stored copy, each entry labelled as it should be."""
    _repeats(gt, "imlist", [()] * len(db_paths), db_paths, "; list each database image once")
    lists = [(g["bbx"] and tuple(g["bbx"]), *(tuple(sorted(g[k])) for k in ("easy", "hard", "junk"))) for g in gt.gnd]
    _repeats(
        gt, "qimlist", lists, q_paths, " with the same box and lists: the query would be scored twice; list it once"
    )


def _repeats(gt: GroundTruth, key: str, extra: list[tuple[Any, ...]], paths: list[Path], advice: str) -> None:
    """For :func:`_same_image_twice`: ValueError for two entries of ``gt``'s ``key`` list (``imlist`` / ``qimlist``)
    with one normalised path and the same ``extra`` (a query's box and lists), a warning for two with one file
    (device, inode) on other paths."""
    names = getattr(gt, key)
    by_path: dict[tuple[Any, ...], int] = {}
    by_file: dict[tuple[Any, ...], int] = {}
    for i, p in enumerate(paths):
        j = by_path.setdefault((os.path.normcase(os.path.normpath(p)), *extra[i]), i)
        if j != i:
            raise ValueError(
                f"{gt.source}: {key}[{j}] {names[j]!r} and {key}[{i}] {names[i]!r} are one image ({p}){advice}"
            )
        try:
            st = os.stat(p)
        except OSError:  # missing: named by the presence check
            continue
        j = by_file.setdefault((st.st_dev, st.st_ino, *extra[i]), i)
        if j != i:
            log.warning(
                "%s: %s[%d] %r and %s[%d] %r are one file (a link, or a name in another case): scored as two images; "
                "if they are meant as one, list it once",
                gt.source,
                key,
                j,
                names[j],
                key,
                i,
                names[i],
            )


def _size_or_skip(
    p: Path, n: str, split: str, max_pixels: int, on_bad_image: str, skipped: list[dict[str, str]]
) -> tuple[int, int]:
    """The image's displayed size; (0, 0) for a missing or unreadable one, recorded in ``skipped``."""
    try:
        return image_size(p, max_pixels)
    except (FileNotFoundError, ValueError) as e:
        if on_bad_image == "skip":
            # the path, not the split: a searched photo is listed as its folder's database ("db image" misled)
            log.warning("skipping %s (on_bad_image: skip; it gets no features): %s", p, e)
        skipped.append({"split": split, "name": n, "path": str(p), "reason": str(e)})
        return 0, 0


def _raise_unreadable(skipped: list[dict[str, str]], root: Path, on_bad_image: str) -> None:
    """Under ``on_bad_image="error"``, a ValueError naming every unreadable image at once (so one run finds them
    all)."""
    if not skipped or on_bad_image != "error":
        return
    bad = list({s["path"]: s["reason"] for s in skipped}.values())  # a plain folder's queries are its images
    shown = "\n".join(f"  {reason}" for reason in bad[:20])
    more = f"\n  (and {len(bad) - 20} more)" if len(bad) > 20 else ""
    raise ValueError(
        f"{len(bad)} unreadable image(s) in {root}:\n{shown}{more}\n"
        "remove or replace them, or set on_bad_image: skip (they then get no features and never match). Only the "
        "headers were read here: a file cut short after its header is found only when extraction decodes it"
    )


def load_dataset_ground_truth(
    root: Path, gpath: Path, check_files: bool = True, gldv2: dict[str, Any] | None = None
) -> GroundTruth:
    """The ground truth at ``gpath`` in whichever layout it is (revisitop JSON/pickle, gnd.csv, INSTRE .mat,
    GLDv2's retrieval solution or training list). ``gldv2``: the ``gldv2`` configuration (``present_only``,
    ``train_list``, ``exclude_landmarks``)."""
    opts = {"present_only": False, "train_list": "train_clean.csv", "exclude_landmarks": None, **(gldv2 or {})}
    if gpath.name == GLDV2_SOLUTION:
        return read_gldv2(root, opts["present_only"])
    if gpath.name in GLDV2_TRAIN_LISTS:
        if not (root / opts["train_list"]).is_file():
            raise FileNotFoundError(
                f"{root / opts['train_list']}: not found (gldv2.train_list names the training list; "
                f"this folder has {gpath.name})"
            )
        return read_gldv2_train(root, opts["train_list"], opts["exclude_landmarks"], opts["present_only"])
    if gpath.name == GND_CSV:
        db = database_of_folder(root)
        if not db:
            raise FileNotFoundError(f"{gpath}: the database is empty ({where_images_go(root)})")
        return read_gnd_csv(gpath, [p.relative_to(root).as_posix() for p in db], root, check_queries=check_files)
    if gpath.name == INSTRE_MAT:
        return read_instre(gpath)
    return load_ground_truth(gpath)


def _size_or_none(path: Path, max_pixels: int) -> tuple[int, int] | None:
    """:func:`image_size`, or None where it cannot be read (named where the image's size is read for the lists)."""
    try:
        return image_size(path, max_pixels)
    except (OSError, ValueError):
        return None


def image_size(path: Path, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> tuple[int, int]:
    """(width, height) as displayed (EXIF orientation applied: query boxes are in these coordinates), from the file
    header; a missing file is a FileNotFoundError, an unreadable one or a non-JPEG over ``max_pixels`` a ValueError
    (``BadImageError``), each naming it."""
    if not _is_file(path):
        raise FileNotFoundError(f"image listed but not found: {path}")
    w, h, _ = image_header(path, max_pixels)
    return w, h


def _warn_unread_image_list(root: Path, gpath: Path, db_paths: list[Path]) -> None:
    """A warning when ``image_list.txt`` lies beside a ground truth that names the database itself (revisitop's
    ``imlist``) and lists other images: it is not read there (a new user's shortened list changed nothing)."""
    listed = root / "image_list.txt"
    if not listed.is_file():
        return
    try:
        names = {os.path.normpath(p) for p in _read_list(listed, root)}
    except (OSError, ValueError):
        names = set()
    if names != {os.path.normpath(p) for p in db_paths}:
        log.warning(
            "%s is not read: the database is %s's imlist (%d images); image_list.txt is read only beside gnd.csv or "
            "in a folder without ground truth",
            listed,
            gpath.name,
            len(db_paths),
        )


def _read_list(path: Path, root: Path, check_present: bool = False) -> list[Path]:
    """The images of a list file (``image_list.txt``, ``query_list.txt``; UTF-8): one path per line (before any
    comma), relative to ``root`` (spelt as on disk when only its accents' Unicode normalisation differs) or
    absolute; blank lines and ``#`` comments skipped. An image listed twice is an error naming both lines, a comment
    naming a file is one too (:func:`check_comment`), and with ``check_present`` (``on_bad_image: error``) so is a
    line naming a folder or a file that does not exist (with the closest name in its folder); two paths to one file
    (a link) are then warned of (:func:`_one_file_twice`). Every bad line is
    named in one error, in line order (:class:`LineErrors`: ValueError, or FileNotFoundError when every one is a
    missing file)."""
    return [p for p, _ in _read_list_lines(path, root, check_present)]


def _list_name(name: str, root: Path | None = None) -> str:
    """A list file's path as read: a relative one's backslashes are separators (``jpg\\a.jpg``, a list written on
    Windows), as in ``gnd.csv`` and ``query_boxes.csv`` (a new user's trial: the same three files behaved
    differently), unless a file of that very name is under ``root`` (a backslash is a legal character there)."""
    if os.path.isabs(name) or "\\" not in name or (root is not None and (root / name).exists()):
        return name
    return name.replace("\\", "/")


def _windows_absolute(name: str) -> str:
    """The drive (``C:``) or ``\\\\server`` of a Windows absolute path (``C:\\photos\\a.jpg``, ``D:/a.jpg``,
    ``\\\\nas\\share\\a.jpg``), else "": such a line, from a list written on Windows, names no file on this machine."""
    if len(name) > 2 and name[0].isascii() and name[0].isalpha() and name[1] == ":" and name[2] in "\\/":
        return name[:2]
    parts = name[2:].replace("/", "\\").split("\\")
    if name.startswith("\\\\") and len(parts) > 2 and parts[0] and parts[1]:  # \\server\share\...
        return "\\\\" + parts[0]
    return ""


def _one_file_twice(path: Path, i: int, name: str, p: Path, seen: dict[tuple[int, int], tuple[int, str]]) -> None:
    """A warning when line ``i`` of the list ``path`` (``name``, at ``p``) reaches a file an earlier line reached
    (``seen``: (device, inode) -> line and name, updated): a link, a hard link, another case on a case-insensitive
    file system. Not refused, as in a gnd.json: a collection may link duplicates to one stored copy."""
    try:
        st = os.stat(p)
    except OSError:  # named by the presence check
        return
    j, first = seen.setdefault((st.st_dev, st.st_ino), (i, name))
    if j != i:
        log.warning(
            "%s:%d: %r and line %d's %r are one file (a link, or a name in another case): listed as two images, "
            "each the other's first match; if they are meant as one, list it once",
            path,
            i,
            name,
            j,
            first,
        )


def _read_list_lines(path: Path, root: Path, check_present: bool = False) -> list[tuple[Path, int]]:
    """:func:`_read_list` with each image's line number (1-based)."""
    out: list[tuple[Path, int]] = []
    first: dict[str, int] = {}
    same_file: dict[tuple[int, int], tuple[int, str]] = {}  # (device, inode) -> its first line and name
    on_disk = DiskNames(root)
    problems = LineErrors(path)
    lines = read_utf8(path).splitlines()
    listed: set[str] | None = None  # every image the file names (made once a hint is wanted): never a hint's fix

    def named_here() -> set[str]:
        nonlocal listed
        if listed is None:
            names = (
                _list_name(ln.strip().split(",")[0].strip(), root)
                for ln in lines
                if ln.strip() and not ln.strip().startswith("#")
            )
            listed = {os.path.normpath(n if os.path.isabs(n) else root / on_disk(n)) for n in names}
        return listed

    for i, ln in enumerate(lines, start=1):
        ln = ln.strip()
        if not ln:
            continue
        name = ln.split(",")[0].strip()
        with problems.row():
            if ln.startswith("#"):
                check_comment(root, name, f"{path}:{i}")
                continue
            drive = _windows_absolute(name)
            name = _list_name(name, root)
            # (a legal name here is read: a file called "C:\x.jpg", or x.jpg in a folder called "a:")
            if drive and not (root / name).exists():
                raise ValueError(
                    f"{path}:{i}: '{ln.split(',')[0].strip()}' is a Windows path (on {drive}), which names no file "
                    f"here: write the images' paths relative to {root} (or as absolute paths on this machine)"
                )
            p = Path(name) if os.path.isabs(name) else root / on_disk(name)
            key = os.path.normpath(p)
            if key in first:
                raise ValueError(f"{path}:{i}: {ln.split(',')[0]!r} is already listed on line {first[key]}")
            first[key] = i
            if check_present and _is_dir(p):
                raise ValueError(f"{path}:{i}: {name!r} is a folder, not an image")
            if check_present and not _is_file(p):
                hint = "" if problems.full else nearest_sibling(p, name, named_here())
                raise FileNotFoundError(f"{path}:{i}: {name!r} not found{hint}")
            if check_present:  # two paths to one file: warned of, as a gnd.json's are (helper-137 saw none)
                _one_file_twice(path, i, name, p, same_file)
            out.append((p, i))
    problems.raise_if_any()
    return out


def image_folder(root: Path) -> Path:
    """Where a plain folder dataset's images are scanned: ``root/jpg`` when it exists, else ``root``."""
    return root / "jpg" if (root / "jpg").is_dir() else root


def where_images_go(root: Path) -> str:
    """The remedy of an empty database: where its images are read from (``jpg/`` where it exists, else the folder
    itself or a ``jpg/`` made in it: a user who put photos in the folder was told of ``jpg/`` alone, helper-164),
    or an ``image_list.txt``."""
    if image_folder(root) == root:
        return f"put images in {root} (or in a jpg/ folder there), or list them in image_list.txt"
    return f"put images under {root / 'jpg'}, or list them in image_list.txt"


def image_folders(root: Path) -> list[Path]:
    """The scanned folder and every folder below it, hidden ones excluded, symbolic links to folders followed
    (sorted). Adding or removing an image changes the mtime of the folder that holds it, so these are what tells
    that a scan is out of date. A folder this process may not list and enter is left out (Snakemake refuses to
    watch it; the scan warns about it): given permission, it joins them and the scan is made again."""
    base = image_folder(root)
    below = (d for d, _ in _walk(base) if d != base)
    return [base] + sorted(d for d in below if is_readable(d, os.R_OK | os.X_OK))


def _alias_inside(path: Path, base: Path) -> bool:
    """A symbolic link to a file that the scan of ``base`` lists under its own name (inside, not hidden)."""
    try:
        if not path.is_symlink():
            return False
    except PermissionError:  # in a folder without search permission: not known to be a link
        return False
    inside, real = os.path.realpath(base), os.path.realpath(path)
    if os.path.commonpath([real, inside]) != inside:
        return False
    return not any(part.startswith(".") for part in Path(os.path.relpath(real, inside)).parts)


def _is_file(p: Path) -> bool:
    """``p.is_file()``, and True for a path in a folder without search permission (its stat refused): it is there
    as far as a listing can tell, and reading its header names it as unreadable (``no permission to read it``)."""
    try:
        return p.is_file()
    except PermissionError:
        return True


def _is_dir(p: Path) -> bool:
    """``p.is_dir()``; False where a folder without search permission refuses its stat."""
    try:
        return p.is_dir()
    except PermissionError:
        return False


def _is_broken_link(p: Path) -> bool:
    """A symbolic link whose target is missing; False where a folder without search permission refuses the check."""
    try:
        return p.is_symlink() and not p.exists()
    except PermissionError:
        return False


_UNLISTABLE_SAID: set[str] = set()


def _unlistable(e: OSError) -> None:
    """os.walk's error handler: a folder it cannot list (no read permission) is named, its images left out, rather
    than skipped in silence (os.walk's default); once per folder and process (a DAG build scans several times)."""
    if e.filename not in _UNLISTABLE_SAID:
        _UNLISTABLE_SAID.add(e.filename)
        log.warning("%s: folder cannot be listed (%s): its images are left out", e.filename, e.strerror)


def _walk(base: Path) -> Iterator[tuple[Path, list[Path]]]:
    """(folder, its non-hidden entries that are not folders) for ``base`` and every non-hidden folder below it,
    following symbolic links to folders outside ``base`` (each real folder once). A link to a folder inside ``base``
    is not followed: that folder is scanned under its own name. A folder that cannot be listed is warned about."""
    inside = os.path.realpath(base)
    seen: set[str] = set()
    for top, dirs, files in os.walk(base, onerror=_unlistable, followlinks=True):
        real = os.path.realpath(top)
        if real in seen:
            dirs[:] = []
            continue
        seen.add(real)

        def followed(d: str) -> bool:
            full = os.path.join(top, d)
            if not os.path.islink(full):
                return True
            target = os.path.realpath(full)
            return os.path.commonpath([target, inside]) != inside

        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and followed(d))
        yield Path(top), [Path(top) / f for f in sorted(files) if not f.startswith(".")]


# files a dataset folder holds besides its images: not worth a warning when a scan leaves them out
# a dataset's own files (ground truth, lists, notes, an AMES export's descriptors) and the sidecars photo software
# writes beside photos (.xmp: Lightroom, darktable; .pp3: RawTherapee; .dop: DxO; .aae: iPhone edits): left out
# without a warning
_DATASET_FILE_SUFFIXES = (".csv", ".txt", ".json", ".pkl", ".mat", ".md", ".yaml", ".yml", ".h5", ".hdf5")
_SIDECAR_SUFFIXES = (".xmp", ".pp3", ".dop", ".aae")


def _warn_left_out(folder: Path, what: str, names: list[str]) -> None:
    """One warning naming the files a scan leaves out: ``{folder}: {n} {what}: a, b, ... (k more)``; a name with
    spaces at either end, or a character that does not print, is quoted (``'a.jpg '`` read as ``a.jpg``, left out
    as if a .jpg were refused: helper-135)."""
    if names:
        more = f", ... ({len(names) - 10} more)" if len(names) > 10 else ""
        shown = [repr(n) if n != n.strip() or not n.isprintable() else n for n in names[:10]]
        log.warning("%s: %d %s: %s%s", folder, len(names), what, ", ".join(shown), more)


def warn_images_beside_jpg(root: Path) -> None:
    """A warning naming the images put beside a ``jpg/`` folder, which a scan leaves out (the database is the images
    under ``jpg/``): said rather than indexing fewer photos in silence. One ``iterdir`` of ``root``; the workflow
    calls it also when it reuses a database list, as adding a file beside ``jpg/`` changes nothing it watches."""
    if image_folder(root) == root:
        return
    beside = [
        p.name
        for p in root.iterdir()
        if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".") and p.is_file()
    ]
    if beside:  # query photos are at home there: read the query files only when something is beside jpg/
        queries = _named_in_query_files(root)
        beside = sorted(n for n in beside if unicodedata.normalize("NFC", n) not in queries)
    _warn_left_out(root, "image(s) beside jpg/ are not in the database, which is the images under jpg/", beside)


def _named_in_query_files(root: Path) -> set[str]:
    """Every field of the folder's ``gnd.csv`` (read as CSV) and every line of its ``query_list.txt``, as a path
    relative to ``root`` (``./`` dropped, an absolute path made relative, accents in NFC): query photos kept beside
    ``jpg/`` are where they belong, and were warned of as left out of the database (a new user's trial). A plain
    text read, never an error: the files' own readers judge them."""
    fields: list[str] = []
    for listed in (root / GND_CSV, root / "query_list.txt"):
        try:
            text = listed.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        if listed.name == GND_CSV:
            fields += [f for row in csv.reader(io.StringIO(text)) for f in row]
        else:
            fields += [ln.split(",")[0] for ln in text.splitlines()]
    names = set()
    for f in (f.strip() for f in fields):
        if f:
            rel = os.path.relpath(f, root) if os.path.isabs(f) else _list_name(f, root)
            names.add(unicodedata.normalize("NFC", posixpath.normpath(rel.replace(os.sep, "/"))))
    return names


def _scan_images(root: Path) -> list[Path]:
    """Every image (by its suffix, any case: ``IMAGE_SUFFIXES``) under ``image_folder(root)``, subfolders included,
    hidden names skipped (sorted). Other files (raw formats, ``.jxl``), broken links and images put beside a
    ``jpg/`` folder are left out with a warning naming them."""
    base = image_folder(root)
    warn_images_beside_jpg(root)
    entries = [p for _, names in _walk(base) for p in names]
    broken = sorted(str(p.relative_to(base)) for p in entries if _is_broken_link(p))
    _warn_left_out(base, "broken symbolic link(s) left out", broken)
    files = [p for p in entries if _is_file(p) and not _alias_inside(p, base)]
    images = sorted(p for p in files if p.suffix.lower() in IMAGE_SUFFIXES)
    other = sorted(
        str(p.relative_to(base))
        for p in files
        if p.suffix.lower() not in IMAGE_SUFFIXES + _DATASET_FILE_SUFFIXES + _SIDECAR_SUFFIXES
    )
    _warn_left_out(
        base,
        f"file(s) left out, not an image format read here ({' '.join(IMAGE_SUFFIXES)}: convert a photo to one to index "
        "it)",
        other,
    )
    paired = raw_beside_rendered(images)
    _warn_left_out(
        base,
        "camera raw file(s) left out: the JPEG / HEIF of the same name beside each is listed (a RAW+JPEG camera "
        "writes both of one photo)",
        sorted(str(p.relative_to(base)) for p in paired),
    )
    return [p for p in images if p not in paired]


def raw_beside_rendered(images: list[Path]) -> set[Path]:
    """The camera raw files (``RAW_SUFFIXES``) among ``images`` that have a JPEG or HEIF
    (``CAMERA_RENDERED_SUFFIXES``) of the same name, case aside, in the same folder: ``DSC_0001.NEF`` beside
    ``DSC_0001.JPG``, as a camera set to RAW+JPEG writes them. Listing both would put every such photo in the
    database twice. A PNG or TIFF of the same name (an export, an edit) does not pair. Names meet as
    ``images.raw_pair_key`` has them (a Pixel's ``.RAW-01.MP.COVER.jpg`` and ``.RAW-02.ORIGINAL.dng`` too)."""
    rendered = {raw_pair_key(p) for p in images if p.suffix.lower() in CAMERA_RENDERED_SUFFIXES}
    return {p for p in images if p.suffix.lower() in RAW_SUFFIXES and raw_pair_key(p) in rendered}


def _check_present(
    paths: list[Path],
    what: str,
    source: Path | None = None,
    listed: Callable[[Path], set[str]] | None = None,
    hint: str = "",
) -> None:
    """ValueError for listed paths that are folders, FileNotFoundError for those that are not files; both name the
    file that listed them (``source``: the ground truth or a list), when given, and for a list file
    (``image_list.txt``, ``query_list.txt``, GLDv2's ``index.csv`` / ``test.csv``) each path's line, read only when
    something is wrong; ``hint`` ends the missing images' message. ``listed(path)``:
    the paths (``os.path.normpath``) a missing path's "did you mean" never offers (names its list already holds, a
    query's own positives: taking such a hint made a duplicate or a query its own positive, a user's trial)."""
    where = f" in {source}" if source is not None else ""
    folders = [p for p in paths if _is_dir(p)]
    if folders:
        more = f" (and {len(folders) - 5} more)" if len(folders) > 5 else ""
        lines = _list_lines(source)
        shown = [_with_line(p, lines) for p in folders[:5]]
        raise ValueError(f"{len(folders)} {what} path(s) listed{where} are folders, not images: {shown}{more}")
    missing = [p for p in paths if not _is_file(p)]
    if missing:
        more = f" (and {len(missing) - 5} more)" if len(missing) > 5 else ""
        lines = _list_lines(source)
        shown = [_missing_with_line(p, lines, listed(p) if listed else frozenset()) for p in missing[:5]]
        raise FileNotFoundError(f"{len(missing)} {what} image(s) listed{where} but not found: {shown}{more}{hint}")


def _held_by(paths: list[Path]) -> Callable[[Path], set[str]]:
    """``paths`` (``os.path.normpath``) as :func:`_check_present`'s ``listed``: the set is made on the first call only,
    when an image is missing (a million-image list costs nothing when all are there)."""
    held: list[set[str]] = []

    def listed(_: Path) -> set[str]:
        if not held:
            held.append({os.path.normpath(p) for p in paths})
        return held[0]

    return listed


def _query_hint_excludes(
    q_paths: list[Path], db: list[dict[str, Any]], gt: GroundTruth | None
) -> Callable[[Path], set[str]]:
    """What a missing query's "did you mean" never offers: the other queries, and the query's own positives and junk
    (a query may be a database image, but not one its own lists name)."""
    queries = _held_by(q_paths)

    def excluded(path: Path) -> set[str]:
        i = next((k for k, p in enumerate(q_paths) if os.path.normpath(p) == os.path.normpath(path)), None)
        if gt is None or i is None or i >= len(gt.gnd):
            return queries(path)
        own = [int(j) for k in ("easy", "hard", "junk") for j in gt.gnd[i].get(k, [])]
        return queries(path) | {os.path.normpath(db[j]["path"]) for j in own if 0 <= j < len(db)}

    return excluded


def _list_lines(source: Path | None) -> dict[str, int]:
    """Each path of a list file (``image_list.txt``, ``query_list.txt``, relative to its folder; GLDv2's
    ``index.csv`` and ``test.csv``) and its line number; {} for any other source (a ground truth names images by
    index, not by line)."""
    if source is None or source.name not in ("image_list.txt", "query_list.txt", *GLDV2_LISTS) or not source.is_file():
        return {}
    try:
        if source.name in GLDV2_LISTS:
            return {os.path.normpath(source.parent / n): i for n, i in gldv2_image_lines(source).items()}
        return {os.path.normpath(p): i for p, i in _read_list_lines(source, source.parent)}
    except (OSError, ValueError):
        return {}


def _with_line(path: Path, lines: dict[str, int]) -> str:
    line = lines.get(os.path.normpath(path))
    return str(path) if line is None else f"{path} (line {line})"


def _missing_with_line(path: Path, lines: dict[str, int], listed: set[str] | frozenset[str] = frozenset()) -> str:
    """A missing image as :func:`_with_line` names it, with the closest name in its folder not in ``listed`` (a
    typo's fix)."""
    return _with_line(path, lines) + nearest_sibling(path, listed=listed)


def _release_sizes(path: Path, names: list[str]) -> dict[str, tuple[int, int]]:
    """Image sizes from an AMES ``test_gallery.txt`` / ``test_query.txt`` whose lines follow ``names``; {} if absent."""
    if not path.is_file():
        return {}

    rows = read_release_list(path)
    if len(rows) != len(names):
        raise ValueError(f"{path}: {len(rows)} lines but the ground truth lists {len(names)} images")
    out = {}
    for i, (n, (rel, w, h)) in enumerate(zip(names, rows)):
        if Path(rel).stem != Path(n).stem:
            raise ValueError(
                f"{path}: line {i + 1} names {rel!r}, the ground truth's image {i} is {n!r} (order differs)"
            )
        out[n] = (w, h)
    return out


def build_image_lists(
    dataset_dir: str | Path,
    name: str,
    crop_queries: bool = True,
    on_bad_image: str = "error",
    max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
    gldv2: dict[str, Any] | None = None,
    database: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], GroundTruth | None]:
    """The ``db`` and ``query`` lists of a dataset (paths, displayed sizes, query boxes in displayed coordinates)
    and its ground truth, if any. A non-JPEG image over ``max_pixels`` is a bad image (see images.py).

    ``database``: for a dataset whose database is listed apart (:func:`database_apart`), its
    :func:`build_database_list` (the ``database_list`` rule's ``db.json``), used as it is; built here when None.
    A query that is a database image takes its size from there.

    ``on_bad_image="skip"``: a missing or unreadable image stays in the list (so ground-truth indices hold) with
    size 0 x 0 and no box, is named in ``lists["skipped"]``, and gets no features at extraction. ``"error"``:
    FileNotFoundError naming the missing files, else ValueError naming every unreadable one (all of them, so that
    one run finds them all)."""
    if on_bad_image not in ("error", "skip"):
        raise ValueError(f"on_bad_image must be 'error' or 'skip', not {on_bad_image!r}")
    root = Path(dataset_dir).resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"dataset folder not found: {root}")
    gpath = ground_truth_path(root, name)
    # GLDv2: a missing image is named by its line of index.csv / test.csv (the solution file was named, helper-118),
    # with the way to use a partial download
    gldv2_solution = gpath is not None and gpath.name == GLDV2_SOLUTION
    partial_hint = (
        "; a partial download? gldv2: {present_only: true} keeps the images on disk and the ground truth of those "
        "(README, 'Google Landmarks v2')"
        if gpath is not None and gpath.name in (GLDV2_SOLUTION, *GLDV2_TRAIN_LISTS)
        else ""
    )
    release: dict[str, dict[str, tuple[int, int]]] = {}
    known: dict[str, tuple[int, int]] = {}  # path -> size of the database images listed apart
    known_skipped: dict[str, list[dict[str, str]]] = {}
    if database_apart(root, gpath):
        if database is None:  # built here: its unreadable images are named with the queries'
            database, skipped = _database_list(root, name, on_bad_image, max_pixels)
        elif database["root"] != str(root):
            raise ValueError(f"the database list is of {database['root']}, not of {root}")
        else:
            skipped = list(database.get("skipped", []))
        db = [dict(e) for e in database["db"]]
        db_names = [e["name"] for e in db]
        known = {e["path"]: (e["width"], e["height"]) for e in db}
        known_skipped = {x["path"]: [x] for x in skipped}
        if gpath is not None:
            gt: GroundTruth | None = read_gnd_csv(
                gpath,
                db_names,
                root,
                check_queries=on_bad_image == "error",
                # every box checked against its image here, so a box outside it is named with the file's other errors
                query_size=(lambda q: _size_or_none(root / q, max_pixels)) if crop_queries else None,
            )
            q_names = list(gt.qimlist)
            q_paths = [image_file(root, n, gt.image_dir) for n in q_names]
            release = {"query": _release_sizes(root / "test_query.txt", q_names)}
        else:
            gt = None
            listed = root / "query_list.txt"
            q_paths = (
                _read_list(listed, root, on_bad_image == "error") if listed.is_file() else [Path(e["path"]) for e in db]
            )
            if listed.is_file() and not q_paths:  # it failed later, naming the empty query store, not this file
                raise ValueError(f"{listed}: names no query images (blank and # comment lines only)")
            q_names = [Path(os.path.relpath(p, root)).as_posix() for p in q_paths]
    else:
        skipped = []
        gt = load_dataset_ground_truth(root, gpath, on_bad_image == "error", gldv2) if gpath else None
        if gt is not None:
            db_paths = [image_file(root, n, gt.image_dir) for n in gt.imlist]
            q_paths = [image_file(root, n, gt.image_dir) for n in gt.qimlist]
            _same_image_twice(gt, db_paths, q_paths)
            _warn_unread_image_list(root, gpath, db_paths)
            db_names, q_names = list(gt.imlist), list(gt.qimlist)
            release = {
                "db": _release_sizes(root / "test_gallery.txt", db_names),
                "query": _release_sizes(root / "test_query.txt", q_names),
            }
        else:  # a distractor set
            db_names = [ln.strip() for ln in (root / DISTRACTOR_LIST).read_text().splitlines() if ln.strip()]
            db_paths = [image_file(root, n) for n in db_names]
            q_paths, q_names = [], []
            if not db_paths:
                raise ValueError(f"{root / DISTRACTOR_LIST}: names no images")
        if on_bad_image == "error":
            _check_present(
                [p for p, n in zip(db_paths, db_names) if n not in release["db"]] if release else db_paths,
                "database",
                root / "index.csv" if gldv2_solution else gpath or root / DISTRACTOR_LIST,
                _held_by(db_paths + q_paths),  # names the lists hold, never offered
                partial_hint,
            )
        db = []
        for i, (n, p) in enumerate(zip(db_names, db_paths)):
            w, h = _size(p, n, "db", release, max_pixels, on_bad_image, skipped)
            entry: dict[str, Any] = {"name": n, "path": str(p), "width": w, "height": h}
            if gt is not None and gt.labels is not None:
                entry["label"] = gt.labels[i]
            db.append(entry)
    if on_bad_image == "error":
        _check_present(
            [p for p, n in zip(q_paths, q_names) if n not in release.get("query", {}) and str(p) not in known],
            "query",
            (root / "test.csv" if gldv2_solution else gpath)
            if gt is not None
            else next((p for p in [root / "query_list.txt"] if p.is_file()), None),
            _query_hint_excludes(q_paths, db, gt),
            partial_hint,
        )

    queries = []
    n_cropped = 0
    clamped = []
    boxes_from = root / "query_boxes.csv" if gpath is not None and gpath.name == "gnd.csv" else gpath
    for i, (n, p) in enumerate(zip(q_names, q_paths)):
        if str(p) in known:  # a database image: its size (and under skip, its reason) as the database list has it
            w, h = known[str(p)]
            skipped += [{**x, "split": "query", "name": n} for x in known_skipped.get(str(p), [])]
        else:
            w, h = _size(p, n, "query", release, max_pixels, on_bad_image, skipped)
        bbx = gt.gnd[i]["bbx"] if gt is not None else None
        crop = None
        if bbx is not None and crop_queries and w > 0:
            try:
                crop = query_box(bbx, w, h)
            except ValueError as e:
                where = boxes_from
                if gpath is not None and gpath.name == GND_CSV:
                    where = f"{boxes_from}:{box_line(boxes_from, n)}"
                raise ValueError(f"{where}: query {n!r}: {e}") from None
            if min(bbx[0], bbx[1]) < 0 or bbx[2] > w or bbx[3] > h:
                clamped.append(f"{n} {list(bbx)} -> {crop}")
        n_cropped += crop is not None
        queries.append({"name": n, "path": str(p), "width": w, "height": h, "bbx": bbx, "crop": crop})
    if clamped:
        log.warning(
            "%s: %d query box(es) reach outside their image and were clamped to it: %s",
            boxes_from,
            len(clamped),
            "; ".join(clamped[:10]) + (f"; ... ({len(clamped) - 10} more)" if len(clamped) > 10 else ""),
        )
    _raise_unreadable(skipped, root, on_bad_image)
    if gt is not None and gt.n_queries and not crop_queries:
        log.warning(
            "queries of %s are NOT cropped to their boxes (crop_queries: false); the revisitop "
            "protocol crops them, so metrics are not comparable to published numbers",
            name,
        )
    log.info(
        "%s: %d database images, %d queries (%d cropped to their box), ground truth: %s",
        name,
        len(db),
        len(queries),
        n_cropped,
        gpath or "none",
    )
    lists = {
        "dataset": name,
        "root": str(root),
        "ground_truth": str(gpath) if gpath else None,
        "crop_queries": bool(crop_queries),
        "db": db,
        "query": queries,
    }
    if gt is not None and gt.subset is not None:
        lists["subset"] = gt.subset
    if on_bad_image == "skip":
        lists["on_bad_image"] = "skip"
        lists["skipped"] = skipped
    return lists, gt


def _size(
    p: Path,
    n: str,
    split: str,
    release: dict[str, dict[str, tuple[int, int]]],
    max_pixels: int,
    on_bad_image: str,
    skipped: list[dict[str, str]],
) -> tuple[int, int]:
    """An image's displayed size: from an AMES release list when the image is not on disk, else its header."""
    if not _is_file(p) and n in release.get(split, {}):
        return release[split][n]
    return _size_or_skip(p, n, split, max_pixels, on_bad_image, skipped)


def with_distractors(
    base_lists: dict[str, Any], base_gnd: dict[str, Any] | None, distractor_lists: dict[str, Any], name: str
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The lists and ground truth of ``{dataset}+1m``: the dataset's database with the distractors appended.

    Queries, query boxes and ground-truth indices are the dataset's own (the distractors come after its database
    rows, so ``easy``/``hard``/``junk`` indices are unchanged); ``imlist`` gains the distractor names. Distractors
    are never relevant: a distractor set with queries or labels is refused."""
    if distractor_lists["query"]:
        raise ValueError(
            f"{distractor_lists['dataset']}: a distractor set has no queries, this one has "
            f"{len(distractor_lists['query'])}"
        )
    dup = {e["path"] for e in base_lists["db"]} & {e["path"] for e in distractor_lists["db"]}
    if dup:
        raise ValueError(
            f"{name}: {len(dup)} distractor image(s) are also database images of "
            f"{base_lists['dataset']}, e.g. {sorted(dup)[:3]}"
        )
    labelled = base_gnd is not None and base_gnd.get("labels") is not None
    db = list(base_lists["db"]) + [
        {**{k: v for k, v in e.items() if k != "label"}, **({"label": -1} if labelled else {})}
        for e in distractor_lists["db"]
    ]
    lists = {
        **base_lists,
        "dataset": name,
        "db": db,
        "parts": [
            {"dataset": base_lists["dataset"], "root": base_lists["root"], "rows": len(base_lists["db"])},
            {
                "dataset": distractor_lists["dataset"],
                "root": distractor_lists["root"],
                "rows": len(distractor_lists["db"]),
            },
        ],
    }
    skipped = base_lists.get("skipped", []) + distractor_lists.get("skipped", [])
    if "skipped" in base_lists or "skipped" in distractor_lists:
        lists["skipped"] = skipped
    gnd = None
    if base_gnd is not None:
        gnd = {**base_gnd, "imlist": list(base_gnd["imlist"]) + [e["name"] for e in distractor_lists["db"]]}
        if labelled:
            gnd["labels"] = list(gnd["labels"]) + [-1] * len(distractor_lists["db"])
    return lists, gnd
