"""What a grid's runs produced, read once for every page (``collect``): the jobs, their
states and records, the results tables and the analysis jobs' output folders, all through
the contract ``mtnb.study.outputs``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from mtnb.core.code_version import code_changes
from mtnb.core.errors import MtnbError
from mtnb.core.paths import project_root
from mtnb.models.registry import load_registry
from mtnb.study.grids import Grid, load_grid, replica_name, shown
from mtnb.study.outputs import PRETRAINING_RECORDS, read_table, read_tables
from mtnb.study.runner import Job, expand, job_states, read_json
from mtnb.study.summary import normalize


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
    layer_sweep: Path | None = None  # the finished layer-sweep job's output folder
    cka: Path | None = None         # the finished CKA job's output folder
    svds: dict[str, Path] = field(default_factory=dict)   # {base: output folder} of finished SVD jobs
    verdict: Path | None = None     # the finished verdict job's output folder
    roles: dict[str, str] = field(default_factory=dict)
    stale: int = 0
    other_code: dict[str, str] = field(default_factory=dict)   # {job id: what of its code differs from the checkout's}

    def done(self, kind: str | None = None) -> list[Job]:
        """The finished jobs (of one kind)."""
        return [j for j in self.jobs if j.id in self.records and (kind is None or j.kind == kind)]


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
    if study.done("layer_sweep"):
        study.layer_sweep = study.done("layer_sweep")[0].folder / "out"
    if study.done("cka"):
        study.cka = study.done("cka")[0].folder / "out"
    study.svds = {job.parameters["base"]: job.folder / "out" for job in study.done("svd")}
    if study.done("verdict"):
        study.verdict = study.done("verdict")[0].folder / "out"
    study.roles = roles(grid)
    study.other_code = {job.id: differs for job in study.done()
                        if (differs := code_difference(study.records[job.id].get("code"), job.code))}
    ours = {j.folder for j in jobs}
    study.stale = sum(1 for f in grid.runs_dir.glob("*/*") if f.is_dir() and (f / "job.json").is_file()
                      and f not in ours)
    return study


def code_difference(recorded: dict | None, current: dict) -> str:
    """What differs between the code a finished job ran (its done.json's ``code``) and the code
    its job has in this checkout (``Job.code``): the notebook's cells, the mtnb modules by name,
    the precision, the data sets; "" when nothing does, "code not recorded" for a job finished before jobs
    recorded it."""
    if not recorded:
        return "code not recorded"
    changes, parts = code_changes(recorded, current), []
    if changes["notebook"]:
        parts.append("notebook cells")
    if changes["modules"]:
        parts.append("modules " + ", ".join(changes["modules"]))
    if changes["precision"]:
        parts.append("precision {} (now {})".format(*changes["precision"]))
    if changes["data"]:
        parts.append("data " + ", ".join(changes["data"]) + " rebuilt since")
    return "; ".join(parts)


def roles(grid: Grid) -> dict[str, str]:
    """{model: registry role (lm, cp, mt)} for the grid's models."""
    specs = load_registry(project_root() / grid.registry if grid.registry else None)
    return {m: specs[m].role for m in grid.models if m in specs}


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
