"""The Jupyter Book of a grid's runs: ``mtnb book GRID``.

Reads what ``mtnb run GRID`` left under ``runs/<grid>/`` and executes nothing: the jobs' records
(job.json, done.json, failed.json), the zero-shot results tables (every ``results.csv`` under a
finished job's output folder), the CKA job's and each SVD job's tables and figures, the benchmark
figures in ``runs/benchmarks/*.json`` and the executed notebooks of every kind (pretrain,
finetune, zeroshot, cka, svd). It writes a book source into
``runs/<grid>/book/`` and builds it with jupyter-book (1.x) into ``runs/<grid>/book/_build/html``:

    runs/<grid>/book/
        _config.yml         the project's _config.yml, execution off, this grid's title
        _toc.yml            generated
        overview.md         the grid, its jobs (done, failed, pending), wall times, the mtnb code
                            versions when jobs ran different ones, where things are
        results.md          the grid's family (when its ``book:`` key names one), Table 1 and
                            Table 4 analogs with 95% intervals over seeds, the transfer gap
        pretraining.md      what each pretrain job trained: steps, tokens, speed, held-out loss
                            before and after, chrF per direction beside its bars
        cka.md, svd.md      the CKA job's figures and tables; a section per SVD job
        performance.md      benchmark figures, job times and notebook start-up share
        about.md            the project's introduction (book/intro.md)
        figures/            figures copied from the runs or drawn here from their tables
        notebooks/<kind>.md, notebooks/<kind>/<id>.ipynb   the executed notebooks, titled by
                            their parameters

Jobs are the grid as it stands (``mtnb.study.runner.expand``): a folder left by an older version of
the grid or its notebooks is counted on the overview page but not shown. The numbers and
their intervals come from ``mtnb.study.summary``.
"""

from __future__ import annotations

import ast
import json
import math
import re
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import nbformat
import numpy as np
import pandas as pd
import yaml

from mtnb.analysis.paired_bootstrap import holm, paired_difference
from mtnb.analysis.separability import last_layer
from mtnb.analysis.svd import MATRICES, table5_layout
from mtnb.core.errors import MtnbError
from mtnb.core.paths import SOURCE_ROOT, project_root
from mtnb.models.registry import load_registry
from mtnb.study import paper
from mtnb.study.grids import Grid, load_grid, replica_name, shown
from mtnb.study.outputs import PRETRAINING_RECORDS, figure_path, read_table, read_tables
from mtnb.study.paper import AVERAGE_EXCLUDES
from mtnb.study.runner import Job, expand, job_states, read_json
from mtnb.study.summary import (CONTROLS, REPLICA, choose_split, family_finding, family_pairs, gap_table,
                                normalize, order_systems, p_text, paired_comparisons, paired_finding, per_language,
                                table1, table4, tasks_that_resolve)

KIND_TITLES = {"pretrain": "Pretraining", "finetune": "Fine-tuning", "zeroshot": "Zero-shot evaluation",
               "cka": "CKA", "svd": "SVD"}
PAGES = ("overview", "results", "pretraining", "cka", "svd", "performance", "about")


@dataclass
class Study:
    """What a grid's runs produced, read once: the jobs, their states and records, the
    results table (normalized, see ``mtnb.study.summary``) and the analysis jobs' output folders."""

    grid: Grid
    jobs: list[Job]
    states: dict[str, dict]
    records: dict[str, dict]
    results: object = None          # pandas DataFrame (normalized) or None
    raw: object = None              # the results tables as written, concatenated
    units: object = None            # the zero-shot jobs' per-example scores (units.csv.gz), or None
    results_files: list[Path] = field(default_factory=list)
    cka: Path | None = None         # the finished CKA job's output folder
    svds: dict[str, Path] = field(default_factory=dict)   # {base: output folder} of finished SVD jobs
    roles: dict[str, str] = field(default_factory=dict)
    stale: int = 0

    def done(self, kind: str | None = None) -> list[Job]:
        """The finished jobs (of one kind)."""
        return [j for j in self.jobs if j.id in self.records and (kind is None or j.kind == kind)]


# --------------------------------------------------------------------------------------------
# The command
# --------------------------------------------------------------------------------------------

def build_book(grid_name: str | Path, build: bool = True, quiet: bool = False) -> Path:
    """Write the book source of a grid's runs into runs/<grid>/book/ and (``build``) build it;
    returns the built index.html, or the source folder when not building."""
    study = collect(grid_name)
    src = study.grid.runs_dir / "book"
    start = time.perf_counter()
    write_source(study, src)
    if not quiet:
        print(f"{shown(src)}: book source written in {time.perf_counter() - start:.1f} s "
              f"({len(study.done())} finished jobs)", flush=True)
    if not build:
        return src
    start = time.perf_counter()
    index = run_jupyter_book(src)
    if not quiet:
        print(f"built in {time.perf_counter() - start:.1f} s; open {index}", flush=True)
    return index


def collect(grid_name: str | Path) -> Study:
    """Read the grid's job folders; MtnbError when no job of the grid has finished."""
    grid = load_grid(grid_name)
    jobs = expand(grid)
    states = {row["id"]: row for row in job_states(grid, jobs)}
    records = {j.id: read_json(j.folder / "done.json") for j in jobs if states[j.id]["status"] == "done"}
    if not records:
        raise MtnbError(f"grid {grid.name}: nothing has run yet in {shown(grid.runs_dir)} (0 of {len(jobs)} jobs "
                        f"done); run 'mtnb run {grid.name}' first")
    study = Study(grid=grid, jobs=jobs, states=states, records=records)
    tables, units = [], []
    for job in study.done():
        for path, table in read_tables(job.folder / "out", "results"):
            tables.append(table)
            study.results_files.append(path)
            per_example = read_table(path.parent, "units")
            if per_example is not None:
                units.append(per_example)
    if tables:
        study.raw = pd.concat(tables, ignore_index=True)
        study.results = normalize(study.raw)
    if units:
        study.units = pd.concat(units, ignore_index=True)
    if study.done("cka"):
        study.cka = study.done("cka")[0].folder / "out"
    study.svds = {job.parameters["base"]: job.folder / "out" for job in study.done("svd")}
    study.roles = _roles(grid)
    ours = {j.folder for j in jobs}
    study.stale = sum(1 for f in grid.runs_dir.glob("*/*") if f.is_dir() and (f / "job.json").is_file()
                      and f not in ours)
    return study


def _roles(grid: Grid) -> dict[str, str]:
    """{model: registry role (lm, cp, mt)} for the grid's models."""
    specs = load_registry(project_root() / grid.registry if grid.registry else None)
    return {m: specs[m].role for m in grid.models if m in specs}


def write_source(study: Study, src: Path) -> None:
    """The whole book source (an earlier one, with its build, is replaced)."""
    if src.exists():
        shutil.rmtree(src)
    (src / "figures").mkdir(parents=True)
    pages = {
        "overview": overview_page(study),
        "results": results_page(study, src / "figures"),
        "pretraining": pretraining_page(study),
        "cka": cka_page(study, src / "figures"),
        "svd": svd_page(study, src / "figures"),
        "performance": performance_page(study),
        "about": about_page(),
    }
    for name, text in pages.items():
        (src / f"{name}.md").write_text(text, encoding="utf-8")
    notebooks = write_notebooks(study, src / "notebooks")
    write_config(src, study.grid)
    write_toc(src, notebooks)


# --------------------------------------------------------------------------------------------
# Markdown helpers
# --------------------------------------------------------------------------------------------

def md_table(table, index: bool = True) -> str:
    """A pandas DataFrame as a Markdown pipe table (a MultiIndex's levels joined by spaces;
    floats as ``{:g}``: round them first)."""
    frame = table.reset_index() if index else table

    def cell(value) -> str:
        if isinstance(value, float):
            value = "" if math.isnan(value) else f"{value:g}"
        return str(value).replace("|", "\\|").replace("\n", " ").replace(" ± ", "\u00a0±\u00a0")

    header = [" ".join(str(c) for c in col).strip() if isinstance(col, tuple) else str(col) for col in frame.columns]
    lines = ["| " + " | ".join(cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def note(text: str) -> str:
    """A MyST note box."""
    return f"```{{note}}\n{text}\n```\n"


def figure(path: Path, alt: str) -> str:
    """A Markdown image of a file in figures/."""
    return f"![{alt}](figures/{path.name})\n"


def save(fig, path: Path) -> Path:
    """Write a matplotlib figure as PNG and close it."""
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def copy_figure(source: Path | None, figures: Path, name: str) -> Path | None:
    """Copy a job's PNG into figures/ as ``name``; None when the job did not write it."""
    if source is None or not source.is_file():
        return None
    return Path(shutil.copyfile(source, figures / name))


def _seconds(value: float) -> str:
    """``12.3 s`` or ``4.1 min``."""
    return f"{value:.1f} s" if value < 120 else f"{value / 60:.1f} min"


# --------------------------------------------------------------------------------------------
# Overview
# --------------------------------------------------------------------------------------------

def overview_page(study: Study) -> str:
    """The grid, its jobs by state, wall time per kind, and where things are."""
    grid = study.grid
    parts = [f"# Grid `{grid.name}`\n\n",
             f"This book shows what `mtnb run {grid.name}` produced under `{shown(grid.runs_dir)}/`. Building it "
             "executed nothing: every number comes from a notebook that papermill executed, and every executed "
             "notebook is in the book.\n",
             "\n## The grid\n\n", md_table(_grid_rows(study), index=False)]
    sections = [(kind, item) for kind, params in grid.sections.items()
                for item in (params if isinstance(params, list) else [params]) if item]
    sections += [(f"{kind}, {model}", params) for kind, models in grid.per_model.items()
                 for model, params in models.items()]
    if sections:
        parts.append("\nNotebook parameters set by the grid (the notebooks' defaults apply to the rest):\n\n")
        parts += [f"- **{kind}**: " + ", ".join(f"`{k}={v}`" for k, v in params.items()) + "\n" for kind, params in sections]
    parts += ["\n## Jobs\n\n", md_table(_job_rows(study), index=False)]
    code = _code_rows(study)
    if code is not None:
        parts += ["\nThe finished jobs ran different versions of the mtnb code (`code_hash` in their `done.json`: a "
                  "hash of the package's source files); numbers made by older code may not compare:\n\n",
                  md_table(code, index=False)]
    failed = [(j, study.states[j.id]["note"]) for j in study.jobs if study.states[j.id]["status"] == "failed"]
    if failed:
        parts.append("\nFailed jobs (their error; see `failed.json` in the job's folder):\n\n")
        parts += [f"- {j.kind} `{j.id}`: {message}\n" for j, message in failed]
    pending = sum(study.states[j.id]["status"] != "done" for j in study.jobs)
    if pending:
        parts.append("\n" + note(f"{pending} of {len(study.jobs)} jobs are not done: the pages show the finished "
                                 f"ones. `mtnb run {grid.name}` runs the rest (finished jobs are skipped)."))
    if study.stale:
        parts.append("\n" + note(f"{study.stale} job folder(s) in `{shown(grid.runs_dir)}` belong to an earlier "
                                 "version of the grid or its notebooks (other parameters or notebook content) and "
                                 "are not shown."))
    parts += ["\n## Where things are\n\n", md_table(_where_rows(study), index=False),
              "\n## Pages\n\n",
              "- [Results](results.md): " + ("the family, " if grid.book.get("family") else "")
              + "the averages over languages and per language, the transfer gap\n",
              "- [Pretraining](pretraining.md): what the zoo or the e5 family learned (losses, chrF, retrieval)\n",
              "- [CKA](cka.md) and [SVD](svd.md): representations and weights\n",
              "- [Performance](performance.md): benchmark figures, job times and notebook start-up\n",
              "- [About the study](about.md)\n"]
    return "".join(parts)


def _grid_rows(study: Study):
    """What the grid is: file, models, tasks, seeds, modes, analyses."""
    grid = study.grid
    modes = sorted(set(study.results.loc[~study.results["control"], "mode"])) if study.results is not None else []
    models = ", ".join(f"{m} ({study.roles.get(m, '?')})" for m in grid.models)
    tasks = "; ".join(f"{t} ({', '.join(grid.task_languages[t])})" for t in grid.tasks)
    rows = [("grid file", f"`{shown(grid.path)}`"), ("models (registry role)", models), ("tasks (languages)", tasks),
            ("seeds", ", ".join(map(str, grid.seeds))), ("modes", ", ".join(modes) or "(no results yet)"),
            ("analyses", ", ".join(k.upper() for k in ("cka", "svd") if k in grid.sections) or "none")]
    if grid.book.get("family"):
        rows.append(("family", f"{', '.join(grid.book['family'])} (base {grid.book['base']})"))
    return pd.DataFrame(rows, columns=["", "value"])


def _job_rows(study: Study):
    """Per kind: jobs by state, and the papermill wall time of the finished ones."""
    rows = []
    for kind in dict.fromkeys(j.kind for j in study.jobs):
        jobs = [j for j in study.jobs if j.kind == kind]
        count = {s: sum(study.states[j.id]["status"] == s for j in jobs)
                 for s in ("done", "failed", "blocked", "running", "pending")}
        wall = [study.records[j.id]["seconds"] for j in jobs if j.id in study.records]
        rows.append(dict(kind=kind, jobs=len(jobs), **count,
                         **{"wall time (sum)": _seconds(sum(wall)) if wall else "",
                            "median per job": _seconds(statistics.median(wall)) if wall else ""}))
    return pd.DataFrame(rows)


def _code_rows(study: Study):
    """Per mtnb code hash of the finished jobs: how many, of which kinds, the last finish; None
    when they all ran the same code."""
    by_code: dict[str, list[Job]] = {}
    for job in study.done():
        by_code.setdefault(study.records[job.id].get("code_hash") or "(not recorded)", []).append(job)
    if len(by_code) < 2:
        return None
    rows = [{"mtnb code": f"`{code}`" if code[0] != "(" else code, "jobs": len(jobs),
             "kinds": ", ".join(dict.fromkeys(j.kind for j in jobs)),
             "last finished": max(study.records[j.id].get("finished", "") for j in jobs)[:19].replace("T", " ")}
            for code, jobs in by_code.items()]
    return pd.DataFrame(rows).sort_values("last finished")


def _where_rows(study: Study):
    """Paths a reader may want."""
    runs = shown(study.grid.runs_dir)
    rows = [("the grid's runs", f"`{runs}/<kind>/<job id>/`"),
            ("a job's description, record", "`job.json`, `done.json` (or `failed.json`) in its folder"),
            ("executed notebooks", f"`{runs}/<kind>/<job id>/<kind>.ipynb`"),
            ("zero-shot results tables", f"`{runs}/zeroshot/<job id>/out/.../results.csv` "
                                         f"({len(study.results_files)} read)"),
            ("CKA tables and figures", f"`{shown(study.cka)}`" if study.cka else "(no finished CKA job)"),
            ("SVD tables and figures", ", ".join(f"`{shown(out)}`" for out in study.svds.values())
             or "(no finished SVD job)"),
            ("this book's source", f"`{runs}/book/`"),
            ("this book", f"`{runs}/book/_build/html/index.html`")]
    return pd.DataFrame(rows, columns=["what", "where"])


# --------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------

CI_NOTE = ("Each cell is the mean over seeds ± the half-width of its 95% confidence interval: Student's t "
           "interval, t(0.975, n−1)·s/√n with s the standard deviation over the n seeds (a cell without ± has "
           "one seed). Scores are on a 0-100 scale.")


def results_page(study: Study, figures: Path) -> str:
    """The family section (when declared), then Tables 1 and 4 analogs and the transfer gap."""
    parts = ["# Results\n"]
    if study.results is None:
        return parts[0] + "\n" + note("No finished zero-shot job has written a results table yet.")

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
    notes = [CI_NOTE, f"Split: {split}.",
             "Controls: the majority class and a bag-of-subwords classifier trained on the same English "
             "examples; a control's value for a seed is its mean over the models' runs of that seed (the "
             "bag of sub-words depends on the model's tokenizer)."]
    excluded = {t: langs for t, langs in AVERAGE_EXCLUDES.items() if t in set(table["task"])}
    if excluded:
        notes.append("As in the paper, " + "; ".join(f"the {t} average leaves out {', '.join(l)}"
                                                     for t, l in excluded.items()) + ".")
    if paper1 is not None:
        notes.append("Columns marked *paper* are the published numbers of Ji et al. (2024), Tables 1 and 4.")
    parts = ["\n## Average over languages (Table 1 analog)\n\n", " ".join(notes), "\n\n",
             md_table(table1(table, models, paper1)),
             "\n## Per language (Table 4 analog)\n\n", CI_NOTE, "\n"]
    for task, sub in table.groupby("task", sort=False):
        parts += [f"\n### {task} ({sub['metric'].iloc[0]})\n\n", md_table(table4(table, task, models, paper4)), "\n",
                  figure(save(plot_task(sub, models), figures / f"results-{task}.png"), f"{task} per language")]
    parts += ["\n## Transfer gap\n\nEnglish minus the mean of the other languages, per seed, then mean ± 95% "
              "interval over seeds. Larger means less of the English score carries over.\n\n",
              md_table(gap_table(table, models))]
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


# --------------------------------------------------------------------------------------------
# The family
# --------------------------------------------------------------------------------------------

def family_section(study: Study, split: str, figures: Path) -> str:
    """The grid's family (``book: {family, base, title}``), per mode when several: a table per
    task, the transfer gap, CKA and SVD against the base, then the paragraph on the paper's
    finding. Its controls are averaged over the family's runs only."""
    book = study.grid.book
    family, base = list(book["family"]), book["base"]
    title = book.get("title") or f"The {base} family"
    mt = [m for m in family if m != base and study.roles.get(m) == "cp"]
    controls = [m for m in family if m not in mt and m != base]
    parts = [f"\n## {title}\n\n",
             f"{base} and the models continued from it: on translation ({', '.join(mt) or 'none'}; registry "
             f"role `cp`) and on their own objective ({', '.join(controls) or 'none'}). {CI_NOTE}\n"]
    raw = study.raw[study.raw["model"].isin(family)]
    rows = normalize(raw) if len(raw) else study.results.iloc[:0]
    rows = rows[rows["split"] == split]
    modes = sorted(set(rows.loc[~rows["control"], "mode"]))
    if not modes:
        return "".join(parts) + "\n" + note("No finished zero-shot job covers the family yet.")
    for mode in modes:
        if len(modes) > 1:
            parts.append(f"\n### {mode}\n")
        parts.append(_family_tables(_one_mode(rows, mode), family, "###" if len(modes) == 1 else "####"))
    parts.append(_family_cka(study, family, base, figures))
    parts.append(_family_separability(study, base, mt, controls))
    parts.append(_family_svd(study, family, base))
    parts.append("\n### What this says about the paper's finding\n\n")
    for mode in modes:
        prefix = f"**{mode}.** " if len(modes) > 1 else ""
        paired = _paired_table(study, family, base, mt, controls, mode, split)
        if paired is not None and len(paired):
            parts.append(f"{prefix}Paired comparisons (difference in the non-English mean, points; 95% paired "
                         "bootstrap interval over test examples; Holm-adjusted p):\n\n"
                         + md_table(_paired_rows(paired), index=False) + "\n")
        parts.append(prefix + family_paragraph(_one_mode(rows, mode), base, mt, controls, study, paired) + "\n\n")
    records = pretraining_records(study)
    for evidence in (translation_evidence(records, mt), retrieval_evidence(records, family)):
        if evidence:
            parts.append(evidence + "\n\n")
    return "".join(parts)


def _one_mode(rows, mode: str):
    """The controls and the model rows of one mode, each model row labelled by its model."""
    sub = rows[rows["control"] | (rows["mode"] == mode)].copy()
    sub.loc[~sub["control"], "system"] = sub.loc[~sub["control"], "model"]
    return sub


def _family_tables(table, family: list[str], heading: str) -> str:
    """A table per task (family models and controls, per language) and the transfer gap."""
    parts = []
    for task, sub in table.groupby("task", sort=False):
        parts += [f"\n{heading} {task} ({sub['metric'].iloc[0]})\n\n", md_table(table4(table, task, family))]
    parts += [f"\n{heading} Transfer gap (English minus the other languages)\n\n",
              md_table(gap_table(table, family))]
    return "".join(parts)


def _family_cka(study: Study, family: list[str], base: str, figures: Path) -> str:
    """CKA between each variant and the base per layer (mean over languages), table and plot."""
    pairs = read_table(study.cka, "cka_model_pairs")
    head = f"\n### CKA against {base}, per layer\n\n"
    if pairs is None:
        return head + note("No finished CKA job: nothing to show.")
    per_layer = _cka_to_base(pairs, family, base)
    if per_layer is None:
        return head + note(f"The CKA job did not compare {base} with the family's other models.")
    path = save(plot_cka_to_base(per_layer, base), figures / "family-cka.png")
    return (head + f"Linear CKA between each model and {base} at the same layer (0 = embeddings), mean over the "
            "languages of the CKA samples.\n\n" + md_table(per_layer.round(3)) + "\n"
            + figure(path, f"CKA against {base} per layer"))


def _cka_to_base(pairs, family: list[str], base: str):
    """Rows variant, columns layer: CKA with ``base`` (mean over languages); None if absent."""
    rows = pairs[((pairs["model_a"] == base) & pairs["model_b"].isin(family))
                 | ((pairs["model_b"] == base) & pairs["model_a"].isin(family))].copy()
    if rows.empty:
        return None
    rows["variant"] = rows["model_b"].where(rows["model_a"] == base, rows["model_a"])
    table = rows.pivot_table(index="variant", columns="layer", values="cka", aggfunc="mean")
    table = table.reindex([m for m in family if m in table.index])
    table.columns = [f"layer {c}" for c in table.columns]
    return table


def plot_cka_to_base(per_layer, base: str):
    """One line per variant: CKA with the base against the layer."""
    matplotlib.use("Agg")

    fig, ax = plt.subplots(figsize=(5.5, 3.0))
    layers = [int(c.split()[-1]) for c in per_layer.columns]
    for variant, row in per_layer.iterrows():
        ax.plot(layers, row.values, marker="o", ms=3, label=variant)
    ax.set_xticks(layers)
    ax.set_xlabel("layer (0 = embeddings)")
    ax.set_ylabel(f"CKA with {base}")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


MEASURES = {"language-id": "language ID", "retrieval": "retrieval"}


def separability_comparisons(per_sample, base: str, mt: list[str], controls: list[str], *, n_boot: int = 2000,
                             seed: int = 0):
    """Paired comparisons of separability at each model's last layer, over the CKA samples'
    paragraphs: every other family member against ``base``, and every translation member against
    every control, for both measures. Columns ``comparison, measure, difference, low, high, p,
    p_holm`` (points, 95% paired bootstrap interval; Holm's correction across all rows)."""
    last = last_layer(per_sample)
    scores = {(m, measure): rows.sort_values("sample")["score"].to_numpy()
              for (m, measure), rows in last.groupby(["model", "measure"])}
    rows = []
    for a, b in family_pairs(base, mt, controls):
        for measure in MEASURES:
            if (a, measure) in scores and (b, measure) in scores:
                d = paired_difference(scores[(a, measure)], scores[(b, measure)], n_boot=n_boot, seed=seed)
                rows.append(dict(comparison=f"{a} − {b}", a=a, b=b, measure=measure, difference=d.mean,
                                 low=d.low, high=d.high, p=d.p))
    table = pd.DataFrame(rows, columns=["comparison", "a", "b", "measure", "difference", "low", "high", "p"])
    table["p_holm"] = holm(table["p"].to_numpy()) if len(table) else []
    return table


def separability_finding(table, base: str, mt: list[str], level: float = 0.05) -> str:
    """What the paired comparisons say about the paper's explanation: are the translation
    members more separable by language (language ID up, retrieval down) than ``base``?"""
    def verdict(rows, measure, more):
        """'by language ID, more separable: a; no difference resolved: b (within ±x points)'."""
        sub = rows[rows["measure"] == measure]
        up = sub[(sub["p_holm"] < level) & (sub["difference"] > 0)]["a"].tolist()
        down = sub[(sub["p_holm"] < level) & (sub["difference"] < 0)]["a"].tolist()
        flat = sub[sub["p_holm"] >= level]
        width = max((max(abs(r.low), abs(r.high)) for r in flat.itertuples()), default=0.0)
        parts = []
        if up:
            parts.append(f"{'more' if more else 'less'} separable: {', '.join(up)}")
        if down:
            parts.append(f"{'less' if more else 'more'} separable: {', '.join(down)}")
        if len(flat):
            parts.append(f"no difference resolved: {', '.join(flat['a'])} (within ±{width:.1f} points)")
        return f"by {MEASURES[measure]}, " + "; ".join(parts) if parts else ""

    rows = table[table["a"].isin(mt) & (table["b"] == base)]
    if rows.empty:
        return ""
    said = [verdict(rows, "language-id", True), verdict(rows, "retrieval", False)]
    return (f"The translation members against {base} at the last layer (paired bootstrap over the CKA samples' "
            f"paragraphs, Holm-corrected across the {len(table)} comparisons of the table): "
            + "; ".join(x for x in said if x) + ". The paper's explanation predicts more separable translation "
            "members: language ID up, retrieval down.")


def _family_separability(study: Study, base: str, mt: list[str], controls: list[str]) -> str:
    """Separability of the family's members against the base and the controls, paired."""
    head = "\n### Separability by language: the paper's explanation, measured\n\n"
    per_sample = read_table(study.cka, "separability_samples")
    if per_sample is None:
        return head + note("No separability table: the CKA job ran without `uncertainty` or on samples that are "
                           "not parallel.")

    table = separability_comparisons(per_sample, base, mt, controls)
    if table.empty:
        return head + note(f"The CKA job did not include {base} with the family's other models.")
    shown_table = table.assign(measure=table["measure"].map(MEASURES),
                               difference=[f"{r.difference:+.1f} [{r.low:+.1f}, {r.high:+.1f}]"
                                           for r in table.itertuples()],
                               p_holm=table["p_holm"].map(lambda v: p_text(v)))
    shown_table = shown_table.pivot(index="comparison", columns="measure", values=["difference", "p_holm"])
    shown_table.columns = [f"{measure}: {'Δ (points)' if what == 'difference' else 'p (Holm)'}"
                           for what, measure in shown_table.columns]
    order = list(dict.fromkeys(table["comparison"]))
    return (head + "Language ID: a linear probe's held-out accuracy at telling the languages apart; retrieval: top-1 "
            "accuracy of finding a paragraph's translation. Differences at each model's last layer, with paired "
            "95% bootstrap intervals over paragraphs and Holm-adjusted p-values.\n\n"
            + md_table(shown_table.reindex(order)) + "\n" + separability_finding(table, base, mt)
            + ceiling_note(per_sample, [base, *mt]) + "\n")


def ceiling_note(per_sample, models: list[str], ceiling: float = 99.0) -> str:
    """A sentence when language ID sits at its ceiling at the last layer of ``models`` (the
    probe tells the languages apart almost perfectly, so it cannot show one model more
    separable than another); else ''."""
    last = last_layer(per_sample)
    last = last[(last["measure"] == "language-id") & last["model"].isin(models)]
    means = last.groupby("model")["score"].mean()
    at = [m for m in models if m in means and means[m] >= ceiling]
    if not at:
        return ""
    return (f" Language ID is at its ceiling (≥ {ceiling:g}%) at the last layer of {len(at)} of {len(means)} of these "
            "models (" + ", ".join(f"{m} {means[m]:.1f}" for m in at) + "): a linear probe tells the languages apart "
            "almost perfectly, so this measure cannot show a member becoming more separable; retrieval carries the "
            "comparison.")


def _family_svd(study: Study, family: list[str], base: str) -> str:
    """The SVD distance of each variant to the base: mean d per matrix over layers, and the last
    layer (Table 2's layout)."""
    head = f"\n### SVD: how far each model's weights moved from {base}\n\n"
    if not study.svds:
        return head + note("No finished SVD job: nothing to show.")
    table = read_table(study.svds.get(base), "svd")
    if table is None:
        return head + note(f"No finished SVD job compares with {base} (they compare with "
                           f"{', '.join(study.svds)}).")
    table = table[table["model"].isin(family) & (table["model"] != base)]
    if table.empty:
        return head + note(f"The SVD job did not include the family's models other than {base}.")
    return (head + "d = ‖σ_model − σ_base‖₂ between the sorted singular values of each encoder weight matrix and "
            f"{base}'s: the mean over layers per matrix, over all of them, and at the last layer.\n\n"
            + md_table(_svd_summary(table, family)))


def _svd_summary(table, models: list[str]):
    """Rows model: the mean d per matrix over layers, over all matrices, and at the last layer."""
    last = table["layer"].max()
    out = table.pivot_table(index="model", columns="matrix", values="distance", aggfunc="mean")
    out = out.reindex(columns=[m for m in MATRICES if m in out.columns]).add_prefix("mean d ")
    out["mean d, all"] = table.groupby("model")["distance"].mean()
    out[f"mean d, layer {last}"] = table[table["layer"] == last].groupby("model")["distance"].mean()
    return out.reindex([m for m in models if m in out.index]).round(3)


def _paired_table(study: Study, family: list[str], base: str, mt: list[str], controls: list[str], mode: str,
                 split: str):
    """``summary.paired_comparisons`` of the family's comparisons on one mode and split, from the
    zero-shot jobs' per-example scores; None when the jobs wrote none."""
    if study.units is None:
        return None
    units = study.units
    member = units["model"].astype(str).str.extract(REPLICA)["member"].fillna(units["model"].astype(str))
    units = units[(units["system"] == "model") & (units["mode"] == mode) & (units["split"] == split)
                  & member.isin(family)]
    return paired_comparisons(units, family_pairs(base, mt, controls)) if len(units) else None


def _paired_rows(paired):
    """The paired comparisons as a table to read: one row per comparison and task."""
    return paired.assign(comparison=paired["a"] + " − " + paired["b"],
                         scores=[f"{r.a_score:.1f} vs {r.b_score:.1f}" for r in paired.itertuples()],
                         difference=[f"{r.difference:+.1f} [{r.low:+.1f}, {r.high:+.1f}]" for r in paired.itertuples()],
                         p_holm=paired["p_holm"].map(lambda v: p_text(v)))[
        ["comparison", "task", "scores", "difference", "p_holm"]].rename(columns={"p_holm": "p (Holm)"})


def family_paragraph(table, base: str, mt: list[str], controls: list[str], study: Study | None = None,
                     paired=None) -> str:
    """The family's verdict: ``mtnb.study.summary.paired_finding`` when the zero-shot jobs wrote
    per-example scores (``paired``), else ``family_finding`` from the intervals over seeds; plus,
    when the SVD job has the family, which translation variant moved furthest from the base."""
    if paired is not None and len(paired):
        kept, dropped = tasks_that_resolve(table, base)
        text = paired_finding(paired, base, mt, controls, tasks=kept, dropped=dropped)
    else:
        text = family_finding(table, base, mt, controls)
    svd = read_table(study.svds.get(base), "svd") if study is not None else None
    if svd is not None and svd["model"].isin(mt).any():
        moved = svd[svd["model"].isin(mt)].groupby("model")["distance"].mean().sort_values()
        text += (f" In the weights, {moved.index[-1]} moved furthest from {base} (mean d {moved.iloc[-1]:.3f} over "
                 f"layers and matrices; the paper's furthest mBART variant is o2m).")
    return text


BLIND_MARGIN = 10.0   # chrF points over the mismatched-source bar that count as reading the source
TRAINED = {"m2o": lambda d: d.endswith("-en"), "o2m": lambda d: d.startswith("en-"), "m2m": lambda d: True}


def translation_bars(record: dict) -> dict[str, tuple[bool, bool]]:
    """Per direction the member was trained on: (chrF >= copying the source, chrF >= the
    mismatched-source chrF + ``BLIND_MARGIN``). Empty without a chrF record."""
    if not record.get("chrf") or record.get("directions") not in TRAINED:
        return {}
    copy, blind = record.get("chrf_copy_source") or {}, record.get("chrf_mismatched_source") or {}
    return {d: (v >= copy.get(d, -math.inf), v >= blind.get(d, -math.inf) + BLIND_MARGIN)
            for d, v in record["chrf"].items() if TRAINED[record["directions"]](d)}


def translation_evidence(records: dict[str, dict], mt: list[str]) -> str:
    """One or two sentences on whether the translation variants learned to translate: per
    variant, its mean chrF over the directions it was trained on, beside the same directions'
    mean chrF when copying the source and when its decoder reads a mismatched source, and in
    how many of those directions it holds each bar (``translation_bars``; ``records``:
    ``pretraining_records``); then what the counts over all variants mean. Empty when no
    variant has a chrF record."""
    clauses, bars = [], []
    for m in mt:
        r = records.get(m) or {}
        ours_bars = translation_bars(r)
        if not ours_bars:
            continue
        dirs = list(ours_bars)
        ours = statistics.mean(r["chrf"][d] for d in dirs)
        means = [(name, statistics.mean(r[key][d] for d in dirs)) for name, key in
                 (("copying the source", "chrf_copy_source"), ("a mismatched source", "chrf_mismatched_source"))
                 if r.get(key)]
        reads, beats = sum(b for _, b in ours_bars.values()), sum(c for c, _ in ours_bars.values())
        clauses.append(f"{m} {ours:.1f} (" + ", ".join(f"{name} {value:.1f}" for name, value in means)
                       + f"; reads its source in {reads} and beats copying in {beats} of {len(dirs)} "
                       f"direction{'s' * (len(dirs) != 1)})")
        bars += ours_bars.values()
    if not clauses:
        return ""
    n, reads, beats = len(bars), sum(b for _, b in bars), sum(c for c, _ in bars)
    counts = (f"Over all the variants' trained directions, chrF is {BLIND_MARGIN:.0f} or more points above a "
              f"mismatched source in {reads} of {n} (the decoder reads its source) and at least that of copying the "
              f"source in {beats} of {n}. ")
    if reads == beats == n:
        verdict = "Every variant translates, so their encoders were trained by working translation models."
    elif reads >= n / 2:
        verdict = ("The decoders read their sources, so the encoders were trained by translation models that work, "
                   "weakly" + (": where copying scores higher, the names, numbers and interface terms a source shares "
                               "with its translation carry more characters than these translations get right."
                               if beats < n else "."))
    else:
        verdict = ("Most decoders barely read their sources: those variants learned the translation objective's loss "
                   "without learning to translate, so their encoders saw translation gradients, not a working "
                   "translation model; read their rows with that in mind.")
    return ("Did the translation variants learn to translate? Mean chrF over the directions each was trained on: "
            + "; ".join(clauses) + ". " + counts + verdict)


def retrieval_evidence(records: dict[str, dict], family: list[str]) -> str:
    """One or two sentences on what continued pretraining did to the sentence-level geometry the
    probes read: translation retrieval (top-1, mean over the directions) of the base before and
    of each member after (``records``: ``pretraining_records``), and which members lowered it.
    Empty when no member has a retrieval record."""
    members = [m for m in family if (records.get(m) or {}).get("retrieval_after")]
    if not members:
        return ""
    before = statistics.mean(records[members[0]]["retrieval_before"].values())
    after = {m: statistics.mean(records[m]["retrieval_after"].values()) for m in members}
    lowered = [m for m in members if after[m] < before]
    text = ("Translation retrieval on held-out pairs (top-1 accuracy of finding a sentence's translation by the cosine "
            f"of mean-pooled last-layer encodings, mean over the directions): the base {before:.1f} before, then "
            + ", ".join(f"{m} {after[m]:.1f}" for m in members) + ". ")
    if not lowered:
        return text + "No continued objective lowered it."
    return text + (f"Only {', '.join(lowered)} lowered it: where such a member also loses transfer, a likely reason "
                   "is that its objective eroded the sentence-level geometry that e5's contrastive training built and "
                   "that the probes read from the last layer." if len(lowered) < len(members) else
                   "Every continued objective lowered it.")



# --------------------------------------------------------------------------------------------
# Pretraining
# --------------------------------------------------------------------------------------------

def pretraining_records(study: Study) -> dict[str, dict]:
    """{member: the record its finished pretrain job saved beside the checkpoint}
    (``pretrain.json`` for the zoo, ``continued.json`` for the e5 family). A member trained
    with several pretraining seeds is keyed by its name for the grid's first seed (as the
    grid's registry names it), and by ``replica_name(member, seed)`` for the others."""
    records = {}
    for job in study.done("pretrain"):           # in the grid's order: a member's first seed first
        member = job.parameters["member"]
        key = replica_name(member, job.parameters.get("seed", 0)) if member in records else member
        for name in PRETRAINING_RECORDS:
            path = job.folder / "out" / member / name
            if path.is_file():
                records[key] = read_json(path)
    return records


def pretraining_page(study: Study) -> str:
    """Per member: objective, steps, tokens, speed, held-out loss; chrF per direction of every
    member with a decoder, beside copying the source and (e5) a mismatched source."""
    parts = ["# Pretraining\n\nWhat each pretrain job trained, from the record saved beside its checkpoint. The "
             "held-out loss is the objective's own (masked LM, denoising or translation) on fixed held-out "
             "batches, before training (untrained or base weights) and after.\n"]
    records = pretraining_records(study)
    if not records:
        return parts[0] + "\n" + note("No finished pretrain job: the grid trains no zoo or e5 member, or none has "
                                      "run yet.")
    rows = [{"member": m, "objective": r["objective"] + (f" ({r['directions']})" if r.get("directions") else ""),
             "steps": r["trained"]["steps"], "tokens": r["trained"]["tokens"],
             "seconds": round(r["trained"]["seconds"]), "tokens/s": round(r["tokens_per_second"] or 0),
             "held-out loss before": round(r["heldout_loss_before"], 2),
             "after": round(r["heldout_loss_after"], 2)} for m, r in records.items()]
    parts += ["\n## Training\n\n", md_table(pd.DataFrame(rows), index=False)]
    staged = [{"member": m, "stage": {"warmup": "1: head alone" + (", shared (loaded)" if stage.get("loaded") else ""),
                                      "joint": "2: encoder and head"}.get(name, name),
               "frozen": stage.get("frozen", ""), "steps": stage["steps"], "tokens": stage["tokens"],
               "seconds": round(stage["seconds"]), "held-out loss before": round(stage["heldout_loss_before"], 2),
               "after": round(stage["heldout_loss_after"], 2)}
              for m, r in records.items() for name, stage in (r.get("stages") or {}).items()]
    if staged:
        parts += ["\n## The two stages of the e5 family\n\n",
                  "Stage 1 trains the head alone on encoder states computed once (the encoder frozen; "
                  "me5-align has no head, so no stage 1; the translation members share one decoder warmed up on "
                  "all eight directions, trained by the first and loaded by the others, whose rows repeat its steps "
                  "and seconds); stage 2 trains encoder and head together, every member "
                  "for the same steps and encoder sequences per step. Held-out loss of each member's own "
                  "objective, before and after each stage.\n\n", md_table(pd.DataFrame(staged), index=False)]
    chrf = {m: r for m, r in records.items() if r.get("chrf")}
    if chrf:
        table = {}
        for m, r in chrf.items():
            table[m] = r["chrf"]
            if r.get("chrf_mismatched_source"):
                table[f"{m}, mismatched source"] = r["chrf_mismatched_source"]
        # copying the source, on as many test pairs as each member was scored on
        sizes = {r["budget"].get("eval_pairs"): r["chrf_copy_source"] for r in chrf.values()
                 if r.get("chrf_copy_source") and isinstance(r.get("budget"), dict)}
        for n, copy in sizes.items():
            table["copy the source" + (f" (first {n} pairs)" if len(sizes) > 1 else "")] = copy
        frame = pd.DataFrame(table).T.round(1)
        frame.index.name = "system"
        parts += ["\n## Translation: chrF per direction\n\n",
                  "Greedy translations of the first test pairs of every direction (sacrebleu's chrF, 0-100; "
                  "how many pairs: each member's `eval_pairs` budget). "
                  "A continued model is trained on some directions only (m2o: into English, o2m: out of it). "
                  "*Copy the source* scores the source sentence itself as the translation: names, numbers and "
                  "markup that the languages share. *Mismatched source* gives the same e5 model another test "
                  "sentence's encoding: what its decoder's target-language model scores without reading the "
                  "source; a model that translates beats both.\n\n", md_table(frame)]
        bars = {m: translation_bars(r) for m, r in chrf.items()}
        bars = {m: b for m, b in bars.items() if b}
        if bars:
            marks = pd.DataFrame({m: {d: ("copy " + ("yes" if c else "no") + f", mismatched + {BLIND_MARGIN:.0f} "
                                          + ("yes" if x else "no")) for d, (c, x) in b.items()}
                                  for m, b in bars.items()}).T.fillna("")
            marks.index.name = "member"
            parts += ["\n### The bars, direction by direction\n\n",
                      "For each direction a member was trained on: is its chrF at least that of copying the source, "
                      f"and at least {BLIND_MARGIN:.0f} points above its own mismatched-source chrF?\n\n",
                      md_table(marks)]
    retrieval = {m: r for m, r in records.items() if r.get("retrieval_after")}
    if retrieval:
        base = next(iter(retrieval.values()))["retrieval_before"]
        frame = pd.DataFrame({"base (before)": base, **{m: r["retrieval_after"] for m, r in retrieval.items()}}).T.round(1)
        frame.index.name = "encoder"
        parts += ["\n## Translation retrieval\n\n",
                  "Top-1 accuracy (%) of finding each test sentence's translation among the other language's "
                  "sentences by the cosine of mean-pooled last-layer encodings, per direction (query-candidates), on "
                  "the same first test pairs as chrF: the base before continued pretraining, then each member after "
                  "it. Explicit alignment (me5-align) trains for exactly this.\n\n", md_table(frame)]
    return "".join(parts)


# --------------------------------------------------------------------------------------------
# CKA and SVD
# --------------------------------------------------------------------------------------------

def cka_page(study: Study, figures: Path) -> str:
    """The CKA job's two figures and per-layer tables."""
    parts = ["# CKA\n\nLinear CKA (Kornblith et al., 2019) between pooled hidden states of every layer on the "
             "same samples: model against model (the paper's Figure 1) and language against language (its "
             "Figure 2).\n"]
    pairs, langs = read_table(study.cka, "cka_model_pairs"), read_table(study.cka, "cka_language_pairs")
    if pairs is None and langs is None:
        return parts[0] + "\n" + note("No finished CKA job" + ("" if "cka" in study.grid.sections
                                                                else ": the grid has no cka section") + ".")
    job = study.done("cka")[0]
    parts.append(f"\nParameters: " + ", ".join(f"`{k}={v}`" for k, v in job.parameters.items()) + "\n")
    if pairs is not None:
        parts += ["\n## Model against model\n\nMean over languages, per layer (0 = embeddings).\n\n",
                  md_table(pairs.assign(pair=pairs["model_a"] + " / " + pairs["model_b"])
                           .pivot_table(index="pair", columns="layer", values="cka", sort=False).round(3))]
        path = copy_figure(figure_path(study.cka, "cka_model_pairs_figure"), figures, "cka_model_pairs.png")
        parts.append("\n" + (figure(path, "CKA model against model") if path else note("The job wrote no figure.")))
    if langs is not None:
        parts += ["\n## Language against language\n\nMean over language pairs, per layer; higher means more "
                  "language-agnostic representations.\n\n",
                  md_table(langs.pivot_table(index="model", columns="layer", values="cka", sort=False).round(3))]
        path = copy_figure(figure_path(study.cka, "cka_language_pairs_figure"), figures, "cka_language_pairs.png")
        parts.append("\n" + (figure(path, "CKA language against language") if path else note("The job wrote no figure.")))
    parts.append(cka_uncertainty_section(pairs, job.parameters, study.cka, figures))
    parts.append(separability_section(study.cka, figures))
    return "".join(parts)


def cka_uncertainty_section(pairs, parameters: dict, folder: Path, figures: Path) -> str:
    """The debiased CKA's bootstrap intervals and the permutation null (chance level)."""
    head = "\n## How precise is CKA here, and what does chance reach?\n\n"
    if pairs is None or "null_biased" not in pairs:
        return head + note("The CKA job ran without `uncertainty`: no intervals.")
    n = parameters.get("n_samples", "n")
    text = (f"At n = {n} samples, biased CKA between *unrelated* representations (one side's rows shuffled) "
            f"reaches {pairs['null_biased'].median():.2f} (the permutation null's 95th percentile, median over "
            f"model pairs and layers; from {pairs['null_biased'].min():.2f} to {pairs['null_biased'].max():.2f}); "
            f"debiased CKA reaches {pairs['null_debiased'].median():.2f}. The debiased value's 95% bootstrap "
            f"interval over samples is {(pairs['high'] - pairs['low']).median():.2f} wide (median). Last layer, "
            "debiased CKA with its interval, beside the biased value and the biased chance level:\n\n")
    last = pairs[pairs["layer"] == pairs["layer"].max()].copy()
    last["pair"] = last["model_a"] + " / " + last["model_b"]
    last["debiased [95%]"] = [f"{r.debiased:.2f} [{r.low:.2f}, {r.high:.2f}]" for r in last.itertuples()]
    table = last.pivot_table(index="pair", columns="lang", values="debiased [95%]", aggfunc="first", sort=False)
    biased = last.groupby("pair", sort=False).agg(biased=("biased", "mean"), chance=("null_biased", "max")).round(2)
    table = table.join(biased.rename(columns={"biased": "biased (mean)", "chance": "biased chance"}))
    path = copy_figure(figure_path(folder, "cka_intervals_figure"), figures, "cka_intervals.png")
    return (head + text + md_table(table) + "\n"
            + (figure(path, "debiased CKA with intervals and chance level") if path else ""))


def separability_section(folder: Path | None, figures: Path) -> str:
    """Language ID and retrieval per model and layer, and mutual k-NN with the base."""
    head = "\n## Separability by language\n\n"
    summary = read_table(folder, "separability")
    if summary is None:
        return head + note("No separability table: the CKA job ran without `uncertainty` or on samples that are "
                           "not parallel.")
    last = last_layer(summary).copy()
    last["cell"] = [f"{r.value:.1f} [{r.low:.1f}, {r.high:.1f}]" for r in last.itertuples()]
    table = last.pivot_table(index="model", columns="measure", values="cell", aggfunc="first", sort=False)
    table.columns = [{"language-id": "language ID (%)", "retrieval": "retrieval top-1 (%)"}.get(c, c)
                     for c in table.columns]
    parts = [head, "The paper's explanation is *output separability*. Measured on the parallel CKA samples: a linear "
             "probe's held-out accuracy at telling the languages apart (folds split paragraphs; high = separable) "
             "and top-1 retrieval of each paragraph's translation by cosine (high = a shared space). Last layer, "
             "with 95% bootstrap intervals over paragraphs:\n\n", md_table(table)]
    path = copy_figure(figure_path(folder, "separability_figure"), figures, "separability.png")
    if path:
        parts.append("\n" + figure(path, "separability per layer"))
    knn = read_table(folder, "mutual_knn")
    if knn is not None and len(knn):
        base = knn["model_a"].iloc[0]
        per = last_layer(knn, "model_b")
        per = per.groupby("model_b", sort=False)["value"].mean().round(3)
        parts.append(f"\nMutual {knn['k'].iloc[0]}-nearest-neighbour alignment with {base} at the last layer (mean over languages; "
                     "1 = the same neighbourhoods), a similarity measure beside CKA: "
                     + ", ".join(f"{m} {v:.2f}" for m, v in per.items()) + ".\n")
    return "".join(parts)


def svd_page(study: Study, figures: Path) -> str:
    """Each SVD job's Table 2 and Table 5 layouts (with the paper's values for mBART) and plot."""
    parts = ["# SVD\n\nSingular values σ of each encoder weight matrix: the norm ‖σ‖₂ (= the Frobenius norm) "
             "and the distance d = ‖σ_model − σ_base‖₂ to the base model, as the paper's Tables 2 and 5.\n"]
    if not study.svds:
        return parts[0] + "\n" + note("No finished SVD job" + ("" if "svd" in study.grid.sections
                                                                else ": the grid has no svd section") + ".")
    for i, (base, out) in enumerate(study.svds.items()):
        parts.append(_svd_section(base, out, figures, f"svd-{i}.png"))
    return "".join(parts)


def _svd_section(base: str, out: Path, figures: Path, figure_name: str) -> str:
    """One SVD job: the last layer, the mean distance per matrix, every layer, the plot."""
    table = read_table(out, "svd")
    models = list(dict.fromkeys(table["model"])) if table is not None else []
    parts = [f"\n## {', '.join(m for m in models if m != base) or 'models'} against {base}\n"]
    if table is None:
        return parts[0] + "\n" + note(f"The job finished without writing `{shown(out / 'svd.csv')}`.")
    published = None
    if base == "mbart" and set(models) <= set(paper.PAPER_MODELS):
        published = paper.svd_tables()
        published = published[published["model"].isin(models)]
        parts.append("\nColumns marked *paper* are the published values (Tables 2 and 5).\n")
    last = int(table["layer"].max())
    parts += [f"\n### The last layer ({last}; Table 2 layout)\n\n",
              md_table(table5_layout(table[table["layer"] == last], published)),
              "\n### Mean distance to the base over layers, per matrix\n\n",
              md_table(_svd_summary(table[table["model"] != base], models)),
              "\n### Every layer (Table 5 layout)\n\n", md_table(table5_layout(table, published))]
    path = copy_figure(figure_path(out, "svd_figure"), figures, figure_name)
    parts.append("\n" + (figure(path, f"norm of singular values per layer, against {base}") if path
                         else note("The job wrote no figure.")))
    return "".join(parts)


# --------------------------------------------------------------------------------------------
# Performance
# --------------------------------------------------------------------------------------------

def performance_page(study: Study) -> str:
    """Benchmark figures (runs/benchmarks/*.json) and the grid's job times."""
    parts = ["# Performance\n\n## The grid's jobs\n\n", _timing_text(study), "\n",
             md_table(_timing_rows(study), index=False), "\n## Benchmarks\n\n"]
    files = sorted((project_root() / "runs" / "benchmarks").glob("*.json"))
    if not files:
        parts.append(note("No benchmark results in `runs/benchmarks/`: run the scripts in `benchmarks/` "
                          "(each writes its JSON there)."))
    for path in files:
        parts += [f"\n### {path.stem}\n\n", _benchmark_description(path.stem), "\n\n",
                  md_table(_benchmark_rows(json.loads(path.read_text(encoding="utf-8"))), index=False)]
    return "".join(parts)


def _timing_text(study: Study) -> str:
    """The run's span and the share of job time spent outside the notebooks' cells."""
    records = list(study.records.values())
    starts = [r["started"] for r in records if r.get("started")]
    ends = [r["finished"] for r in records if r.get("finished")]
    total = sum(r.get("job_seconds", r["seconds"]) for r in records)
    cells = sum(r.get("cells_seconds", 0) for r in records)
    kernel = sum(r.get("startup_seconds", 0) for r in records)

    span = (datetime.fromisoformat(max(ends)) - datetime.fromisoformat(min(starts))).total_seconds()
    return (f"{len(records)} finished jobs took {_seconds(total)} of job time in all; from the first start to the "
            f"last finish {_seconds(span)} passed (wall clock, across every `mtnb run` that did them). "
            f"Outside the notebooks' code cells (job process start, kernel start, notebook reading and writing) "
            f"went {_seconds(total - cells)}, **{100 * (total - cells) / total:.0f}%** of the job time; the kernel "
            f"start and notebook I/O alone {_seconds(kernel)} ({100 * kernel / total:.0f}%). Imports inside the "
            "notebooks count as cell time. Times come from each job's `done.json` (papermill's per-cell "
            "durations).\n")


def _timing_rows(study: Study):
    """Per kind: job count, total and median job time, time in cells and outside them."""
    rows = []
    for kind in dict.fromkeys(j.kind for j in study.done()):
        recs = [study.records[j.id] for j in study.done(kind)]
        total = [r.get("job_seconds", r["seconds"]) for r in recs]
        cells = [r.get("cells_seconds", 0) for r in recs]
        rows.append({"kind": kind, "jobs": len(recs), "job time (sum)": _seconds(sum(total)),
                     "median per job": _seconds(statistics.median(total)),
                     "in cells (sum)": _seconds(sum(cells)),
                     "kernel start + I/O (median)": _seconds(statistics.median(r.get("startup_seconds", 0) for r in recs)),
                     "outside cells": f"{100 * (sum(total) - sum(cells)) / sum(total):.0f}%"})
    return pd.DataFrame(rows)


def _benchmark_description(name: str) -> str:
    """The first paragraph of ``benchmarks/bench_<name>.py``'s docstring."""
    for root in (project_root(), SOURCE_ROOT):
        script = root / "benchmarks" / f"bench_{name}.py"
        if script.is_file():
            doc = ast.get_docstring(ast.parse(script.read_text(encoding="utf-8"))) or ""
            first = doc.split("\n\n")[0].replace("\n", " ")
            return f"From `benchmarks/{script.name}`: {first}"
    return f"(No script `benchmarks/bench_{name}.py` describes it.)"


def _benchmark_rows(doc, prefix: str = "", limit: int = 40):
    """A benchmark's JSON as (figure, value) rows: every number, string or short list, nested
    keys joined by dots; long lists and lists of records are left out."""
    rows = []

    def walk(value, key):
        if isinstance(value, dict):
            for k, v in value.items():
                walk(v, f"{key}.{k}" if key else str(k))
        elif isinstance(value, list):
            if len(value) <= 6 and all(isinstance(v, (int, float, str, bool)) for v in value):
                rows.append((key, ", ".join(_figure(v) for v in value)))
        else:
            rows.append((key, _figure(value)))
    walk(doc, prefix)
    if len(rows) > limit:
        rows = rows[:limit] + [("…", f"{len(rows) - limit} more in the JSON file")]
    return pd.DataFrame(rows, columns=["figure", "value"])


def _figure(value) -> str:
    """A number with 4 significant digits; anything else as text."""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


# --------------------------------------------------------------------------------------------
# About, notebooks, configuration
# --------------------------------------------------------------------------------------------

def about_page() -> str:
    """The project's introduction (book/intro.md), retitled."""
    for root in (project_root(), SOURCE_ROOT):
        intro = root / "book" / "intro.md"
        if intro.is_file():
            return re.sub(r"^# .*", "# About the study", intro.read_text(encoding="utf-8"), count=1)
    return "# About the study\n\nJi et al. (2024), reproduced by mtnb.\n"


def notebook_title(job: Job, by_id: dict[str, Job]) -> str:
    """A title from the job's parameters (a zero-shot job's from its fine-tuning job's)."""
    p = dict(job.parameters)
    if job.kind == "zeroshot" and job.deps and job.deps[0] in by_id:
        p = {**by_id[job.deps[0]].parameters, **p}
    if job.kind in ("finetune", "zeroshot"):
        listed = [p["seed"]] if "seed" in p else p.get("seeds", [])
        seeds = f"seed{'s' if len(listed) > 1 else ''} {', '.join(map(str, listed))}"
        mode = f", {p['mode']}" if p.get("mode") else ""
        return f"{KIND_TITLES[job.kind]}: {p.get('model', '?')} on {p.get('task', '?')}, {seeds}{mode}"
    if job.kind == "pretrain":
        return f"Pretraining: {p.get('member', '?')}" + (f" ({p['budget']} budget)" if p.get("budget") else "")
    if job.kind == "cka":
        return f"CKA: {', '.join(p.get('models', []))}"
    if job.kind == "svd":
        return f"SVD: {', '.join(p.get('models', []))} against {p.get('base')}"
    return f"{job.kind} {job.id}"


def write_notebooks(study: Study, folder: Path) -> dict[str, list[str]]:
    """Copy each finished job's executed notebook to notebooks/<kind>/<id>.ipynb with a title
    cell, and write notebooks/<kind>.md listing them; returns {kind: [page names]}."""
    by_id = {j.id: j for j in study.jobs}
    pages: dict[str, list[str]] = {}
    for kind in dict.fromkeys(j.kind for j in study.done()):
        jobs = sorted(study.done(kind), key=lambda j: notebook_title(j, by_id))
        (folder / kind).mkdir(parents=True, exist_ok=True)
        rows = []
        for job in jobs:
            source = job.folder / f"{kind}.ipynb"
            if not source.is_file():
                continue
            nb = nbformat.read(source, as_version=4)
            title = notebook_title(job, by_id)
            for cell in nb.cells:
                if cell.cell_type == "markdown":
                    cell.source = re.sub(r"^(#+) ", r"\1# ", cell.source, flags=re.M)
            header = (f"# {title}\n\nJob `{job.id}`, executed by papermill in "
                      f"{_seconds(study.records[job.id]['seconds'])}; copied from `{shown(source)}`.")
            nb.cells.insert(0, nbformat.v4.new_markdown_cell(header))
            nbformat.write(nb, folder / kind / f"{job.id}.ipynb")
            pages.setdefault(kind, []).append(f"notebooks/{kind}/{job.id}")
            rows.append((title, f"{{doc}}`{job.id} <{kind}/{job.id}>`", _seconds(study.records[job.id]["seconds"])))
        text = (f"# {KIND_TITLES.get(kind, kind)}\n\nThe executed `notebooks/{kind}.ipynb` of each finished job, as "
                "papermill left it.\n\n" + md_table(pd.DataFrame(rows, columns=["notebook", "job", "papermill time"]),
                                                     index=False))
        (folder / f"{kind}.md").write_text(text, encoding="utf-8")
    return pages


def write_config(src: Path, grid: Grid) -> None:
    """_config.yml: the project's, with this grid's title, execution off, and only this folder."""
    config = {}
    for root in (project_root(), SOURCE_ROOT):
        if (root / "_config.yml").is_file():
            config = yaml.safe_load((root / "_config.yml").read_text(encoding="utf-8")) or {}
            break
    config.update(title=f"{config.get('title') or 'mtnb'} (grid {grid.name})", only_build_toc_files=True,
                  exclude_patterns=["_build", "**/.ipynb_checkpoints"], execute={"execute_notebooks": "off"})
    config.setdefault("sphinx", {}).setdefault("config", {})["myst_heading_anchors"] = 3
    (src / "_config.yml").write_text("# Generated by mtnb book: do not edit (rebuilt each time).\n"
                                     + yaml.safe_dump(config, sort_keys=False, allow_unicode=True), encoding="utf-8")


def write_toc(src: Path, notebooks: dict[str, list[str]]) -> None:
    """_toc.yml: the pages, then a part with the executed notebooks by kind."""
    toc = {"format": "jb-book", "root": "overview",
           "parts": [{"caption": "The study", "chapters": [{"file": p} for p in PAGES if p != "overview"]}]}
    if notebooks:
        toc["parts"].append({"caption": "Executed notebooks", "chapters": [
            {"file": f"notebooks/{kind}", "sections": [{"file": page} for page in pages]}
            for kind, pages in notebooks.items()]})
    (src / "_toc.yml").write_text("# Generated by mtnb book.\n" + yaml.safe_dump(toc, sort_keys=False), encoding="utf-8")


def jupyter_book() -> str:
    """The jupyter-book executable of this environment."""
    local = Path(sys.executable).parent / "jupyter-book"
    found = str(local) if local.exists() else shutil.which("jupyter-book")
    if not found:
        raise MtnbError("jupyter-book is not installed: pip install -e '.[docs]'")
    return found


def run_jupyter_book(src: Path) -> Path:
    """Build the book in ``src`` (log in src/build.log); returns _build/html/index.html."""
    out = subprocess.run([jupyter_book(), "build", str(src)], capture_output=True, text=True)
    (src / "build.log").write_text(out.stdout + out.stderr, encoding="utf-8")
    index = src / "_build" / "html" / "index.html"
    if out.returncode != 0 or not index.is_file():
        tail = (out.stdout + out.stderr).strip().splitlines()[-1:] or ["no output"]
        raise MtnbError(f"jupyter-book build of {shown(src)} failed (exit {out.returncode}): {tail[0]} "
                        f"(full log: {shown(src / 'build.log')})")
    return index
