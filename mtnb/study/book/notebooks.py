"""The executed notebooks in the book: one page per kind, each notebook titled by its parameters.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pandas as pd

from mtnb.study.book.collect import Study
from mtnb.study.book.markdown import md_table, seconds
from mtnb.study.grids import shown
from mtnb.study.runner import Job


KIND_TITLES = {"pretrain": "Pretraining", "finetune": "Fine-tuning", "zeroshot": "Zero-shot evaluation",
               "layer_sweep": "Layer sweep", "cka": "CKA", "svd": "SVD"}


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
    if job.kind == "layer_sweep":
        return f"Layer sweep: {p.get('model', '?')} on {', '.join(p.get('tasks', []))}"
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
                      f"{seconds(study.records[job.id]['seconds'])}; copied from `{shown(source)}`.")
            nb.cells.insert(0, nbformat.v4.new_markdown_cell(header, id=f"title-{job.id}"))  # a stable id: same runs, same book
            nbformat.write(nb, folder / kind / f"{job.id}.ipynb")
            pages.setdefault(kind, []).append(f"notebooks/{kind}/{job.id}")
            rows.append((title, f"{{doc}}`{job.id} <{kind}/{job.id}>`", seconds(study.records[job.id]["seconds"])))
        text = (f"# {KIND_TITLES.get(kind, kind)}\n\nThe executed `notebooks/{kind}.ipynb` of each finished job, as "
                "papermill left it.\n\n" + md_table(pd.DataFrame(rows, columns=["notebook", "job", "papermill time"]),
                                                     index=False))
        (folder / f"{kind}.md").write_text(text, encoding="utf-8")
    return pages
