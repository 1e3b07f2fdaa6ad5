"""Which mtnb code a notebook runs, hashed so that a job's id changes exactly when that code does.

A grid job executes one notebook, and the notebook calls ``mtnb``. Its results depend on the
notebook's code cells and on the ``mtnb`` modules those cells import, directly or through other
modules: the notebook's **import closure**. This module finds that closure statically and hashes
each module's **normalised source**, so that

- a change to a function body in ``mtnb/analysis/cka.py`` changes the hash of every notebook
  whose closure holds ``mtnb.analysis.cka`` (the CKA notebook), and of no other;
- a docstring, a comment, blank lines or other formatting change nothing.

The closure. Starting from the ``import`` statements of the notebook's code cells, each
``import mtnb.a.b``, ``from mtnb.a import b`` and relative import inside the package names a
module; every module named is read and its own imports followed, wherever they stand (at the top
or inside a function: a function-local import runs when the function does). Importing
``mtnb.a.b`` also runs the packages above it (``mtnb/__init__.py``, ``mtnb/a/__init__.py``), so
they are in the closure too. ``from mtnb.a import b`` names the module ``mtnb.a.b`` when that file
exists, else the names in ``mtnb.a``. A package's ``.py`` scripts in subfolders that are not
packages themselves are part of it: ``mtnb.transfer.metrics`` hands its ``evaluate`` metric scripts
(``metrics/accuracy/accuracy.py``, ...) to ``evaluate`` by path, never through an import. Other
files the code reads (YAML tables under ``params/``, CSVs, book templates) are data, not code.

The normalised source of a module is ``ast.unparse`` of its syntax tree with every docstring (the
first statement of a module, class or function body, when it is a string) removed: comments,
blank lines, quotes and line breaks do not survive parsing, and the docstrings are dropped, so
only what executes is hashed. Its hash is the first 12 hex digits of SHA-256 over that text.

Everything here is the standard library: each job's own process records the same hashes
(``mtnb.study.job_process``), and it imports nothing heavy.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import json
import subprocess
from pathlib import Path

from mtnb.core.paths import PACKAGE_DIR, SOURCE_ROOT

PACKAGE = "mtnb"
SHORT = 12            # hex digits kept of every SHA-256 here


def notebook_cells(notebook: Path) -> list[str]:
    """The sources of a notebook's code cells, in order (each one string)."""
    cells = json.loads(Path(notebook).read_text(encoding="utf-8"))["cells"]
    return [cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
            for cell in cells if cell["cell_type"] == "code"]


def parse_cell(source: str) -> ast.Module:
    """A notebook cell's syntax tree; IPython's magics and shell lines (``%...``, ``!...``) are
    left out, since they are not Python."""
    lines = [line for line in source.splitlines() if not line.lstrip().startswith(("%", "!"))]
    return ast.parse("\n".join(lines))


def module_file(name: str, package_dir: Path | None = None) -> Path | None:
    """The source file of module ``name`` (``mtnb.a.b`` -> ``mtnb/a/b.py`` or
    ``mtnb/a/b/__init__.py``), or None when no such file exists."""
    package_dir = package_dir or PACKAGE_DIR
    parts = name.split(".")
    if parts[0] != PACKAGE:
        return None
    folder = package_dir.joinpath(*parts[1:])
    for path in (folder.with_suffix(".py") if len(parts) > 1 else None, folder / "__init__.py"):
        if path is not None and path.is_file():
            return path
    return None


def parsed(path: Path) -> ast.Module:
    """The syntax tree of a Python file."""
    return ast.parse(Path(path).read_text(encoding="utf-8"))


def file_facts(name: str, path: Path, package_dir: Path | None = None) -> tuple[frozenset, str]:
    """(the mtnb modules module ``name`` imports, the hash of its normalised source), read from
    its file ``path``; cached by the file's modification time and size, so that an unchanged
    file is parsed once per process and an edited one is read again."""
    package_dir = package_dir or PACKAGE_DIR
    stat = Path(path).stat()
    return cached_facts(name, str(path), str(package_dir), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=4096)
def cached_facts(name: str, path: str, package_dir: str, mtime_ns: int, size: int) -> tuple[frozenset, str]:
    """``file_facts`` for one version of the file (``mtime_ns``, ``size`` are the cache key)."""
    tree = parsed(Path(path))
    imports = frozenset(imported_modules(tree, name, Path(package_dir)))
    return imports, short_hash(ast.unparse(without_docstrings(tree)))


def imported_modules(tree: ast.AST, module: str | None = None, package_dir: Path | None = None) -> set[str]:
    """The mtnb modules a syntax tree imports anywhere in it: ``module`` is the name of the
    module the tree is (for relative imports), None for a notebook cell."""
    package_dir = package_dir or PACKAGE_DIR
    names: set[str] = set()
    own = module_file(module, package_dir) if module is not None else None
    is_package = own is not None and own.name == "__init__.py"
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names if alias.name.split(".")[0] == PACKAGE)
        elif isinstance(node, ast.ImportFrom):
            if node.level:                                 # relative: from its own package upward
                if module is None:
                    continue
                base = module.split(".")[:len(module.split(".")) - node.level + (1 if is_package else 0)]
                origin = ".".join(base + ([node.module] if node.module else []))
            else:
                origin = node.module or ""
            if origin.split(".")[0] != PACKAGE:
                continue
            names.add(origin)
            for alias in node.names:                       # ``from mtnb.a import b``: b may be a module
                if module_file(f"{origin}.{alias.name}", package_dir) is not None:
                    names.add(f"{origin}.{alias.name}")
    return {name for name in names if module_file(name, package_dir) is not None}


def with_parents(names: set[str]) -> set[str]:
    """``names`` and every package above them (``mtnb.a.b`` brings ``mtnb.a`` and ``mtnb``)."""
    out = set()
    for name in names:
        parts = name.split(".")
        out.update(".".join(parts[:k]) for k in range(1, len(parts) + 1))
    return out


def closure(roots: set[str], package_dir: Path | None = None) -> list[str]:
    """The sorted names of ``roots`` and every mtnb module they import, transitively (with the
    packages above each)."""
    package_dir = package_dir or PACKAGE_DIR
    seen: set[str] = set()
    todo = sorted(with_parents(roots))
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        path = module_file(name, package_dir)
        if path is None:
            continue
        todo += sorted(with_parents(file_facts(name, path, package_dir)[0]) - seen)
    return sorted(name for name in seen if module_file(name, package_dir) is not None)


def notebook_closure(notebook: Path, package_dir: Path | None = None) -> list[str]:
    """The mtnb modules a notebook's code cells run: its import closure (see the module docstring)."""
    package_dir = package_dir or PACKAGE_DIR
    roots: set[str] = set()
    for source in notebook_cells(notebook):
        roots |= imported_modules(parse_cell(source), None, package_dir)
    return closure(roots, package_dir)


def without_docstrings(tree: ast.AST) -> ast.AST:
    """``tree`` with the docstring of every module, class and function removed (in place). A body
    left empty gets ``pass``, so that the tree still unparses to valid Python."""
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]
    return tree


def short_hash(text: str) -> str:
    """The first SHORT hex digits of SHA-256 over ``text`` (UTF-8)."""
    return hashlib.sha256(text.encode()).hexdigest()[:SHORT]


def package_scripts(name: str, package_dir: Path | None = None) -> list[Path]:
    """The ``.py`` files a package hands to other tools by path: those in its subfolders that
    are not packages (no ``__init__.py``). Empty for a module that is not a package."""
    package_dir = package_dir or PACKAGE_DIR
    path = module_file(name, package_dir)
    if path is None or path.name != "__init__.py":
        return []
    folder = path.parent
    return sorted(p for p in folder.rglob("*.py")
                  if p.parent != folder and not (p.parent / "__init__.py").is_file())


def module_hashes(notebook: Path, package_dir: Path | None = None) -> dict[str, str]:
    """{module name: hash of its normalised source} for a notebook's import closure; a package's
    path-loaded scripts (``package_scripts``) are folded into the package's hash."""
    package_dir = package_dir or PACKAGE_DIR
    hashes = {}
    for name in notebook_closure(notebook, package_dir):
        path = module_file(name, package_dir)
        own = file_facts(name, path, package_dir)[1]
        scripts = [f"{p.relative_to(package_dir).as_posix()} {file_facts(name, p, package_dir)[1]}"
                   for p in package_scripts(name, package_dir)]
        hashes[name] = short_hash("\n".join([own, *scripts])) if scripts else own
    return hashes


def notebook_hash(notebook: Path) -> str:
    """The hash of a notebook's code cells, each normalised like a module (comments and
    formatting left out; a cell that is not valid Python is taken as written). Outputs, metadata
    and markdown cells are never read, so running a notebook in Jupyter and saving it keeps it."""
    texts = []
    for source in notebook_cells(notebook):
        try:
            texts.append(ast.unparse(parse_cell(source)))
        except SyntaxError:
            texts.append(source)
    return short_hash(json.dumps(texts))


def code_key(notebook: Path, package_dir: Path | None = None) -> dict:
    """What a job's id hashes of its code: ``{"notebook": notebook_hash, "modules": {name:
    hash}}``."""
    package_dir = package_dir or PACKAGE_DIR
    return {"notebook": notebook_hash(notebook), "modules": module_hashes(notebook, package_dir)}


def changed_modules(old: dict[str, str], new: dict[str, str]) -> list[str]:
    """The modules whose hash differs between two ``module_hashes`` (or that only one holds)."""
    return sorted(name for name in set(old) | set(new) if old.get(name) != new.get(name))


def code_changes(recorded: dict, current: dict) -> dict:
    """What differs between two jobs' code records (``notebook``, ``modules``, ``precision``,
    ``data``, as a job's id hashes them): ``notebook`` (bool), ``modules`` (the changed module
    names), ``precision`` ((recorded, current), or None when equal) and ``data`` (the data sets
    whose manifest differs). The runner says from it why a job reruns; the book, what a kept
    result was computed with."""
    old_data, new_data = recorded.get("data", {}), current.get("data", {})
    return {"notebook": recorded.get("notebook") != current.get("notebook"),
            "modules": changed_modules(recorded.get("modules", {}), current.get("modules", {})),
            "precision": ((recorded.get("precision"), current.get("precision"))
                          if recorded.get("precision") != current.get("precision") else None),
            "data": [name for name in sorted(set(old_data) | set(new_data)) if old_data.get(name) != new_data.get(name)]}


def git_version(root: Path = SOURCE_ROOT) -> dict:
    """The checkout's version: ``{"commit": full SHA, "dirty": bool}`` (dirty: uncommitted
    changes under mtnb/, notebooks/ or params/), or {} where ``root`` is not a git checkout or git
    is missing."""
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=10)
        if commit.returncode != 0:
            return {}
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--", "mtnb", "notebooks", "params"],
                               capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return {}
    return {"commit": commit.stdout.strip(), "dirty": bool(dirty.stdout.strip())}
