"""The results page: the family section (``family``), Table 1 and Table 4 analogs with 95%
intervals over seeds, the transfer gap.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np

from mtnb.study import paper
from mtnb.study.book.collect import Study
from mtnb.study.book.family import family_section
from mtnb.study.book.markdown import figure, md_table, note, prose, save
from mtnb.study.paper import AVERAGE_EXCLUDES
from mtnb.study.summary import choose_split, CONTROLS, gap_table, order_systems, per_language, table1, table4


def results_page(study: Study, figures: Path) -> str:
    """The family section (when declared), then Tables 1 and 4 analogs and the transfer gap."""
    parts = ["# Results\n"]
    if study.results is None:
        return parts[0] + "\n" + note(prose("results", "no-results"))

    split = choose_split(study.results)
    table = study.results[study.results["split"] == split]
    if study.grid.book.get("family"):
        parts.append(family_section(study, split, figures))
    parts.append(_tables_section(study, table, split, figures))
    return "".join(parts)


def _paper(table):
    """The paper's Table 1 and Table 4 when the results cover any of its (task, model) pairs."""
    t1, t4 = paper.table1(), paper.table4()
    ours = set(zip(table["task"], table["model"]))
    return (t1, t4) if ours & set(zip(t1["task"], t1["model"])) else (None, None)


def _tables_section(study: Study, table, split: str, figures: Path) -> str:
    """Table 1 and Table 4 analogs, the transfer gap, a figure per task."""
    models = study.grid.models
    paper1, paper4 = _paper(table)
    notes = [prose("results", "ci-note"), f"Split: {split}.", prose("results", "controls")]
    excluded = {t: langs for t, langs in AVERAGE_EXCLUDES.items() if t in set(table["task"])}
    if excluded:
        notes.append("As in the paper, " + "; ".join(f"the {t} average leaves out {', '.join(l)}"
                                                     for t, l in excluded.items()) + ".")
    if paper1 is not None:
        notes.append(prose("results", "paper-columns"))
    parts = ["\n## Average over languages (Table 1 analog)\n\n", " ".join(notes), "\n\n",
             md_table(table1(table, models, paper1)),
             "\n## Per language (Table 4 analog)\n\n", prose("results", "ci-note"), "\n"]
    for task, sub in table.groupby("task", sort=False):
        parts += [f"\n### {task} ({sub['metric'].iloc[0]})\n\n", md_table(table4(table, task, models, paper4)), "\n",
                  figure(save(plot_task(sub, models), figures / f"results-{task}.png"), f"{task} per language")]
    parts += ["\n" + prose("results", "transfer-gap") + "\n\n", md_table(gap_table(table, models))]
    return "".join(parts)


def plot_task(table, models: list[str]):
    """Bars per language for each system, with their 95% intervals as error bars."""
    matplotlib.use("Agg")

    stats = per_language(table)
    systems = order_systems(stats["system"], models)
    langs = list(dict.fromkeys(table["language"]))
    width = 0.8 / len(systems)
    fig, ax = plt.subplots(figsize=(min(14.0, max(5.0, 0.2 * len(langs) * len(systems))), 3.4))
    for i, system in enumerate(systems):
        rows = stats[stats["system"] == system].set_index("language").reindex(langs)
        ax.bar(np.arange(len(langs)) + (i - (len(systems) - 1) / 2) * width, rows["mean"], width,
               yerr=rows["half"].fillna(0), capsize=2, label=system,
               hatch="//" if system in CONTROLS else None)
    ax.set_xticks(range(len(langs)), langs)
    ax.set_ylabel(f"{table['metric'].iloc[0]} (0-100)")
    ax.set_title(f"{table['task'].iloc[0]}: mean and 95% interval over seeds")
    ax.legend(fontsize=7, ncol=1 + len(systems) // 6)
    fig.tight_layout()
    return fig
