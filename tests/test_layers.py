"""The package's shape: layers that import only the layers below them, no import cycle, no
private name used outside its module.

The layers, lowest first (CONTRIBUTING.md): core, data, models, then pretraining and analysis
(side by side: neither imports the other), transfer, study, and the command line. Every import
counts, wherever it stands in a module (a function-local import is still a dependency).
"""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "mtnb"
LAYERS = {"core": 0, "data": 1, "models": 2, "pretraining": 3, "analysis": 3, "transfer": 4, "study": 5, "cli": 6}
SOURCES = sorted(PACKAGE.rglob("*.py"))


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in SOURCES}


def imported_modules(path: Path) -> set[str]:
    """The mtnb modules ``path`` imports (``from mtnb.x import y`` counts as mtnb.x.y when that
    is a module, else mtnb.x)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level:
            raise AssertionError(f"{path}:{node.lineno}: a relative import; write it in full (from mtnb....)")
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("mtnb.")}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("mtnb"):
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                found.add(full if full in MODULES else node.module)
    return {m for m in found if m in MODULES and m != "mtnb"}


def layer_of(module: str) -> int | None:
    parts = module.split(".")
    return LAYERS.get(parts[1]) if len(parts) > 1 else None


GRAPH = {name: imported_modules(path) - {name} for name, path in MODULES.items()}


def test_every_module_belongs_to_a_layer():
    loose = [m for m in MODULES if m != "mtnb" and layer_of(m) is None]
    assert not loose, f"modules outside the layers {sorted(LAYERS)}: {loose}"


def test_each_layer_imports_only_the_layers_below_it_or_itself():
    wrong = []
    for module, targets in GRAPH.items():
        for target in targets:
            low, high = layer_of(target), layer_of(module)
            same_level_sibling = low == high and module.split(".")[1] != target.split(".")[1]
            if low is None or high is None or low > high or same_level_sibling:
                wrong.append(f"{module} imports {target}")
    assert not wrong, "\n".join(sorted(wrong))


def test_there_is_no_import_cycle():
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    stack: list[str] = []

    def visit(module: str):
        state[module] = 1
        stack.append(module)
        for target in sorted(GRAPH[module]):
            if state.get(target) == 1:
                cycle = stack[stack.index(target):] + [target]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if target not in state:
                visit(target)
        stack.pop()
        state[module] = 2

    for module in sorted(GRAPH):
        if module not in state:
            visit(module)


def test_the_cycle_check_finds_a_cycle(monkeypatch):
    """The check above is not vacuous: a cycle put into the graph is found."""
    monkeypatch.setitem(GRAPH, "mtnb.core.errors", GRAPH["mtnb.core.errors"] | {"mtnb.core.paths"})
    monkeypatch.setitem(GRAPH, "mtnb.core.paths", GRAPH["mtnb.core.paths"] | {"mtnb.core.errors"})
    with pytest.raises(AssertionError, match="import cycle: mtnb.core.errors -> mtnb.core.paths -> mtnb.core.errors"):
        test_there_is_no_import_cycle()


def private_names_defined(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
    return {n for n in names if n.startswith("_") and not n.startswith("__")}


def test_no_private_name_is_used_outside_its_module():
    """A leading underscore means "this module's own": no other module, test or benchmark
    imports it or reaches it as an attribute of a module."""
    private = {n for p in SOURCES for n in private_names_defined(p)}
    users = [*SOURCES, *sorted((ROOT / "tests").glob("*.py")), *sorted((ROOT / "benchmarks").glob("*.py"))]
    found = []
    for path in users:
        own = private_names_defined(path) if path in SOURCES else set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("mtnb"):
                found += [f"{path.name}:{node.lineno} imports {a.name}" for a in node.names if a.name in private]
            elif isinstance(node, ast.Attribute) and node.attr in private and node.attr not in own \
                    and isinstance(node.value, ast.Name) and node.value.id not in ("self", "cls"):
                found.append(f"{path.name}:{node.lineno} uses {node.value.id}.{node.attr}")
            elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) in (
                    "setattr", "getattr"):  # monkeypatch.setattr(module, "_name", ...)
                found += [f"{path.name}:{node.lineno} patches {arg.value}" for arg in node.args
                          if isinstance(arg, ast.Constant) and arg.value in private and arg.value not in own]
            elif isinstance(node, ast.keyword) and node.arg and node.arg.startswith("_") and not node.arg.startswith("__"):
                found.append(f"{path.name}: passes the private keyword {node.arg}")
    assert not found, "\n".join(found)


@pytest.mark.parametrize("module", ["mtnb.data.tasks", "mtnb.data.mini.datasets", "mtnb.models.registry",
                                    "mtnb.pretraining.members", "mtnb.study.grids", "mtnb.study.runner"])
def test_what_plans_a_grid_loads_without_torch(module):
    """What the runner reads to plan a grid (the task table, the registry, the member catalogues,
    the grids) and the runner itself import no torch, so that ``mtnb status`` starts fast; the
    runner imports the preflight and sizing (which load models) only when a run needs them."""
    code = f"import sys, {module}; print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]", f"{module} imports {out.stdout.strip()}"


def test_the_readme_layout_table_and_contributing_match_the_tree():
    """Each subpackage has a row in the README's layout table naming every one of its modules and
    subpackages (and nothing that is not there), and CONTRIBUTING.md names only files that exist
    and every layer."""
    import re

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    rows = dict(re.findall(r"^\| `mtnb/(\w+)/` \| (.*) \|$", readme, flags=re.M))
    packages = sorted(p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file())
    assert sorted(rows) == packages
    for package, text in rows.items():
        folder = PACKAGE / package
        present = {p.stem for p in folder.glob("*.py") if p.stem != "__init__"}
        present |= {p.name + "/" for p in folder.iterdir() if p.is_dir() and (p / "__init__.py").is_file()}
        named = set(re.findall(r"`(\w+/?)`", text.split(": ", 1)[1] if ": " in text else text))
        inner = {n for sub in folder.iterdir() if sub.is_dir() for n in
                 re.findall(r"`(\w+)`", text) if (sub / f"{n}.py").is_file()}
        assert present <= named, f"{package}: not in the README table: {sorted(present - named)}"
        unknown = {n for n in named - present - inner if not (folder / n).exists()}
        assert not unknown, f"{package}: the README names what is not there: {sorted(unknown)}"
    contributing = (ROOT / "CONTRIBUTING.md").read_text(encoding="utf-8")
    for path in re.findall(r"`(mtnb/[\w/]+\.py)`", contributing):
        assert (ROOT / path).is_file(), f"CONTRIBUTING.md names {path}, which is not there"
    for package in packages:
        assert f"`mtnb.{package}`" in contributing, f"CONTRIBUTING.md's layer table lacks mtnb.{package}"


def test_classes_are_defined_at_module_level():
    """No class is defined inside a function: a model's modules, dataclasses and readers can be
    imported, subclassed and documented where they live."""
    nested = []
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                nested += [f"{path.relative_to(ROOT)}:{inner.lineno} {inner.name} in {node.name}"
                           for inner in ast.walk(node) if isinstance(inner, ast.ClassDef)]
    assert not nested, "\n".join(nested)
