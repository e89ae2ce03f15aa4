"""Configuration errors in a few lines: what is wrong, at which key, and what was probably meant.

Snakemake's ``validate`` reports the first schema violation followed by the whole schema and the whole
configuration (thousands of lines for a misspelt top-level key). The Snakefile calls :func:`describe_errors` when
``validate`` fails and raises its text instead. The schema is checked with ``jsonschema`` (the library Snakemake
itself uses); this module only words the result.

Before validation the Snakefile also reads the merged configuration into one form, so that equal settings give
equal versions and parameters: :func:`coerce_scalars` (text booleans, whole floats of integer keys) and
:func:`in_default_form` (config.yaml's key order and number types).
"""

from __future__ import annotations

import copy
import difflib
import itertools
import json
import math
import os
import re
from pathlib import Path
from typing import Any, Sequence

import jsonschema
import yaml

MAX_VALUE_CHARS = 120
# another method's name for a setting: superglobal's re-ranking depth is its M (the paper's), not num_rerank
OTHER_NAMES = {("superglobal", "num_rerank"): "m (the images re-ranked: SuperGlobal's M)"}
_NON_STRING_TYPES = {"integer", "number", "boolean", "object", "array", "null"}


def _key(path) -> str:
    return ".".join(str(p) for p in path) or "(top level)"


def _yaml_value(value: Any) -> str:
    """A value as YAML writes it: null, true, false; anything else as :func:`_short`."""
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    return _short(value)


def _yaml_list(values) -> str:
    """Allowed values as a list in YAML's spelling: ``['dinov2', 'resnet', null]`` (Python wrote ``None``)."""
    return "[" + ", ".join(_yaml_value(v) for v in values) + "]"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= MAX_VALUE_CHARS else text[: MAX_VALUE_CHARS - 3] + "..."


def _close(name: str, allowed: list[str]) -> list[str]:
    """The allowed names a misspelt ``name`` most likely meant (at most 2): the same name in another case (``K`` for
    ``k``: difflib sees no likeness), else difflib's closest at ratio 0.75, or 0.6 for a name of 3 characters or
    fewer (``kk`` for ``k`` is 0.67)."""
    same = [a for a in allowed if a.lower() == name.lower()]
    return same or difflib.get_close_matches(name, allowed, n=2, cutoff=0.6 if len(name) <= 3 else 0.75)


def _line(error: jsonschema.ValidationError) -> str:
    key = _key(error.absolute_path)
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = sorted(error.schema.get("properties", {}))
        lines = []
        for name in sorted(set(error.instance) - set(allowed)):
            where = f"{key}.{name}" if error.absolute_path else name
            close = _close(str(name), allowed)
            hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
            other = OTHER_NAMES.get((key, str(name)))
            hint = f"; {key}'s is {other}" if other and not close else hint
            parts = str(name).split(".")
            if not close and len(parts) > 1 and parts[0] in allowed:  # "sv.threshold: 8.0" in a YAML file
                nested = "..."
                for part in reversed(parts[1:]):
                    nested = f"{{{part}: {nested}}}"
                hint = f"; a dotted key is not read as nested: write {parts[0]}: {nested}"
            lines.append(f"  {where}: unknown key{hint} (allowed here: {', '.join(allowed)})")
        return "\n".join(lines)
    if error.validator == "enum" and "propertyNames" in error.schema_path and isinstance(error.instance, str):
        # a section whose keys are another section's (benchmark.extract.dinov2 takes extract.dinov2's): listed by name
        allowed = list(error.validator_value)
        close = _close(error.instance, allowed)
        hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        return f"  {key}.{error.instance}: unknown key{hint} (allowed here: {', '.join(allowed)})"
    message = error.message
    if error.validator in ("oneOf", "anyOf") and isinstance(error.validator_value, list):
        # it said only "'abc' is not valid under any of the given schemas" (a new user's trial: knn.ivfpq.nlist)
        forms = ", or ".join(_describe_form(alt) for alt in error.validator_value if isinstance(alt, dict))
        message = f"{_short(error.instance)} is none of the allowed forms: {forms}"
    if error.validator == "enum":
        # a deprecated name the schema still accepts (x-deprecated: compare.methods' whiten) is not offered
        old = set(error.schema.get("x-deprecated", []))
        allowed = [a for a in error.validator_value if a not in old]
        # in YAML's words: null, true, not Python's None, True (helper-145, helper-147: shortlist.backbone's
        # ['dinov2', 'resnet', None])
        message = f"{_yaml_value(error.instance)} is not one of {_yaml_list(allowed)}"
        if isinstance(error.instance, str):  # a misspelt value: 'SV' for 'sv'
            # the value itself, quoted ('101' for 101): the quotes are the mistake, said on the line below
            close = [c for c in _close(error.instance, [str(a) for a in allowed]) if c != error.instance]
            if "none" in allowed and error.instance in ("null", "~"):
                close = ["none"]
            if None in allowed and error.instance.lower() in ("none", "null", "~"):
                # Python's word, or the text a nested --config gives ('null' for null: helper-147)
                message += "; did you mean null?" + (
                    " (a nested --config gives its values as text: put null in a YAML file passed with --configfile)"
                    if error.instance == "null"
                    else ""
                )
            elif close:
                message += f"; did you mean {' or '.join(repr(c) for c in close)}?"
    if error.validator in ("exclusiveMinimum", "exclusiveMaximum"):  # "is less than or equal to the minimum of 0"
        # read as if 0 were allowed (helper-97's trial): said as the bound the value must pass
        side = "above" if error.validator == "exclusiveMinimum" else "below"
        message = f"{_short(error.instance)} must be {side} {error.validator_value}"
    if error.validator == "pattern" and error.validator_value in _PATTERN_WORDS:  # a raw regex (helper-95's trial)
        message = f"{_short(error.instance)} is not {_PATTERN_WORDS[error.validator_value]}"
    if error.validator == "enum" and error.instance is None and "none" in error.validator_value:
        message += "; did you mean 'none'? (YAML reads null, ~ and an empty value as no value, none as text)"
    if len(message) > 2 * MAX_VALUE_CHARS:  # messages that quote a whole sub-configuration
        message = f"{_short(error.instance)} is not valid ({error.validator}: {_short(error.validator_value)})"
    if error.validator == "enum" and error.instance == "ssp" and key.split(".")[0] in ("compare", "report"):
        message += (
            "; ssp is not compared on the global shortlist: its baseline is its light query descriptor without the "
            "adapter (results/{dataset}_ssp.json holds that comparison)"
        )
    wanted = error.validator_value if error.validator == "type" else None
    wanted = {wanted} if isinstance(wanted, str) else set(wanted or [])
    if wanted and isinstance(error.instance, bool):  # jsonschema writes Python's True; the file says true
        message = message.replace(repr(error.instance), str(error.instance).lower(), 1)
    if wanted and error.instance is None:  # and None for null (--config training_split=, helper-144)
        message = message.replace("None", "null", 1)
    line = f"  {key}: {message}"
    if error.validator == "pattern" and _names_a_dataset(error.schema) and "/" in str(error.instance):
        # training_split: ./mytrain went on to a MissingInputException naming results/global/./mytrain/...
        # (helper-140): a split is a dataset's name, its folder placed by data_root or dataset_dirs
        name = os.path.basename(os.path.normpath(str(error.instance))) or "mine"
        if str(error.instance).rstrip("/") == name and re.fullmatch(error.validator_value, name):
            # a name with a trailing slash (shell completion's): the name meant, not a dataset_dirs entry (helper-144)
            line += f" (a dataset's name takes no trailing /: write {name})"
        else:
            line += (
                f" (a dataset's name, not its path: put the folder in data_root, or name it in dataset_dirs, "
                f"e.g. dataset_dirs: {{{name}: {error.instance}}}, and give {name} here)"
            )
    if isinstance(error.instance, str) and wanted == {"integer"} and _exponent_form(error.instance):
        value = float(error.instance)
        write = f"write {int(value)}" if value.is_integer() else "write a whole number"
        line += f" (YAML reads an exponent such as {error.instance} as text; {write})"
    elif isinstance(error.instance, str) and wanted & {"number", "integer"} and _exponent_form(error.instance):
        line += (
            " (YAML reads an exponent without a dot in the mantissa or a sign in the exponent as text: write"
            f" {_yaml_number(float(error.instance))}, not {error.instance}; given with --config, put it in a YAML file"
            " passed with --configfile)"
        )
    elif error.instance is None and wanted and "null" not in wanted:
        # "sv:" with nothing under it, or --config data_root= (an empty value): YAML reads both as null
        line += (
            " (an empty value: a key with nothing after it, or nothing indented under it; give the value, or remove"
            " the key)"
        )
    elif wanted == {"object"} and not isinstance(error.instance, dict):
        # --config sv=5 (a number for a section): its keys go in a YAML file; a path for dataset_dirs in a file was
        # told to give "a number, true or false, without quotes" (a new user's trial)
        line += (
            f" (a section: set its keys, e.g. {key.rsplit('.', 1)[-1]}: {{key: value}}, in a YAML file passed with "
            "--configfile)"
        )
    elif isinstance(error.instance, list) and wanted and "array" not in wanted:
        line += " (one value here, not a list)"  # sv.num_rerank: [10, 10], where ames.num_rerank is a grid
    elif isinstance(error.instance, str) and wanted & _NON_STRING_TYPES and not _reads_as_text(error.instance):
        line += _FROM_CONFIG_HINT
    elif wanted == {"string"} and isinstance(error.instance, (int, float)) and not isinstance(error.instance, bool):
        # --config data_root=2024: a folder named by digits, read as a number (a new user's trial had no hint)
        hint = _NUMBER_FOR_NAME_HINT if _names_a_dataset(error.schema) else _NUMBER_FOR_TEXT_HINT
        line += hint.format(value=error.instance, key=key)
    elif isinstance(error.instance, (str, bool, int, float)) and wanted & _NON_STRING_TYPES:
        # a word ('ten') is text however it is given: told what to give, not to remove quotes (a user's trial); so is
        # a fraction or true for a whole number or null (sv.threshold_side: 512.5 had no hint, a new user's trial)
        line += f" (give {' or '.join(_TYPE_WORDS[w] for w in sorted(wanted & _NON_STRING_TYPES))})"
    return line


def _reads_as_text(value: str) -> bool:
    """Whether YAML reads ``value`` unquoted as text too (``ten``), not as a number, a boolean or null (``10``)."""
    try:
        return isinstance(yaml.safe_load(value), str)
    except yaml.YAMLError:
        return True


# a text value where another type is wanted: the likely cause on the command line (replaced by _FROM_FILE_HINT where
# a --configfile holds the value: a researcher's trial was told to do what it had done)
_FROM_CONFIG_HINT = (
    " (if it was given with --config: Snakemake reads a value there as a number, as True or False, or else"
    " as text, and the values inside a nested --config KEY='{...}' stay text: put nested keys in a YAML"
    " file and pass it with --configfile)"
)
_FROM_FILE_HINT = " (text in that file: give the value without quotes; YAML reads a quoted one as text)"
# a number where text is wanted (replaced by _QUOTE_IN_FILE_HINT where a --configfile holds it)
_NUMBER_FOR_TEXT_HINT = (
    " (text wanted: with --config Snakemake reads {value} as a number, so write a folder as ./{value}; in a YAML"
    " file put it in quotes)"
)
# the same for a dataset's name (training_split: 2024), which ./2024 is not (helper-140 followed that hint)
_NUMBER_FOR_NAME_HINT = (
    " (text wanted: with --config Snakemake reads {value} as a number, so write it as '\"{value}\"' (--config "
    "{key}='\"{value}\"'); in a YAML file put it in quotes)"
)
_NUMBER_FOR_TEXT = re.compile(
    r" \(text wanted: with --config Snakemake reads (\S+) as a number, .*; in a YAML file put it in quotes\)"
)
_QUOTE_IN_FILE_HINT = r" (text wanted: in that file put it in quotes, as '\1'; YAML reads it unquoted as a number)"


# the schema's patterns in words (jsonschema quotes the regex)
_PATTERN_WORDS = {
    r"^[A-Za-z0-9][A-Za-z0-9._+\-]*$": "a name: letters, digits and . _ + - only, starting with a letter or digit",
    r"^[A-Za-z0-9][A-Za-z0-9._\-]*$": "a name: letters, digits and . _ - only, starting with a letter or digit",
    r"^(auto|cpu|cuda(:[0-9]+)?)$": "a device: auto, cpu, cuda or cuda:N (N the GPU's index)",
}


def _names_a_dataset(schema: Any) -> bool:
    """Whether a key's schema asks for a name (``training_split``, ``unsupervised_fit``, ...): its pattern is one
    of :data:`_PATTERN_WORDS`' names."""
    return isinstance(schema, dict) and _PATTERN_WORDS.get(schema.get("pattern", ""), "").startswith("a name")


_TYPE_WORDS = {
    "integer": "a whole number",
    "number": "a number",
    "string": "text",
    "boolean": "true or false",
    "null": "null",
    "array": "a list",
    "object": "a section",
}


def _describe_form(alt: dict[str, Any]) -> str:
    """One ``oneOf`` / ``anyOf`` alternative in words: ``a whole number >= 1``, ``'auto'``, ``a list``."""
    if "enum" in alt:
        return " or ".join(repr(v) for v in alt["enum"])
    kind = alt.get("type", "any value")
    words = " or ".join(_TYPE_WORDS.get(k, str(k)) for k in ([kind] if isinstance(kind, str) else kind))
    for bound, sign in (("minimum", ">="), ("exclusiveMinimum", ">"), ("maximum", "<="), ("exclusiveMaximum", "<")):
        if bound in alt:
            words += f" {sign} {alt[bound]}"
    return words


def _yaml_number(value: float) -> str:
    """A spelling YAML 1.1 reads as this float: ``0.001``, ``20.0``, ``1.0e-07`` (a dot in the mantissa, a sign in
    the exponent)."""
    text = repr(value)
    if "e" not in text:
        return text
    mantissa, exponent = text.split("e")
    return f"{mantissa if '.' in mantissa else mantissa + '.0'}e{'' if exponent[0] in '+-' else '+'}{exponent}"


def _exponent_form(text: str) -> bool:
    """``1e-3`` and the like: a number to Python, text to YAML 1.1 (PyYAML), which needs ``1.0e-3``."""
    try:
        float(text)
    except ValueError:
        return False
    return "e" in text.lower() and "inf" not in text.lower()


def non_finite(value: Any, path: tuple = ()) -> list[str]:
    """Lines for every NaN or infinite number in the configuration (YAML's ``.nan``, ``.inf``): JSON Schema's
    ``minimum`` / ``maximum`` let NaN through, and no key of this workflow means anything with them."""
    if isinstance(value, dict):
        return [line for k, v in value.items() for line in non_finite(v, (*path, k))]
    if isinstance(value, list):
        return [line for i, v in enumerate(value) for line in non_finite(v, (*path, i))]
    if isinstance(value, float) and not math.isfinite(value):
        return [f"  {_key(path)}: {value!r} is not a finite number"]
    return []


_YAML_BOOLEANS = {"true": True, "yes": True, "on": True, "false": False, "no": False, "off": False}


def _types(node: dict[str, Any]) -> set[str]:
    """The JSON types a schema node allows, its ``oneOf`` / ``anyOf`` alternatives included."""
    types = node.get("type")
    out = {types} if isinstance(types, str) else set(types or [])
    for alt in node.get("oneOf", []) + node.get("anyOf", []):
        out |= _types(alt)
    return out


def coerce_scalars(config: dict[str, Any], schema_path: str | Path) -> dict[str, Any]:
    """``config`` with two kinds of values read as what they mean, before validation and before any version is
    hashed (so ``5.0`` and ``5`` give the same artifacts):

    * the text values of boolean keys as YAML reads them (``true``, ``False``, ``yes``, ``off``, any case):
      Snakemake's ``--config`` turns only ``True`` and ``False`` into booleans, so ``--config crop_queries=false``
      arrived as the text ``'false'``;
    * whole-number floats (``5.0``, ``1e3``) of integer-only keys as ints: the schema accepts them as integers, and
      the jobs then failed deep inside (``range``, faiss) with a TypeError naming no key, as a user's
      ``sv.num_rerank: 5.0`` did. Lists of integers (``ames.num_rerank``) are read item by item.

    Other values are left for the schema."""
    schema = yaml.safe_load(Path(schema_path).read_text())

    def walk(value: Any, node: dict[str, Any]) -> Any:
        if isinstance(value, dict):
            props = node.get("properties", {})
            return {k: walk(v, props[k]) if k in props else v for k, v in value.items()}
        if isinstance(value, list) and isinstance(node.get("items"), dict):
            return [walk(v, node["items"]) for v in value]
        types = _types(node)
        if isinstance(value, str) and "boolean" in types and value.strip().lower() in _YAML_BOOLEANS:
            return _YAML_BOOLEANS[value.strip().lower()]
        if isinstance(value, float) and "integer" in types and "number" not in types and value.is_integer():
            return int(value)
        return value

    return walk(config, schema)


def in_default_form(config: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    """``config`` written as ``defaults`` (config/config.yaml) writes it, values unchanged in meaning: the keys of
    every mapping in the defaults' order (keys they lack after them, sorted), and a number in the defaults' type
    where the two differ only in it (``20`` for a default ``20.0`` becomes ``20.0``, ``10.0`` for a default ``10``
    becomes ``10``; list items follow the default list's first item). Booleans and text are left alone.

    Why: the versions hash the values (``20`` and ``20.0`` are two hashes), and Snakemake merges a ``--configfile`` by
    putting the keys it names first, so a rule given a whole section as a parameter (``config["sv"]``) saw the same
    values in another order as a changed parameter: restating a default (``sv: {seed: 0}``, ``sv: {threshold: 20}``)
    re-ran jobs, up to AMES training."""

    def number(x: Any) -> bool:
        return isinstance(x, (int, float)) and not isinstance(x, bool)

    def walk(value: Any, ref: Any) -> Any:
        if isinstance(value, dict):
            ref = ref if isinstance(ref, dict) else {}
            keys = [k for k in ref if k in value] + sorted((k for k in value if k not in ref), key=str)
            return {k: walk(value[k], ref.get(k)) for k in keys}
        if isinstance(value, list):
            item = ref[0] if isinstance(ref, list) and ref else None
            return [walk(v, item) for v in value]
        if number(value) and number(ref) and type(value) is not type(ref):
            if isinstance(ref, float):
                return float(value)
            if value.is_integer():
                return int(value)
        return value

    return walk(config, defaults)


_ABSENT = object()


def _at(tree: Any, key: str) -> Any:
    """The value at a dotted key (``evaluate.ks.0``: a list's item by its index), or ``_ABSENT``."""
    for part in key.split("."):
        if isinstance(tree, list) and part.isdigit() and int(part) < len(tree):
            tree = tree[int(part)]
        elif isinstance(tree, dict) and part in tree:
            tree = tree[part]
        else:
            return _ABSENT
    return tree


def _same(a: Any, b: Any) -> bool:
    """Equal, a NaN counting as equal to a NaN (``adba.alpha: nan`` is named in its file like any other value)."""
    return a == b or (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b))


def _file_of(key: str, config: dict[str, Any], files: list[tuple[str, Any]], overrides: Any = None) -> str | None:
    """The last --configfile that sets ``key`` to the value in effect, or None: none sets it, a later file sets
    another value, or ``overrides`` (the ``--config`` values, which win over every file) give it."""
    if overrides and _at(overrides, key) is not _ABSENT:
        return None
    value = _at(config, key)
    for name, content in reversed(files):
        got = _at(content, key)
        if got is not _ABSENT:
            return name if _same(got, value) else None
    return None


def _holder(line: str, config: dict[str, Any], files: list[tuple[str, Any]], overrides: Any = None) -> str:
    """``line`` ("  a.b.c: ...") with the last --configfile that sets ``a.b.c`` to the value in effect named, where
    one does (a value from --config or config/config.yaml is not named: the header says where those come from)."""
    name = _file_of(line.strip().split(":", 1)[0], config, files, overrides)
    return f"{line} [in {name}]" if name else line


def line_keys(line: str) -> list[str]:
    """The configuration keys a problem line names: the word leading it (``unsupervised_fit``, ``extract.min_chunk_images``)
    and every dotted key in it (``extract.max_chunk_images``; not a word of the prose, nor a file name after a
    slash). Candidates only: the callers look them up."""
    dotted = re.findall(r"(?<![\w./{-])([A-Za-z_]\w*(?:\.[\w+\-]+)+)", line)
    return [line.strip().split(":", 1)[0].split(" ")[0], *dotted]


def refused_keys(said: str) -> set[str]:
    """The keys leading the indented lines of the problem blocks in ``said`` (``  sv.ratio: '2' is not of type
    'number'`` -> ``sv.ratio``): the keys the schema's lines already refuse."""
    return set(re.findall(r"^\s+([\w.+\-]+):", said, re.M))


def with_defaults(config: dict[str, Any], keys: Sequence[str] | set[str], defaults: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``config`` with each dotted key of ``keys`` set back to its value in ``defaults`` (removed where it
    has none; a list item by its list; a section of the wrong type as a whole), so that the checks the schema cannot
    make run on the other keys: a refused value (``unsupervised_fit: 5``) stopped them all."""
    out = copy.deepcopy(config)
    for key in keys:
        parts = list(itertools.takewhile(lambda p: not p.isdigit(), key.split(".")))
        node, fallback = out, defaults
        for i, part in enumerate(parts):
            value = fallback.get(part, _ABSENT) if isinstance(fallback, dict) else _ABSENT
            if i == len(parts) - 1 or not isinstance(node.get(part), dict):
                if value is _ABSENT:
                    node.pop(part, None)
                else:
                    node[part] = copy.deepcopy(value)
                break
            node, fallback = node[part], value
    return out


def not_named_by(lines: Sequence[str], said: str) -> list[str]:
    """``lines`` less those naming (:func:`line_keys`) a key that leads one of the schema's lines in ``said``, a
    section holding it or a key within it: a key is refused once."""
    named = refused_keys(said)
    return [
        line
        for line in lines
        if not any(k == n or n.startswith(k + ".") or k.startswith(n + ".") for k in line_keys(line) for n in named)
    ]


def name_holders(
    lines: Sequence[str], config: dict[str, Any], configfiles: Sequence[str | Path], overrides: Any = None
) -> list[str]:
    """Problem lines that name configuration keys (``extract.min_chunk_images (5) is above
    extract.max_chunk_images (2)``), each ending with the ``--configfile`` files that set those keys to the values in
    effect (`` [in a.yaml, b.yaml]``), as the schema's lines name theirs. A key given with ``--config``
    (``overrides``) or set by no file names none; a line that names no such file is left as it is."""
    files = _loaded(configfiles)
    out = []
    for line in lines:
        named: list[str] = []
        for key in line_keys(line):
            if key.split(".")[0] in config and _at(config, key) is not _ABSENT:
                name = _file_of(key, config, files, overrides)
                if name and name not in named:
                    named.append(name)
        out.append(f"{line} [in {', '.join(named)}]" if named else line)
    return out


def problems_text(lines: Sequence[str]) -> str:
    """The checks the schema cannot make (``Plan.config_problems``, each line already ending with its files), under
    the header the schema's problems have, each line indented as theirs: one form for every configuration problem
    (until 2026-12-05 these came as bare lines, which read as a log rather than a refusal). "" for none."""
    if not lines:
        return ""
    return (
        f"invalid configuration ({len(lines)} problem(s) the schema cannot see; config/config.yaml, then every "
        "--configfile, then --config, merged in that order):\n" + "\n".join(f"  {line}" for line in lines)
    )


def _is_results_json(path: str | Path) -> bool:
    """Whether a --configfile is one of the workflow's results: a JSON file under a ``results`` folder, or one with
    a method's or a search's keys."""
    if Path(path).suffix == ".json" and "results" in Path(path).parts:
        return True
    try:
        keys = set(yaml.safe_load(Path(path).read_text()) or {})
    except (OSError, yaml.YAMLError, TypeError, UnicodeDecodeError):
        return False
    return {"artifacts", "metrics", "method"} <= keys or {"photos", "collection", "n_photos"} <= keys


class _DuplicateKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, recording a mapping key given twice (PyYAML keeps the last one, silently)."""

    def __init__(self, stream) -> None:
        super().__init__(stream)
        self.duplicates: list[tuple[int, str]] = []
        self._checked: set[int] = set()

    def flatten_mapping(self, node) -> None:
        # checked here, before PyYAML merges "<<: *anchor" keys into the node (in place, so a node built later
        # would show an anchor's keys beside its own); merged keys may be overridden
        if id(node) not in self._checked:
            self._checked.add(id(node))
            seen: set[Any] = set()
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                if not isinstance(key, (str, int, float, bool)):
                    continue
                if key in seen:
                    self.duplicates.append((key_node.start_mark.line + 1, str(key)))
                seen.add(key)
        super().flatten_mapping(node)


def _json_duplicates(text: str) -> list[tuple[int, str]]:
    """Keys given twice in one object of a JSON text (line numbers unknown: 0)."""
    found: list[tuple[int, str]] = []

    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        keys = [k for k, _ in pairs]
        found.extend((0, k) for i, k in enumerate(keys) if k in keys[:i])
        return dict(pairs)

    json.loads(text, object_pairs_hook=hook)
    return found


def duplicate_keys(configfiles: Sequence[str | Path]) -> str:
    """The keys given twice in one mapping of ``config/config.yaml`` or a ``--configfile`` (``sv: {threshold: 8.0}``
    then ``sv: {ratio: 0.7}``: YAML keeps the last, and the threshold was dropped without a word), one line each
    with the file and line, under a header; ``""`` when there are none. A file named twice (``--configfile
    config/config.yaml``) is read once. Files that cannot be read are left to Snakemake."""
    lines = []
    read: set[str] = set()
    for f in configfiles:
        if os.path.realpath(f) in read:
            continue
        read.add(os.path.realpath(f))
        try:
            text = Path(f).read_text()
            if Path(f).suffix.lower() == ".json":  # as Snakemake reads it (YAML refuses a JSON indented by tabs)
                duplicates = _json_duplicates(text)
            else:
                loader = _DuplicateKeyLoader(text)
                try:
                    loader.get_single_data()
                finally:
                    loader.dispose()
                duplicates = loader.duplicates
        except (OSError, yaml.YAMLError, UnicodeDecodeError, ValueError):
            continue
        lines += [f"  {f}{f':{line}' if line else ''}: key '{key}' given a second time" for line, key in duplicates]
    if not lines:
        return ""
    return (
        f"invalid configuration ({len(lines)} problem(s)): a key given twice in one section; YAML keeps only the last,"
        " dropping the first without a word: merge them into one\n" + "\n".join(lines)
    )


def _loaded(configfiles: Sequence[str | Path]) -> list[tuple[str, Any]]:
    """(path, content) of every readable --configfile, in order (unreadable ones were refused before)."""
    files = []
    for f in configfiles:
        try:
            files.append((str(f), yaml.safe_load(Path(f).read_text())))
        except (OSError, yaml.YAMLError, UnicodeDecodeError):
            continue
    return files


def describe_errors(
    config: dict[str, Any], schema_path: str | Path, configfiles: Sequence[str | Path] = (), overrides: Any = None
) -> str:
    """Every schema violation of ``config``, one line each (an unknown key with the closest allowed names), under
    a header that says where the configuration comes from; ``""`` when there is none. ``configfiles`` (the
    ``--configfile`` paths) name the file a results JSON read as a configuration came from, and the file that set
    each problem's key; ``overrides`` (the ``--config`` values alone) name none, as they win over every file."""
    schema = yaml.safe_load(Path(schema_path).read_text())
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: [str(p) for p in e.absolute_path])
    # a value of the wrong type for a key with a list of choices is one problem: the line that lists the choices
    # (`on_bad_image: 5` was two, "not of type 'string'" and "not one of ['error', 'skip']"; a user's trial)
    # (choices that are numbers keep the type line: `depth: "101"` is told to drop the quotes)
    listed = {
        tuple(e.absolute_path)
        for e in errors
        if e.validator == "enum" and all(isinstance(v, str) or v is None for v in e.validator_value)
    }
    errors = [e for e in errors if not (e.validator == "type" and tuple(e.absolute_path) in listed)]
    lines = "\n".join(_line(e) for e in errors).splitlines()  # one line per problem (unknown keys: one each)
    # NaN where the schema already named the key (`ames.bootstrap: nan is not of type 'integer'`): said once
    keyed = {ln.split(":", 1)[0] for ln in lines}
    lines += [ln for ln in non_finite(config) if ln.split(":", 1)[0] not in keyed]
    if not lines:
        return ""
    files = _loaded(configfiles)
    lines = [_holder(ln, config, files, overrides) for ln in lines]
    lines = [
        _NUMBER_FOR_TEXT.sub(_QUOTE_IN_FILE_HINT, ln.replace(_FROM_CONFIG_HINT, _FROM_FILE_HINT))
        if ln.endswith("]") and " [in " in ln
        else ln
        for ln in lines
    ]
    named = [str(f) for f in configfiles if _is_results_json(f)]
    if (
        named
        or {"artifacts", "metrics", "method"} <= set(config)
        or {"photos", "collection", "n_photos"} <= set(config)
    ):
        # the results file's own keys are that one mistake, not 20 unknown keys: named once, in the first line
        ours = tuple(f" [in {f}]" for f in named)
        lines = [ln for ln in lines if not (ours and ln.endswith(ours))]
        lines.insert(
            0,
            f"  a results JSON ({', '.join(named) or 'one of the --configfile files'}) was read as a configuration "
            "file: --configfile takes every file after it, so put the targets before --configfile, or end its list "
            "with --",
        )
    return (
        f"invalid configuration ({len(lines)} problem(s); config/config.yaml, then every --configfile, then "
        f"--config, merged in that order; config/{Path(schema_path).name} describes every key):\n" + "\n".join(lines)
    )


# Keys that moved, older dotted name -> current one. The older name is still read (the schema keeps it, without a
# default), so a configuration written for an earlier revision runs as it did.
MOVED_KEYS = {"ames.bootstrap": "evaluate.bootstrap"}


def apply_moved_keys(
    config: dict[str, Any], defaults: dict[str, Any], configfiles: Sequence[str | Path] = ()
) -> list[str]:
    """Each older key of :data:`MOVED_KEYS` that ``config`` gives, moved in place to its current name (removed from
    its old place), the later of the two winning as any later value does: ``configfiles`` are the --configfile
    paths in the order Snakemake merged them (a key no file sets came from --config, the latest). Returns a warning
    line per older key. ValueError naming the file when one file gives both keys with two values. ``defaults``
    (config/config.yaml) sets the current key only, the earliest of all."""
    files = _loaded(configfiles)

    def last_setter(key: str) -> int:
        return max((i for i, (_, content) in enumerate(files) if _at(content, key) is not _ABSENT), default=-1)

    lines = []
    for old, new in MOVED_KEYS.items():
        *old_parents, old_leaf = old.split(".")
        holder = config
        for part in old_parents:
            holder = holder.get(part) if isinstance(holder, dict) else None
        if not isinstance(holder, dict) or old_leaf not in holder:
            continue
        value = holder.pop(old_leaf)
        *new_parents, new_leaf = new.split(".")
        target = config
        for part in new_parents:
            target = target.setdefault(part, {})
        given = target.get(new_leaf, _at(defaults, new))
        # a key no file sets came from --config (the latest), or, for the current key at its default, from nowhere
        i_old = last_setter(old)
        i_old = len(files) if i_old < 0 else i_old
        i_new = last_setter(new)
        if i_new < 0 and not _same(given, _at(defaults, new)):
            i_new = len(files)
        where_old = f" [in {files[i_old][0]}]" if i_old < len(files) else ""
        if i_new == i_old and not _same(given, value):
            raise ValueError(
                f"{files[i_old][0] if i_old < len(files) else '--config'}: gives both {old}: {_short(value)} and {new}: {_short(given)}; {old} is the older "
                f"name of {new}: give {new} only"
            )
        if i_new > i_old:  # the current key, given later, wins
            lines.append(
                f"{old}: {_short(value)}{where_old} is the older name of {new}, which "
                f"{files[i_new][0] if i_new < len(files) else '--config'} gives later: "
                f"{new}: {_short(given)} is used (write {new} only)"
            )
            continue
        target[new_leaf] = value
        lines.append(
            f"{old} is the older name of {new}: read as {new}: {_short(value)}{where_old} (write {new} in your "
            "configuration)"
        )
    return lines


def preset_not_applied(config: dict[str, Any], configfiles: Sequence[str | Path], presets_dir: str | Path) -> str:
    """A warning when ``config["preset"]`` is the name of a shipped preset (``{presets_dir}/{name}.yaml``) that no
    ``--configfile`` gave (``--config preset=tiny``): the name is recorded in every manifest and result, the preset's
    settings are not applied. ``""`` otherwise (a file of that name was given, or the name is your own)."""
    name = config.get("preset")
    shipped = Path(presets_dir) / f"{name}.yaml"
    if not isinstance(name, str) or not shipped.is_file():
        return ""
    if any(Path(f).resolve() == shipped.resolve() for f in configfiles if Path(f).exists()):
        return ""
    return (
        f"preset: {name} names config/presets/{name}.yaml, which no --configfile gave: its settings are not applied, "
        f"only the name is recorded (and changing it re-runs every job in place); --configfile "
        f"config/presets/{name}.yaml applies them"
    )


# the per-image descriptor counts that re-ranking reads from the local store: each at most what extraction kept
READ_FROM_STORE = ("sv.q_desc", "sv.db_desc", "ames.q_desc", "ames.db_desc")


def cap_descriptor_counts(config: dict[str, Any], defaults: dict[str, Any]) -> list[str]:
    """Each of :data:`READ_FROM_STORE` above ``extract.{backbone}.k`` (the descriptors extraction keeps per image,
    strongest first) set to that ``k`` in place, as the store holds no more: the run computes what the capped value
    computes, so its version, parameters and results say that value (a larger one re-ran the evaluation for the
    same numbers, without a word). Returns a warning line per capped key that the configuration gave (one at its
    ``defaults`` value, config/config.yaml's, is capped without a word: a smaller ``k`` is the user's choice). Keys
    or a ``k`` that are absent or not integers are left to the schema's check."""
    backbone = config.get("extract", {}).get("backbone")
    kept = config.get("extract", {}).get(backbone, {}).get("k") if isinstance(backbone, str) else None
    if not isinstance(kept, int) or isinstance(kept, bool):
        return []
    lines = []
    for key in READ_FROM_STORE:
        section, leaf = key.split(".")
        holder = config.get(section)
        value = holder.get(leaf) if isinstance(holder, dict) else None
        if isinstance(value, int) and not isinstance(value, bool) and value > kept:
            holder[leaf] = kept
            if value != _at(defaults, key):
                lines.append(
                    f"{key} ({value}) is more than extract.{backbone}.k ({kept}), the descriptors extraction keeps "
                    f"per image: {kept} are read, as {key}: {kept} would (raise extract.{backbone}.k to read more; "
                    "that re-extracts)"
                )
    return lines
