"""The performance page: benchmark figures, job times and notebook start-up.
"""

from __future__ import annotations

import ast
import json
import statistics
from datetime import datetime

import pandas as pd

from mtnb.core.paths import SOURCE_ROOT, project_root
from mtnb.study.book.collect import Study
from mtnb.study.book.markdown import md_table, note, prose, seconds


def performance_page(study: Study) -> str:
    """Benchmark figures (runs/benchmarks/*.json) and the grid's job times."""
    parts = [prose("performance", "intro") + "\n\n", _timing_text(study), "\n",
             md_table(_timing_rows(study), index=False), "\n## Benchmarks\n\n"]
    files = sorted((project_root() / "runs" / "benchmarks").glob("*.json"))
    if not files:
        parts.append(note(prose("performance", "no-benchmarks")))
    for path in files:
        doc = json.loads(path.read_text(encoding="utf-8"))
        parts += [f"\n### {path.stem}\n\n", _benchmark_description(path.stem), "\n\n",
                  benchmark_machine(doc), "\n\n", md_table(_benchmark_rows(doc), index=False)]
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
    return prose("performance", "timing", jobs=len(records), total=seconds(total), span=seconds(span),
                 outside=seconds(total - cells), outside_share=f"{100 * (total - cells) / total:.0f}",
                 kernel=seconds(kernel), kernel_share=f"{100 * kernel / total:.0f}") + "\n"


def _timing_rows(study: Study):
    """Per kind: job count, total and median job time, time in cells and outside them."""
    rows = []
    for kind in dict.fromkeys(j.kind for j in study.done()):
        recs = [study.records[j.id] for j in study.done(kind)]
        total = [r.get("job_seconds", r["seconds"]) for r in recs]
        cells = [r.get("cells_seconds", 0) for r in recs]
        rows.append({"kind": kind, "jobs": len(recs), "job time (sum)": seconds(sum(total)),
                     "median per job": seconds(statistics.median(total)),
                     "in cells (sum)": seconds(sum(cells)),
                     "kernel start + I/O (median)": seconds(statistics.median(r.get("startup_seconds", 0) for r in recs)),
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


def benchmark_machine(doc: dict) -> str:
    """The line shown above a benchmark's figures: the machine they were measured on, from the
    ``machine_summary`` its JSON records (``mtnb.core.machine.machine_summary``: CPU, cores and
    the flags that decide bf16's speed), or a note that an older JSON recorded no flags. A
    speed-up read without them may belong to another kind of CPU."""
    summary = doc.get("machine_summary")
    if isinstance(summary, dict) and summary.get("text"):
        return prose("performance", "machine", text=summary["text"])
    return prose("performance", "no-machine")


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
    walk({k: v for k, v in doc.items() if k != "machine_summary"}, prefix)   # shown above the table
    if len(rows) > limit:
        rows = rows[:limit] + [("…", f"{len(rows) - limit} more in the JSON file")]
    return pd.DataFrame(rows, columns=["figure", "value"])


def _figure(value) -> str:
    """A number with 4 significant digits; anything else as text."""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
