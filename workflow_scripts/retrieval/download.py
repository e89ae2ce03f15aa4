"""Download of ROxford5k and RParis6k from the official locations (revisitop's ``download.py`` lists them).

Resumable: archives are fetched into ``{dataset}/_download/*.part`` with HTTP range requests and renamed when
complete. Images are extracted flat into ``jpg/`` (only regular ``.jpg`` members, by base name). The result is
verified against the ground truth: every listed database and query image present and decodable, and the
expected counts (4993+70, 6322+70). Files that no list names (the corrupt Paris images) are ignored.
Offline, it fails at once with a message saying where to put the files.
"""

from __future__ import annotations

import logging
import tarfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from .runtime import write_json

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
}


class OfflineError(RuntimeError):
    pass


def _where_to_put(name: str, target: Path, source: dict[str, Any]) -> str:
    return (f"put the images in {target / 'jpg'}/ (from {', '.join(source['archives'])}) and the ground truth in "
            f"{target / f'gnd_{name}.pkl'} (from {source['gnd']}), then run the workflow again")


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
        raise IOError(f"{url}: download incomplete ({part.stat().st_size} of {have + int(total)} bytes); run again to resume")
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


def verify_dataset(target: Path, name: str, n_db: int, n_queries: int) -> dict[str, int]:
    from PIL import Image  # noqa: PLC0415

    from .datasets import image_file  # noqa: PLC0415
    from .gnd import load_ground_truth  # noqa: PLC0415

    gt = load_ground_truth(target / f"gnd_{name}.pkl")
    if (gt.n_db, gt.n_queries) != (n_db, n_queries):
        raise ValueError(f"{target}: ground truth lists {gt.n_db}+{gt.n_queries} images, expected {n_db}+{n_queries}")
    bad = []
    for n in gt.imlist + gt.qimlist:
        p = image_file(target, n)
        try:
            with Image.open(p) as im:
                im.verify()
        except (OSError, SyntaxError) as e:
            bad.append(f"{p} ({e})")
    if bad:
        raise ValueError(f"{target}: {len(bad)} listed images missing or undecodable, e.g. {bad[:3]}")
    return {"db": gt.n_db, "queries": gt.n_queries}


def download_revisitop(name: str, data_root: str | Path, sources: dict[str, dict[str, Any]] | None = None,
                       timeout: float = 30.0) -> dict[str, Any]:
    sources = sources or SOURCES
    if name not in sources:
        raise ValueError(f"no download source for dataset {name!r} (known: {sorted(sources)})")
    src = sources[name]
    target = Path(data_root) / name
    target.mkdir(parents=True, exist_ok=True)
    cache = target / "_download"
    cache.mkdir(exist_ok=True)
    try:
        urllib.request.urlopen(urllib.request.Request(src["gnd"], method="HEAD"), timeout=min(timeout, 10)).close()
    except (urllib.error.URLError, OSError) as e:
        raise OfflineError(f"cannot reach {src['gnd']} ({e}). Offline? {_where_to_put(name, target, src)}") from e
    gnd_path = fetch(src["gnd"], target / f"gnd_{name}.pkl", timeout)
    for url in src["archives"]:
        archive = fetch(url, cache / Path(url).name, timeout)
        log.info("%s: extracted %d images", archive.name, extract_jpgs(archive, target / "jpg"))
    counts = verify_dataset(target, name, src["n_db"], src["n_queries"])
    summary = {"dataset": name, "ground_truth": str(gnd_path), "archives": src["archives"], **counts}
    write_json(target / ".download_complete", summary)
    return summary
