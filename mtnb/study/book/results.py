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
from mtnb.study.book.markdown import copy_figure, figure, md_table, note, prose, save
from mtnb.study.outputs import figure_path, read_table
from mtnb.study.runner import read_json
from mtnb.transfer.layer_sweep import best_layer, layer_means
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
    parts.append(layers_section(study, figures))
    parts.append(_tables_section(study, table, split, figures))
    return "".join(parts)


def layers_section(study: Study, figures: Path) -> str:
    """The layer sweep (when the grid ran one): scores by layer per task, the layer English dev
    picks against the one the grid probes, and the figure; '' without a finished sweep."""
    sweep = read_table(study.layer_sweep, "layer_sweep")
    if sweep is None or not len(sweep):
        return ""
    job = study.done("layer_sweep")[0]
    model, seeds = job.parameters["model"], sorted(set(sweep["seed"]))
    parts = ["\n" + prose("results", "layers", model=model,
                           seeds=f"seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))}") + "\n\n"]
    for task, rows in sweep.groupby("task", sort=False):
        best = best_layer(rows)
        probed = probed_layer(study, model, task)
        if probed is None:
            verdict, probed_text = " (no probe job of the grid reads this task)", "—"
        else:
            probed_text = str(probed)
            verdict = (", the same" if probed == best else
                       f", not the one dev picks (set `finetune.per_task.{task}.probe_layer: {best}` in the grid)")
        means = layer_means(rows).round(1)
        means.columns = ["English dev", "English test", "other languages, test"]
        parts += [prose("results", "layer-choice", task=task, best=best, probed=probed_text, verdict=verdict),
                  "\n\n", md_table(means), "\n"]
    path = copy_figure(figure_path(study.layer_sweep, "layer_sweep_figure"), figures, "layer_sweep.png")
    if path is not None:
        parts.append(figure(path, "probe scores against the layer probed"))
    return "".join(parts)


def probed_layer(study: Study, model: str, task: str) -> int | None:
    """The layer (0 = embeddings) the grid's probe job of ``model`` on ``task`` reads, from its
    runs' records (so -1 is resolved to the last); None when there is no such finished probe job."""
    for job in study.done("finetune"):
        if job.parameters.get("model") == model and job.parameters.get("task") == task:
            for record in sorted((job.folder / "out").glob("seed-*/run.json")):
                layer = read_json(record).get("layer_index")
                if layer is not None:
                    return int(layer)
    return None


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
