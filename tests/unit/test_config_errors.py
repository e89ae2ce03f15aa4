"""Configuration errors in a line each (retrieval/config_errors.py), on the real schema and default configuration."""

from pathlib import Path

import yaml

from conftest import with_overrides
from retrieval.config_errors import describe_errors

REPO = Path(__file__).resolve().parents[2]
SCHEMA = REPO / "config" / "schema.yaml"
DEFAULT = yaml.safe_load((REPO / "config" / "config.yaml").read_text())


def _with(**changes):
    return with_overrides(DEFAULT, **changes)


def test_the_default_configuration_has_no_error():
    assert describe_errors(DEFAULT, SCHEMA) == ""


def test_a_misspelt_key_is_named_with_its_path_and_the_closest_allowed_names():
    config = _with(extarct={"n_chunks": 2})
    config["extract"]["sfit"] = {"k": 10}
    text = describe_errors(config, SCHEMA)
    lines = text.splitlines()
    assert lines[0].startswith("invalid configuration (2 problem(s)") and len(lines) == 3
    assert "  extarct: unknown key; did you mean 'extract'?" in text
    assert "  extract.sfit: unknown key; did you mean 'sift'?" in text


def test_wrong_types_and_ranges_name_the_key_and_text_from_the_command_line_gets_a_hint():
    text = describe_errors(_with(**{"extract.sift.k": "0", "sv.ratio": 7.0}), SCHEMA)
    assert "extract.sift.k: '0' is not of type 'integer' (a value given with --config arrives as text" in text
    assert "--configfile" in text
    line = next(ln for ln in text.splitlines() if ln.startswith("  sv.ratio"))
    assert "7.0 is greater than the maximum" in line and "--config" not in line
    assert len(text.splitlines()) == 3
