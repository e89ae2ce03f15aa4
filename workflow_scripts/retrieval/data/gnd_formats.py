"""Ground truth in layouts other than revisitop's, converted once to the project's :class:`GroundTruth`.

* ``gnd.csv`` (written by hand): rows ``query,positive[,kind]`` next to the image folders, with an optional
  ``query_boxes.csv`` (``query,x1,y1,x2,y2``);
* Google Landmarks v2 retrieval (the official layout): ``index.csv``, ``test.csv`` (column ``id``),
  ``retrieval_solution_v2.1.csv`` (``id``, ``images``, ``Usage``), images at ``index/{a}/{b}/{c}/{id}.jpg``
  and ``test/{a}/{b}/{c}/{id}.jpg``; evaluated with the official mAP@100 (``protocol: gldv2``);
* INSTRE's ``gnd_instre.mat`` in Iscen et al.'s protocol (diffusion, CVPR 2017): ``imlist``, ``qimlist`` (cells
  of paths relative to the dataset folder) and ``gnd``, a struct per query with ``ok`` (1-based positives into
  ``imlist``) and ``bbx`` (``[x1, y1, x2, y2]`` in pixels, the box the query is cropped to).

In both, image names are paths relative to the dataset folder (``GroundTruth.image_dir == ""``), not to ``jpg/``.
Every error names the file and, for CSV files, the line.
"""

from __future__ import annotations

import collections
import contextlib
import csv
import difflib
import io
import logging
import math
import os
import posixpath
import unicodedata
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Iterator

import numpy as np

from retrieval.data.gnd import GroundTruth, as_int_list, first_names, parse_ground_truth, query_box
from retrieval.data.images import CAMERA_RENDERED_SUFFIXES, IMAGE_SUFFIXES, RAW_SUFFIXES, raw_pair_key
from retrieval.runtime import read_utf8

log = logging.getLogger(__name__)

GND_CSV = "gnd.csv"


BOXES_CSV = "query_boxes.csv"


INSTRE_MAT = "gnd_instre.mat"


KINDS = ("easy", "hard", "junk")


def relative_name(value: str, where: str, column: str = "") -> str:
    """A path relative to the dataset folder, normalised (``./a//b.jpg`` -> ``a/b.jpg``); absolute paths and
    paths leaving the folder are refused with ``where`` (file:line) in the message, an empty one with ``column``
    (the CSV column it was read from, where there is one)."""
    v = value.strip().replace("\\", "/")
    if not v:
        raise ValueError(f"{where}: empty image path" + (f" in column '{column}'" if column else ""))
    if v.startswith("/") or (len(v) > 1 and v[1] == ":"):
        raise ValueError(f"{where}: {value!r} is absolute; paths are relative to the dataset folder")
    n = posixpath.normpath(v)
    if n == ".." or n.startswith("../"):
        raise ValueError(f"{where}: {value!r} leaves the dataset folder")
    return n


def _nfc(name: str) -> str:
    return unicodedata.normalize("NFC", name)


class DiskNames:
    """Paths relative to ``root`` as they are spelt on disk when they differ only in the Unicode normalisation of
    their accents: a folder copied from macOS holds decomposed names (``e`` + combining acute), a ``gnd.csv`` or
    ``image_list.txt`` typed elsewhere composed ones (``é``), and the two look the same. Called with ``rel``: ``rel``
    unchanged when it exists or when no entry (or more than one) of a folder matches a missing component by NFC
    form, else the on-disk spelling. Each folder is listed once (a dict of NFC forms), so N names cost O(N)."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self._folders: dict[Path, dict[str, list[str]] | None] = {}

    def _entries(self, folder: Path) -> dict[str, list[str]] | None:
        if folder not in self._folders:
            try:
                by_nfc: dict[str, list[str]] | None = {}
                for e in os.listdir(folder):
                    by_nfc.setdefault(_nfc(e), []).append(e)
            except OSError:
                by_nfc = None
            self._folders[folder] = by_nfc
        return self._folders[folder]

    def __call__(self, rel: str) -> str:
        if rel.isascii() or (self.root / rel).exists():  # an ASCII name has one normalisation: no file system call
            return rel
        cur, parts = self.root, []
        for part in rel.split("/"):
            name = part
            if not (cur / part).exists():
                match = (self._entries(cur) or {}).get(_nfc(part), [])
                if len(match) != 1:
                    return rel
                name = match[0]
            parts.append(name)
            cur = cur / name
        return "/".join(parts)


MAX_SIBLINGS_COMPARED = 5000  # a larger folder gets no hint (difflib: about 4 s per name at 100,000 files)


def nearest_sibling(path: Path, typed: str | None = None, listed: set[str] | frozenset[str] = frozenset()) -> str:
    """A hint ("; did you mean 'barn_03.jpg'?") for a missing image whose folder holds another file of the same
    suffix and a close stem (difflib's ratio at least 0.8 on the stems, hidden files left out), else "": a typo in a
    list file or gnd.csv is named with its fix. With ``typed`` (the name as the file wrote it, e.g.
    ``queries/doge_5.jpg``) the fix is written the same way (``queries/doge_05.jpg``), else as the bare file name.
    A file of the same name with another suffix (``lego_02.png`` for ``lego_02.jpg``: revisitop's layout reads a
    name without a suffix as .jpg) is named first, whatever the folder's size. A folder of more than MAX_SIBLINGS_COMPARED such files gets none (slow, and hashed names are close by chance).
    ``listed``: paths (``os.path.normpath``) the list file already names, never offered (taking the hint made a
    duplicate line)."""
    try:
        entries = os.listdir(path.parent)
    except OSError:
        return ""
    if listed:
        entries = [e for e in entries if os.path.normpath(path.parent / e) not in listed]
    suffix = path.suffix.lower()

    def fix_as(name: str) -> str:
        return name if typed is None else posixpath.join(posixpath.dirname(typed.replace("\\", "/")), name)

    # the same name with another suffix (lego_02.png where lego_02.jpg is read): that file, not a neighbour's
    other = sorted(e for e in entries if Path(e).stem == path.stem and e != path.name and not e.startswith("."))
    if other:
        return f"; did you mean {fix_as(other[0])!r} (the same name with another suffix)?"
    stems = {
        Path(e).stem: e
        for e in entries
        if e != path.name and not e.startswith(".") and Path(e).suffix.lower() == suffix
    }
    if not stems or len(stems) > MAX_SIBLINGS_COMPARED:
        return ""
    near = difflib.get_close_matches(path.stem, list(stems), n=1, cutoff=0.8)
    if not near:
        return ""
    return f"; did you mean {fix_as(stems[near[0]])!r}?"


def _positive_path(root: Path, positive: str, where: str) -> str:
    """The path (``os.path.normpath``) a row's positive names, for a missing query's hint to leave out; "" where the
    row has none or names it badly (that row's positive is checked once the query is found: its hint needs the
    query; a bad kind is named at once)."""
    try:
        return os.path.normpath(root / relative_name(positive, where)) if positive else ""
    except ValueError:
        return ""


def check_comment(root: Path, field: str, where: str) -> None:
    """A ValueError (at ``where``, file:line) when a ``#`` comment line's first field names a file under ``root``: a
    photo called ``#barn.jpg`` would otherwise be dropped from the list without a word (a new user's trial). The
    message gives both readings: ``./#barn.jpg`` lists it, a space after ``#`` keeps the comment."""
    name = field.strip()
    try:
        is_file = bool(name) and not os.path.isabs(name) and (Path(root) / name).is_file()
    except (OSError, ValueError):  # a name the file system cannot hold
        is_file = False
    if is_file:
        raise ValueError(
            f"{where}: {name!r} reads as a comment (its line starts with #), but a file of that name is in {root}: "
            f"write ./{name} to list it, or put a space after the # to keep the line a comment"
        )


MAX_LINES_NAMED = 20  # bad lines one error names, as image_lists names at most 20 unreadable images


class LineErrors:
    """The errors of a CSV file's rows, raised together once the whole file is read, so that one run names every
    bad line (up to MAX_LINES_NAMED, and a count), not the first alone.

    A single error is raised as it was found; several are one ValueError (FileNotFoundError when every one is a
    missing file) headed ``{path}: {n} bad lines``, one line per error, each naming its ``file:line``.
    """

    def __init__(self, path: Path):
        self.path = path
        self.errors: list[ValueError | FileNotFoundError] = []

    @property
    def full(self) -> bool:
        """As many errors as one message names: hints that cost a search (did you mean) are left out of later ones."""
        return len(self.errors) >= MAX_LINES_NAMED

    def add(self, error: ValueError | FileNotFoundError) -> None:
        self.errors.append(error)

    @contextlib.contextmanager
    def row(self) -> Iterator[None]:
        """Around one row's checks: an error they raise is kept, and reading goes on with the next row."""
        try:
            yield
        except (ValueError, FileNotFoundError) as e:
            self.errors.append(e)

    def raise_if_any(self) -> None:
        """Raise what was kept (nothing when no row was bad)."""
        if not self.errors:
            return
        if len(self.errors) == 1:
            raise self.errors[0]
        shown = "\n".join(f"  {e}" for e in self.errors[:MAX_LINES_NAMED])
        more = f"\n  (and {len(self.errors) - MAX_LINES_NAMED} more)" if len(self.errors) > MAX_LINES_NAMED else ""
        kind = FileNotFoundError if all(isinstance(e, FileNotFoundError) for e in self.errors) else ValueError
        raise kind(f"{self.path}: {len(self.errors)} bad lines (fix them all, then run again):\n{shown}{more}")


def _skipped_row(row: list[str]) -> bool:
    """A blank line, or a comment (its first field starting with #)."""
    return not row or all(not c.strip() for c in row) or row[0].lstrip().startswith("#")


def _misspelt_columns(header: list[str], known: tuple[str, ...]) -> str:
    """A hint naming, for each header column that is not a known one, the absent known column it is closest to
    ("; did you mean 'positive' for 'postive'?"), or "" when none is close (difflib's ratio at least 0.6)."""
    absent = [c for c in known if c not in header]
    pairs = []
    for h in header:
        if h and h not in known:
            near = difflib.get_close_matches(h, absent, n=1, cutoff=0.6)
            if near:
                pairs.append(f"{near[0]!r} for {h!r}")
    return f"; did you mean {', '.join(pairs)}?" if pairs else ""


def _declared_separator(fields: list[str]) -> str | None:
    """The separator a spreadsheet's first line declares (``sep=,``, as Excel writes and reads it), from that line's
    fields as read with commas, or None for any other line. ``sep=,`` padded with commas to the sheet's width
    (``sep=,,``, written back by LibreOffice or Google Sheets) or followed by spaces is a comma; ``sep=;`` or
    ``sep=<tab>`` (one field, the tab kept) names that character."""
    first = fields[0].lower()
    if len(fields) > 1 and first.strip() == "sep=" and not "".join(fields[1:]).strip():
        return ","
    if len(fields) == 1 and first.startswith("sep=") and len(first.rstrip("\r\n ")) == 5:
        return fields[0][4]
    return None


def _rows(
    path: Path,
    required: tuple[str, ...],
    optional: tuple[str, ...],
    extra_columns: bool = False,
    short: str | None = None,
    problems: LineErrors | None = None,
) -> Iterator[tuple[int, dict[str, str]]]:
    """(line number, row) of a CSV file (UTF-8) with a header line; blank lines and # comments are skipped, before the
    header too, and so are Excel's separator line ``sep=,`` above it (another separator declared there is an error
    naming it) and empty trailing columns (a spreadsheet's trailing commas). Missing (and unless
    ``extra_columns``, unknown) columns are errors naming them (with a hint when the header is one field holding ; or
    a tab), as is a row with more non-empty fields than the header, or (with ``short``, a hint appended to the
    message) fewer than the required columns. With ``problems``, a bad row is kept there and passed over (the
    header's errors are raised at once: no row can be read without it)."""
    try:
        text = read_utf8(path)
    except OSError as e:
        raise FileNotFoundError(f"{path}: cannot be read ({e})") from e
    with io.StringIO(text, newline="") as fh:
        reader = csv.reader(fh)
        header = next((r for r in reader if not _skipped_row(r)), None)
        separator = None if header is None else _declared_separator(header)
        if separator is not None:  # Excel's separator line (`sep=,`; Excel reads it and hides it)
            if separator != ",":
                raise ValueError(
                    f"{path}:{reader.line_num}: {'sep=' + separator!r} declares {separator!r} as the separator; "
                    "columns are separated by commas here: save it as CSV with commas and delete that line"
                )
            header = next((r for r in reader if not _skipped_row(r)), None)
        if header is None:
            raise ValueError(
                f"{path}: no header line (the file is empty, or blank and # lines only); the first line must be the "
                f"header {','.join(required + optional)}"
            )
        at = f"{path}:{reader.line_num}"
        written = [h.strip() for h in header]  # as the file writes it, for the messages
        header = [h.lower() for h in written]
        while header and not header[-1]:  # a spreadsheet's trailing empty columns ("query,positive,kind,,")
            header.pop()
        missing = [c for c in required if c not in header]
        typos = _misspelt_columns(header, required + optional)
        unknown = [c for c in header if c not in required + optional]
        if "x2" in required and ({"w", "h"} <= set(header) or {"width", "height"} <= set(header)):
            # a box as x, y, width, height (COCO's way): not a misspelling of the corners' names
            typos = "; a box is given by its corners x1,y1,x2,y2 in pixels, not x,y,w,h: x2 = x + w, y2 = y + h"
        elif unknown and not extra_columns:  # the columns no known one is close to, named with the misspelt ones
            absent = [c for c in required + optional if c not in header]
            others = [c for c in unknown if not difflib.get_close_matches(c, absent, n=1, cutoff=0.6)]
            if others and missing:
                typos = f"; unknown column(s) {others} (allowed: {list(required + optional)})" + typos
        if missing:
            seps = [s for s in (";", "\t", "|") if len(header) == 1 and s in header[0]]
            # a first line of data (no header line at all): it names image files
            data = not seps and any("." in h or "/" in h for h in header)  # column names hold neither
            raise ValueError(
                f"{at}: header {written[: len(header)]} lacks column(s) {missing}; expected "
                + f"{','.join(required)}"
                + (f"[,{','.join(optional)}]" if optional else "")
                + (f" (columns are separated by commas, this line by {seps[0]!r})" if seps else "")
                + (
                    " (this line reads as a row of data: add the header line "
                    f"{','.join((required + optional)[: max(len(required), len(header))])} above it)"
                    if data
                    else ""
                )
                + ("" if data else typos)  # a row of data holds file names, not misspelt columns
            )
        if unknown and not extra_columns:
            raise ValueError(f"{at}: unknown column(s) {unknown}; allowed: {list(required + optional)}{typos}")
        dup = sorted({c for c in header if header.count(c) > 1})
        if dup:
            raise ValueError(f"{at}: column(s) {dup} appear more than once")
        for row in reader:
            line = reader.line_num
            error = _row_error(path, line, row, header, required, short, optional)
            if error is not None:
                if problems is None:
                    raise error
                problems.add(error)
            elif not _skipped_row(row):
                yield line, {c: (row[i].strip() if i < len(row) else "") for i, c in enumerate(header)}


def _row_error(
    path: Path,
    line: int,
    row: list[str],
    header: list[str],
    required: tuple[str, ...],
    short: str | None,
    optional: tuple[str, ...] = (),
) -> ValueError | None:
    """What is wrong with one row of a CSV file as a whole (its number of fields, with the header line that would
    name them where the header lacks optional columns; a comment naming a file), or None."""
    if _skipped_row(row):
        try:
            if row:
                check_comment(path.parent, row[0], f"{path}:{line}")
        except ValueError as e:
            return e
        return None
    if len(row) > len(header) and any(c.strip() for c in row[len(header) :]):
        filled = len(row)  # up to the last non-empty field: a spreadsheet's trailing empty ones are not columns
        while filled > len(header) and not row[filled - 1].strip():
            filled -= 1
        n = filled - len(header)
        absent = [c for c in required + optional if c not in header]
        hint = ""
        if 0 < n <= len(absent):  # a column the header left out (query,positive above rows with a kind)
            what = f"the extra field is {absent[0]}" if n == 1 else f"the extra fields are {', '.join(absent[:n])}"
            hint = f"; if {what}, the header line is {','.join(header + absent[:n])}"
        return ValueError(
            f"{path}:{line}: {len(row)} fields but the header has {len(header)} ({','.join(header)}){hint}"
        )
    if short is not None and len(row) < len(required):
        return ValueError(f"{path}:{line}: {len(row)} field(s) but {len(required)} columns are required; {short}")
    return None


QuerySize = Callable[[str], "tuple[int, int] | None"]  # a query's (width, height) as displayed, None: unknown


def read_query_boxes(
    path: Path, queries: dict[str, int], query_size: QuerySize | None = None
) -> dict[str, list[float]]:
    """``query_boxes.csv``: one box ``[x1, y1, x2, y2]`` per query (pixels of the image as displayed).

    ``query_size``: a query's size, when the boxes are to be checked against their images (a box wholly outside
    its image is empty once clamped, :func:`retrieval.data.gnd.query_box`). Raises ValueError naming ``path:line``
    for each bad row, all of them in one error (:class:`LineErrors`)."""
    boxes: dict[str, list[float]] = {}
    first_line: dict[str, int] = {}
    by_nfc = {_nfc(q): q for q in queries}
    problems = LineErrors(path)
    for line, row in _rows(path, ("query", "x1", "y1", "x2", "y2"), (), problems=problems):
        with problems.row():
            _box_row(path, line, row, queries, by_nfc, boxes, first_line, query_size)
    problems.raise_if_any()
    return boxes


def _box_row(
    path: Path,
    line: int,
    row: dict[str, str],
    queries: dict[str, int],
    by_nfc: dict[str, str],
    boxes: dict[str, list[float]],
    first_line: dict[str, int],
    query_size: QuerySize | None = None,
) -> None:
    """Check one row of ``query_boxes.csv`` (with ``query_size``, against its image too) and add its box to
    ``boxes`` (ValueError naming ``path:line``)."""
    where = f"{path}:{line}"
    q = relative_name(row["query"], where, "query")
    q = q if q in queries else by_nfc.get(_nfc(q), q)  # the same name with its accents encoded otherwise
    if q not in queries:
        raise ValueError(f"{where}: query {q!r} has no row in {GND_CSV}")
    if q in first_line:
        raise ValueError(f"{where}: a second box for query {q!r} (the first is on line {first_line[q]})")
    first_line[q] = line  # before its values are checked: a second box is one even where the first is bad
    empty = [c for c in ("x1", "y1", "x2", "y2") if not row[c]]
    if empty:
        raise ValueError(f"{where}: no value for {', '.join(empty)} (a box is x1,y1,x2,y2 in pixels)")
    try:
        box = [float(row[c]) for c in ("x1", "y1", "x2", "y2")]
    except ValueError as e:
        raise ValueError(f"{where}: box coordinates must be numbers ({e})") from e
    if not all(math.isfinite(v) for v in box):
        raise ValueError(f"{where}: box {box} holds a value that is not a finite number (pixels)")
    if not (box[2] > box[0] and box[3] > box[1]):
        raise ValueError(f"{where}: box {box} must be [x1, y1, x2, y2] with x2 > x1 and y2 > y1 (pixels)")
    size = query_size(q) if query_size is not None else None
    if size is not None and size[0] > 0:
        try:
            query_box(box, *size)
        except ValueError as e:
            raise ValueError(f"{where}: query {q!r}: {e}") from None
    boxes[q] = box


def box_line(path: Path, query: str) -> int | None:
    """The line of ``query``'s box in ``query_boxes.csv`` (for an error found after reading it), or None."""
    for line, row in _rows(path, ("query", "x1", "y1", "x2", "y2"), ()):
        if _nfc(relative_name(row["query"], f"{path}:{line}")) == _nfc(query):
            return line
    return None


def _positives_listed(path: Path, query: str) -> set[str]:
    """Every positive (NFC) that the rows of ``query`` (a relative name; rows spelling it ``./q.jpg`` or with its
    accents encoded otherwise count) name in the gnd.csv at ``path``, for an error's hint; a row that does not parse
    is passed over, and reading stops at one the CSV reader refuses (the error being reported is another one)."""
    out = set()
    try:
        for _, row in _rows(path, ("query", "positive"), ("kind",)):
            try:
                if row.get("positive") and _nfc(relative_name(row.get("query", ""), "")) == _nfc(query):
                    out.add(_nfc(relative_name(row["positive"], "")))
            except ValueError:
                pass
    except ValueError:
        pass
    return out


MAX_POSITIVE_HINTS = 5  # bad positives given the closest database names (difflib: 0.6 s a name at 20,000 images)
MAX_POSITIVE_HINT_DB = 50_000  # a larger database gets none (9-14 s a name at 200,000)


def _rendered_sibling(name: str, db_index: dict[str, int]) -> str | None:
    """The database name of the rendered photo (``DSC_0001.JPG``) beside a camera raw file's name (``DSC_0001.NEF``),
    which a folder scan lists in its place (``datasets.raw_beside_rendered``); None for any other name."""
    path = PurePosixPath(name)
    if path.suffix.lower() not in RAW_SUFFIXES:
        return None
    key = raw_pair_key(path)
    for other in db_index:
        o = PurePosixPath(other)
        if o.suffix.lower() in CAMERA_RENDERED_SUFFIXES and raw_pair_key(o) == key:
            return other
    return None


def _close_positives(path: Path, typed: str, q: str, p: str, db_index: dict[str, int]) -> list[str]:
    """Up to two database images close to the positive ``p`` that is not one, for a hint; neither a name the query
    ``typed`` lists already (it would be a duplicate) nor the query ``q`` itself (refused as its own positive) is."""
    listed = _positives_listed(path, typed) | {_nfc(q)}
    return difflib.get_close_matches(p, [n for n in db_index if _nfc(n) not in listed], n=2, cutoff=0.7)


def read_gnd_csv(
    path: str | Path,
    db_names: list[str],
    root: str | Path | None = None,
    check_queries: bool = True,
    query_size: QuerySize | None = None,
) -> GroundTruth:
    """Convert ``gnd.csv`` (and ``query_boxes.csv`` next to it, if present) to a :class:`GroundTruth`.

    ``db_names``: the database images, paths relative to the dataset folder, in list order. Queries are the
    distinct ``query`` values in order of first appearance. A query that is itself a database image has that
    image added to its ``junk`` (the self-match is ignored, as revisitop ignores junk). A row with an empty
    ``positive`` declares a query without positives (ranked, excluded from the means). A name that differs from a
    database image's or a file's only in the Unicode normalisation of its accents (NFC / NFD) names that image or
    file (:class:`DiskNames`), whatever ``check_queries``.

    Raises ValueError naming ``path:line`` for: a missing/unknown column, an unknown ``kind``, a positive that
    is not a database image, a query listed as its own positive (as its own junk it is accepted: that is what is
    done anyway), a (query, positive) pair given twice, a row of one
    field (a query without positives is written ``query,``), text that is not UTF-8, a query
    image that does not exist (``check_queries``), a query declared without positives twice or with positives
    too, and for the boxes file's errors (:func:`read_query_boxes`; with ``query_size`` a box wholly outside its
    image is one of them). Every bad row is named in one error
    (:class:`LineErrors`: up to MAX_LINES_NAMED and a count; a missing query image once, on its first row), and
    ``query_boxes.csv`` is read once ``gnd.csv`` has none.
    """
    path = Path(path)
    root = Path(root) if root is not None else path.parent
    db_index = {n: i for i, n in enumerate(db_names)}
    db_nfc: dict[str, str] = {}
    spelt: dict[str, str] = {}  # query as typed -> as used
    on_disk = DiskNames(root)
    for n in db_names:
        db_nfc.setdefault(_nfc(n), n)
    queries: dict[str, int] = {}
    labels: list[dict[str, list[int]]] = []
    seen: dict[tuple[str, str], int] = {}
    first_positive: dict[str, int] = {}  # query -> line of its first positive
    declared_empty: dict[str, int] = {}  # query -> line of its row without a positive
    problems = LineErrors(path)
    missing_queries: dict[str, set[str]] = {}  # named once, on their first row -> their positives' paths
    n_hinted = 0  # bad positives given a "did you mean" (each a search of the database: MAX_POSITIVE_HINTS)
    for line, row in _rows(
        path,
        ("query", "positive"),
        ("kind",),
        short="a query without positives is written with a comma after it ('query,')",
        problems=problems,
    ):
        with problems.row():
            where = f"{path}:{line}"
            typed = relative_name(row["query"], where, "query")
            if typed not in spelt:  # as on disk (or as the database lists it) when only its accents' encoding differs
                spelt[typed] = typed if typed in db_index else db_nfc.get(_nfc(typed)) or on_disk(typed)
            q = spelt[typed]
            kind = (row.get("kind") or "").lower() or "easy"
            # a kind's own mistake is named in this run even on a missing query's rows (helper-105: a kind typed
            # 'esay' there was named only once the query's name was mended)
            kind_problem = _kind_problem(where, row, kind)
            if q in missing_queries:  # its first row named it; its positives are kept out of that row's hint
                missing_queries[q].add(_positive_path(root, row["positive"], where))
                if kind_problem:
                    raise ValueError(kind_problem)
                continue
            if q not in queries:
                if check_queries and not (root / q).is_file():
                    # the hint is added once every row is read: it never offers one of the query's own positives
                    # (helper-97's trial was offered a positive of the same query, which made it its own positive)
                    missing_queries[q] = {_positive_path(root, row["positive"], where)}
                    error = FileNotFoundError(f"{where}: query image {q!r} not found under {root}")
                    error.hinted_query = None if problems.full else q  # type: ignore[attr-defined]
                    error.also = kind_problem and kind_problem.removeprefix(f"{where}: ")  # type: ignore[attr-defined]
                    if error.hinted_query is None and error.also:  # type: ignore[attr-defined]
                        error = FileNotFoundError(_also(str(error), error.also))  # type: ignore[attr-defined]
                    raise error
                queries[q] = len(queries)
                labels.append({k: [] for k in KINDS})
            if not row["positive"]:
                if kind_problem:
                    raise ValueError(kind_problem)
                if q in declared_empty:
                    raise ValueError(
                        f"{where}: query {q!r} is already declared without positives on line {declared_empty[q]}"
                    )
                if q in first_positive:
                    raise ValueError(
                        f"{where}: a row without a positive for query {q!r}, which has a positive on line "
                        f"{first_positive[q]}; remove this row"
                    )
                declared_empty[q] = line
                continue
            if q in declared_empty:
                raise ValueError(
                    f"{where}: query {q!r} has a positive here but is declared without positives on line "
                    f"{declared_empty[q]}; remove that row"
                )
            p = relative_name(row["positive"], where)
            p = p if p in db_index else db_nfc.get(_nfc(p), p)
            if p == q and kind == "junk" and q in db_index:  # what is done anyway: a query in the database is its junk
                continue
            # recorded before this row's checks, so that the rows after it are judged against it even when it is bad
            # (every bad line is named in one run: a later "q1," row contradicts it, a later same pair repeats it)
            first_positive.setdefault(q, line)
            if p == q:
                raise ValueError(
                    f"{where}: query {q!r} is listed as its own positive (self-matches are ignored anyway): remove this row"
                )
            if (q, p) in seen:
                raise ValueError(f"{where}: the pair ({q!r}, {p!r}) is already on line {seen[q, p]}")
            seen[q, p] = line
            if kind_problem:
                raise ValueError(kind_problem)
            # a file of a format the folder scan leaves out (a raw photo): where it went, not another photo's name;
            # os.path.isfile is False, not an OSError, for a name too long
            if p not in db_index and Path(p).suffix.lower() not in IMAGE_SUFFIXES and os.path.isfile(root / p):
                raise ValueError(
                    f"{where}: positive {p!r} is not a database image, though the file is there: "
                    f"{Path(p).suffix or 'a name without a suffix'} is not an image format read here (the folder "
                    "scan leaves such files out, with a warning in the database_list log; convert it to JPEG or "
                    "TIFF)"
                )
            rendered = _rendered_sibling(p, db_index) if p not in db_index else None
            if rendered is not None:
                raise ValueError(
                    f"{where}: positive {p!r} is a camera raw file that the folder scan leaves out, since the same "
                    f"photo as the camera's JPEG / HEIF, {rendered!r}, is beside it and listed: name that one"
                )
            if p not in db_index:
                hints = not problems.full and n_hinted < MAX_POSITIVE_HINTS and len(db_index) <= MAX_POSITIVE_HINT_DB
                close = _close_positives(path, typed, q, p, db_index) if hints else []
                n_hinted += hints
                raise ValueError(
                    f"{where}: positive {p!r} is not a database image (the database is image_list.txt, "
                    f"or every image under jpg/; names are paths relative to {root})"
                    + (f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else "")
                )
            labels[queries[q]][kind].append(db_index[p])
    found: set[str] | None = None  # the queries found, never offered: made once, where a hint is wanted
    for i, error in enumerate(problems.errors):
        q = getattr(error, "hinted_query", None)
        if q is not None:
            found = {os.path.normpath(root / x) for x in queries} if found is None else found
            hint = nearest_sibling(root / q, q, missing_queries[q] | found)
            also = getattr(error, "also", None)
            problems.errors[i] = FileNotFoundError(_also(f"{error}{hint}", also) if also else f"{error}{hint}")
    problems.raise_if_any()
    if not queries:
        raise ValueError(f"{path}: no rows after the header")
    boxes_path = path.parent / BOXES_CSV
    boxes = read_query_boxes(boxes_path, queries, query_size) if boxes_path.is_file() else {}
    gnd = []
    for q, i in queries.items():
        g: dict[str, Any] = {k: sorted(labels[i][k]) for k in KINDS}
        if q in db_index:  # the query is a database image: drop its self-match
            g["junk"] = sorted(set(g["junk"]) | {db_index[q]})
        g["bbx"] = boxes.get(q)
        gnd.append(g)
    junk_only = [q for q, i in queries.items() if labels[i]["junk"] and not labels[i]["easy"] + labels[i]["hard"]]
    if junk_only:  # as revisitop would: no positive in any protocol; said, in case a kind was mistyped
        log.warning(
            "%s: %d queries have only junk rows, so no positive in any protocol (AP null, left out of the means): %s",
            path,
            len(junk_only),
            first_names(junk_only),
        )
    in_db = [q for q in queries if q in db_index]
    if in_db:
        log.info(
            "%s: %d of %d queries are also database images (their self-matches are junk): %s",
            path,
            len(in_db),
            len(queries),
            first_names(in_db),
        )
    _warn_query_folder_in_database(path, list(db_names), queries, gnd, db_index)
    return GroundTruth(list(db_names), list(queries), gnd, None, str(path), image_dir="")


def _also(message: str, problem: str) -> str:
    """``message`` (a missing query's) followed by the same row's other ``problem`` as a sentence of its own."""
    return f"{message}{' ' if message.endswith(('?', '.')) else '. '}Also on this row: {problem}"


def _kind_problem(where: str, row: dict[str, str], kind: str) -> str | None:
    """The message for a row's ``kind`` (``kind``: as read, lower case, ``easy`` when empty), or None when it is fine:
    a kind without a positive, or one that is not easy, hard or junk, then with the closest of them where one is a
    likely typo (cutoff 0.75: ``esay``, ``hrad``, ``jnk`` get one; ``bad`` or ``hardneg``, a negative's label, are
    not offered ``hard``, a positive's)."""
    if not row.get("positive") and row.get("kind"):
        return f"{where}: a kind ({row['kind']!r}) without a positive"
    if kind in KINDS:
        return None
    close = difflib.get_close_matches(kind, KINDS, n=1, cutoff=0.75)
    return f"{where}: kind {row.get('kind')!r} is not one of {list(KINDS)}" + (
        f"; did you mean {close[0]!r}?" if close else ""
    )


def _warn_query_folder_in_database(
    path: Path, db_names: list[str], queries: dict[str, int], gnd: list[dict[str, Any]], db_index: dict[str, int]
) -> None:
    """Warn when a folder holding queries only was scanned into the database (a ``queries/`` folder beside the photos
    of a dataset without ``jpg/``): each query there then ranks as a negative of every other query, where no row
    lists it, though it shows the same landmark as some (a user's trial: Medium 81.9 where the intended layout gave
    98.6). A folder counts when it holds at least two database images, all of them queries that no row names as a
    positive or junk image, and the database holds images elsewhere too."""
    self_junk = {db_index[q] for q in queries if q in db_index}  # dropped as junk of its own query, not named
    times = collections.Counter(i for g in gnd for k in KINDS for i in g[k])
    named = {i for i, c in times.items() if c > (i in self_junk)}
    by_folder: dict[str, list[str]] = {}
    for n in db_names:
        by_folder.setdefault(n.rpartition("/")[0], []).append(n)
    for folder, names in by_folder.items():
        if len(names) < 2 or len(names) == len(db_names):
            continue
        if all(n in queries and db_index[n] not in named for n in names):
            log.warning(
                "%s: the database holds %s, whose %d images are all queries that no row lists as a positive or junk: "
                "each ranks as a negative of the other queries. The database is every image under jpg/ (the whole "
                "folder when there is no jpg/) or image_list.txt: put the database photos under jpg/ and keep the "
                "queries outside it, or list the database in image_list.txt",
                path,
                f"{folder}/" if folder else "the folder's top level",
                len(names),
            )


def _mat_strings(cell: Any, where: str) -> list[str]:

    out = []
    for i, v in enumerate(np.asarray(cell, dtype=object).ravel()):
        s = np.asarray(v).ravel()
        if s.size != 1 or not isinstance(s[0], str):
            raise ValueError(f"{where}[{i}]: expected a string, got {v!r}")
        out.append(str(s[0]))
    return out


def read_instre(path: str | Path) -> GroundTruth:
    """INSTRE ground truth from Iscen et al.'s ``gnd_instre.mat`` (1,250 queries, 27,293 database images).

    Positives (``ok``, 1-based in the file) become ``easy``; INSTRE has no hard or junk images, so the plain mAP
    is the Easy (= Medium) number and Hard has no evaluated query. ``bbx`` is ``[x1, y1, x2, y2]`` in pixels
    (OS2D's reader notes the .mat boxes are corners while INSTRE's per-image .txt files are x, y, w, h), the
    box the query image is cropped to. Raises ValueError naming the file and the query for missing fields,
    indices outside ``imlist`` or an empty box."""
    from scipy.io import loadmat  # noqa: PLC0415

    path = Path(path)
    try:
        # mat_dtype: each array in its MATLAB class, so a logical ok is read as booleans (refused: not indices)
        # where scipy's default reads it as uint8, [true false true] as the indices 1, 0, 1
        mat = loadmat(path, squeeze_me=False, struct_as_record=True, mat_dtype=True)
    except NotImplementedError as e:  # scipy reads MATLAB files up to v7; -v7.3 files are HDF5 (helper-118)
        raise ValueError(
            f"{path}: a MATLAB v7.3 file (HDF5), which scipy does not read: save it again in MATLAB with "
            "save('gnd_instre.mat', 'imlist', 'qimlist', 'gnd', '-v7')"
        ) from e
    except Exception as e:  # scipy raises several types for a non-.mat or truncated file
        raise ValueError(f"{path}: not a readable MATLAB file ({type(e).__name__}: {e})") from e
    for key in ("imlist", "qimlist", "gnd"):
        if key not in mat:
            raise ValueError(
                f"{path}: missing variable {key!r} (found {sorted(k for k in mat if not k.startswith('__'))})"
            )
    imlist = _mat_strings(mat["imlist"], f"{path}: imlist")
    qimlist = _mat_strings(mat["qimlist"], f"{path}: qimlist")
    structs = np.asarray(mat["gnd"]).ravel()
    fields = structs.dtype.names or ()
    if "ok" not in fields or "bbx" not in fields:
        raise ValueError(f"{path}: gnd must be a struct array with fields ok and bbx, has {list(fields)}")
    if len(structs) != len(qimlist):
        raise ValueError(f"{path}: gnd has {len(structs)} entries but qimlist has {len(qimlist)}")
    n = len(imlist)
    gnd = []
    for i, s in enumerate(structs):
        where = f"{path}: gnd[{i}] (query {qimlist[i]!r})"
        # the checks gnd.json gets (a fraction, a boolean, an index twice): ok = [1 1] counted one positive twice, an
        # E mAP of 108 (a new user's trial), and 2.5 was read as 2
        if np.asarray(s["ok"]).dtype == np.bool_:
            raise ValueError(
                f"{where}: ok is a MATLAB logical (a true or false per image), not indices: ok holds the positives' "
                "1-based indices into imlist; save find(ok) instead"
            )
        ok = as_int_list(np.asarray(s["ok"]), f"{where}: ok")
        bad = [v for v in ok if not 1 <= v <= n]
        if bad:
            raise ValueError(f"{where}: ok holds {bad[:5]} outside 1..{n} (1-based indices into imlist)")
        twice = next((v for k, v in enumerate(ok) if v in ok[:k]), None) if len(set(ok)) < len(ok) else None
        if twice is not None:  # said 1-based, as the file writes it (parse_ground_truth's would be 0-based)
            raise ValueError(f"{where}: ok lists {twice} ({imlist[twice - 1]!r}) twice; list each once")
        bbx = [float(v) for v in np.asarray(s["bbx"]).ravel()]
        if not all(map(math.isfinite, bbx)):  # int(inf) failed later, naming no file (helper-118)
            raise ValueError(f"{where}: bbx {bbx} holds a value that is not a finite number (pixels)")
        if len(bbx) != 4 or not (bbx[2] > bbx[0] and bbx[3] > bbx[1]):
            raise ValueError(f"{where}: bbx {bbx} is not [x1, y1, x2, y2] with x2 > x1 and y2 > y1")
        gnd.append({"easy": sorted(v - 1 for v in ok), "hard": [], "junk": [], "bbx": bbx})
    # a name twice in imlist, a query twice with the same box and positives: gnd.json's checks
    return parse_ground_truth({"imlist": imlist, "qimlist": qimlist, "gnd": gnd, "image_dir": ""}, str(path))


GLDV2_SOLUTION = "retrieval_solution_v2.1.csv"


GLDV2_USAGE = ("Public", "Private", "Ignored")


def gldv2_image(part: str, image_id: str) -> str:
    """``{part}/{a}/{b}/{c}/{id}.jpg``: GLDv2 stores an image under the first three characters of its id."""
    return f"{part}/{image_id[0]}/{image_id[1]}/{image_id[2]}/{image_id}.jpg"


def _gldv2_ids(path: Path) -> list[str]:
    """The ``id`` column of ``index.csv`` / ``test.csv`` (other columns, e.g. ``url``, are ignored)."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found (GLDv2 layout: index.csv, test.csv, {GLDV2_SOLUTION})")
    ids: dict[str, int] = {}
    problems = LineErrors(path)  # every bad line in one run (they came one per run: a new user's trial)
    for line, row in _rows(path, ("id",), (), extra_columns=True, problems=problems):
        with problems.row():
            i = row["id"]
            if len(i) < 3 or not i.isalnum():
                raise ValueError(f"{path}:{line}: id {i!r} is not an image id (letters and digits, at least 3)")
            if i in ids:
                raise ValueError(f"{path}:{line}: duplicate id {i!r} (first on line {ids[i]})")
            ids[i] = line
    problems.raise_if_any()
    return list(ids)


def gldv2_image_lines(path: Path) -> dict[str, int]:
    """Each image of GLDv2's ``index.csv`` / ``test.csv`` as :func:`gldv2_image` names it (``index/a/b/c/{id}.jpg``,
    relative to the file's folder) and its line number, for naming a missing image by its line."""
    part = path.stem  # index | test
    return {gldv2_image(part, row["id"]): line for line, row in _rows(path, ("id",), (), extra_columns=True)}


def read_gldv2(root: str | Path, present_only: bool = False) -> GroundTruth:
    """GLDv2 retrieval ground truth (Weyand et al., CVPR 2020) from the official files in ``root``.

    Database: ``index.csv`` in file order; queries: the ``test.csv`` ids whose ``Usage`` in the solution is
    Public or Private, in file order (Ignored queries are left out: not listed, not extracted). ``easy`` holds a
    query's relevant index images, ``usage`` its part. Names are ``index/a/b/c/{id}.jpg`` / ``test/...``
    relative to ``root``.

    ``present_only``: keep only the index and test images whose files exist (a partial download); relevant lists
    are restricted to the images kept and queries left without any are dropped; ``subset`` records the counts
    so results can say so. Raises ValueError naming file and line for missing columns, duplicate ids, unknown
    test or index ids in the solution, a bad Usage, a Public/Private query without images, and a test id
    without a solution row."""
    root = Path(root)
    index = _gldv2_ids(root / "index.csv")
    test = _gldv2_ids(root / "test.csv")
    index_pos = {i: n for n, i in enumerate(index)}
    test_set = set(test)
    sol_path = root / GLDV2_SOLUTION
    if not sol_path.is_file():
        raise FileNotFoundError(f"{sol_path}: not found (the GLDv2 retrieval solution, from the dataset's page)")
    solution: dict[str, tuple[str, list[int]]] = {}
    first: dict[str, int] = {}
    usages = {u.lower(): u for u in GLDV2_USAGE}  # in any case, as gnd.csv reads its kinds ('private' was refused)
    problems = LineErrors(sol_path)  # every bad line in one run
    for line, row in _rows(sol_path, ("id", "images", "usage"), (), problems=problems):
        with problems.row():
            where = f"{sol_path}:{line}"
            q, usage = row["id"], usages.get(row["usage"].lower(), row["usage"])
            if q not in test_set:
                raise ValueError(f"{where}: id {q!r} is not in test.csv")
            if q in first:
                raise ValueError(f"{where}: duplicate id {q!r} (first on line {first[q]})")
            first[q] = line
            if usage not in GLDV2_USAGE:
                raise ValueError(f"{where}: Usage {usage!r} is not one of {list(GLDV2_USAGE)}")
            images = [] if row["images"].strip().lower() in ("", "none") else row["images"].split()
            if usage != "Ignored" and not images:
                raise ValueError(f"{where}: a {usage} query without relevant images")
            unknown = [i for i in images if i not in index_pos]
            if unknown:
                raise ValueError(f"{where}: image id(s) {unknown[:3]} are not in index.csv")
            solution[q] = (usage, [index_pos[i] for i in images])
    missing = [q for q in test if q not in first]  # said with the bad lines (it came on the next run: helper-101)
    if missing:
        problems.add(ValueError(f"{sol_path}: {len(missing)} test.csv id(s) have no row, e.g. {missing[:3]}"))
    problems.raise_if_any()

    imlist = [gldv2_image("index", i) for i in index]
    keep_db = list(range(len(index)))
    subset = None
    if present_only:
        keep_db = [n for n, name in enumerate(imlist) if (root / name).is_file()]
    new_pos = {old: new for new, old in enumerate(keep_db)}
    qimlist, gnd, dropped = [], [], 0
    for q in test:
        usage, rel = solution[q]
        if usage == "Ignored":
            continue
        name = gldv2_image("test", q)
        if present_only:
            rel = [new_pos[r] for r in rel if r in new_pos]
            if not rel or not (root / name).is_file():
                dropped += 1
                continue
        qimlist.append(name)
        gnd.append({"easy": sorted(rel), "hard": [], "junk": [], "bbx": None, "usage": usage})
    if present_only:
        n_official = sum(u != "Ignored" for u, _ in solution.values())
        subset = {
            "present_only": True,
            "index_images": len(keep_db),
            "index_images_official": len(index),
            "queries": len(qimlist),
            "queries_official": n_official,
            "queries_dropped": dropped,
            "note": "ground truth restricted to the images present; not comparable to the official metric",
        }
    return GroundTruth(
        [imlist[n] for n in keep_db], qimlist, gnd, None, str(sol_path), image_dir="", protocol="gldv2", subset=subset
    )


GLDV2_TRAIN_LISTS = ("train_clean.csv", "train_750k.txt")


def read_landmark_list(path: str | Path) -> set[int]:
    """Landmark ids, one per line (``#`` comments and blank lines skipped): the exclusion list of a GLDv2
    training split (e.g. the landmarks that overlap with ROxford/RParis). A non-integer line is an error naming it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"landmark exclusion list not found: {path}")
    out = set()
    for line, text in enumerate(path.read_text().splitlines(), 1):
        t = text.split("#", 1)[0].strip()
        if not t:
            continue
        try:
            out.add(int(t))
        except ValueError as e:
            raise ValueError(f"{path}:{line}: {t!r} is not a landmark id (an integer per line)") from e
    return out


def iter_gldv2_train(path: str | Path) -> Iterator[tuple[str, int]]:
    """Stream (image id, landmark id) pairs of a GLDv2 training list, one row at a time.

    ``train_clean.csv``: columns ``landmark_id``, ``images`` (space-separated image ids; one row per landmark,
    about 81k rows for 1.58M images). ``train_750k.txt`` (AMES's list): lines ``train/a/b/c/{id}.jpg,landmark_id,
    width,height``. Raises ValueError naming ``path:line`` for a missing column, a non-integer landmark id, a
    malformed line or an image id given twice (the ids seen are kept, as a set, to find duplicates)."""
    path = Path(path)
    seen: dict[str, int] = {}

    def check(image_id: str, where: str, line: int) -> None:
        if len(image_id) < 3 or not image_id.isalnum():
            raise ValueError(f"{where}: image id {image_id!r} is not an image id")
        if image_id in seen:
            raise ValueError(f"{where}: image {image_id!r} is listed again (first on line {seen[image_id]})")
        seen[image_id] = line

    if path.name.endswith(".csv"):
        for line, row in _rows(path, ("landmark_id", "images"), (), extra_columns=True):
            where = f"{path}:{line}"
            try:
                landmark = int(row["landmark_id"])
            except ValueError as e:
                raise ValueError(f"{where}: landmark_id {row['landmark_id']!r} is not an integer") from e
            for image_id in row["images"].split():
                check(image_id, where, line)
                yield image_id, landmark
        return
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found")
    with open(path, encoding="utf-8") as fh:
        for line, text in enumerate(fh, 1):
            text = text.strip()
            if not text:
                continue
            fields = text.split(",")
            where = f"{path}:{line}"
            if len(fields) < 2:
                raise ValueError(f"{where}: expected 'train/a/b/c/id.jpg,landmark_id[,width,height]', got {text!r}")
            image_id = Path(fields[0]).stem
            if relative_name(fields[0], where) != gldv2_image("train", image_id):
                raise ValueError(f"{where}: {fields[0]!r} is not at train/a/b/c/{{id}}.jpg")
            try:
                landmark = int(fields[1])
            except ValueError as e:
                raise ValueError(f"{where}: landmark id {fields[1]!r} is not an integer") from e
            check(image_id, where, line)
            yield image_id, landmark


def read_gldv2_train(
    root: str | Path,
    list_name: str = "train_clean.csv",
    exclude_landmarks: str | Path | None = None,
    present_only: bool = False,
) -> GroundTruth:
    """A labelled GLDv2 training split: database images ``train/a/b/c/{id}.jpg`` with ``labels`` = landmark ids
    and no queries, read by streaming ``list_name`` (see :func:`iter_gldv2_train`); one list of names and one of
    labels are built, nothing else is held. ``exclude_landmarks``: a file of landmark ids to leave out (the
    "revisited GLDv2-clean" idea: drop the landmarks that overlap with ROxford/RParis). ``present_only``: keep
    only the images on disk (a partial download); ``subset`` records the counts."""
    root = Path(root)
    if list_name not in GLDV2_TRAIN_LISTS:
        raise ValueError(f"GLDv2 training list {list_name!r}: expected one of {GLDV2_TRAIN_LISTS}")
    excluded = read_landmark_list(exclude_landmarks) if exclude_landmarks else set()
    names: list[str] = []
    labels: list[int] = []
    n_listed = n_excluded = 0
    for image_id, landmark in iter_gldv2_train(root / list_name):
        n_listed += 1
        if landmark in excluded:
            n_excluded += 1
            continue
        name = gldv2_image("train", image_id)
        if present_only and not (root / name).is_file():
            continue
        names.append(name)
        labels.append(landmark)
    if not names:
        raise ValueError(
            f"{root / list_name}: no training images left (listed {n_listed}, excluded {n_excluded}"
            f"{', present_only' if present_only else ''})"
        )
    subset = None
    if present_only or excluded:
        subset = {
            "present_only": present_only,
            "listed": n_listed,
            "excluded_by_landmark": n_excluded,
            "images": len(names),
            "landmarks": len(set(labels)),
        }
    return GroundTruth(names, [], [], labels, str(root / list_name), image_dir="", subset=subset)
