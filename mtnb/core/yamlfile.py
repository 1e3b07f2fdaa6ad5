"""Reading the project's YAML files (registry, task table, grids) with one kind of error."""

from __future__ import annotations

from pathlib import Path

import yaml

from mtnb.core.errors import MtnbError


def read_yaml(path: Path, where: str | None = None):
    """``yaml.safe_load`` of ``path``; a syntax error becomes one MtnbError line naming
    ``where`` (default: the path) and the line of the problem."""
    where = str(path) if where is None else where
    try:
        return yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = f" line {mark.line + 1}:" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise MtnbError(f"{where}:{line} not valid YAML ({problem}); fix the syntax") from None
