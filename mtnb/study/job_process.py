"""What runs in a job's own process: one notebook executed by papermill, then its record.

The runner (``mtnb.study.runner``) submits ``execute_job`` through submitit, as a local process
or a SLURM job. That process starts Python, unpickles the function (importing this module), and
imports papermill; only then does papermill start the notebook's kernel. A grid pays this start
once per job (the paper grid: 114 times), so this module imports the standard library and
nothing of mtnb above ``mtnb.core``: the runner's own imports (grids, registries, datasets)
would add about 1.5 s of CPU to every job.

The record. done.json (or failed.json) holds the times (``execute_job``) and what the numbers
depend on besides the parameters (``job_environment``): OMP_NUM_THREADS, the CPU count, the
package versions, the machine (CPU model and flags, GPUs), the checkout's git commit and whether
it had uncommitted changes, and ``code``: the hashes of the notebook's code cells and of every
mtnb module it runs (``mtnb.core.code_version``), taken as the job starts, beside the precision
its id was made with.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import socket
import sys
import time
import traceback
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from mtnb.core.code_version import code_key, git_version
from mtnb.core.files import write_text
from mtnb.core.machine import machine_summary

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def execute_job(folder: str, notebook: str, kind: str, parameters: dict, root: str, env: dict,
                submitted: float) -> dict:
    """Execute ``notebook`` with papermill into ``folder``/<kind>.ipynb, cwd ``root``; write
    done.json (atomically, after papermill returns) or failed.json; return that record.

    ``env`` is applied first (None removes a variable); ``submitted`` is the time.time() of the
    submission. done.json records the times: ``seconds`` papermill's wall time, ``cells_seconds``
    the time inside the code cells (``cell_seconds`` each), ``startup_seconds`` the difference
    (kernel start, notebook I/O), ``start_delay_seconds`` from submission to this function (the
    job's process start and this module's import, or the queue), ``import_seconds`` papermill's
    import, ``job_seconds`` from submission to the end.
    """
    for key, value in env.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    folder = Path(folder)
    with held(folder / "job.json"):
        write_json_atomic(folder / "process.json", {"pid": os.getpid(), "host": socket.gethostname(),
                                                    "slurm_job_id": os.environ.get("SLURM_JOB_ID")})
        return _execute_notebook(folder, notebook, kind, parameters, root, submitted)


def _execute_notebook(folder: Path, notebook: str, kind: str, parameters: dict, root: str,
                      submitted: float) -> dict:
    """The body of ``execute_job``: papermill, then done.json or failed.json.

    The kernel is killed as soon as the last cell has run (nbclient's ``shutdown_kernel=
    "immediate"``), not asked to exit: a kernel that imported torch and transformers spends 2 to
    3 s of CPU tearing its modules down, and nothing waits on its exit. Every file a notebook
    writes is complete and closed when its cell returns (``mtnb.core.files``), and no notebook
    starts threads, processes or exit handlers (a test holds the notebooks to this).
    """
    planned = json.loads((folder / "job.json").read_text(encoding="utf-8")).get("code", {})
    record = {"kind": kind, "host": socket.gethostname(), "started": timestamp(),
              "start_delay_seconds": round(time.time() - submitted, 3), **job_environment(),
              "code": {**code_key(Path(notebook)), "precision": planned.get("precision"), "data": planned.get("data", {})}}
    start = time.perf_counter()
    try:
        papermill = import_papermill()
        record["import_seconds"] = round(time.perf_counter() - start, 3)
        start = time.perf_counter()
        nb = papermill.execute_notebook(notebook, str(folder / f"{kind}.ipynb"), parameters=parameters,
                                        kernel_name="python3", cwd=root, progress_bar=False,
                                        shutdown_kernel="immediate")
    except Exception as err:  # noqa: BLE001 - any failure of the notebook is the job's failure
        record.update(status="failed", finished=timestamp(), seconds=round(time.perf_counter() - start, 3),
                      error=error_line(err), traceback=_traceback(err))
        write_json_atomic(folder / "failed.json", record)
        return record
    seconds = time.perf_counter() - start
    cells = [round(float(c.metadata.get("papermill", {}).get("duration") or 0), 3)
             for c in nb.cells if c.cell_type == "code"]
    record.update(status="done", finished=timestamp(), seconds=round(seconds, 3), cells_seconds=round(sum(cells), 3),
                  startup_seconds=round(seconds - sum(cells), 3),
                  job_seconds=round(time.time() - submitted, 3), cell_seconds=cells)
    write_json_atomic(folder / "done.json", record)
    return record


def import_papermill():
    """papermill, imported without jsonschema's optional IRI format checker.

    papermill imports nbformat, which imports jsonschema, which imports ``rfc3987_syntax`` when
    it is installed (jupyter's own dependencies install it) to check the "iri" string format.
    That module builds its Earley parsers at import: about 2 s of CPU in every job's process,
    for a check nothing here asks for (nbformat and papermill validate notebooks without a format
    checker). Marking the module absent in ``sys.modules`` makes jsonschema's import of it fail,
    and jsonschema then leaves the "iri" format unchecked, as it does where the module is not
    installed. A process that imported it already keeps it.
    """
    sys.modules.setdefault("rfc3987_syntax", None)
    import papermill  # here, in the job's own process: the runner never executes a notebook itself

    return papermill


@contextlib.contextmanager
def held(path: Path):
    """Hold an exclusive lock on ``path`` (a job's job.json) while the job runs: the system drops
    it when the process ends, however it ends. Without locks on the file system, runs unguarded."""
    with open(path) as f:
        with contextlib.suppress(OSError):
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        yield


PACKAGES = ("torch", "transformers", "datasets", "evaluate", "numpy", "scikit-learn", "papermill")


def job_environment() -> dict:
    """What a job's numbers depend on besides its parameters and code: the thread setting its
    kernel inherits (OMP_NUM_THREADS sets torch's thread count; unset, torch takes one per core),
    the CPUs, the package versions (``packages``; ``torch`` and ``transformers`` also at the top
    level), the machine (``mtnb.core.machine.machine_summary``) and the checkout's git version.
    Read from the environment, /proc and the package metadata: importing torch here would cost
    every job 1.2 s."""
    packages = {}
    for name in PACKAGES:
        try:
            packages[name] = version(name)
        except PackageNotFoundError:
            packages[name] = None
    return {"omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "cpus": os.cpu_count(),
            "torch": packages["torch"], "transformers": packages["transformers"], "packages": packages,
            "machine": machine_summary(), "git": git_version()}


def error_line(err: BaseException) -> str:
    """The one line that says what went wrong: ``Type: message`` (from the kernel for a cell)."""
    if getattr(err, "ename", None):
        message = str(getattr(err, "evalue", "") or "").strip().splitlines()
        return f"{err.ename}: {message[0] if message else ''}".strip()
    lines = [line for line in traceback.format_exception_only(type(err), err) if line.strip()]
    return (lines[-1].strip().splitlines() or [type(err).__name__])[-1]


def _traceback(err: BaseException) -> str:
    """The kernel's traceback of the failing cell (colour codes removed), else Python's."""
    kernel = getattr(err, "traceback", None)
    if isinstance(kernel, list) and kernel:
        return ANSI.sub("", "\n".join(kernel))
    return "".join(traceback.format_exception(type(err), err, err.__traceback__))


def write_json_atomic(path: Path, record: dict) -> None:
    """Write ``record`` to ``path`` so that it is either absent or complete: temp file, fsync,
    rename."""
    write_text(path, json.dumps(record, indent=1, default=str), sync=True)


def timestamp() -> str:
    """Now, in UTC, to the millisecond (ISO 8601): the times job records carry."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")
