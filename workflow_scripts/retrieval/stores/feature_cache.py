"""Content-addressed feature cache: local descriptors keyed by what the image is, not where it sits in a list.

A cache holds the features of one extraction configuration (backbone, its settings, the decoder: the
``extraction_key``) under ``results/features/{key}/packs/``. A *pack* is a local-store chunk file
(``{pack}.h5``, the schema of local_store.py) written by one extraction job, with a sidecar ``{pack}.json`` written
after it (a pack without its sidecar is not part of the cache). Each row of a pack is identified by

* the SHA-256 of the image file's bytes, and the query box the image was cropped to (``None`` for a database image
  or an uncropped query): the row's **key**. A database image and an uncropped query of the same pixels share a
  key, so they are extracted once; the same photo in another folder or dataset is found again.
* the file's name in its dataset (relative to the dataset folder), size, modification time and inode number: its
  **stat key**, a memo of the hash (as git's index keeps one): a file whose stat key is known is not read again to
  plan. Moving or renaming the dataset folder (on one file system) keeps all four, so nothing is extracted again.
  The inode tells apart two files that share the rest: the same name, size and time in two folders (frames of two
  clips), or two photos of one folder that swapped names; with name, size and mtime alone one was served the
  other's features (helper-115's trial). A copy (``cp -a`` included) has a new inode, so its job hashes it and
  copies the cached row; a hard link is the same file. Rows of sidecars written before the inode was recorded
  serve no stat lookup: their photos are hashed once more and their rows copied.
* the file's ctime (``st_ctime_ns``), which every write moves and no ordinary program sets back: a file overwritten in
  place keeps its inode, and ``cp -p``, ``unzip -o`` or ``shutil.copy2`` keep size and mtime too (helper-121's
  trial). Where the ctime is not the recorded one, the plan hashes the file (as git's index re-reads a file whose
  ctime moved): the same bytes are the cached row (``chmod``, ``chown``, an ACL, a new hard link: nothing else
  changes, helper-116's measurement of a ctime *key* re-ran 14 jobs for 12 photos), other bytes are a new item.
  What the hash found is kept in the packs folder's ``verified_stats.jsonl`` memo (stat key, ctime, SHA-256), so a
  ``chmod -R`` costs one hashing pass, not one per plan. Rows recorded before the ctime was (2026-12-06) are
  trusted by their stat key, as before.

Planning (:func:`plan_extraction`) maps every row of a dataset's lists to a cached ``(pack, row)`` or to a new
item; new items are split into ``n_chunks`` packs (never smaller than ``min_chunk_images``, and more packs where one
would exceed ``max_chunk_images``), named by a hash
of the items (path, size, mtime, box), so a plan made at DAG-build time names the same packs a job later writes.
A pack job (``stages/extract_pack.py``) hashes its files and extracts only keys not in the cache (a key already there, a
copied photo for instance, has its row copied). The split's store (:func:`assemble_store`) is an HDF5 virtual
dataset mapping list rows to pack rows in list order, in contiguous runs; it is verified like the chunk merge.

A missing image (only listed under ``on_bad_image: skip``) has the key ``missing:{name}`` and an empty row.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import h5py
import numpy as np

from retrieval import SCHEMA_VERSION
from retrieval.runtime import atomic_path, fault_point, is_readable
from retrieval.stores.local_store import COUNT_FILL, StoreError, _check_attrs, _layouts, _verify_sources, row_of

log = logging.getLogger(__name__)

PACK_FORMAT = 1
HASH_BLOCK = 1 << 20


class CacheError(ValueError):
    """A feature cache that cannot be used as it is, the message naming the file: an unreadable or malformed pack
    sidecar, or an image that changed between the plan and its pack job."""

    pass


def _stable_hash(obj: Any, length: int) -> str:
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:length]


def extraction_key(backbone: str, backbone_config: dict[str, Any], decoder: str, max_image_pixels: int) -> str:
    """The cache of one extraction configuration: what changes the features of a given file (not the lists, the
    dataset, the chunking or on_bad_image: a bad file gets an empty row whatever the mode that let it through)."""
    return _stable_hash(
        {"backbone": backbone, backbone: backbone_config, "decoder": decoder, "max_image_pixels": max_image_pixels}, 8
    )


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 hex digest (64 characters) of a file's bytes, read in blocks of ``HASH_BLOCK`` (1 MiB): the hash in a
    row's key. FileNotFoundError / OSError when the file cannot be read."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(HASH_BLOCK)
            if not b:
                return h.hexdigest()
            h.update(b)


def crop_key(c: Any) -> tuple[int, ...] | None:
    """A query box as a hashable key: ``c`` ([x1, y1, x2, y2] in pixels, any sequence of numbers) as a tuple of ints
    (each through ``int``, which truncates), None for None."""
    return None if c is None else tuple(int(v) for v in c)


MISSING_STAT = (-1, -1, -1, -1)


def stat_of(path: str | os.PathLike) -> tuple[int, int, int, int]:
    """(size in bytes, mtime_ns, inode number, ctime_ns) of a file: the stat key's fields besides its name, and the
    ctime that tells whether the file was written since it was hashed;
    ``MISSING_STAT`` (-1s) when it is missing or this process may not read it (no read permission,
    ``runtime.is_readable``, or a folder on its path without search permission): an unreadable photo is planned as
    a missing one, with no cached row keyed by its stat, so it is planned again once readable."""
    try:
        st = os.stat(path)
    except (FileNotFoundError, PermissionError):  # PermissionError: a folder without search permission
        return MISSING_STAT
    if not is_readable(path):
        return MISSING_STAT
    return int(st.st_size), int(st.st_mtime_ns), int(st.st_ino), int(st.st_ctime_ns)


def item_stat(item: dict[str, Any]) -> tuple[int, int, int | None]:
    """An item's (or a sidecar row's) (size, mtime_ns, ino) as planned; ino None for one planned before it was
    recorded (it then matches no file)."""
    return int(item["size"]), int(item["mtime_ns"]), item.get("ino")


def _row_stats(rows: dict[str, list[Any]]) -> list[tuple[tuple[str, int, int, int | None], int | None]]:
    """The stat keys (name, size, mtime_ns, ino) of a sidecar's rows (ino None where not recorded), each with its
    ctime_ns (None where not recorded)."""
    ino = rows.get("ino") or [None] * len(rows["name"])
    ctime = rows.get("ctime_ns") or [None] * len(rows["name"])
    return [
        ((nm, int(sz), int(mt), i), c)
        for nm, sz, mt, i, c in zip(rows["name"], rows["size"], rows["mtime_ns"], ino, ctime)
    ]


def missing_key(name: str) -> str:
    """The key of a listed image that is not on disk (``on_bad_image: skip``), in place of its SHA-256:
    ``missing:{name}``."""
    return f"missing:{name}"


# ------------------------------------------------------------------------------------------------ index


@dataclass
class CacheIndex:
    """What the sidecars of a cache folder say: key -> (pack, row), stat key (name, size, mtime_ns, ino) -> its
    rows' SHA-256 by ctime_ns (None where not recorded), and each pack's sidecar; and the packs folder's memo of
    files hashed where their ctime had moved (``verified``: (*stat key, ctime_ns) -> SHA-256), with what this
    process added to it (``fresh``, for :func:`record_verified`). A stat key nearly always has one row: it is held
    as a tuple, and as a dict only where the file was overwritten in place (a dict for every row made the index of
    200,000 photos 81 MB larger than before the ctime; tuples, 11 MB: measured with tracemalloc)."""

    by_key: dict[tuple[str, tuple[int, ...] | None], tuple[str, int]] = field(default_factory=dict)
    # stat key -> (ctime_ns, SHA-256) of its row, or {ctime_ns: SHA-256} of its rows
    stat_sha: dict[tuple[Any, ...], tuple[int | None, str] | dict[int | None, str]] = field(default_factory=dict)
    packs: dict[str, dict[str, Any]] = field(default_factory=dict)
    # (stat key, box) -> the row made for that very file, or {SHA-256: row} where it holds several contents:
    # preferred over another pack holding the same key (a copy indexed elsewhere), so a dataset keeps reading the
    # packs it was planned with
    by_stat: dict[tuple[Any, ...], tuple[str, int] | dict[str, tuple[str, int]]] = field(default_factory=dict)
    # (name, size, mtime_ns) of every row, older sidecars' included: only for the plan's log line (what a new item
    # probably is), never to serve a row
    loose: dict[tuple[str, int, int], str] = field(default_factory=dict)
    verified: dict[tuple[Any, ...], str] = field(default_factory=dict)
    fresh: dict[tuple[Any, ...], str] = field(default_factory=dict)

    def add(self, pack: str, meta: dict[str, Any]) -> None:
        """Index pack ``pack`` from its sidecar ``meta``: each row by key (SHA-256, box) and by stat key and box, and
        each stat key's SHA-256 (not a row's without a recorded inode, an older sidecar's: it matches no
        file). A key already indexed keeps its earlier pack (load_index adds the oldest first)."""
        self.packs[pack] = meta
        rows = meta["rows"]
        for i, (sha, crop) in enumerate(zip(rows["sha256"], rows["crop"])):
            self.by_key.setdefault((sha, crop_key(crop)), (pack, i))
        for i, ((stat, _), sha, crop) in enumerate(zip(_row_stats(rows), rows["sha256"], rows["crop"])):
            if stat[3] is None:
                continue
            key = (*stat, crop_key(crop))
            have = self.by_stat.get(key)
            if have is None:
                self.by_stat[key] = (pack, i)
            elif isinstance(have, tuple):
                first = self.packs[have[0]]["rows"]["sha256"][have[1]]
                if first != sha:
                    self.by_stat[key] = {first: have, sha: (pack, i)}
            else:
                have.setdefault(sha, (pack, i))
        self.add_stats(rows)

    def stat_row(self, stat: tuple[Any, ...], crop: tuple[int, ...] | None, sha: str) -> tuple[str, int] | None:
        """The (pack, row) made for the file of stat key ``stat`` cropped to ``crop``, holding bytes ``sha``; None
        where there is none."""
        have = self.by_stat.get((*stat, crop))
        if have is None or isinstance(have, dict):
            return None if have is None else have.get(sha)
        return have if self.packs[have[0]]["rows"]["sha256"][have[1]] == sha else None

    def add_stats(self, rows: dict[str, list[Any]]) -> None:
        """The stat memo of a sidecar's rows: stat key -> {ctime_ns: SHA-256} (rows without an inode left out), and
        every row's (name, size, mtime_ns) -> SHA-256 in ``loose``."""
        for sha, (stat, ctime) in zip(rows["sha256"], _row_stats(rows)):
            self.loose.setdefault(stat[:3], sha)
            if stat[3] is None:
                continue
            have = self.stat_sha.get(stat)
            if have is None:
                self.stat_sha[stat] = (ctime, sha)
            elif isinstance(have, tuple):
                if have[0] != ctime:
                    self.stat_sha[stat] = {have[0]: have[1], ctime: sha}
            else:
                have.setdefault(ctime, sha)

    def own_row(self, stat: tuple[Any, ...], crop: tuple[int, ...] | None) -> tuple[str, int] | None:
        """The row the stat key alone names for ``crop``: the one recorded with its newest ctime (rows without one
        count as oldest); None where the stat key has none."""
        have = self.stat_sha.get(stat)
        if have is None:
            return None
        if isinstance(have, tuple):
            return self.stat_row(stat, crop, have[1])
        newest = max(have, key=lambda c: -1 if c is None else c)
        return self.stat_row(stat, crop, have[newest])

    def sha_of(self, stat: tuple[str, int, int, int], ctime: int, path: str) -> tuple[str | None, str]:
        """(SHA-256 or None, how it is known) of the file at ``path`` with stat key ``stat`` and ctime ``ctime``:
        ``"recorded"`` without reading it, where the cache recorded it with this ctime (or with none, a row recorded
        before the ctime was, trusted as before, and the only one of its stat key); where the ctime moved, from the
        ``verified`` memo, else hashed now and added to it: ``"verified"`` where the hash is one of the stat key's
        recorded ones (a chmod, a hard link, older bytes written back), ``"rewritten"`` where it is none of them
        (overwritten in place). (None, ``"recorded"``) where the stat key is not cached, or the file cannot be read
        now (its job names it)."""
        have = self.stat_sha.get(stat)
        if have is None:
            return None, "recorded"
        if isinstance(have, tuple):  # the usual case, without building a dict per photo
            if have[0] == ctime or have[0] is None:
                return have[1], "recorded"
            recorded = {have[0]: have[1]}
        else:  # several ctimes (overwritten in place before, or a row from before the ctime and one with it)
            recorded = have
        if ctime in recorded:
            return recorded[ctime], "recorded"
        sha = self.verified.get((*stat, ctime))
        if sha is None:
            try:
                sha = file_sha256(path)
            except OSError:
                return None, "recorded"
            self.verified[(*stat, ctime)] = self.fresh[(*stat, ctime)] = sha
        return sha, "verified" if sha in recorded.values() else "rewritten"


def read_sidecar(path: str | os.PathLike) -> dict[str, Any]:
    """A pack's sidecar (``{pack}.json``) as a dict. CacheError naming the file when it cannot be read or parsed, its
    ``format`` is not ``PACK_FORMAT`` or it has no ``rows``, or its list columns in ``rows`` are not all of one
    length."""
    try:
        meta = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CacheError(
            f"feature cache: unreadable pack index {path} ({e}); delete it and its .h5 to extract those images again"
        ) from e
    if meta.get("format") != PACK_FORMAT or "rows" not in meta:
        raise CacheError(f"feature cache: {path} is not a pack index of format {PACK_FORMAT}")
    n = {k: len(v) for k, v in meta["rows"].items() if isinstance(v, list)}
    if len(set(n.values())) != 1:
        raise CacheError(f"feature cache: {path}: columns of different lengths {n}")
    return meta


def load_index(pack_dir: str | os.PathLike, only: Iterable[str] | None = None, memo: bool = True) -> CacheIndex:
    """The index of every complete pack in ``pack_dir`` (those with a sidecar), oldest first so that a key held by
    several packs always resolves to the same one; ``only``: restrict the key lookup to these packs (the stat
    memo still comes from all); ``memo``: read the packs folder's ``verified_stats.jsonl`` (what planning needs;
    a pack job, which looks rows up by their bytes only, does not parse it)."""
    pack_dir = Path(pack_dir)
    metas = []
    if pack_dir.is_dir():
        for p in pack_dir.glob("*.json"):
            if p.name.startswith("."):
                continue
            metas.append((p.stem, read_sidecar(p)))
    metas.sort(key=lambda x: (x[1]["created"], x[0]))
    idx = CacheIndex(verified=read_verified(pack_dir) if memo else {})
    keep = None if only is None else set(only)
    for pack, meta in metas:
        if keep is None or pack in keep:
            idx.add(pack, meta)
        else:
            idx.add_stats(meta["rows"])
    return idx


VERIFIED = "verified_stats.jsonl"  # in the packs folder: files hashed where their ctime had moved


def read_verified(pack_dir: str | os.PathLike, quiet: bool = False) -> dict[tuple[Any, ...], str]:
    """The packs folder's memo of files hashed by a plan where their ctime had moved: (name, size, mtime_ns, ino,
    ctime_ns) -> SHA-256, one JSON list per line of ``{pack_dir}/verified_stats.jsonl`` (about 150 bytes a file);
    {} without one, or with a warning where it cannot be read (a folder in its place, no permission). A line that
    does not parse (a file edited or cut short) is skipped: the memo only saves hashing, and such a file is hashed
    again; a plan never fails on it."""
    out: dict[tuple[Any, ...], str] = {}
    path = Path(pack_dir) / VERIFIED
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return out
    except OSError as e:  # a folder in its place, no read permission: planned without it (helper-123's trial)
        if not quiet:  # (quiet: read again to be rewritten, already said)
            log.warning("feature cache: memo %s unreadable (%s): photos whose ctime moved are hashed again", path, e)
        return out
    for line in text.splitlines():
        try:
            name, size, mtime, ino, ctime, sha = json.loads(line)
            out[(str(name), int(size), int(mtime), int(ino), int(ctime))] = str(sha)
        except (ValueError, TypeError, OverflowError, RecursionError):  # 1e400, Infinity, [[[[...
            continue
    return out


def record_verified(pack_dir: str | os.PathLike, index: CacheIndex) -> int:
    """Add what ``index``'s plans hashed (``index.fresh``) to the packs folder's memo, keeping one entry per stat key,
    the newest ctime's (a file's ctime only moves forward, so an older one never matches again), and none for a
    stat key no pack holds any more (``index`` must be the whole folder's, as ``load_index`` without ``only``
    makes it); the memo is
    replaced atomically (two plans at once: the last one's is kept, and the other's files are hashed again by a
    later plan). Returns the number of entries added; 0, with a warning, where the folder is not writable (a shared
    read-only cache: such files are hashed at every plan)."""
    if not index.fresh:
        return 0
    memo = read_verified(pack_dir, quiet=True)
    memo.update(index.fresh)
    newest: dict[tuple[Any, ...], tuple[Any, ...]] = {}
    for key in memo:
        if key[:4] not in index.stat_sha:  # its rows' packs deleted: it can never be looked up again
            continue
        if key[:4] not in newest or key[4] > newest[key[:4]][4]:
            newest[key[:4]] = key
    path = Path(pack_dir) / VERIFIED
    try:
        with atomic_path(path) as tmp:
            Path(tmp).write_text(
                "".join(json.dumps([*k, memo[k]], separators=(",", ":")) + "\n" for k in newest.values())
            )
    except OSError as e:
        log.warning("feature cache: cannot record the photos hashed while planning in %s (%s)", path, e)
        return 0
    n, index.fresh = len(index.fresh), {}
    return n


# ----------------------------------------------------------------------------------------------- planning


@dataclass
class Plan:
    """``rows[split][i]``: (pack, row) of list row i; ``new_packs``: pack id -> the items it extracts."""

    rows: dict[str, list[tuple[str, int]]]
    new_packs: dict[str, list[dict[str, Any]]]
    # new items with the size and mtime of a cached file under another name (a photo renamed or moved within the
    # collection): probably copied by their job once hashed, not extracted; counted for the plan's log line
    n_renamed: int = 0
    # the others (query crops too) with the name and size of a file cached with their box, but another mtime (a
    # folder copied with ``cp -r``, which gives its files new times): probably copied by their job; counted for the
    # log line too (helper-93's trial)
    n_copied: int = 0
    # the others with the name, size and mtime of a cached file, but another inode (a copy made with
    # ``cp -a``, a photo swapped in under the same name, or a pack recorded before inodes were): hashed by their job
    n_same_stat: int = 0
    # the others whose name, size, mtime and inode are a cached file's, with other bytes (hashed while planning, as
    # their ctime had moved): overwritten in place (``cp -p`` onto the file, ``unzip -o``)
    n_rewritten: int = 0
    # split -> [(list row, (pack, row))] of the cached rows a file is served that are not the row its stat key alone
    # names (:meth:`CacheIndex.own_row`): a photo overwritten in place with bytes cached elsewhere, or written back
    # to older bytes. Its store must be merged again though it reads the same packs (helper-123's trial): the
    # merge takes their digest as a parameter. Empty where nothing was overwritten (a chmod keeps every own row).
    displaced: dict[str, list[tuple[int, tuple[str, int]]]] = field(default_factory=dict)
    # photos hashed while planning, their ctime having moved (not found in the memo)
    n_verified: int = 0
    # the paths of the photos overwritten in place, sorted: ``n_rewritten``'s, those served displaced rows, and those
    # whose stat key holds rows of several ctimes (overwritten since first cached: the lists may keep their old size)
    overwritten: list[str] = field(default_factory=list)

    def packs(self, split: str) -> list[str]:
        """The packs (cached and new) the rows of ``split`` read from, sorted by id."""
        return sorted({p for p, _ in self.rows[split]})

    @property
    def n_new(self) -> int:
        """The number of new items, over all new packs."""
        return sum(len(v) for v in self.new_packs.values())


def entry_crop(entry: dict[str, Any], split: str) -> tuple[int, ...] | None:
    """The box a list entry is extracted with: for a query, its ``crop`` as :func:`crop_key` (None without one); for any
    other split None (database images are not cropped)."""
    return crop_key(entry.get("crop")) if split == "query" else None


def plan_extraction(
    lists: dict[str, Any],
    index: CacheIndex,
    xv: str,
    n_chunks: int,
    min_chunk_images: int,
    splits: Sequence[str] = ("db", "query"),
    max_chunk_images: int | None = None,
) -> Plan:
    """Map every row of ``lists[split]`` to a cached (pack, row), or to a new pack. Database and query sides are
    planned together: an uncropped query that is a database image is one item. New items are split into
    ``n_chunks`` packs of at least ``min_chunk_images`` (fewer packs for a few new photos), and into more packs when
    a pack would hold more than ``max_chunk_images`` (a job holds its pack's rows in memory until it writes them:
    about 0.3 MB per SIFT image, 1.1 MB per DINOv2 one)."""
    todo: dict[tuple[str, tuple[int, ...] | None], dict[str, Any]] = {}
    pending: dict[str, list[Any]] = {}
    rewritten: set[str] = set()  # paths overwritten in place: new items, counted apart in the log line
    verified: set[str] = set()  # paths hashed (or looked up in the memo) where their ctime moved: known bytes
    several: set[str] = set()  # paths whose stat key has rows of several ctimes: overwritten in place since cached
    # (or, rarely, given a query box after a chmod: its header is then read at each plan, and found unchanged)
    displaced: dict[str, list[tuple[int, tuple[str, int]]]] = {}
    n_fresh = len(index.fresh)
    cached_stats = {key[1:] for key in index.loose}  # (size, mtime): a rename keeps both
    for split in splits:
        out: list[Any] = []
        for i, e in enumerate(lists[split]):
            crop = entry_crop(e, split)
            size, mtime, ino, ctime = stat_of(e["path"])
            stat = (e["name"], size, mtime, ino)
            if size < 0:
                sha = missing_key(e["name"])
            else:
                sha, how = index.sha_of(stat, ctime, e["path"])
                if how != "recorded":
                    (rewritten if how == "rewritten" else verified).add(e["path"])
                if isinstance(index.stat_sha.get(stat), dict):
                    several.add(e["path"])
            hit = None if sha is None else index.stat_row(stat, crop, sha)
            if hit is None and sha is not None:
                hit = index.by_key.get((sha, crop))
            if hit is not None:
                out.append(("hit", hit))
                # (only where the ctime moved: a new query box whose crop is cached under a copy is no overwrite)
                moved = e["path"] in verified or e["path"] in rewritten
                if moved and hit != index.own_row(stat, crop):
                    displaced.setdefault(split, []).append((i, hit))
                continue
            k = (e["path"], crop)
            if k not in todo:
                todo[k] = {
                    "path": e["path"],
                    "name": e["name"],
                    "crop": None if crop is None else list(crop),
                    "size": size,
                    "mtime_ns": mtime,
                    "ino": ino,
                    "ctime_ns": ctime,
                    "width": int(e.get("width", 0)),
                    "height": int(e.get("height", 0)),
                }
            out.append(("new", k))
        pending[split] = out
    items = list(todo.values())
    new_packs: dict[str, list[dict[str, Any]]] = {}
    where: dict[tuple[str, Any], tuple[str, int]] = {}
    if items:
        groups = max(1, min(n_chunks, len(items) // max(1, min_chunk_images)))
        if max_chunk_images:
            groups = max(groups, -(-len(items) // max_chunk_images))
        for g in range(groups):
            part = items[len(items) * g // groups : len(items) * (g + 1) // groups]
            pack = pack_id(xv, part)
            new_packs[pack] = part
            for r, it in enumerate(part):
                where[(it["path"], crop_key(it["crop"]))] = (pack, r)
    rows = {s: [x if tag == "hit" else where[x] for tag, x in pending[s]] for s in splits}
    over = [it["path"] in rewritten for it in items]
    known = [it["path"] in verified for it in items]  # hashed, with known bytes: not a copy with another inode
    # the name, size and time of a cached file: a copy with another inode, unless the item is a crop the cache does
    # not hold for that file (a new query box: new, not a copy; helper-137 saw it told as a cp -a)
    same = [
        not o
        and not k
        and it["size"] >= 0
        and (it["name"], it["size"], it["mtime_ns"]) in index.loose
        and (
            it["crop"] is None
            or (index.loose[(it["name"], it["size"], it["mtime_ns"])], crop_key(it["crop"])) in index.by_key
        )
        for it, o, k in zip(items, over, known)
    ]
    renamed = [
        not m and it["crop"] is None and it["size"] >= 0 and (it["size"], it["mtime_ns"]) in cached_stats
        for it, m in zip(items, same)
    ]
    renamed = [r or m or o or k for r, m, o, k in zip(renamed, same, over, known)]  # counted apart; not copies
    # (name, size) -> the contents cached under them; an item counts as probably copied where one of them is cached
    # with the item's own box (none, or its crop): a file cached only as a query's crop is extracted uncropped
    # (looked up only for the items planned: a build with nothing new does not walk a large cache's memo)
    wanted = {(it["name"], it["size"]) for it, r in zip(items, renamed) if not r and it["size"] >= 0}
    shas: dict[tuple[str, int], set[str]] = {}
    for (name, size, _), sha in index.loose.items() if wanted else ():
        if (name, size) in wanted:
            shas.setdefault((name, size), set()).add(sha)
    n_copied = sum(
        not r
        and it["size"] >= 0
        and any((sha, crop_key(it["crop"])) in index.by_key for sha in shas.get((it["name"], it["size"]), ()))
        for it, r in zip(items, renamed)
    )
    n_same, n_over, n_known = sum(same), sum(over), sum(known)
    return Plan(
        rows=rows,
        new_packs=new_packs,
        n_renamed=sum(renamed) - n_same - n_over - n_known,
        n_copied=n_copied,
        n_same_stat=n_same,
        n_rewritten=n_over,
        displaced=displaced,
        n_verified=len(index.fresh) - n_fresh,
        overwritten=sorted(
            rewritten | several | {lists[s][i]["path"] for s, moved in displaced.items() for i, _ in moved}
        ),
    )


def pack_job(meta: dict[str, Any]) -> dict[str, Any]:
    """What a pack's job was given (its items, backbone and configuration), rebuilt from its sidecar: the same value
    the plan gave it, so Snakemake sees unchanged parameters for a pack that exists. The sidecar records the
    ``device`` a deep backbone ran on, which the plan leaves out (it is in no version): it is dropped here, or every
    pack made since, and every pack of an older sidecar, would be extracted again on the next run (a new user's trial
    of the change that left it out)."""
    r = meta["rows"]
    items = [
        {"path": p, "name": n, "crop": c, "size": s, "mtime_ns": m, "width": w, "height": h}
        for p, n, c, s, m, w, h in zip(
            r["path"], r["name"], r["crop"], r["size"], r["mtime_ns"], r["width"], r["height"]
        )
    ]
    if "ino" in r:  # recorded since 2026-12-06: in the plan's order of fields, so the parameters compare equal
        ctime = r.get("ctime_ns")  # recorded since a later change the same day
        items = [
            {
                **{k: it[k] for k in ("path", "name", "crop", "size", "mtime_ns")},
                "ino": i,
                **({} if ctime is None else {"ctime_ns": ctime[j]}),
                "width": it["width"],
                "height": it["height"],
            }
            for j, (it, i) in enumerate(zip(items, r["ino"]))
        ]
    config = {k: v for k, v in meta["backbone_config"].items() if k != "device"}
    return {"items": items, "backbone": meta["backbone"], "config": config}


def pack_id(xv: str, items: Sequence[dict[str, Any]]) -> str:
    """A new pack's id: 16 hex characters of the SHA-1 of the extraction key ``xv`` and its items' (path, size,
    mtime_ns, crop, name in its dataset, and the inode and ctime_ns where the plan recorded them), so a plan made at
    DAG-build time and the job name the same pack (and a photo swapped in under the same name, size and mtime, or
    overwritten in place, gets another pack). The name is hashed because a pack records it (the stat key a later
    plan finds the row by): one file that two datasets name differently (a collection's ``queries/q2.jpg``, and
    ``q2.jpg`` of its queries folder searched as photos) was one pack id with two contents, rewritten by each
    dataset's plan in turn (helper-135). Packs made before keep their ids (a plan finds a pack by its sidecar, not
    by its id)."""
    return _stable_hash(
        {
            "extraction": xv,
            "items": [
                [
                    i["path"],
                    i["size"],
                    i["mtime_ns"],
                    i["crop"],
                    *[i[k] for k in ("ino", "ctime_ns") if k in i],
                    i["name"],
                ]
                for i in items
            ],
        },
        16,
    )


# ------------------------------------------------------------------------------------------- pack rows


def read_pack_row(path: Path, r: int) -> tuple[dict[str, Any], Any]:
    """Row ``r`` of a pack as the row dict write_local_chunk takes (descriptors trimmed to their count), and its
    global descriptor (None for SIFT). CacheError naming the pack when its ``.h5`` is missing, truncated, not HDF5 or
    without the row (a pack damaged after its job ended: a full disk, a copy cut short, a file deleted by hand)."""
    try:
        with h5py.File(path, "r") as f:
            row = row_of(f, r)
            g = f["global"][r] if "global" in f else None
    except (OSError, KeyError, IndexError, ValueError) as e:
        raise CacheError(damaged_pack_message(path, e)) from e
    return row, g


def damaged_pack_message(path: str | os.PathLike, e: BaseException, store: str | os.PathLike | None = None) -> str:
    """What to say of a pack ``.h5`` that cannot be read: its path, the reason, and the remedy (delete the pack and its
    index, and the next run extracts those images again; every other pack is kept). ``store``: the merged store
    being made from it, which the run must then be told to make again (``-R``): a plain run finds nothing to do
    while what used the store is up to date (a new user's trial)."""
    path = Path(path)
    reason = " ".join(str(e).split()) or type(e).__name__
    again = "run again" if store is None else f"run again with -R {store} after your target"
    return (
        f"feature cache: pack unreadable (missing, truncated or not HDF5): {path} ({reason}); delete "
        f"{path.with_suffix('.h5')} and {path.with_suffix('.json')} and {again}: only its images are extracted again"
    )


def pack_sidecar(
    items: Sequence[dict[str, Any]],
    shas: Sequence[str],
    xv: str,
    pack: str,
    backbone: str,
    backbone_config: dict[str, Any],
    skipped: dict[str, str],
    **extra: Any,
) -> dict[str, Any]:
    """The index written next to a pack, last: one column per item field, the SHA-256s, the skipped rows."""
    return {
        "format": PACK_FORMAT,
        "extraction": xv,
        "pack": pack,
        "created": time.time(),
        "backbone": backbone,
        "rows": {
            "sha256": list(shas),
            "crop": [it["crop"] for it in items],
            "name": [it["name"] for it in items],
            "size": [it["size"] for it in items],
            "mtime_ns": [it["mtime_ns"] for it in items],
            # a pack planned before the inode was recorded (its plan under plans/) keeps its items as planned, so
            # pack_job gives back the parameters Snakemake recorded (helper-116's review)
            **({"ino": [it["ino"] for it in items]} if all("ino" in it for it in items) else {}),
            **({"ctime_ns": [it["ctime_ns"] for it in items]} if all("ctime_ns" in it for it in items) else {}),
            "path": [it["path"] for it in items],
            "width": [it["width"] for it in items],
            "height": [it["height"] for it in items],
        },
        "backbone_config": backbone_config,
        "skipped": skipped,
        **extra,
    }


# -------------------------------------------------------------------------------------------- assembly


def runs(mapping: Sequence[tuple[str, int]]) -> list[tuple[int, str, int, int]]:
    """Contiguous runs (list row, pack, pack row, length) of a row -> (pack, row) mapping."""
    out: list[list[Any]] = []
    for i, (pack, r) in enumerate(mapping):
        if out and out[-1][1] == pack and out[-1][2] + out[-1][3] == r and out[-1][0] + out[-1][3] == i:
            out[-1][3] += 1
        else:
            out.append([i, pack, r, 1])
    return [tuple(x) for x in out]


_SAME_BYTES = " (the same bytes as "


def skipped_reason_for(path: str, reason: str, cached_path: str) -> str:
    """Why ``path`` has no features when its row is a cached one skipped as ``reason`` under the name ``cached_path``
    (the same bytes, or the same name, size and time): a line about ``path`` (a decoder's message starts with the
    file it read), naming ``cached_path`` where it differs; a reason that already names another file is told once,
    of the first. A search photo was named under a collection's file before (a user's trial)."""
    if reason.startswith(f"{path}: "):
        return reason
    first = cached_path
    if _SAME_BYTES in reason:  # a copy of a copy: the file they were first found unreadable under
        reason, note = reason.split(_SAME_BYTES, 1)
        first = note.split(", found unreadable", 1)[0]
    if reason.startswith(f"{cached_path}: "):
        reason = reason[len(cached_path) + 2 :]
    if first == path:
        return f"{path}: {reason}"
    return f"{path}: {reason}{_SAME_BYTES}{first}, found unreadable there)"


def assemble_store(
    lists: dict[str, Any],
    split: str,
    pack_dir: str | os.PathLike,
    pack_paths: Sequence[str | os.PathLike],
    out_path: str | os.PathLike,
    xv: str,
    on_bad_image: str = "error",
) -> dict[str, Any]:
    """The split's store: a virtual HDF5 over the packs, rows in list order. Every row must be in ``pack_paths`` (the
    packs the plan named); an image whose size or mtime is not the cached one is named (it changed after the plan).
    Under ``on_bad_image: error`` a cached row of an unreadable image (extracted earlier under ``skip``) is refused,
    naming the file, as extracting it would be."""
    out_path = Path(out_path)
    names = [Path(p).stem for p in pack_paths]
    index = load_index(pack_dir, only=names)
    missing_packs = [n for n in names if n not in index.packs]
    if missing_packs:
        raise StoreError(f"{out_path}: pack(s) without their index in {pack_dir}: {missing_packs[:5]}")
    plan = plan_extraction(lists, index, xv, 1, 1, splits=(split,))
    if plan.new_packs:
        todo = [it["path"] for v in plan.new_packs.values() for it in v]
        raise StoreError(
            f"{out_path}: {len(todo)} image(s) are in no extracted pack, e.g. {todo[:5]}: they changed "
            "after the workflow planned this run (or the cache was edited); run snakemake again"
        )
    mapping = plan.rows[split]
    n = len(mapping)
    bad = [
        skipped_reason_for(
            lists[split][i]["path"], index.packs[p]["skipped"][str(r)], index.packs[p]["rows"]["path"][r]
        )
        for i, (p, r) in enumerate(mapping)
        if str(r) in index.packs[p].get("skipped", {})
    ]
    if bad and on_bad_image != "skip":
        raise StoreError(
            f"{out_path}: {len(bad)} image(s) listed for it ({split} side) have no features (unreadable when "
            f"extracted under on_bad_image: skip): {'; '.join(bad[:5])}; fix them or set on_bad_image: skip"
        )
    infos = {}
    for name in sorted({p for p, _ in mapping}):
        path = Path(pack_dir) / f"{name}.h5"
        try:
            with h5py.File(path, "r") as f:
                _check_attrs(f, str(path))
                infos[name] = {
                    "path": path,
                    **{k: f.attrs[k] for k in ("backbone", "dim", "K")},
                    "global_dim": int(f.attrs.get("global_dim", 0)),
                    "n": f["count"].shape[0],
                    "skipped": json.loads(f.attrs.get("skipped", "[]")),
                }
        except (OSError, KeyError) as e:
            raise StoreError(damaged_pack_message(path, e, out_path)) from e
        if infos[name]["n"] != len(index.packs[name]["rows"]["sha256"]):
            raise StoreError(
                f"{path}: {infos[name]['n']} rows but its index lists {len(index.packs[name]['rows']['sha256'])}"
            )
    if not infos:
        raise StoreError(f"{out_path}: the {split} list is empty")
    first = next(iter(infos.values()))
    for info in infos.values():
        for key in ("backbone", "dim", "K", "global_dim"):
            if info[key] != first[key]:
                raise StoreError(
                    f"{info['path']}: attribute {key}={info[key]!r} differs from {first['path']} ({first[key]!r})"
                )
    k, d, gd = int(first["K"]), int(first["dim"]), int(first["global_dim"])
    layouts = _layouts(n, k, d)
    if gd:
        layouts["global"] = ((n, gd), np.float32)
    segs = runs(mapping)
    with atomic_path(out_path) as tmp:
        with h5py.File(tmp, "w") as f:
            for field_name, (shape, dtype) in layouts.items():
                layout = h5py.VirtualLayout(shape=shape, dtype=dtype)
                for start, pack, r, length in segs:
                    info = infos[pack]
                    rel = os.path.relpath(Path(info["path"]).resolve(), out_path.parent.resolve())
                    src = h5py.VirtualSource(rel, field_name, shape=(info["n"],) + shape[1:])
                    layout[start : start + length] = src[r : r + length]
                f.create_virtual_dataset(field_name, layout, fillvalue=COUNT_FILL if field_name == "count" else 0)
            f.attrs.update(
                {
                    "schema_version": SCHEMA_VERSION,
                    "kind": "local",
                    "backbone": first["backbone"],
                    "dim": d,
                    "K": k,
                    "row_start": 0,
                    "row_stop": n,
                    "n_total": n,
                    "virtual": True,
                    "layout": "cache",
                    "feature_cache": xv,
                    "n_chunks": len(infos),
                    "n_runs": len(segs),
                    "global_dim": gd,
                }
            )
        with h5py.File(tmp, "r") as f:
            _verify_sources(f, out_path)
            counts = f["count"][:]
        if (counts == COUNT_FILL).any():
            raise StoreError(
                f"{out_path}: virtual 'count' reads fill values at rows {np.flatnonzero(counts == COUNT_FILL)[:5]}"
            )
        fault_point("merge")
    entries = lists[split]
    skipped = []
    for i, (pack, r) in enumerate(mapping):
        reason = index.packs[pack].get("skipped", {}).get(str(r))
        if reason is not None:
            skipped.append({"path": entries[i]["path"], "reason": reason})
    return {
        "n_rows": n,
        "n_chunks": len(infos),
        "n_runs": len(segs),
        "parts": [n],
        "K": k,
        "dim": d,
        "global_dim": gd,
        "backbone": first["backbone"],
        "feature_cache": xv,
        "packs": sorted(infos),
        "descriptors_total": int(counts.sum()),
        "skipped": skipped,
    }
