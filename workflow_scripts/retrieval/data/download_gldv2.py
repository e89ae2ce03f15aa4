"""Download of Google Landmarks v2 from the official locations (github.com/cvdfoundation/google-landmark).

Two datasets, each a folder under ``data_root``:

* ``gldv2`` (retrieval): ``metadata/index.csv``, ``metadata/test.csv``, ``ground_truth/retrieval_solution_v2.1.csv``
  and the tar parts ``index/images_000..099.tar`` (761,757 images) and ``test/images_000..019.tar`` (117,577);
* ``gldv2-train``: ``metadata/train_clean.csv`` and ``train/images_000..499.tar`` (the 4.1M-image train set,
  of which train_clean.csv lists 1.58M).

Each tar part is fetched resumably (retrieval.data.download.fetch: ``.part`` files and HTTP ranges), checked against
its official ``md5sum/{split}/md5.images_NNN.txt`` before it is extracted into ``{split}/a/b/c/{id}.jpg``
(members keep their folders; one escaping the split folder is refused), then marked ``.done`` and, unless
``keep_archives``, deleted; a marked part is never fetched again. ``parts``: only the first N tar parts of each
split (a laptop subset); the summary then says ``subset`` and the lists need ``gldv2: {present_only: true}``,
which restricts the ground truth to the images present. Offline it fails at once naming where to put the files.
"""

from __future__ import annotations

import hashlib
import logging
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from retrieval.data.download import OfflineError, extract_tree, fetch, read_before_note
from retrieval.runtime import write_json

log = logging.getLogger(__name__)


BASE = "https://s3.amazonaws.com/google-landmark"


GLDV2_PARTS: dict[str, dict[str, Any]] = {
    "gldv2": {
        "metadata": ["metadata/index.csv", "metadata/test.csv", "ground_truth/retrieval_solution_v2.1.csv"],
        "splits": {"index": 100, "test": 20},
    },
    "gldv2-train": {"metadata": ["metadata/train_clean.csv"], "splits": {"train": 500}},
}


def tar_url(base: str, split: str, i: int) -> str:
    """The URL of tar part ``i`` of ``split``: ``{base}/{split}/images_{i:03d}.tar``."""
    return f"{base}/{split}/images_{i:03d}.tar"


def md5_url(base: str, split: str, i: int) -> str:
    """The URL of the official MD5 file of tar part ``i`` of ``split``:
    ``{base}/md5sum/{split}/md5.images_{i:03d}.txt``."""
    return f"{base}/md5sum/{split}/md5.images_{i:03d}.txt"


def file_md5(path: Path, block: int = 1 << 22) -> str:
    """MD5 hex digest of a file's bytes (what the official checksum files hold), read in blocks of ``block`` bytes
    (4 MiB)."""
    h = hashlib.md5()  # noqa: S324 - the official checksum files are MD5
    with open(path, "rb") as fh:
        while chunk := fh.read(block):
            h.update(chunk)
    return h.hexdigest()


def _expected_md5(path: Path, tar_name: str) -> str:
    """The checksum for ``tar_name`` in an md5sum file (``<hex>  images_NNN.tar``)."""
    for line in path.read_text().splitlines():
        fields = line.split()
        if len(fields) >= 2 and Path(fields[-1].lstrip("*")).name == tar_name:
            return fields[0].lower()
    raise ValueError(f"{path}: no checksum for {tar_name}")


def _where_to_put(name: str, target: Path, base: str) -> str:
    spec = GLDV2_PARTS[name]
    meta = ", ".join(str(target / Path(m).name) for m in spec["metadata"])
    splits = "; ".join(
        f"{target / s}/a/b/c/{{id}}.jpg (from {tar_url(base, s, 0)} ... {tar_url(base, s, n - 1)})"
        for s, n in spec["splits"].items()
    )
    return (
        f"put {meta} (from {base}/metadata/ and {base}/ground_truth/) and the images as {splits}, then run the "
        "workflow again (with gldv2: {present_only: true} if only some parts are there)"
    )


def download_gldv2(
    name: str,
    data_root: str | Path,
    parts: int | None = None,
    base: str = BASE,
    timeout: float = 30.0,
    keep_archives: bool = False,
    read_before: str | None = None,
) -> dict[str, Any]:
    """Fetch, verify (MD5) and extract ``gldv2`` or ``gldv2-train`` under ``{data_root}/{name}``; the summary
    ``.download_complete`` is written last. ``parts``: the first N tar parts of each split (None: all).
    Raises OfflineError (naming where to put the files) when the host cannot be reached, ValueError when a part's
    MD5 differs (the part is deleted so the next run fetches it again). ``read_before``: the workflow's lists folder
    of the dataset where it exists (:func:`retrieval.data.download.read_before_note`)."""
    if name not in GLDV2_PARTS:
        raise ValueError(f"no GLDv2 download for {name!r} (known: {sorted(GLDV2_PARTS)})")
    spec = GLDV2_PARTS[name]
    target = Path(data_root) / name
    if note := read_before_note(name, target, read_before):
        log.warning("%s; downloading it again", note)
    cache = target / "_download"
    cache.mkdir(parents=True, exist_ok=True)
    probe = f"{base}/{spec['metadata'][0]}"
    try:
        urllib.request.urlopen(urllib.request.Request(probe, method="HEAD"), timeout=min(timeout, 10)).close()
    except (urllib.error.URLError, OSError) as e:
        raise OfflineError(
            f"cannot reach {probe} ({e}). Offline? "
            + (f"{note}; or " if note else "")
            + _where_to_put(name, target, base)
        ) from None
    for m in spec["metadata"]:
        fetch(f"{base}/{m}", target / Path(m).name, timeout)
    counts: dict[str, int] = {}
    for split, n_total in spec["splits"].items():
        n = n_total if parts is None else min(parts, n_total)
        counts[split] = n
        for i in range(n):
            tar = cache / f"{split}_images_{i:03d}.tar"
            done = tar.with_name(tar.name + ".done")
            if done.is_file():
                continue
            fetch(tar_url(base, split, i), tar, timeout)
            md5_file = fetch(md5_url(base, split, i), cache / f"{split}_md5.images_{i:03d}.txt", timeout)
            expected, got = _expected_md5(md5_file, f"images_{i:03d}.tar"), file_md5(tar)
            if got != expected:
                tar.unlink()
                raise ValueError(
                    f"{tar_url(base, split, i)}: MD5 {got} but the official checksum is {expected}; "
                    "the part was deleted, run again to fetch it anew"
                )
            n_images = extract_tree(tar, target / split)
            done.write_text(f"{n_images}\n")
            if not keep_archives:
                tar.unlink()
            log.info("%s %s part %d of %d: %d images", name, split, i + 1, n, n_images)
    subset = any(counts[s] < spec["splits"][s] for s in counts)
    summary = {
        "dataset": name,
        "base": base,
        "parts": counts,
        "subset": subset,
        "note": "only some tar parts: evaluate with gldv2: {present_only: true}" if subset else None,
    }
    write_json(target / ".download_complete", summary)
    return summary
