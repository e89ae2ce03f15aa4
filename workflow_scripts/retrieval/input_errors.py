"""An input function's error said as a warning where Snakemake would drop it: its rule's file is already there.

While Snakemake 9 looks for the job that makes a file a later job needs, it takes any error of the candidate job's
input function (``InputFunctionException``, a ``WorkflowError`` of ours) for "no producer"; when that file is
already on disk it goes on with it and says nothing (``DAG.update_``; snakemake/snakemake#3953, open). So a refusal
that names the bad file or key (a dataset's folder gone, ``extract.ames_import.dir`` moved) or a bug became
"Nothing to be done" with exit status 0, and the changes behind it went unseen. :func:`say_input_errors` wraps every
input function of the workflow's rules: when one raises and a file its rule makes (for those wildcards) is present,
the error is warned of, once, with the rule and wildcards; it is raised again unchanged either way, so Snakemake's
own handling (its error where the file is missing, checkpoints) is as before and a missing file's error is not said
twice.

This adapts Snakemake, not the retrieval: the rules' input items are Snakemake's (a function, or for ``unpack`` an
``_IOFile`` whose ``AnnotatedString`` holds one), read through the attributes Snakemake 9 itself uses
(``rule.input``, ``rule.output``, ``Namedlist._names``, ``_IOFile._file``); the pinned version is what the workflow
tests run.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from snakemake.io import apply_wildcards

SAID = "_retrieval_said"  # an attribute set on an exception already warned of (dag_lists' own, better worded)


def describe(e: BaseException) -> str:
    """An error for a warning: bad input's own message (OSError, ValueError and Snakemake's WorkflowError: ours name
    the file or key), anything else with its type, which is then the only clue."""
    if isinstance(e, (OSError, ValueError)) or type(e).__name__ == "WorkflowError":
        return str(e)
    return f"{type(e).__name__}: {e}"


def mark_said(e: BaseException) -> BaseException:
    """``e``, marked as warned of already: a wrapper of :func:`said` does not warn of it again."""
    setattr(e, SAID, True)
    return e


def said(
    fn: Callable[..., Any],
    rule: str,
    present: Callable[[Mapping[str, str]], str | None],
    warn: Callable[[str], None],
    passed: tuple[type[BaseException], ...] = (),
) -> Callable[..., Any]:
    """``fn`` (an input function of rule ``rule``) that, when it raises, first calls ``warn`` with the rule, the
    wildcards and the error where ``present(wildcards)`` names a file of the rule that is on disk (once per rule and
    message in this process), then raises the same exception.

    ``passed``: exception types that are Snakemake's signals, not errors (``IncompleteCheckpointException``), raised
    without a warning, as is an exception marked by :func:`mark_said`. The wrapper has ``fn``'s signature
    (``functools.wraps``): Snakemake picks the arguments it passes (``wildcards``, ``input``, ...) from it."""
    seen: set[str] = set()

    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except passed:
            raise
        except Exception as e:
            if not getattr(e, SAID, False):
                wildcards = dict(args[0].items()) if args and hasattr(args[0], "items") else {}
                path = present(wildcards)
                if path is not None:
                    where = ", ".join(f"{k}={v}" for k, v in wildcards.items())
                    text = (
                        f"rule {rule}{f' ({where})' if where else ''}: its inputs cannot be named: {describe(e)}. "
                        f"Snakemake drops this error where the rule's file is present ({path}) and goes on with that "
                        "file (snakemake#3953): a 'Nothing to be done' after this does not mean it is resolved"
                    )
                    if text not in seen:
                        seen.add(text)
                        warn(text)
            raise

    call.__said__ = True  # type: ignore[attr-defined]
    return call


def _present(patterns: list[str]) -> Callable[[Mapping[str, str]], str | None]:
    """The first of a rule's output ``patterns``, with the wildcards filled in, that exists (a file or a folder), or
    None; a pattern that cannot be filled counts as present (the warning is then said rather than lost)."""

    def present(wildcards: Mapping[str, str]) -> str | None:
        for pattern in patterns:
            try:
                path = apply_wildcards(pattern, wildcards)
            except Exception:  # noqa: BLE001 -- a wildcard this job lacks: cannot tell, so say it
                return pattern
            if os.path.exists(path):
                return path
        return None

    return present


def say_input_errors(
    rules: Iterable[Any], warn: Callable[[str], None], passed: tuple[type[BaseException], ...] = ()
) -> int:
    """Wrap every input function of ``rules`` (Snakemake ``Rule`` objects: ``workflow.rules``) with :func:`said`, in
    place; returns how many were wrapped. An item that is a function is replaced in ``rule.input`` (and under its
    name, where it has one); an ``unpack(...)`` item keeps its flags and gets the wrapper as its ``callable``. An item
    already wrapped is left as it is.

    Raises TypeError for an input item that says it is callable in a form this does not know (a Snakemake upgrade
    that changed the representation): the workflow then stops at once rather than lose the warnings."""
    n = 0
    for rule in rules:
        items = rule.input
        present = _present([str(o) for o in rule.output])
        names = {start: name for name, (start, end) in items._names.items() if end is None}
        for i, item in enumerate(items):
            holder = getattr(item, "_file", item)  # unpack(fn): an _IOFile whose AnnotatedString holds the function
            inner = getattr(holder, "callable", None) if isinstance(holder, str) else None
            if inner is not None:
                if not getattr(inner, "__said__", False):
                    holder.callable = said(inner, rule.name, present, warn, passed)
                    n += 1
            elif callable(item) and not isinstance(item, str):
                if not getattr(item, "__said__", False):
                    items[i] = said(item, rule.name, present, warn, passed)
                    if i in names:
                        setattr(items, names[i], items[i])
                    n += 1
            elif hasattr(item, "is_callable") and item.is_callable():
                raise TypeError(f"rule {rule.name}: input item {i} is callable as a {type(item).__name__}")
    return n
