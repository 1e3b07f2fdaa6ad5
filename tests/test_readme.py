"""The README's Python examples run as written.

Every fenced ``python`` block of README.md is executed statement by statement in a fresh
namespace. A model it loads by registry name is read through the real path (the registry, then
the Hugging Face cache, offline), from a temporary cache that holds a tiny random checkpoint of
the model's family under the model's real Hub id, so no download is needed. A top-level
comparison (``len(out.hidden_states) == enc.shape.n_layers + 1``) is the example's claim: it
must be true, as a doctest's expected output must match.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from huggingface_hub import constants

from mtnb.core.hub_cache import cache_put_folder
from mtnb.models.loading import Encoder
from mtnb.models.random_checkpoints import character_tokenizer
from mtnb.models.registry import load_registry
from mtnb.study.rehearsal import write_model

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
LOADED = re.compile(r"""load_encoder\(\s*["']([^"']+)["']""")


def python_blocks(text: str) -> list[str]:
    """The code of every fenced ``python`` block of a markdown text, in order."""
    return re.findall(r"^```python\n(.*?)^```", text, re.S | re.M)


def stand_in_cache(cache: Path, names: set[str]) -> Path:
    """Put a tiny random checkpoint (2 layers, 32 wide, character tokenizer) of each registry
    model in ``names`` into the Hugging Face cache ``cache``, under the model's Hub id."""
    registry = load_registry(ROOT / "params" / "models.yaml")
    for i, name in enumerate(sorted(names)):
        spec = registry[name]
        assert spec.local_folder() is None, f"{name}: the README loads a local model; give the test a stand-in for it"
        folder = write_model(cache.parent / "stand-ins" / name, spec.family, character_tokenizer(spec.family), seed=i)
        cache_put_folder(cache, "model", spec.source, "main", folder)
    return cache


def run_example(code: str, where: str) -> dict:
    """Execute ``code`` statement by statement; a top-level comparison must be true. Returns the
    namespace it leaves."""
    namespace: dict = {"__name__": "readme_example"}
    for statement in ast.parse(code).body:
        line = ast.get_source_segment(code, statement)
        if isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Compare):
            value = eval(compile(ast.Expression(statement.value), where, "eval"), namespace)
            assert bool(value), f"{where}: {line} is {value!r}"
        else:
            exec(compile(ast.Module([statement], type_ignores=[]), where, "exec"), namespace)
    return namespace


def test_readme_has_python_examples_and_each_claims_something():
    blocks = python_blocks(README.read_text())
    assert blocks, "the README has Python examples (```python blocks)"
    for i, code in enumerate(blocks):
        statements = ast.parse(code).body
        assert any(isinstance(s, ast.Expr) and isinstance(s.value, ast.Compare) for s in statements), \
            f"README python block {i + 1} states no comparison the test can check"


def test_readme_python_examples_run(tmp_path, monkeypatch):
    blocks = python_blocks(README.read_text())
    names = {name for code in blocks for name in LOADED.findall(code)}
    cache = stand_in_cache(tmp_path / "hub", names)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)        # read when the registry looks a model up
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.chdir(ROOT)
    for i, code in enumerate(blocks):
        namespace = run_example(code, f"README.md python block {i + 1}")
        for value in namespace.values():
            if isinstance(value, Encoder):
                assert value.folder.resolve().is_relative_to(cache.resolve()), "the stand-in checkpoint was read"
