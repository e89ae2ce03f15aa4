"""retrieval/input_errors.py's pure parts: what of an error is matched against Snakemake's reports, and what is said."""

from __future__ import annotations

import inspect

from retrieval import input_errors as ie


class _BrokenStr(Exception):
    def __str__(self):
        raise TypeError("no str")


def test_the_key_is_the_longest_line_so_a_common_first_line_matches_nothing_else():
    e = ValueError("Error:\n  dataset 'coll': folder /x/coll not found")
    assert ie._key(e) == "dataset 'coll': folder /x/coll not found"
    assert ie._key(RuntimeError()) == "RuntimeError"  # no message: its type


def test_an_error_is_described_even_without_a_message_or_a_working_str():
    assert ie.describe(OSError("no such folder")) == "no such folder"
    assert ie.describe(KeyError("k")) == "KeyError: 'k'"
    assert ie.describe(RuntimeError()) == "RuntimeError"  # was 'RuntimeError: '
    assert ie.describe(_BrokenStr("x")).startswith("_BrokenStr: _BrokenStr(")  # was a TypeError replacing it
    assert ie._key(_BrokenStr("x")).startswith("_BrokenStr(")


def test_a_long_message_is_clipped_in_its_middle():
    text = "a" * 5000 + "END"
    clipped = ie._clipped(text)
    assert len(clipped) < ie.MAX_SAID + 60 and clipped.endswith("END") and clipped.startswith("a" * 100)
    assert "[... 3003 characters ...]" in clipped
    assert ie._clipped("short") == "short"


def test_a_wrapped_function_keeps_its_signature_and_notes_its_error_once():
    """Snakemake passes the arguments a function names (wildcards, input, ...): functools.wraps keeps them."""

    def fn(wildcards, input):
        raise OSError(f"gone: {wildcards['d']}")

    wrapped = ie.said(fn, "r")
    assert list(inspect.signature(wrapped).parameters) == ["wildcards", "input"]
    before = dict(ie._raised)
    try:
        for _ in range(2):
            try:
                wrapped({"d": "coll"}, input=None)
            except OSError:
                pass
        new = {k: v for k, v in ie._raised.items() if k not in before}
        assert list(new) == ["gone: coll"] and new["gone: coll"].startswith("rule r (d=coll): an input function failed")
        assert ie.dropped()[-1] == new["gone: coll"]
        ie._reported.append("InputFunctionException ...\n    gone: coll\n")  # Snakemake reported it: not said
        assert new["gone: coll"] not in ie.dropped()
    finally:
        for k in list(ie._raised):
            if k not in before:
                del ie._raised[k]
        ie._reported.clear()


def test_the_error_is_ended_as_one_sentence():
    """A message ending in "did you mean 'gc'?" read `'gc'?. This run did not resolve it.` (helper-138)."""
    assert ie._ended("folder x not found; did you mean 'gc'?") == "folder x not found; did you mean 'gc'?"
    assert ie._ended("folder x not found") == "folder x not found."
    assert ie._ended("done.") == "done."
