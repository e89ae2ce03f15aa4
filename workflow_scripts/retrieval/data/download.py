"""Download of ROxford5k, RParis6k and the R1M distractors from the official locations (revisitop's
``download.py`` lists them).

Resumable: archives are fetched into ``{dataset}/_download/*.part`` with HTTP range requests and renamed when
complete; an archive already extracted (a ``.done`` marker) is neither fetched nor extracted again, so the 100
R1M archives can be fetched over several runs and deleted as they go (``keep_archives: false``).

* ROxford5k / RParis6k: images extracted flat into ``jpg/`` (only regular ``.jpg`` members, by base name),
  verified against the ground truth: every listed database and query image present and decodable, and the
  expected counts (4993+70, 6322+70). Files that no list names (the corrupt Paris images) are ignored.
* revisitop1m: the image list ``revisitop1m.txt`` names every image as a path under ``jpg/`` (extension
  included); archives are extracted keeping their folders (members outside ``jpg/`` are refused), and every
  listed image must be present and decodable (1,001,001 images, no queries).

Offline, it fails at once with a message saying where to put the files.
"""

from __future__ import annotations

import logging
import tarfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from PIL import Image

from retrieval.data.datasets import ALIASES, IMAGE_SUFFIXES, image_file
from retrieval.data.gnd import load_ground_truth
from retrieval.data.images import BadImageError, image_header, no_pillow_bomb_check
from retrieval.runtime import write_json

log = logging.getLogger(__name__)


SOURCES: dict[str, dict[str, Any]] = {
    "roxford5k": {
        "archives": ["https://www.robots.ox.ac.uk/~vgg/data/oxbuildings/oxbuild_images-v1.tgz"],
        "gnd": "http://cmp.felk.cvut.cz/revisitop/data/datasets/roxford5k/gnd_roxford5k.pkl",
        "n_db": 4993,
        "n_queries": 70,
    },
    "rparis6k": {
        "archives": [
            "https://www.robots.ox.ac.uk/~vgg/data/parisbuildings/paris_1-v1.tgz",
            "https://www.robots.ox.ac.uk/~vgg/data/parisbuildings/paris_2-v1.tgz",
        ],
        "gnd": "http://cmp.felk.cvut.cz/revisitop/data/datasets/rparis6k/gnd_rparis6k.pkl",
        "n_db": 6322,
        "n_queries": 70,
    },
    "revisitop1m": {
        "archives": [
            f"http://ptak.felk.cvut.cz/revisitop/revisitop1m/jpg/revisitop1m.{i}.tar.gz" for i in range(1, 101)
        ],
        "list": "http://ptak.felk.cvut.cz/revisitop/revisitop1m/revisitop1m.txt",
        "n_db": 1001001,
        "n_queries": 0,
    },
}


class OfflineError(RuntimeError):
    """The download host cannot be reached (the first request fails); the message says where to put the files by
    hand."""

    said_alone = True  # its message is the whole story: no traceback on the console (runtime.setup_logging)


def _where_to_put(name: str, target: Path, source: dict[str, Any]) -> str:
    aliased = [target.parent / a for a, c in ALIASES.items() if c == name and (target.parent / a).is_dir()]
    if aliased:  # the data placed under the alias's name: not where it is read from
        return (
            f"{aliased[0]} exists, but {name}'s data is read from {target}/ ('{aliased[0].name}' names the dataset, "
            f"not its folder): move what it holds (jpg/, gnd_{name}.pkl) into {target}/, then run the workflow again"
        )
    archives = source["archives"]
    shown = (
        ", ".join(archives) if len(archives) <= 3 else f"{archives[0]} ... {archives[-1]} ({len(archives)} archives)"
    )
    if "list" in source:
        return (
            f"put the image list in {target / Path(source['list']).name} (from {source['list']}) and the images, "
            f"with the folders the list names, under {target / 'jpg'}/ (from {shown}), then run the workflow again"
        )
    return (
        f"put the images in {target / 'jpg'}/ (from {shown}) and the ground truth in "
        f"{target / f'gnd_{name}.pkl'} (from {source['gnd']}), then run the workflow again"
    )


def read_before_note(name: str, target: Path, read_before: str | None) -> str:
    """What a download says where the dataset's lists were made here before (``read_before``: that folder, e.g.
    ``results/lists/roxford5k/``; None when they were not): the folder it was read from is no longer at ``target``
    (moved, renamed, or data_root changed), and downloading it again is rarely what is wanted (ROxford5k's and
    RParis6k's images are 1.8 and 2.5 GB). "" for None."""
    if read_before is None:
        return ""
    return (
        f"{name} was read here before ({read_before}), but {target} holds no complete download now: moved, renamed, or "
        f"data_root changed? To use the copy you have, stop this run and name its folder in dataset_dirs.{name} "
        f"(or move it back to {target})"
    )


def fetch(url: str, dest: Path, timeout: float = 30.0, block: int = 1 << 20) -> Path:
    """Download ``url`` to ``dest``, resuming a previous ``dest.part``; the final name appears only when complete."""
    if dest.is_file():
        return dest
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    req = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        resp = urllib.request.urlopen(req, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:  # range not satisfiable: the part file is already complete
            part.rename(dest)
            return dest
        raise
    with resp:
        if have and resp.status != 206:
            log.info("%s: server ignored the range request, restarting", url)
            have = 0
        total = resp.headers.get("Content-Length")
        mode = "ab" if have else "wb"
        with open(part, mode) as fh:
            while chunk := resp.read(block):
                fh.write(chunk)
    if total is not None and part.stat().st_size != have + int(total):
        raise IOError(
            f"{url}: download incomplete ({part.stat().st_size} of {have + int(total)} bytes); run again to resume"
        )
    part.rename(dest)
    return dest


def extract_jpgs(archive: Path, jpg_dir: Path) -> int:
    """Extract the ``.jpg`` members of a tar archive flat into ``jpg_dir`` (no paths from the archive are used)."""
    jpg_dir.mkdir(parents=True, exist_ok=True)
    n = 0
    with tarfile.open(archive) as tar:
        for member in tar:
            if not member.isfile() or not member.name.lower().endswith(".jpg"):
                continue
            out = jpg_dir / Path(member.name).name
            if out.exists() and out.stat().st_size == member.size:
                continue
            src = tar.extractfile(member)
            if src is None:
                continue
            tmp = out.with_name(out.name + ".part")
            tmp.write_bytes(src.read())
            tmp.rename(out)
            n += 1
    return n


def extract_tree(archive: Path, jpg_dir: Path) -> int:
    """Extract the image members of a tar archive under ``jpg_dir`` keeping their folders (R1M's layout).

    Member names that are absolute or climb out with ``..`` are refused: an archive never writes outside ``jpg/``."""

    jpg_dir.mkdir(parents=True, exist_ok=True)
    root = jpg_dir.resolve()
    n = 0
    with tarfile.open(archive) as tar:
        for member in tar:
            if not member.isfile() or Path(member.name).suffix.lower() not in IMAGE_SUFFIXES:
                continue
            rel = Path(member.name)
            out = (root / rel).resolve()
            if rel.is_absolute() or not out.is_relative_to(root):
                raise ValueError(f"{archive}: member {member.name!r} would be written outside {jpg_dir}; refusing it")
            if out.exists() and out.stat().st_size == member.size:
                continue
            src = tar.extractfile(member)
            if src is None:
                continue
            out.parent.mkdir(parents=True, exist_ok=True)
            tmp = out.with_name(out.name + ".part")
            tmp.write_bytes(src.read())
            tmp.rename(out)
            n += 1
    return n


def read_image_list(path: Path) -> list[str]:
    """Entries of an image list such as ``revisitop1m.txt``: one path under ``jpg/`` per line."""
    names = [ln.strip() for ln in path.read_text().splitlines()]
    return [n for n in names if n and not n.startswith("#")]


def _check_decodable(target: Path, names: list[str]) -> list[str]:
    """Every listed image present and decodable (Pillow's verify); returns the names whose EXIF orientation is not
    1, logged as a warning: they are indexed as displayed (rotated or mirrored), which changes what is indexed."""

    bad, rotated = [], []
    for n in names:
        p = image_file(target, n)
        try:
            orientation = image_header(p, max_pixels=2**62)[2]  # no size cap here: that is the workflow's choice
            with no_pillow_bomb_check(), Image.open(p) as im:
                im.verify()
        except (BadImageError, OSError, SyntaxError, Image.DecompressionBombError) as e:
            bad.append(f"{p} ({e})")
            continue
        if orientation != 1:
            rotated.append(f"{n} (orientation {orientation})")
    if bad:
        raise ValueError(f"{target}: {len(bad)} listed images missing or undecodable, e.g. {bad[:3]}")
    if rotated:
        log.warning(
            "%s: %d image(s) carry an EXIF orientation other than 1 and are indexed as displayed (rotated or "
            "mirrored): %s",
            target,
            len(rotated),
            rotated[:20] + (["..."] if len(rotated) > 20 else []),
        )
    return rotated


def verify_listed(target: Path, list_name: str, n_db: int) -> dict[str, int]:
    """A distractor set: its image list has ``n_db`` entries, each present under ``jpg/`` and decodable."""
    path = target / list_name
    if not path.is_file():
        raise FileNotFoundError(f"image list not found: {path}")
    names = read_image_list(path)
    if len(names) != n_db:
        raise ValueError(f"{path}: lists {len(names)} images, expected {n_db}")
    rotated = _check_decodable(target, names)
    return {"db": len(names), "queries": 0, "exif_orientation_not_1": rotated}


def verify_dataset(target: Path, name: str, n_db: int, n_queries: int) -> dict[str, int]:
    """Check a revisitop dataset under ``target``: ``gnd_{name}.pkl`` lists ``n_db`` database and ``n_queries`` query
    images, each present under ``jpg/`` and decodable (Pillow's verify). Returns {db, queries, exif_orientation_not_1:
    the images whose EXIF orientation is not 1 (all of them; the log names the first 20)}. ValueError naming ``target``
    for other counts or missing / undecodable images; load_ground_truth's errors for the pickle."""

    gt = load_ground_truth(target / f"gnd_{name}.pkl")
    if (gt.n_db, gt.n_queries) != (n_db, n_queries):
        raise ValueError(f"{target}: ground truth lists {gt.n_db}+{gt.n_queries} images, expected {n_db}+{n_queries}")
    rotated = _check_decodable(target, gt.imlist + gt.qimlist)
    return {"db": gt.n_db, "queries": gt.n_queries, "exif_orientation_not_1": rotated}


def download_revisitop(
    name: str,
    data_root: str | Path,
    sources: dict[str, dict[str, Any]] | None = None,
    timeout: float = 30.0,
    keep_archives: bool = True,
    read_before: str | None = None,
) -> dict[str, Any]:
    """Fetch, extract and verify one dataset under ``{data_root}/{name}``; ``.download_complete`` is written last.
    ``read_before``: the workflow's lists folder of the dataset where it exists (:func:`read_before_note`: warned
    of before downloading, and added to an OfflineError's message). Raises OfflineError (naming where to put the
    files) when the host cannot be reached."""
    sources = sources or SOURCES
    if name not in sources:
        raise ValueError(f"no download source for dataset {name!r} (known: {sorted(sources)})")
    src = sources[name]
    target = Path(data_root) / name
    if note := read_before_note(name, target, read_before):
        log.warning("%s; downloading it again", note)
    target.mkdir(parents=True, exist_ok=True)
    cache = target / "_download"
    cache.mkdir(exist_ok=True)
    probe = src.get("list") or src["gnd"]
    try:
        urllib.request.urlopen(urllib.request.Request(probe, method="HEAD"), timeout=min(timeout, 10)).close()
    except (urllib.error.URLError, OSError) as e:
        # from None: the message holds the reason; the chained URLError traceback buried it in 60 lines
        raise OfflineError(
            f"cannot reach {probe} ({e}). Offline? "
            + (f"{note}; or " if note else "")
            + _where_to_put(name, target, src)
        ) from None
    if "list" in src:
        meta_path = fetch(src["list"], target / Path(src["list"]).name, timeout)
        extract = extract_tree
    else:
        meta_path = fetch(src["gnd"], target / f"gnd_{name}.pkl", timeout)
        extract = extract_jpgs
    for i, url in enumerate(src["archives"]):
        archive = cache / Path(url).name
        done = archive.with_name(archive.name + ".done")
        if done.is_file():
            continue
        fetch(url, archive, timeout)
        n = extract(archive, target / "jpg")
        done.write_text(f"{n}\n")
        if not keep_archives:
            archive.unlink()
        log.info("%s (%d of %d): extracted %d images", archive.name, i + 1, len(src["archives"]), n)
    try:
        if "list" in src:
            counts = verify_listed(target, meta_path.name, src["n_db"])
        else:
            counts = verify_dataset(target, name, src["n_db"], src["n_queries"])
    except ValueError as e:
        raise ValueError(
            f"{e}. Archives already extracted are marked {cache}/*.done: delete the marker of the archive "
            "that holds these images (or all of them) and run again"
        ) from e
    meta = (
        {"image_list": str(meta_path), "archives": len(src["archives"])}
        if "list" in src
        else {"ground_truth": str(meta_path), "archives": src["archives"]}
    )
    summary = {"dataset": name, **meta, **counts}
    write_json(target / ".download_complete", summary)
    return summary
