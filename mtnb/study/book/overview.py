"""The overview page: the grid, its jobs by state, wall times, code versions, where things are.
"""

from __future__ import annotations

import json
import statistics

import pandas as pd

from mtnb.core.code_version import short_hash
from mtnb.study.book.collect import Study
from mtnb.study.book.markdown import md_table, note, prose, seconds, warning
from mtnb.study.grids import shown
from mtnb.study.runner import Job


def overview_page(study: Study) -> str:
    """The grid, its jobs by state, wall time per kind, and where things are."""
    grid = study.grid
    parts = [prose("overview", "intro", grid=grid.name, runs=shown(grid.runs_dir)) + "\n",
             *(["\n" + note(grid.book["note"])] if grid.book.get("note") and not grid.verdict else []),
             "\n## The grid\n\n", md_table(_grid_rows(study), index=False)]
    sections = [(kind, item) for kind, params in grid.sections.items()
                for item in (params if isinstance(params, list) else [params]) if item]
    sections += [(f"{kind}, {name}", params) for overrides in (grid.per_task, grid.per_model)
                 for kind, names in overrides.items() for name, params in names.items()]
    if sections:
        parts.append("\n" + prose("overview", "parameters") + "\n\n")
        parts += [f"- **{kind}**: " + ", ".join(f"`{k}={v}`" for k, v in params.items()) + "\n" for kind, params in sections]
    parts += ["\n## Jobs\n\n", md_table(_job_rows(study), index=False)]
    parts += ["\n## Provenance\n\n" + prose("overview", "provenance") + "\n\n",
              md_table(provenance_rows(study), index=False)]
    other = other_code_rows(study)
    if other is not None:
        parts.append("\n" + warning(prose("overview", "other-code", grid=grid.name) + "\n\n" + md_table(other, index=False)))
    failed = [(j, study.states[j.id]["note"]) for j in study.jobs if study.states[j.id]["status"] == "failed"]
    if failed:
        parts.append("\n" + prose("overview", "failed") + "\n\n")
        parts += [f"- {j.kind} `{j.id}`: {message}\n" for j, message in failed]
    pending = sum(study.states[j.id]["status"] != "done" for j in study.jobs)
    if pending:
        parts.append("\n" + note(prose("overview", "pending", pending=pending, jobs=len(study.jobs), grid=grid.name)))
    if study.stale:
        parts.append("\n" + note(prose("overview", "stale", stale=study.stale, runs=shown(grid.runs_dir))))
    parts += ["\n## Where things are\n\n", md_table(_where_rows(study), index=False),
              "\n" + prose("overview", "pages", family="the family, " if grid.book.get("family") else "") + "\n"]
    return "".join(parts)


def _grid_rows(study: Study):
    """What the grid is: file, models, tasks, seeds, modes, analyses."""
    grid = study.grid
    modes = sorted(set(study.results.loc[~study.results["control"], "mode"])) if study.results is not None else []
    models = ", ".join(f"{m} ({study.roles.get(m, '?')})" for m in grid.models)
    tasks = "; ".join(f"{t} ({', '.join(grid.task_languages[t])})" for t in grid.tasks)
    rows = [("grid file", f"`{shown(grid.path)}`"), ("models (registry role)", models), ("tasks (languages)", tasks),
            ("seeds", ", ".join(map(str, grid.seeds))), ("modes", ", ".join(modes) or "(no results yet)"),
            ("analyses", ", ".join(title for k, title in (("layer_sweep", "layer sweep"), ("cka", "CKA"), ("svd", "SVD"))
                                   if k in grid.sections) or "none")]
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
                         **{"wall time (sum)": seconds(sum(wall)) if wall else "",
                            "median per job": seconds(statistics.median(wall)) if wall else ""}))
    return pd.DataFrame(rows)


def code_version(record: dict) -> str:
    """A finished job's code version, as the book shows it: the git commit (12 digits, "+ uncommitted
    changes" when the checkout had some), else a hash of the module hashes it recorded."""
    git = record.get("git") or {}
    if git.get("commit"):
        return f"`{git['commit'][:12]}`" + (" + uncommitted changes" if git.get("dirty") else "")
    modules = (record.get("code") or {}).get("modules")
    return f"code hash `{short_hash(json.dumps(modules, sort_keys=True))}`" if modules else "(not recorded)"


def provenance_rows(study: Study):
    """Per (code version, packages, machine, precision) of the finished jobs: how many, of which
    kinds, the last finish."""
    groups: dict[tuple, list[Job]] = {}
    for job in study.done():
        record = study.records[job.id]
        packages = record.get("packages") or {k: record.get(k) for k in ("torch", "transformers")}
        machine = (record.get("machine") or {}).get("text") or f"{record.get('cpus', '?')} CPUs (flags not recorded)"
        precision = (record.get("code") or {}).get("precision") or "-"
        key = (code_version(record), ", ".join(f"{k} {v}" for k, v in packages.items() if v), machine, precision)
        groups.setdefault(key, []).append(job)
    rows = [{"code version": code, "packages": packages, "machine": machine, "precision": precision,
             "jobs": len(jobs), "kinds": ", ".join(dict.fromkeys(j.kind for j in jobs)),
             "last finished": max(study.records[j.id].get("finished", "") for j in jobs)[:19].replace("T", " ")}
            for (code, packages, machine, precision), jobs in groups.items()]
    return pd.DataFrame(rows).sort_values("last finished")


def other_code_rows(study: Study, kinds: tuple[str, ...] | None = None):
    """The finished jobs (of ``kinds``) whose code differs from the checkout's: kind, id, what
    differs; None when there are none."""
    rows = [{"kind": job.kind, "job": f"`{job.id}`", "computed by other code than this checkout's": differs}
            for job in study.done() if (differs := study.other_code.get(job.id)) and (kinds is None or job.kind in kinds)]
    return pd.DataFrame(rows) if rows else None


def other_code_mark(study: Study, kinds: tuple[str, ...]) -> str:
    """The warning a page carries above its tables when some of its jobs (of ``kinds``) were
    computed by code other than the checkout's (kept by ``mtnb run --reuse-finished``): a note
    box naming the jobs and the modules; "" when none were."""
    rows = other_code_rows(study, kinds)
    if rows is None:
        return ""
    return "\n" + warning(prose("overview", "other-code-mark", grid=study.grid.name) + "\n\n" + md_table(rows, index=False))


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
