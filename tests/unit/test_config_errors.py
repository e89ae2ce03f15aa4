"""Configuration errors in a line each (retrieval/config_errors.py), on the real schema and default configuration."""

import copy
import re
from pathlib import Path

import pytest
import yaml

from conftest import with_overrides
from retrieval.config_errors import (
    _PATTERN_WORDS,
    apply_moved_keys,
    cap_descriptor_counts,
    coerce_scalars,
    describe_errors,
    duplicate_keys,
    in_default_form,
    name_holders,
    not_named_by,
    preset_not_applied,
    problems_text,
    refused_keys,
    with_defaults,
)
from retrieval.plan import Plan

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
    # another method's name for a setting (a new user's trial wrote superglobal: {num_rerank: 0})
    config = _with()
    config["superglobal"]["num_rerank"] = 0
    assert "  superglobal.num_rerank: unknown key; superglobal's is m (the images re-ranked: SuperGlobal's M)" in (
        describe_errors(config, SCHEMA)
    )


def test_a_misspelt_value_of_a_list_of_choices_gets_the_closest_one():
    # a new user's compare: {methods: [global, SV]}: a misspelt target gets a "did you mean", the same name here did not
    text = describe_errors(_with(**{"compare.methods": ["global", "SV"], "ames.precision": "bfloat"}), SCHEMA)
    assert "  compare.methods.1: 'SV' is not one of [" in text and "]; did you mean 'sv'?" in text
    # whiten, lw's deprecated name the schema still accepts, is not offered (helper-114's trial)
    assert "'ames_binary', 'asmk']; did you mean" in text and "whiten" not in text
    assert "did you mean 'whiten'" not in describe_errors(_with(**{"report.methods": ["whitn"]}), SCHEMA)
    # a quoted number is told of its quotes, not offered itself as the near name ("did you mean '101'?")
    config = _with()
    config["extract"]["resnet"]["model"]["depth"] = "101"
    quoted = describe_errors(config, SCHEMA)
    assert "extract.resnet.model.depth: '101' is not one of [50, 101]" in quoted and "did you mean" not in quoted
    # null in YAML's word, not Python's None (helper-145)
    nulled = describe_errors(_with(**{"shortlist.backbone": "sift"}), SCHEMA)
    assert "  shortlist.backbone: 'sift' is not one of ['dinov2', 'resnet', null]" in nulled, nulled
    # a value of another type is one line too, in YAML's words (it was two, the second with None and True: helper-147)
    for value, said in ((5, "5"), (True, "true"), (["dinov2"], "['dinov2']")):
        one = describe_errors(_with(**{"shortlist.backbone": value}), SCHEMA)
        assert one.splitlines()[1:] == [f"  shortlist.backbone: {said} is not one of ['dinov2', 'resnet', null]"], one
    for text_value in ("None", "null"):  # Python's word; the text a nested --config gives
        one = describe_errors(_with(**{"shortlist.backbone": text_value}), SCHEMA)
        assert f"'{text_value}' is not one of ['dinov2', 'resnet', null]; did you mean null?" in one
    assert "a nested --config gives its values as text" in one
    assert (
        "  ames.precision: 'bfloat' is not one of ['auto', 'float32', 'bfloat16']; did you mean 'bfloat16' or 'float32'?"
        in text
    )
    # ssp, a method but not one of the table's, says why (a new user's trial read the refusal as a bug)
    text = describe_errors(_with(**{"compare.methods": ["global", "ssp"], "report.methods": ["ssp"]}), SCHEMA)
    for key in ("compare.methods.1", "report.methods.0"):
        assert f"  {key}: 'ssp' is not one of [" in text
    assert text.count("; ssp is not compared on the global shortlist: its baseline is its light query") == 2
    assert "did you mean" not in describe_errors(_with(**{"ames.precision": "half"}), SCHEMA)
    # --config sv=5: a number for a section is told where a section's keys go
    text = describe_errors(_with(sv=5), SCHEMA)
    assert "  sv: 5 is not of type 'object' (a section: set its keys, e.g. sv: {key: value}, in a YAML file" in text
    # a value that is none of a key's forms: said what they are (it was "not valid under any of the given schemas")
    text = describe_errors(_with(**{"knn.ivfpq.nlist": "abc"}), SCHEMA)
    assert "  knn.ivfpq.nlist: 'abc' is none of the allowed forms: a whole number >= 1, or 'auto'" in text
    text = describe_errors(_with(**{"knn.ivfpq.nlist": 0}), SCHEMA)
    assert "  knn.ivfpq.nlist: 0 is none of the allowed forms: a whole number >= 1, or 'auto'" in text
    # text for a section (dataset_dirs: /data/lm) is told the same, not to write a number without quotes
    text = describe_errors(_with(dataset_dirs="/data/lm"), SCHEMA)
    assert "(a section: set its keys, e.g. dataset_dirs: {key: value}, in a YAML file" in text
    assert "without quotes" not in text and "Snakemake reads a value" not in text


def test_a_key_in_another_case_and_a_dotted_key_get_what_was_meant():
    config = _with(sv={**DEFAULT["sv"]})
    config["extract"]["sift"]["K"] = 500
    config["sv.threshold"] = 8.0
    config["ames.train.lr"] = 1e-4
    text = describe_errors(config, SCHEMA)
    assert "  ames.train.lr: unknown key; a dotted key is not read as nested: write ames: {train: {lr: ...}}" in text
    assert "  extract.sift.K: unknown key; did you mean 'k'?" in text
    # a short key with a letter doubled: difflib's ratio is 0.67, under the 0.75 used for longer names
    config = _with(adba={"kk": 3, "alpha": 3.0})
    assert "  adba.kk: unknown key; did you mean 'k'? (allowed here: alpha, k)" in describe_errors(config, SCHEMA)
    assert "  sv.threshold: unknown key; a dotted key is not read as nested: write sv: {threshold: ...}" in text


def test_a_key_given_twice_in_a_configfile_is_named_with_its_line(tmp_path):
    """YAML keeps the last of two equal keys: the first section's settings were dropped without a word (a new
    user's trial: sv: {threshold: 8.0} then sv: {ratio: 0.7} ran with the default threshold). An anchor's merged
    keys may be overridden."""
    f = tmp_path / "mine.yaml"
    f.write_text("sv: {threshold: 8.0}\nknn: {k: 10}\nsv: {ratio: 0.7}\nextract:\n  sift: {k: 500, k: 400}\n")
    text = duplicate_keys([f])
    assert text.startswith("invalid configuration (2 problem(s)): a key given twice in one section")
    assert f"  {f}:3: key 'sv' given a second time" in text and f"  {f}:5: key 'k' given a second time" in text
    (tmp_path / "link.yaml").symlink_to(f)
    assert duplicate_keys([f, tmp_path / "link.yaml"]) == text  # one file named twice is read once
    ok = tmp_path / "anchors.yaml"
    ok.write_text("base: &b {k: 10}\nknn:\n  <<: *b\n  k: 20\n")
    # an anchor that merges another, merged after: PyYAML edits it in place before building it
    nested = tmp_path / "nested.yaml"
    nested.write_text("base: &base {k: 10}\ndefaults: {inner: &i {<<: *base, k: 20}}\nknn: {<<: *i}\n")
    assert duplicate_keys([ok, nested, REPO / "config" / "config.yaml", tmp_path / "missing.yaml"]) == ""
    # JSON, as Snakemake reads a .json configfile (a tab-indented one is not YAML)
    js = tmp_path / "mine.json"
    js.write_text('{\n\t"sv": {"ratio": 0.7},\n\t"sv": {"threshold": 8.0}\n}\n')
    assert f"  {js}: key 'sv' given a second time" in duplicate_keys([js])


def test_wrong_types_and_ranges_name_the_key_and_text_from_the_command_line_gets_a_hint():
    text = describe_errors(_with(**{"extract.sift.k": "0", "sv.ratio": 7.0}), SCHEMA)
    assert "extract.sift.k: '0' is not of type 'integer' (if it was given with --config: Snakemake reads" in text
    assert "--configfile" in text
    line = next(ln for ln in text.splitlines() if ln.startswith("  sv.ratio"))
    assert "7.0 is greater than the maximum" in line and "--config" not in line
    assert len(text.splitlines()) == 3


def test_text_from_a_configfile_is_not_told_to_use_a_configfile(tmp_path):
    """`sv: {num_rerank: "ten"}` in a --configfile got the --config hint ("put nested keys in a YAML file and pass it
    with --configfile"), what the user had done (a researcher's trial); the file is named and the hint is its own."""
    mine = tmp_path / "bad.yaml"
    mine.write_text('sv: {num_rerank: "10"}\n')
    config = _with(**{"sv.num_rerank": "10"})
    text = describe_errors(config, SCHEMA, [mine])
    line = next(ln for ln in text.splitlines() if ln.startswith("  sv.num_rerank"))
    assert "--config" not in line and f"[in {mine}]" in line
    assert "(text in that file: give the value without quotes; YAML reads a quoted one as text)" in line
    assert "(if it was given with --config" in describe_errors(config, SCHEMA)  # from the command line: as before
    # a word is text quoted or not: told what the key takes, not to remove quotes it may not have (a user's trial
    # wrote `search: {k: ten}` and was told "without quotes")
    mine.write_text("sv: {num_rerank: ten}\n")
    for files in ([mine], []):
        text = describe_errors(_with(**{"sv.num_rerank": "ten"}), SCHEMA, files)
        line = next(ln for ln in text.splitlines() if ln.startswith("  sv.num_rerank"))
        assert "'ten' is not of type 'integer' (give a whole number)" in line and "quotes" not in line
        assert "--config" not in line


def test_a_grid_axis_with_a_repeated_value_is_refused_naming_the_key():
    """A repeated grid value made a repeated grid row (the same point twice, counted twice among tied points)."""
    changes = {"ames.lambda": [0.5, 0.5], "ames.geometry.weight": [0.0, 1.0, 1.0], "ames.num_rerank": [25, 50]}
    text = describe_errors(_with(**changes), SCHEMA)
    assert "  ames.lambda: [0.5, 0.5] has non-unique elements" in text
    assert "  ames.geometry.weight: [0.0, 1.0, 1.0] has non-unique elements" in text
    assert len(text.splitlines()) == 3  # num_rerank's distinct values pass


def test_an_empty_section_or_value_is_named_as_empty_and_method_lists_are_unique():
    """A new user's "sv:" with nothing under it read "sv: None is not of type 'object'"; --config data_root= the
    same for a string. A method listed twice in compare or report made a row twice."""
    text = describe_errors(_with(sv=None, data_root=None, **{"compare.methods": ["global", "sv", "sv"]}), SCHEMA)
    assert "  sv: null is not of type 'object' (an empty value: a key with nothing after it" in text
    assert "  data_root: null is not of type 'string' (an empty value" in text
    assert "  compare.methods: ['global', 'sv', 'sv'] has non-unique elements" in text


def test_the_configfile_that_set_a_bad_key_is_named(tmp_path):
    """With several --configfile files a user had to search them for the key; the last file that sets it is named."""
    first, second = tmp_path / "site.yaml", tmp_path / "mine.yaml"
    first.write_text("sv:\n  ratio: 7.0\nknn:\n  k: 5\n")
    second.write_text("sv:\n  thresh: 3\nknn:\n  k: -1\n")
    config = _with(**{"sv.ratio": 7.0, "knn.k": -1})
    config["sv"]["thresh"] = 3
    lines = describe_errors(config, SCHEMA, [first, second]).splitlines()[1:]
    assert any(ln.startswith("  knn.k: -1 is less than") and ln.endswith(f"[in {second}]") for ln in lines), lines
    assert any(ln.startswith("  sv.ratio: 7.0") and ln.endswith(f"[in {first}]") for ln in lines), lines
    assert any(ln.startswith("  sv.thresh: unknown key") and ln.endswith(f"[in {second}]") for ln in lines), lines
    # a list's item and a NaN are named in their file too (a new user's trial found them without it)
    third = tmp_path / "lists.yaml"
    third.write_text("evaluate:\n  ks: [0, 5]\nadba:\n  alpha: .nan\n")
    config = _with(**{"evaluate.ks": [0, 5], "adba.alpha": float("nan")})
    lines = describe_errors(config, SCHEMA, [first, third]).splitlines()[1:]
    assert any(ln.startswith("  evaluate.ks.0: 0 is less than") and ln.endswith(f"[in {third}]") for ln in lines), lines
    assert any(ln.startswith("  adba.alpha: nan") and ln.endswith(f"[in {third}]") for ln in lines), lines
    # a repeated k made a repeated mP@k key
    assert "  evaluate.ks: [1, 5, 5] has non-unique elements" in describe_errors(
        _with(**{"evaluate.ks": [1, 5, 5]}), SCHEMA
    )
    # a value from --config (in no file) is not attributed
    assert describe_errors(_with(**{"knn.k": -1}), SCHEMA, [first]).splitlines()[1].endswith("minimum of 0")


def test_two_unknown_keys_at_one_level_count_as_two_problems():
    config = _with(foo=1, bar=2)
    config["sv"]["thresh"] = 3
    config["sv"]["ratoi"] = 0.8
    lines = describe_errors(config, SCHEMA).splitlines()
    assert lines[0].startswith("invalid configuration (4 problem(s)") and len(lines) == 5


def test_boolean_keys_given_as_text_are_read_as_yaml_reads_them():
    """Snakemake's --config makes only True/False booleans: crop_queries=false arrived as 'false' and was refused."""
    config = _with(crop_queries="false", **{"extract.cache": "Yes", "sv.ratio": "0.8", "data_root": "true"})
    got = coerce_scalars(config, SCHEMA)
    assert got["crop_queries"] is False and got["extract"]["cache"] is True
    assert got["sv"]["ratio"] == "0.8" and got["data_root"] == "true"  # not boolean keys: left for the schema
    assert describe_errors(coerce_scalars(_with(crop_queries="FALSE"), SCHEMA), SCHEMA) == ""
    assert "crop_queries" in describe_errors(coerce_scalars(_with(crop_queries="maybe"), SCHEMA), SCHEMA)


def test_whole_number_floats_of_integer_keys_are_read_as_integers():
    """The schema accepts 5.0 as an integer; sv.num_rerank: 5.0 then failed inside evaluate_sv with a TypeError from
    range() that named no key (a new user's trial). Integer keys, lists of them and integer-or-text keys get ints;
    number keys keep floats; 5.5 stays for the schema to refuse."""
    config = _with(**{"sv.num_rerank": 5.0, "search.k": 1e1, "threads": 2.0, "sv.ratio": 1.0, "sv.threshold": 20.0})
    config["ames"]["num_rerank"] = [25.0, 50, 1e2]
    config["knn"]["ivfpq"]["nlist"] = 64.0
    got = coerce_scalars(config, SCHEMA)
    assert type(got["sv"]["num_rerank"]) is int and got["sv"]["num_rerank"] == 5
    assert type(got["search"]["k"]) is int and type(got["threads"]) is int
    assert [type(v) for v in got["ames"]["num_rerank"]] == [int, int, int] and got["ames"]["num_rerank"] == [
        25,
        50,
        100,
    ]
    assert type(got["knn"]["ivfpq"]["nlist"]) is int
    assert type(got["sv"]["ratio"]) is float and type(got["sv"]["threshold"]) is float  # number keys
    assert describe_errors(got, SCHEMA) == ""
    bad = coerce_scalars(_with(**{"sv.num_rerank": 5.5}), SCHEMA)
    assert bad["sv"]["num_rerank"] == 5.5 and "sv.num_rerank" in describe_errors(bad, SCHEMA)


def test_a_results_json_read_as_a_configuration_file_is_said_so(tmp_path):
    """`--configfile my.yaml results/x_global.json` reads the target as a second configuration file; given the
    --configfile paths, the message names that file (not the user's own configuration file)."""
    config = _with(dataset="x", method="global", metrics=None, artifacts={})
    text = describe_errors(config, SCHEMA)
    assert text.splitlines()[1].startswith("  a results JSON (one of the --configfile files) was read as a config")
    mine, result = tmp_path / "my.yaml", tmp_path / "x_global.json"
    mine.write_text("sv: {threshold: 9.0}\n")
    result.write_text('{"dataset": "x", "method": "global", "metrics": null, "artifacts": {}}')
    text = describe_errors(config, SCHEMA, [mine, result, tmp_path / "absent.yaml"])
    assert text.splitlines()[1].startswith(f"  a results JSON ({result}) was read as a configuration file")
    # its own keys are that one mistake: not listed one by one; a misspelt key of the user's own file still is
    assert "(1 problem(s)" in text and "unknown key" not in text
    mine.write_text("svv: {threshold: 9.0}\n")
    text = describe_errors({**config, "svv": {"threshold": 9.0}}, SCHEMA, [mine, result])
    assert "(2 problem(s)" in text and "svv: unknown key; did you mean 'sv'?" in text and "artifacts:" not in text
    # compare's table (other keys) is named by its place under results/
    table = tmp_path / "results" / "x_compare.json"
    table.parent.mkdir()
    table.write_text('{"dataset": "x", "rows": [], "knn": {}}')
    text = describe_errors(_with(dataset="x", rows=[], knn={}), SCHEMA, [mine, table])
    assert text.splitlines()[1].startswith(f"  a results JSON ({table}) was read as a configuration file")


def test_nan_and_infinities_are_refused_naming_the_key():
    """JSON Schema's minimum lets NaN through: ames.train.grad_clip: .nan trained unclipped under a new version."""
    config = yaml.safe_load("ames: {train: {grad_clip: .nan}}\nsv: {ratio: .inf}\n")
    text = describe_errors(
        with_overrides(DEFAULT, **{"ames.train.grad_clip": config["ames"]["train"]["grad_clip"]}), SCHEMA
    )
    assert text.splitlines()[1] == "  ames.train.grad_clip: nan is not a finite number"
    text = describe_errors(_with(**{"sv.ratio": config["sv"]["ratio"]}), SCHEMA)
    assert text.splitlines()[1:] == ["  sv.ratio: inf is greater than the maximum of 1"]  # once: the schema's line


def test_an_exponent_yaml_reads_as_text_gets_its_spelling():
    value = yaml.safe_load("x: 1e-3")["x"]
    assert value == "1e-3"  # PyYAML (YAML 1.1) needs 1.0e-3
    text = describe_errors(_with(**{"ames.train.grad_clip": value, "extract.sift.k": "500"}), SCHEMA)
    clip = next(ln for ln in text.splitlines() if ln.startswith("  ames.train.grad_clip"))
    assert "write 0.001, not 1e-3" in clip
    # the spelling suggested is one YAML reads as that number
    for text_value in ("2e1", "1e-7", "3.5e-12", "1e22"):
        line = describe_errors(_with(**{"sv.threshold": text_value}), SCHEMA).splitlines()[1]
        spelled = line.split("write ")[1].split(",")[0]
        assert yaml.safe_load(f"x: {spelled}")["x"] == float(text_value), line
    k = next(ln for ln in text.splitlines() if ln.startswith("  extract.sift.k"))
    assert "write 0.001" not in k and "Snakemake reads" in k


def test_an_exponent_for_an_integer_key_is_told_the_whole_number_to_write():
    """``search.k: 1e1`` and ``csv_top: 1.0e2`` are text to YAML 1.1; the number-key hint (1.0e-3) did not say what
    to write for an integer (a new user's trial)."""
    for text_value, expected in (("1e1", "write 10"), ("1.0e2", "write 100"), ("2.5e0", "write a whole number")):
        assert yaml.safe_load(f"k: {text_value}")["k"] == text_value
        text = describe_errors(_with(**{"search.k": text_value}), SCHEMA)
        line = next(ln for ln in text.splitlines() if ln.startswith("  search.k"))
        assert expected in line and "1.0e-3" not in line, line


def test_sections_come_in_the_default_order_whatever_order_the_configfiles_gave():
    """Snakemake puts the keys a --configfile names first; a rule given ``config["sv"]`` then saw a changed
    parameter and re-ran at the same version (a new user's trial restated ``sv: {seed: 0}``)."""
    config = _with()
    sv = config.pop("sv")
    config["sv"] = {"seed": sv["seed"], **{k: v for k, v in sv.items() if k != "seed"}}
    config["dataset_dirs"] = {"zeta": "/z", "alpha": "/a"}
    config["unknown"] = {"b": 1, "a": 2}
    got = in_default_form(config, DEFAULT)
    assert got == config  # the same values
    assert list(got["sv"]) == list(DEFAULT["sv"]) and list(got)[: len(DEFAULT)] == list(DEFAULT)
    assert list(got["dataset_dirs"]) == ["alpha", "zeta"] and list(got["unknown"]) == ["a", "b"]
    assert list(got["ames"]["train"]) == list(DEFAULT["ames"]["train"])


def test_numbers_take_the_default_type_so_a_restated_default_keeps_its_versions():
    """``sv: {threshold: 20}`` (default 20.0) and ``ames: {train: {warmup_epochs: 1}}`` moved the versions, the
    second re-training AMES (a new user's re-check); whole floats of a key whose default is an int become ints."""
    config = _with(**{"sv.threshold": 20, "ames.train.warmup_epochs": 1, "whiten.min_images_per_dim": 10.0})
    config["ames"]["lambda"] = [0, 0.5, 1]
    config["crop_queries"] = True
    got = in_default_form(config, DEFAULT)
    assert type(got["sv"]["threshold"]) is float and got["sv"]["threshold"] == 20.0
    assert type(got["ames"]["train"]["warmup_epochs"]) is float
    assert type(got["whiten"]["min_images_per_dim"]) is int and got["whiten"]["min_images_per_dim"] == 10
    assert [type(v) for v in got["ames"]["lambda"]] == [float, float, float]
    assert got["crop_queries"] is True and got["ames"]["num_rerank"] == DEFAULT["ames"]["num_rerank"]
    assert in_default_form(_with(**{"whiten.min_images_per_dim": 2.5}), DEFAULT)["whiten"]["min_images_per_dim"] == 2.5
    assert in_default_form(DEFAULT, DEFAULT) == DEFAULT
    assert all(type(a) is type(b) for a, b in zip(_leaves(in_default_form(DEFAULT, DEFAULT)), _leaves(DEFAULT)))


def _leaves(x):
    if isinstance(x, dict):
        return [v for k in x for v in _leaves(x[k])]
    if isinstance(x, list):
        return [v for i in x for v in _leaves(i)]
    return [x]


def test_the_older_bootstrap_key_is_read_as_evaluate_bootstrap_and_keeps_the_versions(tmp_path):
    # ames.bootstrap (before 2026-12-02) is still accepted by the schema, then moved with a warning
    old = copy.deepcopy(DEFAULT)
    old["ames"]["bootstrap"] = 500
    assert describe_errors(old, SCHEMA) == ""
    lines = apply_moved_keys(old, DEFAULT)
    assert lines == [
        "ames.bootstrap is the older name of evaluate.bootstrap: read as evaluate.bootstrap: 500 "
        "(write evaluate.bootstrap in your configuration)"
    ]
    assert "bootstrap" not in old["ames"] and old["evaluate"]["bootstrap"] == 500
    assert old == _with(**{"evaluate.bootstrap": 500})
    # the same versions as the key written by its current name, other than the default's where a baseline is drawn
    now, default = Plan(_with(**{"evaluate.bootstrap": 500})), Plan(copy.deepcopy(DEFAULT))
    for name in ("v_qe", "v_eval_ames"):
        assert getattr(Plan(old), name)("demo", "aqe" if name == "v_qe" else "ames") == getattr(now, name)(
            "demo", "aqe" if name == "v_qe" else "ames"
        )
        assert getattr(now, name)("demo", "aqe" if name == "v_qe" else "ames") != getattr(default, name)(
            "demo", "aqe" if name == "v_qe" else "ames"
        )
    assert now.v_eval("demo") == default.v_eval("demo")  # evaluate_global draws no bootstrap
    # both names: the later file wins, as any later value does (a preset's evaluate.bootstrap, then a user's older
    # file with ames.bootstrap, was refused as "both given"); one file giving two values is refused naming it
    preset, mine, newer, one = (tmp_path / f"{n}.yaml" for n in ("preset", "mine", "newer", "one"))
    preset.write_text("evaluate: {bootstrap: 200}\n")
    mine.write_text("ames: {bootstrap: 500}\n")
    newer.write_text("evaluate: {bootstrap: 10000}\n")
    one.write_text("ames: {bootstrap: 500}\nevaluate: {bootstrap: 300}\n")

    def merged(*files):
        config = copy.deepcopy(DEFAULT)
        for f in files:
            for section, values in yaml.safe_load(f.read_text()).items():
                config[section].update(values)
        return config

    config = merged(preset, mine)
    lines = apply_moved_keys(config, DEFAULT, [preset, mine])
    assert config["evaluate"]["bootstrap"] == 500 and "bootstrap" not in config["ames"]
    assert lines == [
        f"ames.bootstrap is the older name of evaluate.bootstrap: read as evaluate.bootstrap: 500 [in {mine}] "
        "(write evaluate.bootstrap in your configuration)"
    ]
    config = merged(mine, newer)  # the current key given later, at the default's value: it wins, said
    (line,) = apply_moved_keys(config, DEFAULT, [mine, newer])
    assert config["evaluate"]["bootstrap"] == 10000 and "bootstrap" not in config["ames"]
    assert f"which {newer} gives later: evaluate.bootstrap: 10000 is used" in line
    with pytest.raises(ValueError, match=r"one\.yaml: gives both ames.bootstrap: 500 and evaluate.bootstrap: 300"):
        apply_moved_keys(merged(one), DEFAULT, [one])
    # --config is the latest of all (through Snakemake's API; nested --config values stay text on the command line)
    config = merged(mine)
    config["evaluate"]["bootstrap"] = 700  # set by --config: no file sets it
    (line,) = apply_moved_keys(config, DEFAULT, [mine])
    assert config["evaluate"]["bootstrap"] == 700 and "which --config gives later" in line
    config = copy.deepcopy(DEFAULT)
    config["ames"]["bootstrap"], config["evaluate"]["bootstrap"] = 500, 700  # both by --config
    with pytest.raises(ValueError, match=r"--config: gives both ames.bootstrap: 500 and evaluate.bootstrap: 700"):
        apply_moved_keys(config, DEFAULT, [])
    same = tmp_path / "same.yaml"
    same.write_text("ames: {bootstrap: 500}\nevaluate: {bootstrap: 500}\n")
    config = merged(same)
    assert len(apply_moved_keys(config, DEFAULT, [same])) == 1 and config["evaluate"]["bootstrap"] == 500
    assert apply_moved_keys(copy.deepcopy(DEFAULT), DEFAULT) == []


def test_a_misspelt_key_of_the_benchmarks_backbone_settings_is_named():
    """benchmark.extract.dinov2 / .resnet take extract.dinov2's / .resnet's keys: a misspelt one passed planning and
    the job failed after the demo's generation, with DeepConfig's TypeError."""
    config = _with(benchmark={"extract": {"dinov2": {"chekpoint": "random", "image_size": 100}}})
    config["benchmark"]["extract"]["resnet"] = {"checkpoint": "random", "modell": {"depth": 50}}
    text = describe_errors(config, SCHEMA)
    assert "(2 problem(s)" in text
    assert "  benchmark.extract.dinov2.chekpoint: unknown key; did you mean 'checkpoint'? (allowed here: " in text
    assert "  benchmark.extract.resnet.modell: unknown key; did you mean 'model'? (allowed here: " in text
    ok = _with(benchmark={"extract": {"dinov2": {"checkpoint": "random", "image_size": 100, "device": "cpu"}}})
    assert describe_errors(ok, SCHEMA) == ""


def test_a_shipped_presets_name_without_its_file_is_warned_about(tmp_path):
    """--config preset=tiny ran the CPU settings under the name tiny, without a word (a new user's trial)."""
    presets = REPO / "config" / "presets"
    warned = preset_not_applied(_with(preset="tiny"), [], presets)
    assert "preset: tiny names config/presets/tiny.yaml, which no --configfile gave" in warned
    assert preset_not_applied(_with(preset="tiny"), [str(presets / "tiny.yaml")], presets) == ""
    assert preset_not_applied(_with(preset="paper"), [str(tmp_path / "mine.yaml")], presets) != ""
    assert preset_not_applied(_with(preset="my-lab"), [], presets) == ""  # your own name
    assert preset_not_applied(DEFAULT, [], presets) == ""  # cpu: config.yaml's own


def test_descriptor_counts_above_what_extraction_keeps_are_capped_and_a_given_one_is_named():
    config = copy.deepcopy(DEFAULT)
    config["sv"]["q_desc"] = 2000  # given: more than sift's k (1000)
    config["ames"]["db_desc"] = 5000
    lines = cap_descriptor_counts(config, DEFAULT)
    assert config["sv"]["q_desc"] == 1000 and config["ames"]["db_desc"] == 1000
    assert config["sv"]["db_desc"] == 1000 and config["ames"]["q_desc"] == DEFAULT["ames"]["q_desc"]  # untouched
    assert len(lines) == 2 and lines[0].startswith("sv.q_desc (2000) is more than extract.sift.k (1000)")
    assert "ames.db_desc (5000)" in lines[1]
    # the capped configuration gives the versions of the value it reads: no re-run for the same numbers
    same = copy.deepcopy(DEFAULT)
    assert Plan(config).v_sv("demo") == Plan(same).v_sv("demo")
    # a smaller k (the user's choice) caps the defaults without a word; the backbone in use decides
    small = with_overrides(DEFAULT, **{"extract.sift.k": 300})
    assert cap_descriptor_counts(small, DEFAULT) == [] and small["sv"]["q_desc"] == 300
    other = with_overrides(DEFAULT, **{"extract.backbone": "dinov2", "sv.q_desc": 800})
    assert cap_descriptor_counts(other, DEFAULT)[0].startswith("sv.q_desc (800) is more than extract.dinov2.k (700)")


def test_a_wrong_type_for_a_key_with_choices_is_one_problem_that_lists_them():
    text = describe_errors(_with(on_bad_image=5), SCHEMA)
    assert text.startswith("invalid configuration (1 problem(s)")
    assert "  on_bad_image: 5 is not one of ['error', 'skip']" in text and "not of type" not in text
    # choices that are numbers keep the type line, which says to drop the quotes (`depth: "101"`)
    depth = describe_errors(_with(**{"extract.resnet.model.depth": "101"}), SCHEMA)
    assert "extract.resnet.model.depth: '101' is not of type 'integer'" in depth
    # a key without choices still says its type
    assert "sv.ratio: 'x' is not of type 'number'" in describe_errors(_with(**{"sv.ratio": "x"}), SCHEMA)


def test_a_config_problem_names_the_file_that_set_its_key(tmp_path):
    """Plan.config_problems' lines came without the [in file.yaml] the schema's lines carry."""
    mine, later = tmp_path / "mine.yaml", tmp_path / "later.yaml"
    mine.write_text("unsupervised_fit: selff\nextract: {min_chunk_images: 5, max_chunk_images: 2}\n")
    later.write_text("extract: {max_chunk_images: 2}\nshortlist: {source: backbone}\n")
    config = _with(
        unsupervised_fit="selff",
        **{"extract.min_chunk_images": 5, "extract.max_chunk_images": 2, "extract.backbone": "sift"},
        **{"shortlist.source": "backbone"},
    )
    config["data_root"] = str(tmp_path)
    problems = Plan(config).config_problems()
    named = name_holders(problems, config, [mine, later])
    by_key = {line.split(":")[0].split(" (")[0]: line for line in named}
    assert by_key["unsupervised_fit"].endswith(f" [in {mine}]")
    # each key the line names: min from mine.yaml, max from later.yaml (helper-92: the file that set max went unnamed)
    assert by_key["extract.min_chunk_images"].endswith(f" [in {mine}, {later}]")
    assert by_key["shortlist.source"].endswith(f" [in {later}]")  # extract.backbone sift is config.yaml's
    assert name_holders(problems, config, []) == problems  # from --config or config.yaml: no file named
    # given with --config, which wins over every file: no file named, even one that sets the same value
    (fit,) = [p for p in problems if p.startswith("unsupervised_fit")]
    assert name_holders([fit], config, [mine], {"unsupervised_fit": "selff"}) == [fit]
    config["unsupervised_fit"] = "other"  # a value not the file's (given with --config after it): not named
    assert name_holders(["unsupervised_fit: x"], config, [mine]) == ["unsupervised_fit: x"]
    # a word of the prose that is also a top-level key (demo, search) is not looked up
    assert name_holders(["dataset_dirs.x: the demo splits"], _with(), [mine]) == ["dataset_dirs.x: the demo splits"]


def test_the_checks_the_schema_cannot_make_come_under_the_schemas_header():
    """One form for every configuration problem: a header with the count, each problem indented under it."""
    assert problems_text([]) == ""
    text = problems_text(["a.b: x [in m.yaml]", "c: y"])
    head, *rest = text.split("\n")
    assert head.startswith("invalid configuration (2 problem(s) the schema cannot see;") and head.endswith(":")
    assert rest == ["  a.b: x [in m.yaml]", "  c: y"]


def test_a_pattern_is_said_in_words_and_a_list_for_one_value_is_named():
    """jsonschema quoted the regex ('my lab' does not match '^[A-Za-z0-9]...'), and a list where one number goes got
    no hint (helper-95's trial)."""
    config = _with(preset="my lab", **{"sv.num_rerank": [10, 10], "ames.device": "gpu"})
    text = describe_errors(config, SCHEMA)
    assert "  preset: 'my lab' is not a name: letters, digits and . _ + - only, starting with a letter or digit" in text
    assert "  ames.device: 'gpu' is not a device: auto, cpu, cuda or cuda:N" in text
    assert "  sv.num_rerank: [10, 10] is not of type 'integer' (one value here, not a list)" in text
    assert "does not match" not in text
    # every pattern of the schema has its words
    patterns = set(re.findall(r"pattern: \"([^\"]*)\"", SCHEMA.read_text()))
    assert {yaml.safe_load(f'"{p}"') for p in patterns} <= set(_PATTERN_WORDS) and patterns


def test_a_nan_the_schema_already_refuses_is_said_once():
    """`nan is not of type 'integer'` and `nan is not a finite number` named one key twice (helper-96's review)."""
    text = describe_errors(_with(**{"sv.num_rerank": float("nan"), "sv.threshold": float("inf")}), SCHEMA)
    lines = text.splitlines()[1:]
    assert [ln.split(":")[0] for ln in lines] == ["  sv.num_rerank", "  sv.threshold"], lines
    assert "not of type 'integer'" in lines[0] and lines[1] == "  sv.threshold: inf is not a finite number"


def test_a_line_naming_a_key_the_schema_names_is_left_out():
    """not_named_by: a key is refused once. A line goes where a key it names (leading it, or dotted within it) leads a
    schema line, or is that key's section or within it; 'gives both ames.bootstrap ...' beside the schema's line for
    ames.bootstrap named the key twice (helper-96's review)."""
    lines = [
        "extract.min_chunk_images (5) is above extract.max_chunk_images (2): ... [in mine.yaml]",
        "unsupervised_fit: 'selff' is not self, training or cross ... [in /abs/mine.yaml]",
    ]
    assert not_named_by(lines, "invalid configuration (1 problem(s)):\n  sv.num_rerank: -3 is less than 1") == lines
    for said in ("  extract.max_chunk_images: -1 is less than 1", "  extract: null is not of type 'object'"):
        assert not_named_by(lines, said) == lines[1:], said
    assert not_named_by(lines, "  unsupervised_fit: 5 is not of type 'string'") == lines[:1]
    both = "/x/d.yaml: gives both ames.bootstrap: 50 and evaluate.bootstrap: 500; give evaluate.bootstrap only"
    assert not_named_by([both], "  ames.bootstrap: 50 is less than the minimum of 100 [in d.yaml]") == []
    assert not_named_by([both], "") == [both]


def test_refused_values_go_back_to_their_defaults_and_nothing_else_moves():
    """with_defaults: the keys the schema refused are set back to config.yaml's values (removed where it has none; a
    section of the wrong type as a whole; a list by its list), so the other checks can run; the input is not changed."""
    defaults = {"unsupervised_fit": "self", "sv": {"ratio": 0.8, "model": "affine"}, "evaluate": {"ks": [1, 5]}}
    config = {
        "unsupervised_fit": 5,
        "sv": {"ratio": "x", "model": "homography", "ratoi": 1},
        "evaluate": {"ks": [1, "y"]},
    }
    said = "invalid configuration (4 problem(s)):\n  unsupervised_fit: 5 ...\n  sv.ratio: 'x' ...\n  sv.ratoi: unknown key\n"
    said += "  evaluate.ks.1: 'y' is not of type 'integer'\n"
    keys = refused_keys(said)
    assert keys == {"unsupervised_fit", "sv.ratio", "sv.ratoi", "evaluate.ks.1"}
    fixed = with_defaults(config, keys, defaults)
    assert fixed == {
        "unsupervised_fit": "self",
        "sv": {"ratio": 0.8, "model": "homography"},
        "evaluate": {"ks": [1, 5]},
    }
    assert config["unsupervised_fit"] == 5 and config["sv"]["ratoi"] == 1  # a copy
    assert with_defaults({"sv": 5, "bogus": 1}, {"sv", "bogus"}, defaults) == {"sv": defaults["sv"]}


def test_an_exclusive_bound_is_said_as_the_side_the_value_must_be_on():
    """jsonschema's "0.0 is less than or equal to the minimum of 0" read as if 0 were allowed (helper-97's trial)."""
    text = describe_errors(_with(**{"sv.ratio": 0.0, "sv.confidence": 1.5}), SCHEMA)
    assert "  sv.ratio: 0.0 must be above 0\n" in text + "\n" and "  sv.confidence: 1.5 must be below 1" in text
    assert "or equal to the" not in text


def test_a_fraction_or_a_boolean_for_a_whole_number_or_null_is_told_what_to_give(tmp_path):
    """`sv.threshold_side: 512.5` and `true` had no hint, and `true` was echoed as Python's `True`; a quoted "null" in
    a file was told to give "a number, true or false" (a new user's trial)."""
    for value, shown in ((512.5, "512.5"), (True, "true")):
        text = describe_errors(_with(**{"sv.threshold_side": value}), SCHEMA)
        line = next(ln for ln in text.splitlines() if ln.startswith("  sv.threshold_side"))
        assert line == f"  sv.threshold_side: {shown} is not of type 'integer', 'null' (give a whole number or null)"
    mine = tmp_path / "bad.yaml"
    mine.write_text('sv: {threshold_side: "null"}\n')
    text = describe_errors(_with(**{"sv.threshold_side": "null"}), SCHEMA, [mine])
    line = next(ln for ln in text.splitlines() if ln.startswith("  sv.threshold_side"))
    assert "give the value without quotes" in line and "true or false" not in line and f"[in {mine}]" in line


def test_a_number_where_a_folder_name_goes_is_told_how_to_give_it_as_text(tmp_path):
    """`--config data_root=2024` (a folder named by digits) was refused as "not of type 'string'" without a hint (a
    new user's trial); in a file the remedy is quotes."""
    text = describe_errors(_with(data_root=2024), SCHEMA)
    line = next(ln for ln in text.splitlines() if ln.startswith("  data_root"))
    assert line == (
        "  data_root: 2024 is not of type 'string' (text wanted: with --config Snakemake reads 2024 as a number, so "
        "write a folder as ./2024; in a YAML file put it in quotes)"
    )
    mine = tmp_path / "mine.yaml"
    mine.write_text("data_root: 2024\n")
    text = describe_errors(_with(data_root=2024), SCHEMA, [mine])
    line = next(ln for ln in text.splitlines() if ln.startswith("  data_root"))
    assert line == (
        f"  data_root: 2024 is not of type 'string' (text wanted: in that file put it in quotes, as '2024'; YAML "
        f"reads it unquoted as a number) [in {mine}]"
    )
    assert "text wanted" not in describe_errors(_with(data_root=True), SCHEMA)  # true is not a number to quote


def test_a_split_is_a_dataset_s_name_not_a_path_or_a_number(tmp_path):
    """`training_split: ./mytrain` (or an absolute path) went on to a MissingInputException naming
    results/global/./mytrain/... and no key, and `--config training_split=5` was told to write ./5, which led there
    (helper-140): a split is refused as a path, with the dataset_dirs that names one, and a number is told to be
    quoted twice."""
    for key in ("training_split", "ames.validation_split", "ssp.anchors.split", "unsupervised_fit"):
        text = describe_errors(_with(**{key: "../data/my_train"}), SCHEMA)
        line = next(ln for ln in text.splitlines() if ln.startswith(f"  {key}:"))
        assert line == (
            f"  {key}: '../data/my_train' is not a name: letters, digits and . _ + - only, starting with a letter or "
            "digit (a dataset's name, not its path: put the folder in data_root, or name it in dataset_dirs, e.g. "
            "dataset_dirs: {my_train: ../data/my_train}, and give my_train here)"
        )
    # a name with a trailing slash: the name meant, not a dataset_dirs entry of that name (helper-144)
    text = describe_errors(_with(training_split="demo-train/"), SCHEMA)
    assert text.endswith("(a dataset's name takes no trailing /: write demo-train)") and "dataset_dirs" not in text
    line = next(ln for ln in describe_errors(_with(training_split=5), SCHEMA).splitlines() if "training_split" in ln)
    assert "so write it as '\"5\"' (--config training_split='\"5\"'); in a YAML file put it in quotes)" in line
    assert "./5" not in line
    mine = tmp_path / "mine.yaml"
    mine.write_text("training_split: 5\n")
    line = describe_errors(_with(training_split=5), SCHEMA, [mine]).splitlines()[-1]
    assert "in that file put it in quotes, as '5'" in line


def test_null_for_a_choice_that_has_none_is_offered_none(tmp_path):
    """`search: {rerank: null}` was told "None is not one of ['none', 'sv']": Python's word, and no hint (helper-141);
    from --config the nested value is the text 'null'."""
    for value, shown in ((None, "null"), ("null", "'null'")):
        line = describe_errors(_with(**{"search.rerank": value}), SCHEMA).splitlines()[-1]
        assert line.startswith(f"  search.rerank: {shown} is not one of ['none', 'sv']; did you mean 'none'?")
    line = describe_errors(_with(**{"knn.search": None}), SCHEMA).splitlines()[-1]
    assert "None" not in line and "did you mean 'none'" not in line
