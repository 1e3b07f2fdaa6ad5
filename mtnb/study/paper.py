"""The published numbers of Ji et al. (2024), kept as data to show beside ours.

``mtnb/paper_data/`` holds the paper's tables transcribed to CSV: Table 1 (average score per
task and model), Table 4 (per-language zero-shot scores; ``language == "avg"`` is the paper's
own average, and its WPR average leaves Chinese out) and Tables 2 and 5 (norm of the singular
values of each encoder weight matrix per layer, and the distance to mBART's). Model names are
the registry's: mbert, xlmr, mbart, mbart-m2o, mbart-o2m, mbart-m2m, nllb-600m; tasks: nc, xnli,
pawsx (our paws-x), qam, qadsm, wpr, ner, pos.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

DATA = Path(__file__).parent / "paper_data"
PAPER_MODELS = ("mbert", "xlmr", "mbart", "mbart-m2o", "mbart-o2m", "mbart-m2m", "nllb-600m")
TASK_NAMES = {"pawsx": "paws-x"}  # the CSVs' task names -> ours
# languages a task's published average leaves out (its README: WPR's avg is de en es fr it pt)
AVERAGE_EXCLUDES = {"wpr": ("zh",)}


def _read(name: str):
    table = pd.read_csv(DATA / name)
    if "task" in table.columns:
        table["task"] = table["task"].replace(TASK_NAMES)
    return table


def table1():
    """Table 1: columns task, model, score (0-100)."""
    return _read("table1_average.csv")


def table4():
    """Table 4: columns task, model, language, score (0-100); language 'avg' is the paper's mean."""
    return _read("table4_per_language.csv")


def svd_tables():
    """Tables 2 and 5: columns layer (0-11), model, matrix (k q v out fc1 fc2), sigma_norm,
    distance (to mBART; 0 for mBART itself)."""
    return _read("svd_tables2_5.csv").rename(columns={"distance_to_mbart": "distance"})
