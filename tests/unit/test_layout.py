"""The package's architecture, checked: imports point only down the layers, no cycles, function-level imports only
to defer a heavy library, and the README's Layout section names every module."""

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PKG = ROOT / "workflow_scripts" / "retrieval"

# Bottom to top. A module may import from its own layer or any layer below, never from above.
LAYERS = [
    ("runtime", "versions", "names", "featureless", "job_memory"),
    ("stores",),
    ("data",),
    ("features",),
    ("search",),
    ("evaluation",),
    ("methods",),
    ("plan",),
    ("dag_lists", "input_errors", "config_errors"),  # the Snakefile's and rules' helpers
    ("stages",),
    ("benchmarks",),
]
HEAVY = {"torch", "faiss", "cv2", "matplotlib", "asmk", "skimage", "scipy"}


def modules() -> dict[str, Path]:
    out = {}
    for py in sorted(PKG.rglob("*.py")):
        parts = py.relative_to(PKG.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = py
    return out


def layer(module: str) -> int:
    head = module.split(".")[1] if "." in module else ""
    for i, names in enumerate(LAYERS):
        if head in names:
            return i
    raise AssertionError(f"{module}: not in any layer of LAYERS")


def imports(path: Path, name: str) -> list[tuple[str, int, bool]]:
    """(imported module, line, at module level) for every import of our package in the file; ``from retrieval.x
    import y`` counts module ``retrieval.x.y`` where there is one (``from retrieval import job_memory`` was read as
    the package root, and ``from retrieval.features import sift`` as ``features/__init__``: a structure review found
    both unchecked), else ``retrieval.x``."""
    tree = ast.parse(path.read_text())
    top = {id(n) for n in tree.body}
    out = []
    pkg = name if path.name == "__init__.py" else name.rpartition(".")[0]
    known = modules()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.split(".")
                base = base[: len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if mod.split(".")[0] == "retrieval":
                targets = dict.fromkeys(f"{mod}.{a.name}" if f"{mod}.{a.name}" in known else mod for a in node.names)
                out += [(t, node.lineno, id(node) in top) for t in targets]
        elif isinstance(node, ast.Import):
            out += [(a.name, node.lineno, id(node) in top) for a in node.names if a.name.startswith("retrieval")]
    return out


def graph() -> dict[str, set[str]]:
    mods = modules()
    g = {m: set() for m in mods}
    for m, path in mods.items():
        for target, _, _ in imports(path, m):
            while target not in mods and "." in target:
                target = target.rpartition(".")[0]
            if target != m and target != "retrieval":
                g[m].add(target)
    return g


def test_every_module_is_in_a_layer_and_imports_point_down():
    bad = []
    for m, path in modules().items():
        if m == "retrieval":
            continue
        for target, line, _ in imports(path, m):
            if target != "retrieval" and layer(target) > layer(m):
                bad.append(
                    f"{path.relative_to(ROOT)}:{line}: {m} (layer {layer(m)}) imports {target} (layer {layer(target)})"
                )
    assert not bad, "imports pointing up:\n" + "\n".join(bad)


def test_no_import_cycles():
    g = graph()
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for n in sorted(g[m]):
            if state.get(n) == 1:
                cycles.append(" -> ".join(stack[stack.index(n) :] + [n]))
            elif n not in state:
                visit(n)
        stack.pop()
        state[m] = 2

    for m in sorted(g):
        if m not in state:
            visit(m)
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_cycle_detection_finds_a_planted_cycle(monkeypatch):
    """The cycle test would fail on a cycle: plant one in the graph it walks."""
    g = graph()
    a, b = "retrieval.evaluation.metrics", "retrieval.stages.evaluate"
    g[a] = g[a] | {b}
    monkeypatch.setattr(__import__(__name__), "graph", lambda: g)
    try:
        test_no_import_cycles()
    except AssertionError as e:
        assert a in str(e) and b in str(e)
    else:
        raise AssertionError("a planted cycle went unnoticed")


def heavy_on_import() -> dict[str, set[str]]:
    """The heavy libraries each package module loads when it is imported: its own module-level imports and, through
    them, those of the package modules it imports at module level (``from retrieval.x import y`` counts module
    ``retrieval.x.y`` where there is one)."""
    mods = modules()
    direct: dict[str, set[str]] = {}
    deps: dict[str, set[str]] = {}
    for m, path in mods.items():
        names: set[str] = set()
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.Import):
                names |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                names |= {
                    f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in mods else node.module for a in node.names
                }
        direct[m] = {n.split(".")[0] for n in names} & HEAVY
        deps[m] = {n for n in names if n in mods and n != m}
    memo: dict[str, set[str]] = {}

    def heavy(m: str) -> set[str]:
        if m not in memo:
            memo[m] = set(direct[m]).union(*(heavy(d) for d in deps[m]))
        return memo[m]

    return {m: heavy(m) for m in mods}


def test_function_level_imports_only_for_heavy_libraries():
    """A function-level import defers a heavy library: one of HEAVY, or a package module that loads one the
    importing module does not already load (retrieval.features.deep loads torch; SIFT extraction never needs it)."""
    loads = heavy_on_import()
    bad = []
    for m, path in modules().items():
        tree = ast.parse(path.read_text())
        for fn in ast.walk(tree):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(fn):
                if isinstance(node, (ast.Import, ast.ImportFrom)):
                    name = (node.module if isinstance(node, ast.ImportFrom) else node.names[0].name) or ""
                    if getattr(node, "level", 0):
                        bad.append(f"{path.relative_to(ROOT)}:{node.lineno}: relative import {name}")
                    elif name.split(".")[0] == "retrieval":
                        if not loads.get(name, set()) - loads[m]:
                            bad.append(f"{path.relative_to(ROOT)}:{node.lineno}: {name} (defers nothing heavy)")
                    elif name.split(".")[0] not in HEAVY:
                        bad.append(f"{path.relative_to(ROOT)}:{node.lineno}: {name}")
    assert not bad, "function-level imports of light or internal modules:\n" + "\n".join(bad)


def test_sift_extraction_does_not_load_torch():
    """The extraction and merge entry points of SIFT chunks (most jobs of a run) import no torch (2-3 s each)."""
    loads = heavy_on_import()
    assert "torch" not in loads["retrieval.stages.extract"] | loads["retrieval.stages.extract_pack"]
    assert "torch" in loads["retrieval.features.deep"]  # what the deferred import saves


def map_lines() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("\n## Layout") :]
    block = section.split("```")[1]
    return block.splitlines()


def on_map(rel: Path, lines: list[str]) -> bool:
    """``rel`` (a path under retrieval/) is named on the map: its file name appears in the lines nested under its
    folder's line (indented deeper), folder by folder from ``retrieval/`` down."""
    start, end, indent = 0, len(lines), -1
    for folder in ("retrieval", *rel.parts[:-1]):
        for i in range(start, end):
            line = lines[i]
            if re.match(rf"\s*{re.escape(folder)}/(\s|$)", line) and len(line) - len(line.lstrip()) > indent:
                indent = len(line) - len(line.lstrip())
                start = i + 1
                end = next(
                    (
                        j
                        for j in range(start, len(lines))
                        if lines[j].strip() and len(lines[j]) - len(lines[j].lstrip()) <= indent
                    ),
                    len(lines),
                )
                break
        else:
            return False
    return any(re.search(rf"\b{re.escape(rel.name)}\b", lines[i]) for i in range(start - 1, end))


def test_readme_layout_names_every_module():
    lines = map_lines()
    missing = [
        str(p.relative_to(PKG))
        for p in sorted(PKG.rglob("*.py"))
        if p.name != "__init__.py" and not on_map(p.relative_to(PKG), lines)
    ]
    assert not missing, "modules missing from the README's Layout section: " + ", ".join(missing)
    # the check itself: a module under the wrong folder is not on the map
    assert not on_map(Path("stores/metrics.py"), lines) and on_map(Path("evaluation/metrics.py"), lines)


def _anchor(title: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation but '-' and '_' dropped, spaces as '-'."""
    return re.sub(r"[^\w\- ]", "", title.lower()).replace(" ", "-")


def test_readme_contents_lists_every_section_with_its_anchor():
    """The README's Contents names every ## and ### heading, in order, each linking to its heading's anchor: a
    section added, renamed or moved without the Contents fails here."""
    text = (ROOT / "README.md").read_text()
    headings, inside = [], False
    for line in text.splitlines():
        inside ^= line.startswith("```")
        m = None if inside else re.match(r"^(##|###) (.*)$", line)
        if m and m.group(2) != "Contents":
            headings.append(("  " if m.group(1) == "###" else "") + f"- [{m.group(2)}](#{_anchor(m.group(2))})")
    contents = text.split("## Contents\n\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert contents == headings
    assert _anchor("Query expansion and database augmentation (`aqe`, `adba`)") == (
        "query-expansion-and-database-augmentation-aqe-adba"
    )


def test_a_module_imported_from_its_package_is_checked_as_itself():
    """``from retrieval import job_memory`` and ``from retrieval.features import sift`` name modules: they are checked
    as those modules (they were read as the package root and ``features/__init__``, so a module importing one from
    above its layer, or a cycle through one, went unnoticed: a structure review)."""
    dag = {t for t, _, _ in imports(PKG / "dag_lists.py", "retrieval.dag_lists")}
    assert {"retrieval.job_memory", "retrieval.input_errors", "retrieval.data.datasets"} <= dag
    extract = {t for t, _, _ in imports(PKG / "stages" / "extract.py", "retrieval.stages.extract")}
    assert "retrieval.features.sift" in extract and "retrieval.features" not in extract


def test_every_entry_point_caps_its_threads_first():
    """Each rule's entry point calls limit_threads before anything else runs (helper-151: seven did not, so their
    manifests recorded threads: null and their libraries took every core)."""
    scripts = sorted((ROOT / "workflow_scripts").glob("*.py"))
    assert len(scripts) > 40
    late = []
    for path in scripts:
        calls = [ln for ln in path.read_text().splitlines() if ln and not ln[0].isspace() and "(" in ln]
        calls = [ln for ln in calls if not ln.startswith(("from ", "import ", '"""', "#", "def ", "class "))]
        if not calls or not calls[0].startswith("limit_threads("):
            late.append(path.name)
    assert not late, f"entry points whose first call is not limit_threads: {late}"
