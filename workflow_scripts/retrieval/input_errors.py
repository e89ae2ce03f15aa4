"""Input functions' errors that Snakemake dropped, said when the run ends.

While Snakemake 9 looks for the job that makes a file a later job needs, it takes any error of the candidate job's
input function (``InputFunctionException``, a ``WorkflowError`` of ours) for "no producer"; when that file is
already on disk it goes on with it and says nothing (``DAG.update_``; snakemake/snakemake#3953, open). The error
of a job whose file is missing travels up to the job that needs that file, and is dropped there in turn when that
job's file is present. So a refusal that names the bad file or key (a dataset's folder moved away) or a bug became
"Nothing to be done" with exit status 0, or a run that went on without the rule, and what the error named went
unseen.

:func:`say_input_errors` wraps every input function of the workflow's rules. An error one raises is noted (and
raised again unchanged: Snakemake's handling is as before); Snakemake's own warnings and errors are noted too (a
``logging`` handler on its logger), and when the process ends, each noted input-function error that no message of
Snakemake's carried is said on stderr, once, with its rule and wildcards, and appended to the run's log file
(``.snakemake/log/``). An error Snakemake reported is not said
twice, and one that dropped under another rule's file is said all the same.

This adapts Snakemake, not the retrieval: the rules' input items are Snakemake's (a function, or for ``unpack`` an
``_IOFile`` whose ``AnnotatedString`` holds one), read through the attributes Snakemake 9 itself uses
(``rule.input``, ``Namedlist._names``, ``_IOFile._file``); the pinned version is what the workflow tests run.
"""

from __future__ import annotations

import atexit
import functools
import logging
import os
import sys
from collections.abc import Callable, Iterable
from typing import Any, TextIO

SAID = "_retrieval_said"  # an attribute set on an exception already warned of (dag_lists' own, better worded)

_raised: dict[str, str] = {}  # an input function's error (its _key) -> what to say if Snakemake did not report it
_reported: list[str] = []  # the warnings and errors Snakemake logged in this process
_logfiles: dict[str, None] = {}  # Snakemake's log files (.snakemake/log/...) open when an error was noted, in order
_logger: list[logging.Logger] = []  # Snakemake's logger(s) the handler was installed on
_at_exit: list[bool] = []  # [True] once say_dropped is registered to run at exit
MAX_SAID = 2000  # characters of an error's message said at the end (a message can be a whole file)


def _text(e: BaseException) -> str:
    """``str(e)``, or its repr where ``__str__`` itself raises (the error is said rather than replaced)."""
    try:
        return str(e)
    except Exception:  # noqa: BLE001 -- a broken __str__ must not hide the error it belongs to
        return repr(e)


def describe(e: BaseException) -> str:
    """An error for a warning: bad input's own message (OSError, ValueError and Snakemake's WorkflowError: ours name
    the file or key), anything else with its type, which is then the only clue (the type alone for an empty
    message)."""
    text = _text(e)
    if (isinstance(e, (OSError, ValueError)) or type(e).__name__ == "WorkflowError") and text:
        return text
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def mark_said(e: BaseException) -> BaseException:
    """``e``, marked as warned of already: a wrapper of :func:`said` does not note it."""
    setattr(e, SAID, True)
    return e


def _key(e: BaseException) -> str:
    """What of ``e`` Snakemake's report of it would hold: its message's longest line (Snakemake indents the lines of
    a message; the first can be as common as 'Error:'), else its type."""
    lines = [line.strip() for line in _text(e).splitlines() if line.strip()]
    return max(lines, key=len) if lines else type(e).__name__


def said(fn: Callable[..., Any], rule: str, passed: tuple[type[BaseException], ...] = ()) -> Callable[..., Any]:
    """``fn`` (an input function of rule ``rule``) that notes the error it raises, with the rule and wildcards (the
    first call's, for each error), then raises the same exception.

    ``passed``: exception types that are Snakemake's signals, not errors (``IncompleteCheckpointException``), raised
    without a note, as is an exception marked by :func:`mark_said`. The wrapper has ``fn``'s signature
    (``functools.wraps``): Snakemake picks the arguments it passes (``wildcards``, ``input``, ...) from it."""

    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except passed:
            raise
        except Exception as e:
            key = _key(e)
            if not getattr(e, SAID, False):
                _note_logfiles()  # each run's: a second run in one process (Snakemake's API) has its own
            if not getattr(e, SAID, False) and key not in _raised:
                wildcards = dict(args[0].items()) if args and hasattr(args[0], "items") else {}
                where = ", ".join(f"{k}={v}" for k, v in wildcards.items())
                _raised[key] = (
                    f"rule {rule}{f' ({where})' if where else ''}: an input function failed, and Snakemake dropped "
                    f"the error (snakemake#3953: it went on with files already on disk, and said nothing): "
                    f"{_ended(_clipped(describe(e)))} This run did not resolve it."
                )
            raise

    call.__said__ = True  # type: ignore[attr-defined]
    return call


def _note_logfiles() -> None:
    """Note the files Snakemake's logger writes to now: the run's ``.snakemake/log/*.snakemake.log`` (a dry run has
    none). By the time the process ends Snakemake has closed and removed its handlers, so they are noted here."""
    for logger in _logger:
        for handler in logger.handlers:
            if isinstance(handler, logging.FileHandler):
                _logfiles[handler.baseFilename] = None


def _ended(text: str) -> str:
    """``text`` ended as a sentence: a full stop added unless it ends in one, or in ``?`` or ``!`` (a message ending
    in a "did you mean 'x'?" read ``'x'?.``, helper-138)."""
    return text if text.rstrip().endswith((".", "?", "!")) else f"{text}."


def _clipped(text: str) -> str:
    """``text``, its middle left out past MAX_SAID characters."""
    if len(text) <= MAX_SAID:
        return text
    half = MAX_SAID // 2
    return f"{text[:half]} [... {len(text) - 2 * half} characters ...] {text[-half:]}"


class _Reported(logging.Handler):
    """Notes each warning and error message Snakemake logs: ``print_exception`` logs at ERROR; an input function's
    error it skips for another rule that makes the file (``ruleorder``) at WARNING, with the error."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            _reported.append(record.getMessage())
        except Exception:  # noqa: BLE001 -- a message that cannot be formatted: noted as nothing
            pass


def dropped() -> list[str]:
    """What to say of each input-function error noted in this process that none of Snakemake's error messages
    carried (in the order they were raised)."""
    return [text for key, text in _raised.items() if not any(key in message for message in _reported)]


def say_dropped(stream: TextIO | None = None) -> None:
    """Write :func:`dropped` to ``stream`` (stderr), a line each, and append them to the run's Snakemake log files
    (noted while the run had them open) that still exist, where a run on a cluster or in the background is read
    later; registered to run at exit. A log file that cannot be written is passed over (the lines are on stderr)."""
    lines = dropped()
    for text in lines:
        print(text, file=stream or sys.stderr)
    for path in _logfiles if lines else ():
        try:
            if os.path.isfile(path):
                with open(path, "a", encoding="utf-8") as f:
                    f.write("".join(f"{text}\n" for text in lines))
        except OSError:
            pass


def say_input_errors(rules: Iterable[Any], logger: logging.Logger, passed: tuple[type[BaseException], ...] = ()) -> int:
    """Wrap every input function of ``rules`` (Snakemake ``Rule`` objects: ``workflow.rules``) with :func:`said`, in
    place, note the errors ``logger`` (Snakemake's) logs, and say the dropped ones at exit (:func:`say_dropped`);
    returns how many functions were wrapped. An item that is a function is replaced in ``rule.input`` (and under its
    name, where it has one); an ``unpack(...)`` item keeps its flags and gets the wrapper as its ``callable``. An item
    already wrapped is left as it is, and the handler and exit hook are installed once.

    Raises TypeError for an input item that says it is callable in a form this does not know (a Snakemake upgrade
    that changed the representation): the workflow then stops at once rather than lose the errors."""
    n = 0
    for rule in rules:
        items = rule.input
        names = {start: name for name, (start, end) in items._names.items() if end is None}
        for i, item in enumerate(items):
            holder = getattr(item, "_file", item)  # unpack(fn): an _IOFile whose AnnotatedString holds the function
            inner = getattr(holder, "callable", None) if isinstance(holder, str) else None
            if inner is not None:
                if not getattr(inner, "__said__", False):
                    holder.callable = said(inner, rule.name, passed)
                    n += 1
            elif callable(item) and not isinstance(item, str):
                if not getattr(item, "__said__", False):
                    items[i] = said(item, rule.name, passed)
                    if i in names:
                        setattr(items, names[i], items[i])
                    n += 1
            elif hasattr(item, "is_callable") and item.is_callable():
                raise TypeError(f"rule {rule.name}: input item {i} is callable as a {type(item).__name__}")
    if not any(isinstance(h, _Reported) for h in logger.handlers):
        logger.addHandler(_Reported())
    if logger not in _logger:
        _logger.append(logger)
    if not _at_exit:  # once a process: two runs of the Snakefile in one (Snakemake's API) said each line twice
        atexit.register(say_dropped)
        _at_exit.append(True)
    return n
