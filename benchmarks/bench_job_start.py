"""What every job of a grid pays before its notebook computes anything, part by part.

A grid job is a fresh process (``mtnb.study.job_process.execute_job``, submitted by the runner)
that imports papermill, which starts a fresh kernel, whose first cell imports the study's
modules. The paper grid has 114 jobs, so these fixed costs, not the toy-sized work, set how long
its offline rehearsal takes. Each part is timed in fresh interpreters, --repeats times, the
parts interleaved:

- job process, before: importing ``mtnb.study.runner`` and papermill, which is what a job's
  process did until ``execute_job`` moved out of the runner (unpickling the function imported
  the runner, with the grids, the registry and datasets, and papermill imported jsonschema's
  IRI checker, ``rfc3987_syntax``, which builds Earley parsers at import);
- job process, now: unpickling ``execute_job`` as submitit does and ``import_papermill()``;
- papermill with a trivial notebook: kernel start, one cell, notebook writing, kernel shutdown
  (timed inside a process that has papermill imported);
- the import lines of the finetune and zeroshot notebooks' code, run in a fresh interpreter
  (what the kernel spends before the first line of work).

Figures: medians of wall seconds and of CPU seconds (user + system, of the child process), and
the ratio of the two job-process variants in the same run. The last line turns the medians into
the CPU a 114-job grid spends on them, and the minutes two lanes need for that alone.

    python benchmarks/bench_job_start.py [--repeats 5] [--out runs/benchmarks/job_start.json]
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mtnb.core.paths import SOURCE_ROOT
from mtnb.study.job_process import execute_job
from mtnb.core.code_version import notebook_cells

PAPER_JOBS, LANES = 114, 2

UNPICKLE = ("import pickle, sys\n"
            "job = pickle.loads(sys.stdin.buffer.read())\n"
            "sys.modules[job.__module__].import_papermill()\n")

TRIVIAL_NOTEBOOK = {"cells": [{"cell_type": "code", "execution_count": None, "metadata": {"tags": ["parameters"]},
                               "outputs": [], "source": "x = 1"},
                              {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [],
                               "source": "y = x + 1"}],
                    "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
                                 "language_info": {"name": "python"}},
                    "nbformat": 4, "nbformat_minor": 5}

PAPERMILL_RUN = ("import sys, time\n"
                 "from mtnb.study.job_process import import_papermill\n"
                 "papermill = import_papermill()\n"
                 "start = time.perf_counter()\n"
                 "papermill.execute_notebook(sys.argv[1], sys.argv[2], kernel_name='python3', progress_bar=False)\n"
                 "print(time.perf_counter() - start)\n")


def notebook_imports(name: str) -> str:
    """The import statements of notebooks/<name>.ipynb's code cells, as one script."""
    lines = [line.strip() for source in notebook_cells(SOURCE_ROOT / "notebooks" / f"{name}.ipynb")
             for line in source.splitlines() if line.strip().startswith(("import ", "from "))]
    return "\n".join(lines) + "\n"


def timed(args: list[str], stdin: bytes | None = None) -> tuple[float, float, str]:
    """(wall s, CPU s of the child, its stdout) of one fresh interpreter."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    out = subprocess.run([sys.executable, *args], input=stdin, capture_output=True, check=True, cwd=SOURCE_ROOT)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, out.stdout.decode()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default="runs/benchmarks/job_start.json")
    args = parser.parse_args()

    blob = pickle.dumps(execute_job)
    scratch = Path(tempfile.mkdtemp(prefix="bench_job_start_"))
    trivial = scratch / "trivial.ipynb"
    trivial.write_text(json.dumps(TRIVIAL_NOTEBOOK))
    modes = {
        "job process, before": lambda: timed(["-c", "import mtnb.study.runner, papermill"]),
        "job process, now": lambda: timed(["-c", UNPICKLE], stdin=blob),
        "notebook imports, finetune": lambda: timed(["-c", notebook_imports("finetune")]),
        "notebook imports, zeroshot": lambda: timed(["-c", notebook_imports("zeroshot")]),
    }
    times = {name: {"wall_s": [], "cpu_s": []} for name in [*modes, "papermill, trivial notebook"]}
    for repeat in range(args.repeats):
        for name, run in modes.items():
            wall, cpu, _ = run()
            times[name]["wall_s"].append(wall)
            times[name]["cpu_s"].append(cpu)
        # only the execution is timed (inside the child); its CPU includes the child's imports, so
        # only its wall time is reported
        _, _, printed = timed(["-c", PAPERMILL_RUN, str(trivial), str(scratch / "out.ipynb")])
        times["papermill, trivial notebook"]["wall_s"].append(float(printed.strip()))
        print(f"repeat {repeat + 1}/{args.repeats} done", flush=True)

    medians = {name: {key: round(statistics.median(values), 3) for key, values in figures.items() if values}
               for name, figures in times.items()}
    before, now = medians["job process, before"], medians["job process, now"]
    ratio = {key: round(now[key] / before[key], 3) for key in ("wall_s", "cpu_s")}
    saved_cpu = (before["cpu_s"] - now["cpu_s"]) * PAPER_JOBS
    for name, figures in medians.items():
        print(f"{name:32s} " + "  ".join(f"{key} {value:6.2f}" for key, value in figures.items()))
    print(f"job process, now / before: wall {ratio['wall_s']:.2f}x, CPU {ratio['cpu_s']:.2f}x; "
          f"over {PAPER_JOBS} jobs the change saves {saved_cpu:.0f} CPU s, "
          f"{saved_cpu / LANES / 60:.1f} min of two lanes")
    doc = {"repeats": args.repeats, "median": medians, "now_over_before": ratio,
           "paper_grid_cpu_saved_s": round(saved_cpu, 1), "python": platform.python_version(),
           "cpus": os.cpu_count(), "raw": times}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1))
    print(f"written: {out}")


if __name__ == "__main__":
    main()
