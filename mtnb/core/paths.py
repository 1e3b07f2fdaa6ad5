"""Where the project lives on disk.

The project root is the folder that holds ``params/models.yaml``: ``$MTNB_ROOT`` when set,
else the first such folder at or above the current directory, else the folder above this
package (an editable install inside the repository).
"""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parents[1]  # the mtnb package folder
SOURCE_ROOT = PACKAGE_DIR.parent                   # the folder above it: the repository in an editable install


def project_root() -> Path:
    """The project root folder (see the module docstring for the search order)."""
    env = os.environ.get("MTNB_ROOT")
    if env:
        return Path(env).resolve()
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if (folder / "params" / "models.yaml").is_file():
            return folder
    return SOURCE_ROOT


def params_dir() -> Path:
    """``<root>/params``: the registry, the task table and the grids."""
    return project_root() / "params"
