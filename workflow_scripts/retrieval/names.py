"""Names in target paths: which dataset names the workflow accepts, and how ``results/{dataset}_{method}.json``
splits into its dataset and method when both may contain underscores (``x_ames_ames_binary`` is dataset
``x_ames`` with method ``ames_binary``). Plain Python, no imports of the pipeline: the rules and tests call it."""

from __future__ import annotations

import re
from typing import Sequence

# What a dataset name (a folder under data_root) may hold: letters, digits, '.', '_', '+', '-', starting with a
# letter or a digit. Spaces, quotes, '/', '{', '}' and the like are refused: Snakemake wildcards, log paths and
# shell-free scripts carry these characters safely on every file system and through SLURM job names.
DATASET_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._+\-]*"


ALLOWED_CHARACTERS = (
    "ASCII letters (a-z, A-Z), digits, '.', '_', '+' and '-', starting with a letter or a digit (a name ending in "
    "'+1m' is the dataset before it with the revisitop1m distractors appended)"
)


def check_dataset_name(name: str) -> str:
    """``name`` itself if it is an allowed dataset name; ValueError naming the allowed characters otherwise."""
    if not re.fullmatch(DATASET_PATTERN, name):
        bad = sorted({c for c in name if not re.fullmatch(r"[A-Za-z0-9._+\-]", c)})
        why = f"characters {bad!r} are" if bad else "the first character is"
        raise ValueError(
            f"dataset name {name!r}: {why} not allowed; a dataset name holds {ALLOWED_CHARACTERS} "
            "(rename the folder, or link it under an allowed name)"
        )
    return name


def split_result_name(name: str, methods: Sequence[str]) -> tuple[str, str]:
    """``(dataset, method)`` of a top-level result name ``{dataset}_{method}`` (without ``.json``).

    The method is the longest known method that ends the name after an underscore, so a dataset may contain
    underscores and even end like a method (``x_ames`` + ``ames_binary``). A name that ends in no known method is
    split at its last underscore, and the caller reports the unknown method. Raises ValueError for a name without
    an underscore or a dataset part that :func:`check_dataset_name` refuses."""
    for method in sorted(methods, key=len, reverse=True):
        if name.endswith("_" + method) and len(name) > len(method) + 1:
            return check_dataset_name(name[: -len(method) - 1]), method
    if "_" not in name:
        raise ValueError(
            f"results/{name}.json: a result is named results/{{dataset}}_{{method}}.json (demo_global.json, say)"
        )
    dataset, method = name.rsplit("_", 1)
    return check_dataset_name(dataset), method
