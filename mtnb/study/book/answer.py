"""The answer page, the book's first: the question, the answer per protocol, the forest plot,
then the analysis plan and the verdict's tables, and fine-tuning's target-dev oracle. Everything
on it comes from the verdict job (``notebooks/verdict.ipynb``: ``verdict.csv``,
``verdict_filter.csv``, ``verdict_oracle.csv``, ``verdict.png``) and
the grid's plan; the sentences are ``mtnb.study.findings``'s.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from mtnb.study.book.collect import Study
from mtnb.study.book.markdown import copy_figure, figure, md_table, note, prose
from mtnb.study.book.overview import code_version
from mtnb.study.findings import plan_lines, protocol_verdict
from mtnb.study.grids import shown
from mtnb.study.outputs import figure_path, read_table
from mtnb.study.verdict import PROTOCOL_NAMES


def answer_page(study: Study, figures: Path) -> str:
    """The question, then per protocol the verdict's sentences, the forest plot, the plan, the
    comparisons and the task filter; a note where the verdict job has not finished."""
    grid, plan = study.grid, study.grid.verdict
    parts = [prose("answer", "intro", base=plan.get("base") or grid.book.get("base", "the base")) + "\n"]
    if grid.book.get("note"):
        parts.append("\n" + note(prose("answer", "quick-look", note=grid.book["note"])))
    verdict = read_table(study.verdict, "verdict") if study.verdict else None
    if verdict is None:
        return "".join(parts) + "\n" + note(prose("answer", "no-verdict", grid=grid.name))
    filtered = read_table(study.verdict, "verdict_filter")
    protocols = [p for p in ("finetune", "probe") if p in set(filtered["protocol"]) | set(verdict["protocol"])]
    for protocol in protocols:
        title = PROTOCOL_NAMES.get(protocol, protocol)
        lines = protocol_verdict(verdict, plan, protocol, filtered)
        parts.append(f"\n## By {title}\n\n" + "\n".join(f"- {line}" for line in lines) + "\n")
    path = copy_figure(figure_path(study.verdict, "verdict_figure"), figures, "verdict.png")
    if path:
        parts += ["\n", figure(path, "paired differences per protocol and task"),
                  "\n" + prose("answer", "figure", alpha=f"{plan['alpha']:g}") + "\n"]
    parts += ["\n## The plan\n\n" + prose("answer", "plan", grid_file=shown(grid.path)) + "\n\n",
              "".join(f"- {line}\n" for line in plan_lines(plan, filtered, verdict)),
              "\n## The comparisons\n\n" + prose("answer", "table") + "\n\n", md_table(verdict_rows(verdict)),
              "\n" + prose("answer", "filter") + "\n\n", md_table(filter_rows(filtered), index=False)]
    upper = read_table(study.verdict, "verdict_oracle")
    if upper is not None and not upper.empty:
        parts += ["\n" + prose("answer", "oracle") + "\n\n", md_table(oracle_rows(upper), index=False)]
    parts.append("\n" + prose("answer", "measured", provenance=measured_on(study)) + "\n")
    return "".join(parts)


def verdict_rows(verdict):
    """The verdict table as the page shows it: protocol, task, comparison, a − b, the scores,
    the difference with its interval, Holm's p."""
    rows = [{"protocol": PROTOCOL_NAMES.get(r.protocol, r.protocol), "task": r.task, "comparison": r.comparison,
             "a − b": f"{r.a} − {r.b}", "a": f"{r.a_score:.1f}", "b": f"{r.b_score:.1f}",
             "a − b (95% interval)": f"{r.difference:+.1f} [{r.low:+.1f}, {r.high:+.1f}]",
             "Holm p": (f"{r.p_holm:.1g} (normal tail)" if r.at_floor else f"{r.p_holm:.2g}"),
             "clusters": int(r.n_clusters), "runs": f"{int(r.runs_a)}, {int(r.runs_b)}"}
            for r in verdict.itertuples()]
    return pd.DataFrame(rows).set_index(["protocol", "task"])


def filter_rows(filtered):
    """The task filter as the page shows it."""
    if filtered is None or filtered.empty:
        return pd.DataFrame(columns=["protocol", "task", "base", "bag-of-subwords", "margin", "enters"])
    return pd.DataFrame({"protocol": [PROTOCOL_NAMES.get(p, p) for p in filtered["protocol"]], "task": filtered["task"],
                         "base": [f"{v:.1f}" for v in filtered["base_dev"]],
                         "bag-of-subwords": [f"{v:.1f}" for v in filtered["bag_of_subwords_dev"]],
                         "margin": [f"{v:+.1f}" for v in filtered["margin"]],
                         "enters": ["yes" if e else f"no (bar {b:g})" for e, b in zip(filtered["enters"], filtered["bar"])]})


def oracle_rows(upper):
    """The oracle table as the page shows it (``verdict_oracle.csv``)."""
    return pd.DataFrame({"task": upper["task"], "model": upper["model"], "runs": upper["runs"].astype(int),
                         "English dev chose": [f"{v:.1f}" for v in upper["english_dev"]],
                         "target dev would choose": [f"{v:.1f}" for v in upper["target_dev"]],
                         "gain": [f"{g:+.1f}" for g in upper["gain"]]})


def measured_on(study: Study) -> str:
    """The code versions and machines of the finished jobs, as one phrase."""
    versions = sorted({code_version(study.records[j.id]) for j in study.done()})
    machines = sorted({(study.records[j.id].get("machine") or {}).get("text", "machine not recorded")
                       for j in study.done()})
    return f"code {', '.join(versions)}; {'; '.join(machines)}"
