"""Did two runs of a grid give the same results, number for number?

``mtnb compare RUNS_A RUNS_B`` answers it for two run folders of one grid (``runs/<grid>`` of
two project roots, or a copy kept from before a change): the question a refactoring, a new
library version or another machine raises.

Jobs are matched by what they computed, not by their ids: a job id hashes the notebook's code
(``mtnb.study.runner.job_id``), so it changes whenever the code does. A job's identity is its
kind and its parameters, where the output folder is left out and every path into the run
(``.../runs/<grid>/<kind>/<id>/...``) is replaced by the identity of the job it points to, so
identities nest along the dependencies. For each pair of matched jobs, every table the job
wrote under ``out/`` (``*.csv``, ``*.csv.gz``) is compared as text, line for line; every weights file
(``*.safetensors``) by SHA-256; every training curve (``curve.json``) as data, its timings left
out. Timings and hosts (``done.json``, ``process.json``) are not results and are not compared.
"""

from __future__ import annotations

import gzip
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from mtnb.core.errors import MtnbError
from mtnb.core.files import sha256_file

TIMINGS = ("seconds", "feature_seconds")  # curve.json keys that are clock readings, not results
JOB_PATH = re.compile(r"^(?:.*/)?runs/[^/]+/(?P<kind>[^/]+)/(?P<id>[0-9a-f]{12})(?P<rest>/.*)?$")


@dataclass
class Comparison:
    """The outcome: matched job pairs, files compared, and every difference found (one line each)."""

    jobs: int = 0
    files: int = 0
    differences: list[str] = field(default_factory=list)

    @property
    def identical(self) -> bool:
        return not self.differences


def read_jobs(grid_dir: Path) -> dict[str, dict]:
    """``{job id: job.json}`` for every job folder of a run folder ``runs/<grid>``, each record
    with its folder added under ``folder``."""
    jobs = {}
    for path in sorted(grid_dir.glob("*/*/job.json")):
        record = json.loads(path.read_text(encoding="utf-8"))
        jobs[record["id"]] = {**record, "folder": path.parent}
    return jobs


def job_identities(jobs: dict[str, dict]) -> dict[str, str]:
    """``{job id: identity}`` of ``read_jobs``' jobs: kind and parameters, paths into the run
    replaced by identities."""
    memo: dict[str, str] = {}

    def identity(job_id: str) -> str:
        if job_id not in memo:
            record = jobs[job_id]
            params = {k: v for k, v in record["parameters"].items() if k != "output_dir"}
            memo[job_id] = f"{record['kind']}{json.dumps(normalise(params), sort_keys=True)}"
        return memo[job_id]

    def normalise(value):
        if isinstance(value, dict):
            return {k: normalise(v) for k, v in value.items()}
        if isinstance(value, list):
            return [normalise(v) for v in value]
        if isinstance(value, str):
            match = JOB_PATH.match(value)
            if match and match["id"] in jobs:
                return f"<{identity(match['id'])}>{match['rest'] or ''}"
        return value

    return {job_id: identity(job_id) for job_id in jobs}


def label(identity: str) -> str:
    """A short name for a job identity: its kind and its model, member or task parameters."""
    kind, _, params = identity.partition("{")
    shown = re.findall(r'"(?:model|member|task|base)": "([^"]+)"', "{" + params)
    return f"{kind} {' '.join(shown)}".strip()



def table_lines(path: Path) -> list[str]:
    """The lines of a CSV table (gzip-compressed when its name ends in .gz)."""
    if path.name.endswith(".gz"):
        with gzip.open(path, "rt", encoding="utf-8") as f:
            return f.read().splitlines()
    return path.read_text(encoding="utf-8").splitlines()


def compare_files(a: Path, b: Path, name: str) -> str | None:
    """None when the result files ``a`` and ``b`` agree, else one line saying where they differ."""
    if a.suffix == ".safetensors":
        return None if sha256_file(a) == sha256_file(b) else f"{name}: the weights differ (SHA-256)"
    if a.suffix == ".json":
        curves = [{k: v for k, v in json.loads(p.read_text(encoding="utf-8")).items() if k not in TIMINGS}
                  for p in (a, b)]
        keys = sorted(k for k in curves[0].keys() | curves[1].keys() if curves[0].get(k) != curves[1].get(k))
        return f"{name}: {', '.join(keys)} differ" if keys else None
    lines_a, lines_b = table_lines(a), table_lines(b)
    if lines_a == lines_b:
        return None
    if len(lines_a) != len(lines_b):
        return f"{name}: {len(lines_a)} lines against {len(lines_b)}"
    row = next(i for i, (x, y) in enumerate(zip(lines_a, lines_b)) if x != y)
    differing = sum(x != y for x, y in zip(lines_a, lines_b))
    return (f"{name}: {differing} of {len(lines_a)} lines differ, first line {row + 1}: "
            f"{lines_a[row]!r} against {lines_b[row]!r}")


def result_files(job_dir: Path) -> list[str]:
    """The tables, weights and curves a job wrote under its ``out/`` folder, as paths relative to it."""
    out = job_dir / "out"
    return sorted(p.relative_to(out).as_posix() for p in out.rglob("*")
                  if p.is_file() and (p.name.endswith((".csv", ".csv.gz", ".safetensors")) or p.name == "curve.json"))


def compare_runs(a: str | Path, b: str | Path) -> Comparison:
    """Compare two run folders of one grid (see the module docstring); MtnbError if either holds no job."""
    a, b = Path(a), Path(b)
    jobs_a, jobs_b = read_jobs(a), read_jobs(b)
    ids_a, ids_b = job_identities(jobs_a), job_identities(jobs_b)
    for folder, ids in ((a, ids_a), (b, ids_b)):
        if not ids:
            raise MtnbError(f"{folder} holds no job folders (<kind>/<id>/job.json): give a grid's run folder, "
                            "e.g. runs/smoke")
    by_identity_b = {identity: job_id for job_id, identity in ids_b.items()}
    result = Comparison()
    for job_id, identity in sorted(ids_a.items(), key=lambda item: item[1]):
        other = by_identity_b.pop(identity, None)
        if other is None:
            result.differences.append(f"{label(identity)} ({job_id}): no such job in {b}")
            continue
        result.jobs += 1
        dir_a, dir_b = jobs_a[job_id]["folder"], jobs_b[other]["folder"]
        files_a, files_b = result_files(dir_a), result_files(dir_b)
        for name in sorted(set(files_a) ^ set(files_b)):
            result.differences.append(f"{label(identity)}: {name} is only in {a if name in files_a else b}")
        for name in sorted(set(files_a) & set(files_b)):
            result.files += 1
            difference = compare_files(dir_a / "out" / name, dir_b / "out" / name, f"{label(identity)}: {name}")
            if difference:
                result.differences.append(difference)
    for identity, job_id in sorted(by_identity_b.items()):
        result.differences.append(f"{label(identity)} ({job_id}): no such job in {a}")
    return result
