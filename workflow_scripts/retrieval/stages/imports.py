"""The ``import_global`` stage: global descriptors computed elsewhere, checked against the image lists."""

from __future__ import annotations

from pathlib import Path

from retrieval.runtime import read_lists
from retrieval.stores.global_store import write_global
from retrieval.stores.imports import read_import


def import_global_stage(
    src: str | Path, lists_path: str | Path, split: str, out_path: str | Path, version: str
) -> None:

    x = read_import(src, split)
    n = len(read_lists(lists_path)[split])
    if len(x) != n:
        # a (D, N) array read as D descriptors (helper-99's trial): rows must be images
        if x.shape[1] != n:
            turned = ""
        elif Path(src).suffix == ".mat":  # read as its transpose: said as stored (helper-101)
            turned = f"; it is stored {x.shape[1]} x {x.shape[0]}: transposed? a .mat holds one image per column"
        else:
            turned = f"; the array is {x.shape[0]} x {x.shape[1]}: transposed? one row per image"
        raise ValueError(f"{src}: {len(x)} {split} descriptors but the image list {lists_path} has {n} images{turned}")
    write_global(out_path, x, method="imported", source=str(src), version=version)
