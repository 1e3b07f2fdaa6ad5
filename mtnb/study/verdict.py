"""The verdict: the study's answer to the paper's question, computed by the plan fixed in the grid.

The grid's ``verdict`` section (``mtnb.study.grids``) is the analysis plan, written before any
result: which models are compared (``verdict_pairs``: each continued member − the base, each
translation member − the masked-LM control, alignment − the control, alignment − each
translation member), the tasks, the level alpha, the number of bootstrap draws and the margin a
task must clear on English dev. The verdict job (``notebooks/verdict.ipynb``) runs this module
on the zero-shot jobs' outputs, once for each protocol the grid ran (``probe``: a linear
classifier on the frozen encoder; ``finetune``: every weight trained, the paper's protocol):

1. **Which tasks enter** (``dev_filter``). On a task where the base barely beats a
   bag-of-subwords classifier, an encoder adds little that a comparison of encoders could
   measure. The filter reads English *dev* only: margin_t = base(en, dev) − bag-of-subwords(en,
   dev), both means over the base's runs; task t enters when margin_t >= the plan's margin.
   Test scores are never read here, so no test result can change which tasks are compared.
2. **The comparisons** (``mtnb.study.summary.paired_comparisons``). For each task that entered
   and each pair (a, b): the difference of the non-English mean scores, a − b, in points, with
   a 95% interval and a two-sided p from a bootstrap that draws, in this order, each member's
   pretraining replicas, the fine-tuning seeds (shared by a and b), and the clusters of test
   examples (a help page, or a UD sentence, one draw shared by every language).
3. **Holm's correction** over one protocol's comparisons together (each protocol is its own
   family: its verdict is read on its own); ``paired_comparisons`` applies it to the rows it is
   given, one protocol's.

Beside the fine-tuning verdict, never in it: the target-language-dev oracle (``oracle_summary``),
how much better each model would transfer had its checkpoint been chosen on each target
language's own dev split, which zero-shot transfer may not see (Keung et al. 2020). It bounds
what model selection alone could change.

The table (``verdict.csv``, ``VERDICT_COLUMNS``) is what the book renders; ``mtnb.study.findings``
turns it into sentences; ``forest_plot`` draws it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from mtnb.analysis.paired_bootstrap import draws_needed
from mtnb.core.errors import MtnbError
from mtnb.study.grids import verdict_pairs
from mtnb.study.outputs import FILTER_COLUMNS, ORACLE_SUMMARY_COLUMNS, VERDICT_COLUMNS
from mtnb.study.summary import paired_comparisons

PROTOCOL_NAMES = {"probe": "linear probe", "finetune": "fine-tuning"}


def protocols_of(units) -> list[str]:
    """The protocols the zero-shot units hold, fine-tuning first: the ``mode`` of the model rows."""
    modes = set(units.loc[units["system"] == "model", "mode"].astype(str))
    return [p for p in ("finetune", "probe") if p in modes] + sorted(modes - set(PROTOCOL_NAMES))


def dev_filter(results, plan: dict, protocol: str):
    """Which of the plan's tasks enter the verdict of ``protocol``, read on English dev alone
    (see the module docstring): one row per task, ``FILTER_COLUMNS``. ``results``: the zero-shot
    jobs' results tables (``results.csv`` rows: model, task, seed, mode, system, language, split,
    value). A task without English dev scores for the base or the bag-of-subwords control
    cannot be judged: MtnbError, naming the fix (evaluate the dev split)."""
    base = plan["base"]
    dev = results[(results["split"] == "dev") & (results["language"] == "en")]
    rows = []
    for task in plan["tasks"]:
        sub = dev[dev["task"] == task]
        ours = sub[(sub["system"] == "model") & (sub["mode"] == protocol)
                   & (sub["model"].astype(str).str.split("@").str[0] == base)]
        bag = sub[(sub["system"] == "bag-of-subwords") & (sub["mode"] == protocol)
                  & (sub["model"].astype(str).str.split("@").str[0] == base)]
        if ours.empty or bag.empty:
            if not (results["task"] == task).any():
                continue                      # the protocol does not cover this task
            raise MtnbError(f"verdict: no English dev score of {base} and the bag-of-subwords control on {task} "
                            f"({PROTOCOL_NAMES.get(protocol, protocol)}); add dev to the zero-shot section's splits")
        base_dev, bag_dev = float(ours["value"].mean()), float(bag["value"].mean())
        margin = base_dev - bag_dev
        rows.append(dict(protocol=protocol, task=task, base_dev=base_dev, bag_of_subwords_dev=bag_dev, margin=margin,
                         bar=float(plan["margin"]), enters=bool(margin >= plan["margin"])))
    return pd.DataFrame(rows, columns=list(FILTER_COLUMNS))


def verdict_table(units, results, plan: dict, seed: int = 0):
    """(the verdict, the task filter): ``VERDICT_COLUMNS`` rows for every protocol, task that
    entered and comparison of the plan, Holm-corrected per protocol; ``FILTER_COLUMNS`` rows for
    every protocol and task. ``units``: the zero-shot jobs' per-example tables (units.csv.gz);
    ``results``: their results tables. The number of draws is the plan's, or
    ``draws_needed`` for the larger protocol family (at least 10,000)."""
    pairs = verdict_pairs(plan)
    what = {(a, b): kind for a, b, kind in pairs}
    tables, filters = [], []
    test = units[(units["split"] == "test") & (units["system"] == "model")]
    for protocol in protocols_of(units):
        kept = dev_filter(results, plan, protocol)
        filters.append(kept)
        tasks = list(kept.loc[kept["enters"], "task"])
        sub = test[(test["mode"] == protocol) & test["task"].isin(tasks)]
        if sub.empty:
            continue
        n_boot = plan.get("n_boot") or draws_needed(len(pairs) * len(tasks), alpha=plan["alpha"])
        table = paired_comparisons(sub, [(a, b) for a, b, _ in pairs], n_boot=n_boot, seed=seed)
        table.insert(0, "protocol", protocol)
        table.insert(4, "comparison", [what[(a, b)] for a, b in zip(table["a"], table["b"])])
        tables.append(table)
    filter_table = pd.concat(filters, ignore_index=True) if filters else pd.DataFrame(columns=list(FILTER_COLUMNS))
    if not tables:
        return pd.DataFrame(columns=list(VERDICT_COLUMNS)), filter_table
    verdict = pd.concat(tables, ignore_index=True)
    missing = [c for c in VERDICT_COLUMNS if c not in verdict.columns]
    if missing:
        raise MtnbError(f"verdict: the paired comparisons lack column(s) {', '.join(missing)}; update "
                        "mtnb.study.summary.paired_comparisons")
    return verdict[list(VERDICT_COLUMNS)], filter_table


def oracle_summary(oracle, plan: dict):
    """The oracle beside English-dev selection, per task and compared model (``ORACLE_SUMMARY_COLUMNS``):
    the mean over runs (a member's replicas and seeds) of the non-English mean test score (0-100)
    of the checkpoints English dev chose, ``english_dev``, and of those each language's own dev
    would choose, ``target_dev``; ``gain`` = target_dev − english_dev (≥ 0 up to ties). ``oracle``:
    the zero-shot jobs' ``oracle.csv`` rows (``mtnb.transfer.zeroshot.oracle_table``); None or
    empty gives an empty table."""
    if oracle is None or oracle.empty:
        return pd.DataFrame(columns=list(ORACLE_SUMMARY_COLUMNS))
    order = [plan["base"], plan["control"], *plan["translation"], plan["alignment"]]
    family = oracle["model"].astype(str).str.split("@").str[0]
    per_run = (oracle[family.isin(order)].assign(family=family)
               .groupby(["task", "family", "model", "seed", "selection"])["test"].mean()   # over languages
               .unstack("selection"))
    rows = []
    for (task, name), runs in per_run.groupby(level=["task", "family"]):
        english, target = float(runs["English dev"].mean()), float(runs["target dev"].mean())
        rows.append(dict(task=task, model=name, runs=len(runs), english_dev=english, target_dev=target,
                         gain=target - english))
    table = pd.DataFrame(rows, columns=list(ORACLE_SUMMARY_COLUMNS))
    table["rank"] = table["model"].map(order.index)
    return table.sort_values(["task", "rank"]).drop(columns="rank").reset_index(drop=True)


def forest_plot(verdict, alpha: float = 0.05):
    """The verdict as a forest plot: one panel per protocol, one row per (comparison, task), the
    difference a − b (points) with its 95% interval; filled where Holm p < alpha, hollow where
    not; the zero line marks no difference. Returns the matplotlib figure."""
    import matplotlib.pyplot as plt   # the book's figures only: the job imports it when it draws

    protocols = list(dict.fromkeys(verdict["protocol"]))
    height = max(2.5, 0.32 * verdict.groupby("protocol").size().max() + 1.2)
    fig, axes = plt.subplots(1, len(protocols), figsize=(5.2 * len(protocols), height), sharex=True, squeeze=False)
    for ax, protocol in zip(axes[0], protocols):
        rows = verdict[verdict["protocol"] == protocol].iloc[::-1]
        y = np.arange(len(rows))
        resolved = rows["p_holm"].to_numpy() < alpha
        colors = ["#1f77b4" if d >= 0 else "#d62728" for d in rows["difference"]]
        ax.hlines(y, rows["low"], rows["high"], color=colors, lw=2)
        ax.scatter(rows["difference"], y, s=36, zorder=3, edgecolors=colors,
                   facecolors=[c if r else "white" for c, r in zip(colors, resolved)])
        ax.axvline(0, color="0.3", lw=1, ls="--")
        ax.set_yticks(y, [f"{a} − {b}, {t}" for a, b, t in zip(rows["a"], rows["b"], rows["task"])], fontsize=8)
        ax.set_title(PROTOCOL_NAMES.get(protocol, protocol))
        ax.set_xlabel("difference in non-English mean score (points, 95% interval)")
    fig.suptitle(f"Paired differences (filled: Holm p < {alpha:g})", fontsize=10)
    fig.tight_layout()
    return fig
