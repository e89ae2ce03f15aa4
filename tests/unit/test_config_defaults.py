"""One source of defaults, checked without running Snakemake.

* config/schema.yaml describes every key (``properties`` at every depth, and array ``items`` that are objects);
* every default in the schema equals config/config.yaml's value at the same path, every config.yaml key is in the
  schema and has a default there (the schema's defaults are exactly config.yaml), so Snakemake's validation, which
  fills in defaults, adds nothing to config.yaml;
* config.yaml, and each overlay (config/presets/*.yaml, config/benchmark_gpu.yaml) merged over it the way Snakemake
  merges ``--configfile``, validate against the schema as Snakemake validates them; ``preset`` is a free name;
* the dataclass defaults that are a published method's settings (AMES's training and model, SuperGlobal, SSP's
  optimiser, DELG's spatial verification, the asmk package's parameters, AMES's DINOv2 extraction) equal what the
  paper preset runs (config.yaml + config/presets/paper.yaml), field by field; the demo generator's equal config.yaml.

Each check is a function that returns its problems; each test runs it on the real files and on a planted mismatch,
which it must report."""

from __future__ import annotations

import copy
import dataclasses
import importlib
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from snakemake.utils import update_config, validate

ROOT = Path(__file__).resolve().parents[2]
CONFIG_DIR = ROOT / "config"
SCHEMA_PATH = CONFIG_DIR / "schema.yaml"
OVERLAYS = sorted((CONFIG_DIR / "presets").glob("*.yaml")) + [CONFIG_DIR / "benchmark_gpu.yaml"]
MISSING = object()


def load(path: Path) -> Any:
    with open(path) as f:
        return yaml.safe_load(f)


SCHEMA = load(SCHEMA_PATH)
BASE = load(CONFIG_DIR / "config.yaml")


def same(a: Any, b: Any) -> bool:
    """Equal as Snakemake's version hashes see them (JSON): 1 and 1.0, or 1 and true, differ; tuples are lists."""
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def dotted(path: tuple[str, ...]) -> str:
    return ".".join(path) or "<root>"


def resolve(node: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """A schema node with its local ``$ref`` (#/definitions/... or #/$defs/...) merged under its own keywords."""
    while "$ref" in node:
        ref = node["$ref"]
        assert ref.startswith("#/"), f"only local references are followed: {ref}"
        target: Any = schema
        for part in ref[2:].split("/"):
            target = target[part]
        node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
    return node


def schema_keys(schema: dict[str, Any]) -> list[tuple[tuple[str, ...], dict[str, Any]]]:
    """(path, resolved node) of every key: ``properties`` at every depth, array ``items`` that are objects as ``[]``."""
    out: list[tuple[tuple[str, ...], dict[str, Any]]] = []

    def walk(node: dict[str, Any], path: tuple[str, ...]) -> None:
        node = resolve(node, schema)
        for key, sub in node.get("properties", {}).items():
            out.append((path + (key,), resolve(sub, schema)))
            walk(sub, path + (key,))
        items = node.get("items")
        if isinstance(items, dict) and "properties" in resolve(items, schema):
            walk(items, path + ("[]",))

    walk(schema, ())
    return out


def get(cfg: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(cfg, dict) or key not in cfg:
            return MISSING
        cfg = cfg[key]
    return cfg


# ---- (a) every key described --------------------------------------------------------------------------------------


def description_problems(schema: dict[str, Any]) -> list[str]:
    return [
        f"{dotted(path)}: no description"
        for path, node in schema_keys(schema)
        if not str(node.get("description") or "").strip()
    ]


def test_every_schema_key_has_a_description():
    keys = schema_keys(SCHEMA)
    assert len(keys) > 200  # the walk reaches the nested keys (ames.train.*, benchmark.scale.ivfpq.*, ...)
    assert {"ames.train.epochs", "demo.test.instances", "benchmark.scale.ivfpq.nlist"} <= {dotted(p) for p, _ in keys}
    assert description_problems(SCHEMA) == []


def test_a_missing_description_is_reported():
    planted = copy.deepcopy(SCHEMA)
    del planted["properties"]["ames"]["properties"]["train"]["properties"]["epochs"]["description"]
    planted["definitions"]["split_size"]["properties"]["views"]["description"] = " "  # reached through $ref
    planted["properties"]["evaluate"]["properties"]["ks"]["items"] = {  # array items that are objects are walked
        "type": "object",
        "properties": {"k": {"type": "integer"}},
    }
    problems = description_problems(planted)
    assert "ames.train.epochs: no description" in problems
    assert {"demo.test.views: no description", "demo.val.views: no description"} <= set(problems)
    assert "evaluate.ks.[].k: no description" in problems


# ---- (b) the schema's defaults are config.yaml ----------------------------------------------------------------------


def default_problems(schema: dict[str, Any], cfg: dict[str, Any]) -> list[str]:
    """Schema defaults that differ from config.yaml or name a key it lacks; config.yaml keys that are not in the schema
    or have no default there (neither their own nor an enclosing object's)."""
    problems = []
    for path, node in schema_keys(schema):
        if "default" not in node:
            continue
        value = get(cfg, path)
        if value is MISSING:
            problems.append(f"{dotted(path)}: schema default {node['default']!r}, absent from config.yaml")
        elif not same(node["default"], value):
            problems.append(f"{dotted(path)}: schema default {node['default']!r} != config.yaml {value!r}")

    def walk(c: dict[str, Any], node: dict[str, Any], path: tuple[str, ...], covered: bool) -> None:
        props = resolve(node, schema).get("properties", {})
        for key, value in c.items():
            p = path + (key,)
            if key not in props:
                problems.append(f"{dotted(p)}: in config.yaml, not in the schema")
                continue
            sub = resolve(props[key], schema)
            has_default = covered or "default" in sub
            if isinstance(value, dict) and "properties" in sub:
                walk(value, sub, p, has_default)
            elif not has_default:
                problems.append(f"{dotted(p)}: config.yaml sets {value!r}, the schema has no default")

    walk(cfg, schema, (), False)
    return problems


def test_schema_defaults_are_config_yaml():
    assert default_problems(SCHEMA, BASE) == []


def test_a_default_that_disagrees_is_reported():
    # the review's example: ames.train.epochs disagreed between the schema and config.yaml
    cfg = copy.deepcopy(BASE)
    cfg["ames"]["train"]["epochs"] = 16
    cfg["demo"]["test"]["views"] = 15  # a default held by the enclosing object (demo.test), leaves through $ref
    cfg["whiten"]["power"] = 1.0
    cfg["aggregate"]["alpha"] = 0.5 + 1e-9  # however small
    problems = default_problems(SCHEMA, cfg)
    assert "ames.train.epochs: schema default 8 != config.yaml 16" in problems
    assert any(p.startswith("demo.test: schema default") for p in problems)
    assert "whiten.power: schema default 0.5 != config.yaml 1.0" in problems
    assert any(p.startswith("aggregate.alpha: schema default 0.5 != config.yaml 0.500000001") for p in problems)
    # 10 and 10.0 hash differently in a version string: a type change is a disagreement too
    cfg = copy.deepcopy(BASE)
    cfg["sv"]["threshold"] = 20
    assert default_problems(SCHEMA, cfg) == ["sv.threshold: schema default 20.0 != config.yaml 20"]


def test_keys_on_one_side_only_are_reported():
    cfg = copy.deepcopy(BASE)
    cfg["ames"]["train"]["epoch"] = 3  # a typo only config.yaml has
    del cfg["sv"]["seed"]  # a key with a schema default that config.yaml lost
    schema = copy.deepcopy(SCHEMA)
    del schema["properties"]["knn"]["properties"]["block"]["default"]  # a config.yaml key without a default
    problems = default_problems(schema, cfg)
    assert "ames.train.epoch: in config.yaml, not in the schema" in problems
    assert "sv.seed: schema default 0, absent from config.yaml" in problems
    assert "knn.block: config.yaml sets 100000, the schema has no default" in problems


# ---- (c) config.yaml and every overlay validate, as Snakemake validates them ----------------------------------------


def merged(*overlays: dict[str, Any]) -> dict[str, Any]:
    """config.yaml with overlays merged over it as Snakemake merges --configfile (snakemake.utils.update_config)."""
    cfg = copy.deepcopy(BASE)
    for overlay in overlays:
        update_config(cfg, copy.deepcopy(overlay))
    return cfg


def validated(cfg: dict[str, Any]) -> dict[str, Any]:
    """What the Snakefile's validate() leaves: the config with the schema's defaults filled in (raises if invalid)."""
    cfg = copy.deepcopy(cfg)
    validate(cfg, str(SCHEMA_PATH))
    return cfg


def test_the_schema_is_a_valid_draft_2020_12_schema():
    jsonschema.Draft202012Validator.check_schema(SCHEMA)


def test_config_yaml_validates_and_the_schema_adds_nothing():
    assert same(validated(BASE), BASE)


@pytest.mark.parametrize("overlay", OVERLAYS, ids=lambda p: p.name)
def test_each_overlay_validates_over_config_yaml(overlay):
    cfg = merged(load(overlay))
    assert same(validated(cfg), cfg)


def test_documented_preset_names_and_a_users_own_name_are_valid():
    assert {load(p).get("preset") for p in OVERLAYS} >= {"tiny", "paper"} and BASE["preset"] == "cpu"
    for name in ("cpu", "tiny", "paper", "my-lab_v2", "gpu+paper.2024"):
        assert validated(merged({"preset": name}))["preset"] == name


@pytest.mark.parametrize(
    "overlay",
    [
        {"preset": "my lab"},  # a space
        {"preset": "../x"},  # a path
        {"preset": ""},
        {"preset": 3},
        {"extarct": {"backbone": "sift"}},  # an unknown key
        {"ames": {"train": {"epochs": 0}}},  # out of range
        {"ames": {"train": {"init": "xavier"}}},  # not one of the choices
        {"benchmark": {"ames": {"sizes": [[128]]}}},
    ],
    ids=str,
)
def test_an_invalid_overlay_is_refused(overlay):
    with pytest.raises(Exception, match="Error validating config file"):
        validated(merged(overlay))


# ---- (d) the dataclass defaults that are a published method's settings ----------------------------------------------

PAPER = merged(load(CONFIG_DIR / "presets" / "paper.yaml"))


@dataclasses.dataclass(frozen=True)
class Mirror:
    """A dataclass whose defaults mirror a config section: ``section`` the default path of its fields, ``paths`` the
    fields kept elsewhere, ``unconfigured`` the fields no config key sets (with why)."""

    cls: str  # module:Class
    section: tuple[str, ...]
    paths: dict[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)
    unconfigured: dict[str, str] = dataclasses.field(default_factory=dict)

    def load(self) -> type:
        module, name = self.cls.split(":")
        return getattr(importlib.import_module(module), name)


PAPER_MIRRORS = [
    # AMES (Suma et al., ECCV 2024): the paper's training; beta is the distillation weight, used only with a teacher
    Mirror("retrieval.methods.ames.train:TrainConfig", ("ames", "train"), paths={"beta": ("ames", "distill", "beta")}),
    Mirror(
        "retrieval.methods.ames.model:AmesConfig",
        ("ames", "model"),
        unconfigured={
            "local_dim": "the descriptors' dimension, read from the local store",
            "binarized": "set by the method (ames_binary)",
        },
    ),
    Mirror("retrieval.methods.superglobal:SuperGlobalConfig", ("superglobal",)),  # the official defaults
    Mirror("retrieval.methods.ssp:SSPTrainConfig", ("ssp", "train")),  # SSP's optimiser
    Mirror("retrieval.methods.sv:SVConfig", ("sv",)),  # DELG's threshold, Lowe's ratio
    Mirror(
        "retrieval.search.asmk:ASMKConfig",
        ("asmk",),  # the asmk package's examples/params
        paths={
            "db_multiple_assignment": ("asmk", "multiple_assignment", "db"),
            "query_multiple_assignment": ("asmk", "multiple_assignment", "query"),
        },
    ),
    Mirror(
        "retrieval.features.deep:DeepConfig",
        ("extract", "dinov2"),  # AMES's DINOv2 extraction
        unconfigured={
            "backbone": "the backbone's name, no default",
            "model": "the architecture: ViTConfig below",
            "pooling": "resnet only",
            "channels": "resnet only (DINOv2 always takes RGB)",
        },
    ),
    Mirror(
        "retrieval.features.backbones.vit:ViTConfig",
        ("extract", "dinov2", "model"),
        unconfigured={
            "embed_dim": "tiny test models only",
            "depth": "tiny test models only",
            "heads": "tiny test models only",
        },
    ),
]
CONFIG_MIRRORS = [
    Mirror("retrieval.data.demo:DemoConfig", ("demo",)),
]
# paper.yaml keys that no dataclass holds: the re-ranking protocol of the published table, checked here
PAPER_PROTOCOL = {
    ("preset",): "paper",
    ("ames", "device"): "auto",
    ("ames", "distill", "epochs"): 15,
    ("ames", "q_desc"): 600,
    ("ames", "db_desc"): 600,
    ("ames", "num_rerank"): [100, 400, 1600],
    ("ames", "junk_mode"): "ames",
    ("ames", "batch_pairs"): 300,
    ("ames", "precision"): "float32",  # the official code's (auto: bfloat16 where the hardware has it, helper-142)
    ("ames", "fusion"): "sigmoid",  # AMES's fusion of the raw logit (the CPU preset's promote is for real photos)
    ("ames", "geometry", "weight"): [0.0],  # AMES alone: no spatial verification fused into its score
    # the CPU grid plus the published operating points and lambda 1 (the global order); fixed: DINOv2's point
    ("ames", "lambda"): [0.0, 0.1, 0.2, 0.3, 0.35, 0.4, 0.5, 0.55, 0.6, 0.65, 0.7, 0.8, 0.85, 0.9, 1.0],
    ("ames", "gamma"): [0.1, 0.2, 0.3, 0.5, 0.8, 1.0, 2.0],
    ("ames", "validation_grid", "lambda"): [
        0.0,
        0.1,
        0.2,
        0.3,
        0.35,
        0.4,
        0.5,
        0.55,
        0.6,
        0.65,
        0.7,
        0.8,
        0.85,
        0.9,
        1.0,
    ],
    ("ames", "validation_grid", "gamma"): [0.1, 0.2, 0.3, 0.5, 0.8, 1.0, 2.0],
    ("ames", "fixed", "lambda"): 0.5,
    ("ames", "fixed", "gamma"): 0.2,
    ("ames", "fixed", "num_rerank"): 1600,
    ("ames", "fixed", "geometry_weight"): 0.0,
    ("ames", "fixed", "binary", "lambda"): 0.35,  # the binary student's published point
    ("ames", "fixed", "binary", "gamma"): 0.1,
    ("ames", "select"): "fixed",  # the result at the published point, as the paper reports it
}
# AMES's tuned (lambda, gamma), ../shared/reference/methods.md section 1.5 (AMES's README): DINOv2 full precision (new README), its binary model, CVNet,
# CVNet binary, DINOv2 (old README)
PUBLISHED_POINTS = [(0.5, 0.2), (0.35, 0.1), (0.85, 0.8), (0.65, 0.2), (0.55, 0.3)]


def field_defaults(cls: type) -> dict[str, Any]:
    """The defaults of a dataclass's fields (default factories called, nested dataclasses as dicts)."""
    out = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            value = f.default
        elif f.default_factory is not dataclasses.MISSING:
            value = f.default_factory()
        else:
            continue
        out[f.name] = dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value
    return out


def mirror_problems(mirror: Mirror, cfg: dict[str, Any], cls: type | None = None) -> list[str]:
    cls = cls or mirror.load()
    defaults = field_defaults(cls)
    problems = []
    for f in dataclasses.fields(cls):
        if f.name in mirror.unconfigured:
            continue
        path = mirror.paths.get(f.name, mirror.section + (f.name,))
        value = get(cfg, path)
        if value is MISSING:
            problems.append(f"{cls.__name__}.{f.name}: no config key {dotted(path)} (declare it unconfigured, why)")
        elif f.name not in defaults:
            problems.append(f"{cls.__name__}.{f.name}: no default, config {dotted(path)} = {value!r}")
        elif not same(defaults[f.name], value):
            problems.append(f"{cls.__name__}.{f.name} = {defaults[f.name]!r} != {dotted(path)} {value!r}")
    return problems


@pytest.mark.parametrize("mirror", PAPER_MIRRORS, ids=lambda m: m.cls.split(":")[1])
def test_paper_dataclass_defaults_are_what_the_paper_preset_runs(mirror):
    assert mirror_problems(mirror, PAPER) == []


@pytest.mark.parametrize("mirror", CONFIG_MIRRORS, ids=lambda m: m.cls.split(":")[1])
def test_dataclass_defaults_mirror_config_yaml(mirror):
    assert mirror_problems(mirror, BASE) == []


def test_sift_dataclass_defaults_mirror_config_yaml():
    mirror = Mirror(
        "retrieval.features.sift:SiftConfig",
        ("extract", "sift"),
        unconfigured={"scale": "SSP's light query model only (ssp.query_sift.scale)"},
    )
    assert mirror_problems(mirror, BASE) == []


def test_every_key_paper_yaml_sets_is_checked():
    """A new key in paper.yaml must be held by a checked dataclass field or listed in PAPER_PROTOCOL."""
    checked = set(PAPER_PROTOCOL)
    for m in PAPER_MIRRORS:
        for f in dataclasses.fields(m.load()):
            if f.name not in m.unconfigured:
                checked.add(m.paths.get(f.name, m.section + (f.name,)))

    def leaves(c: dict[str, Any], path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
        return [q for k, v in c.items() for q in (leaves(v, path + (k,)) if isinstance(v, dict) else [path + (k,)])]

    assert [dotted(p) for p in leaves(load(CONFIG_DIR / "presets" / "paper.yaml")) if p not in checked] == []
    assert [dotted(p) for p, v in PAPER_PROTOCOL.items() if not same(get(PAPER, p), v)] == []
    # every published operating point is on both grids, with lambda 1; the fixed point is DINOv2's at 1600
    for grid in (PAPER["ames"], PAPER["ames"]["validation_grid"]):
        assert (
            all(lam in grid["lambda"] and g in grid["gamma"] for lam, g in PUBLISHED_POINTS) and 1.0 in grid["lambda"]
        )
        assert set(BASE["ames"]["lambda"]) <= set(grid["lambda"]) and set(BASE["ames"]["gamma"]) <= set(grid["gamma"])
    fixed = PAPER["ames"]["fixed"]
    assert (fixed["lambda"], fixed["gamma"]) == PUBLISHED_POINTS[0] and fixed["num_rerank"] == max(
        PAPER["ames"]["num_rerank"]
    )
    assert (fixed["binary"]["lambda"], fixed["binary"]["gamma"]) == PUBLISHED_POINTS[1]
    # the student is distilled on the teacher's schedule (the paper)
    train = field_defaults(PAPER_MIRRORS[0].load())
    assert PAPER["ames"]["distill"]["epochs"] == train["epochs"]


def test_a_dataclass_that_drifts_from_the_paper_is_reported():
    train = PAPER_MIRRORS[0]
    cfg = copy.deepcopy(PAPER)
    cfg["ames"]["train"]["lr"] = 5.0e-4  # paper.yaml drifts from TrainConfig
    cfg["ames"]["distill"]["beta"] = 1.0  # TrainConfig.beta lives at ames.distill.beta
    assert mirror_problems(train, cfg) == [
        "TrainConfig.lr = 0.0002 != ames.train.lr 0.0005",
        "TrainConfig.beta = 10.0 != ames.distill.beta 1.0",
    ]
    # without paper.yaml, config.yaml's CPU schedule is not the paper's
    assert "TrainConfig.epochs = 15 != ames.train.epochs 8" in mirror_problems(train, BASE)

    @dataclasses.dataclass(frozen=True)
    class Drifted:  # a field added to a dataclass without a config key, and a default changed
        m: int = 401
        k: int = 9
        beta: float = 0.15
        new_knob: float = 1.0

    assert mirror_problems(PAPER_MIRRORS[2], PAPER, Drifted) == [
        "Drifted.m = 401 != superglobal.m 400",
        "Drifted.new_knob: no config key superglobal.new_knob (declare it unconfigured, why)",
    ]
