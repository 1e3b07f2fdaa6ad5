"""Run folders: where one seed of a job writes its model, record and curve.

A job writes ``<output_dir>/seed-<k>/`` per seed; a run folder is finished when it holds
``done.json``, written last (``save_run``), so an interrupted run is never taken as finished
and nothing finished is overwritten (``run_folders``).
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict
from pathlib import Path

import matplotlib.pyplot as plt
from safetensors.torch import save_file

from mtnb.core.errors import MtnbError


def resolved(path) -> str | None:
    """``path`` as an absolute path string, as run records keep folders (None stays None)."""
    return None if path is None else str(Path(path).resolve())


def check_seeds(seeds) -> list[int]:
    """``seeds`` as a list of distinct ints (at least one); MtnbError otherwise."""
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        seeds = [seeds]
    if not isinstance(seeds, (list, tuple)) or not seeds or \
            any(isinstance(s, bool) or not isinstance(s, int) for s in seeds):
        raise MtnbError(f"seeds {seeds!r}: give a list of integers, e.g. [0, 1, 2]")
    if len(set(seeds)) != len(seeds):
        raise MtnbError(f"seeds {seeds!r}: a seed is listed twice")
    return list(seeds)


def run_folders(output_dir: str | Path, seeds) -> dict[int, Path]:
    """``{seed: <output_dir>/seed-<seed>}``; MtnbError when one of them already holds a finished
    run (nothing computed is overwritten)."""
    output_dir = Path(output_dir)
    folders = {seed: output_dir / f"seed-{seed}" for seed in check_seeds(seeds)}
    for folder in [output_dir, *folders.values()]:
        if (folder / "done.json").is_file():
            raise MtnbError(f"{folder} already holds a finished run; choose another output folder")
    return folders


def save_run(folder: Path, state: dict, run_config: dict, curve, weights_file: str = "model.safetensors",
             figure=None) -> None:
    """Write a finished run: ``weights_file`` (fine-tuning: encoder and head in
    model.safetensors), ``run.json`` (what was run), ``curve.json`` (the dataclass ``curve``),
    ``curve.png`` (when ``figure``, a function returning a matplotlib figure, is given);
    ``done.json`` last, so a folder without it is never taken as finished."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "done.json").unlink(missing_ok=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(folder / weights_file))
    (folder / "run.json").write_text(json.dumps(run_config, indent=1))
    (folder / "curve.json").write_text(json.dumps(asdict(curve)))
    if figure is not None:
        fig = figure()
        fig.savefig(folder / "curve.png", dpi=120, bbox_inches="tight")
        plt.close(fig)
    (folder / "done.json").write_text(json.dumps({"finished": True}))


SEED_FOLDER = re.compile(r"^seed-(-?\d+)$")


def run_folders_in(run_dir: str | Path) -> list[Path]:
    """The run folders of ``run_dir``: itself when it is a run folder, else its ``seed-<k>``
    subfolders in seed order; MtnbError when it holds neither."""
    run_dir = Path(run_dir)
    if (run_dir / "run.json").is_file() or (run_dir / "done.json").is_file():
        return [run_dir]
    seeds = sorted((p for p in run_dir.glob("seed-*") if p.is_dir() and SEED_FOLDER.match(p.name)),
                   key=lambda p: int(SEED_FOLDER.match(p.name).group(1))) if run_dir.is_dir() else []
    if not seeds:
        raise MtnbError(f"{run_dir} holds no finished fine-tuning run (no run.json/done.json, no seed-* "
                        "folders); run notebooks/finetune.ipynb into it first")
    return seeds


def unlabelled(labels) -> bool:
    """True when every label is -1 (XGLUE test files released without labels)."""
    flat = [x for row in labels for x in (row if isinstance(row, list) else [row])]
    return all(x == -1 for x in flat)
