"""Zero-shot results over seeds: means with 95% confidence intervals, the paper's table layouts,
the transfer gap, and the paired comparisons of a family
(the sentences that state what they mean are ``mtnb.study.findings``).

Input is the tidy table every zero-shot run writes (``results.csv``, see ``mtnb.transfer.zeroshot``): one
row per (model, task, seed, system, language, split) with ``value`` on a 0-100 scale. ``system``
is ``model`` or a control (``majority``, ``bag-of-subwords``); a ``mode`` column (or a system
named ``probe`` / ``finetune``) says how the model was trained on English. ``normalize`` turns
it into one row per (task, system, language, seed): the label of a model row is its name (with
the mode when the table has several), and a control's value for a seed is its mean over the
models' runs of that seed (the majority class is the same for all of them; the bag of sub-words
differs only by tokenizer).

A grid that trains its members with several pretraining seeds evaluates one replica per seed,
``<member>@p<seed>`` (``grids.replica_name``). ``normalize`` pools them back into their member
(``pool_pretraining_seeds``): a replica's value is first averaged over its fine-tuning seeds, and
the member's seeds are then its pretraining seeds, so its interval spans the variation that
pretraining and fine-tuning together leave.

Every cell over seeds is ``mean ± h``: the mean of the n seeds and the half-width h of the 95%
Student-t interval, h = t(0.975, n-1) · s / sqrt(n) with s the sample standard deviation
(``mean_ci``); one seed gives no interval. Averages over languages are taken per seed first,
then over seeds; where the paper leaves a language out of a task's average (WPR: zh), so do we.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from mtnb.analysis.paired_bootstrap import bootstrap_weights, holm, percentile_difference, resampled_ratio
from mtnb.core.errors import MtnbError
from mtnb.study.paper import AVERAGE_EXCLUDES


CONTROLS = ("majority", "bag-of-subwords")


REQUIRED = ("model", "task", "seed", "system", "language", "value")


LEVEL = 0.95


REPLICA = re.compile(r"^(?P<member>.+)@p(?P<seed>-?\d+)$")   # grids.replica_name


@dataclass(frozen=True)
class CI:
    """A mean over ``n`` seeds and its confidence interval [low, high] (NaN when n < 2)."""

    mean: float
    low: float
    high: float
    n: int

    @property
    def half(self) -> float:
        return (self.high - self.low) / 2

    def text(self, digits: int = 1) -> str:
        """``56.1 ± 3.2``, or ``56.1`` for one seed."""
        if math.isnan(self.mean):
            return ""
        if math.isnan(self.half):
            return f"{self.mean:.{digits}f}"
        return f"{self.mean:.{digits}f} ± {self.half:.{digits}f}"

    def bracket(self, digits: int = 1) -> str:
        """``56.1 [52.9, 59.3]``, or ``56.1 (one seed)``."""
        if math.isnan(self.half):
            return f"{self.mean:.{digits}f} ({self.n} seed{'s' * (self.n != 1)}, no interval)"
        return f"{self.mean:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}]"


def mean_ci(values, level: float = LEVEL) -> CI:
    """Mean and Student-t confidence interval of ``values`` (one per seed; NaNs dropped):
    mean ± t((1+level)/2, n-1) · s/sqrt(n), s the sample standard deviation (ddof 1)."""
    x = np.asarray(list(values), dtype=np.float64)
    x = x[~np.isnan(x)]
    n = len(x)
    if n == 0:
        return CI(float("nan"), float("nan"), float("nan"), 0)
    mean = float(x.mean())
    if n < 2:
        return CI(mean, float("nan"), float("nan"), n)
    half = float(stats.t.ppf((1 + level) / 2, n - 1) * x.std(ddof=1) / math.sqrt(n))
    return CI(mean, mean - half, mean + half, n)


def overlap(a: CI, b: CI) -> str:
    """``higher`` when a's interval lies wholly above b's, ``lower`` when wholly below, else
    ``overlap`` (also when either has no interval: one seed resolves nothing)."""
    if math.isnan(a.half) or math.isnan(b.half):
        return "overlap"
    if a.low > b.high:
        return "higher"
    if a.high < b.low:
        return "lower"
    return "overlap"


def pool_pretraining_seeds(results):
    """Fold each replica ``<member>@p<seed>`` into ``member``: its model rows become the
    member's, averaged over the replica's fine-tuning seeds, with ``seed`` set to the
    pretraining seed; its control rows are dropped (the first replica's stand for them, as the
    controls depend only on the data and the tokenizer, which replicas share). A table without
    replicas comes back unchanged. Adds ``pretraining_seeds``: how many pooled into the row's
    model (1 for a model without replicas)."""
    table = results.copy()
    table["pretraining_seeds"] = 1
    found = table["model"].astype(str).str.extract(REPLICA)
    replica = found["member"].notna()
    if not replica.any():
        return table
    found = found[replica].assign(seed=lambda f: f["seed"].astype(int))
    controls = table.loc[replica, "system"].isin(CONTROLS)
    first = found["seed"] == found.groupby("member")["seed"].transform("min")
    kept_controls = table.loc[replica].loc[controls & first].assign(model=found.loc[controls & first, "member"])
    models = table.loc[replica].loc[~controls].assign(model=found.loc[~controls, "member"],
                                                      seed=found.loc[~controls, "seed"])
    keys = [c for c in models.columns if c not in ("value", "n")]
    pooled = models.groupby(keys, sort=False, dropna=False)["value"].mean().reset_index()
    pooled["pretraining_seeds"] = pooled.groupby("model")["seed"].transform("nunique")
    return pd.concat([table.loc[~replica], kept_controls, pooled], ignore_index=True)


def normalize(results):
    """One row per (task, metric, split, system, model, mode, control, language, seed,
    pretraining_seeds) with the mean ``value`` of duplicates, pretraining replicas pooled (``pool_pretraining_seeds``);
    see the module docstring for labels and controls."""
    missing = [c for c in REQUIRED if c not in results.columns]
    if missing:
        raise ValueError(f"results table lacks column(s) {', '.join(missing)}")
    table = pool_pretraining_seeds(results)
    for column, default in (("split", "test"), ("metric", "score")):
        if column not in table.columns:
            table[column] = default
    table["control"] = table["system"].isin(CONTROLS)
    if "mode" not in table.columns:
        table["mode"] = np.where(table["system"].isin(("model", *CONTROLS)), "finetune", table["system"])
    table.loc[table["control"], "mode"] = ""
    modes = sorted(set(table.loc[~table["control"], "mode"]))
    label = table["model"].astype(str) + (" (" + table["mode"].astype(str) + ")" if len(modes) > 1 else "")
    table["system"] = np.where(table["control"], table["system"], label)
    table.loc[table["control"], "model"] = ""
    keys = ["task", "metric", "split", "system", "model", "mode", "control", "language", "seed", "pretraining_seeds"]
    return table.groupby(keys, sort=False, dropna=False)["value"].mean().reset_index()


def choose_split(table) -> str:
    """``test`` when the table has it, else its first split."""
    splits = list(dict.fromkeys(table["split"]))
    return "test" if "test" in splits else splits[0]


def order_systems(systems, models: list[str]) -> list[str]:
    """Model rows in the order of ``models`` (then any others), then the controls."""
    systems = list(dict.fromkeys(systems))
    rank = {m: i for i, m in enumerate(models)}

    def key(s):
        if s in CONTROLS:
            return (2, CONTROLS.index(s), s)
        base = s.split(" (")[0]
        return (0, rank[base], s) if base in rank else (1, 0, s)
    return sorted(systems, key=key)


def averaged_languages(task: str, languages) -> list[str]:
    """The languages a task's average is taken over (all but the paper's exclusions)."""
    return [lang for lang in languages if lang not in AVERAGE_EXCLUDES.get(task, ())]


def _summarize(per_seed, keys: list[str]):
    """Rows of ``keys`` with a CI over the ``value`` of their seeds (columns mean, low, high,
    half, n, ci)."""
    rows = []
    for key, group in per_seed.groupby(keys, sort=False):
        ci = mean_ci(group["value"])
        key = key if isinstance(key, tuple) else (key,)
        rows.append({**dict(zip(keys, key)), "mean": ci.mean, "low": ci.low, "high": ci.high,
                     "half": ci.half, "n": ci.n, "ci": ci})
    return pd.DataFrame(rows, columns=[*keys, "mean", "low", "high", "half", "n", "ci"])


def per_language(table):
    """Per (task, system, model, language): the CI over seeds."""
    return _summarize(table, ["task", "metric", "system", "model", "control", "language"])


def language_average_per_seed(table, languages=None):
    """Per (task, system, seed): the mean over the task's averaged languages (or ``languages``,
    a function of the task)."""
    languages = languages or averaged_languages
    rows = []
    for task, sub in table.groupby("task", sort=False):
        sub = sub[sub["language"].isin(languages(task, sub["language"].unique()))]
        rows.append(sub.groupby(["task", "metric", "system", "model", "control", "seed"], sort=False)["value"]
                    .mean().reset_index())
    return pd.concat(rows, ignore_index=True) if rows else table.iloc[:0]


def average(table):
    """Per (task, system): the CI over seeds of the mean over languages (Table 1's cell)."""
    return _summarize(language_average_per_seed(table), ["task", "metric", "system", "model", "control"])


def cross_lingual(table):
    """Per (task, system): the CI over seeds of the mean over the non-English languages."""
    def others(task, langs):
        return [lang for lang in averaged_languages(task, langs) if lang != "en"]
    return _summarize(language_average_per_seed(table, others), ["task", "metric", "system", "model", "control"])


def transfer_gap(table):
    """Per (task, model row): the CI over seeds of English minus the mean of the other
    (averaged) languages. Controls and tasks without English are left out."""
    models = table[~table["control"]]
    rows = []
    for (task, system, model, seed), sub in models.groupby(["task", "system", "model", "seed"], sort=False):
        langs = averaged_languages(task, sub["language"])
        en = sub.loc[sub["language"] == "en", "value"]
        rest = sub.loc[sub["language"].isin([l for l in langs if l != "en"]), "value"]
        if len(en) and len(rest):
            rows.append(dict(task=task, system=system, model=model, seed=seed, value=float(en.mean() - rest.mean())))
    per_seed = pd.DataFrame(rows, columns=["task", "system", "model", "seed", "value"])
    return _summarize(per_seed, ["task", "system", "model"])


def table1(table, models: list[str], paper_table1=None):
    """Table 1's analog: rows systems, one column per task (mean ± h of the language average);
    with ``paper_table1`` (``mtnb.study.paper.table1()``), a ``<task> paper`` column beside each task
    that the paper has."""
    avg = average(table)
    systems = order_systems(avg["system"], models)
    out = pd.DataFrame(index=systems)
    for task, sub in avg.groupby("task", sort=False):
        out[task] = _ci_column(sub, systems)
        if paper_table1 is not None and task in set(paper_table1["task"]):
            published = paper_table1[paper_table1["task"] == task].set_index("model")["score"]
            model_of = dict(zip(sub["system"], sub["model"]))
            out[f"{task} paper"] = [_number(published.get(model_of.get(s))) for s in systems]
    out.index.name = "system"
    return out


def table4(table, task: str, models: list[str], paper_table4=None):
    """Table 4's analog for one task: rows systems, a column per language and ``avg`` (the
    task's average; WPR's leaves zh out as the paper's does); with ``paper_table4``, a
    ``<lang> paper`` column beside each language the paper has for the task."""
    sub = table[table["task"] == task]
    per_lang = per_language(sub)
    avg = average(sub)
    systems = order_systems(per_lang["system"], models)
    langs = list(dict.fromkeys(sub["language"]))
    published = None
    if paper_table4 is not None:
        published = paper_table4[paper_table4["task"] == task]
        if published.empty:
            published = None
    model_of = dict(zip(per_lang["system"], per_lang["model"]))
    out = pd.DataFrame(index=systems)
    for lang in [*langs, "avg"]:
        rows = avg if lang == "avg" else per_lang[per_lang["language"] == lang]
        out[lang] = _ci_column(rows, systems)
        if published is not None and lang in set(published["language"]):
            scores = published[published["language"] == lang].set_index("model")["score"]
            out[f"{lang} paper"] = [_number(scores.get(model_of.get(s))) for s in systems]
    out.index.name = "system"
    return out


def gap_table(table, models: list[str]):
    """Rows model systems, a column per task: the transfer gap's mean ± h."""
    gap = transfer_gap(table)
    systems = order_systems(gap["system"], models)
    out = pd.DataFrame(index=systems)
    for task, sub in gap.groupby("task", sort=False):
        out[task] = _ci_column(sub, systems)
    out.index.name = "system"
    return out


def _ci_column(rows, systems: list[str]) -> list[str]:
    """The "mean ± h" text of each of ``systems`` in ``rows`` (columns system, ci), '' where a
    system has no row."""
    cells = dict(zip(rows["system"], rows["ci"]))
    return [cells[s].text() if s in cells else "" for s in systems]


def _number(value) -> str:
    """A published score as text ('' when absent)."""
    return "" if value is None or math.isnan(float(value)) else f"{float(value):.1f}"


PAIRED_COLUMNS = ["task", "a", "b", "a_score", "b_score", "difference", "low", "high", "p", "p_holm"]


def family_pairs(base: str, mt: list[str], controls: list[str]) -> list[tuple[str, str]]:
    """The comparisons the family paragraph draws: every continued member against ``base``, and
    every translation member against every control."""
    return [(m, base) for m in [*mt, *controls]] + [(m, c) for m in mt for c in controls]


def paired_comparisons(units, pairs: list[tuple[str, str]], *, n_boot: int = 2000, seed: int = 0,
                       runs: bool = True):
    """The paired bootstrap of each (a, b) in ``pairs`` on every task both were scored on: the
    difference a - b of their non-English means (points) with its 95% interval, p and Holm's
    p over all rows. ``units``: the model rows (``system == "model"``) of one split and mode of
    the zero-shot jobs' ``units.csv.gz``; replicas ``<member>@p<seed>`` count as runs of their
    member. Columns ``PAIRED_COLUMNS``.

    Each bootstrap draw resamples the test examples of every language (the same draw for a and
    b: the examples are shared) and, with ``runs`` (False: the interval over examples alone),
    the runs, since another fine-tuning seed or pretraining seed could change the difference
    (``run_weights``). A fine-tuning seed is shared by a and b too: seed k trains both on the
    same English subset, so a draw takes the same fine-tuning seeds for both, and the
    difference keeps what that subset does to both models out of its spread. Pretraining
    replicas are a member's own and are drawn for each member separately."""
    if units is None or len(units) == 0:
        return pd.DataFrame(columns=PAIRED_COLUMNS)
    u = units.copy()
    found = u["model"].astype(str).str.extract(REPLICA)
    u["member"] = found["member"].fillna(u["model"].astype(str))
    u["run"] = u["model"].astype(str) + "#" + u["seed"].astype(str)
    u["unit"] = u["unit"].astype(str)
    rows = []
    for t_index, (task, sub) in enumerate(u.groupby("task", sort=False)):
        langs = [lang for lang in averaged_languages(task, list(dict.fromkeys(sub["language"]))) if lang != "en"]
        for a, b in pairs:
            both = sub[sub["member"].isin((a, b)) & sub["language"].isin(langs)]
            if set(both["member"]) != {a, b}:
                continue
            stat, point, n_units = {a: [], b: []}, {a: [], b: []}, 0
            runs_of = {m: both.loc[both["member"] == m, ["run", "model", "seed"]].drop_duplicates("run")
                       .sort_values("run") for m in (a, b)}
            run_names = {m: list(runs_of[m]["run"]) for m in (a, b)}
            R = {a: None, b: None}
            if runs:
                drawn = run_weights(runs_of[a], runs_of[b], n_boot, (seed, t_index))
                R = {a: drawn["a"], b: drawn["b"]}
            for l_index, lang in enumerate(langs):
                rows_l = both[both["language"] == lang]
                shared = sorted(set.intersection(*(set(g["unit"]) for _, g in rows_l.groupby("member"))))
                if len(shared) < 2 or rows_l["member"].nunique() < 2:
                    continue
                W = bootstrap_weights(len(shared), n_boot, (seed, t_index, l_index))
                n_units += len(shared)
                for m in (a, b):
                    table = rows_l[rows_l["member"] == m]
                    num = table.pivot_table(index="run", columns="unit", values="num",
                                            aggfunc="mean").reindex(index=run_names[m], columns=shared)
                    den = table.pivot_table(index="run", columns="unit", values="den",
                                            aggfunc="mean").reindex(index=run_names[m], columns=shared)
                    if num.isna().any().any():
                        raise MtnbError(f"{m} lacks scores of some runs or examples on {task} {lang}; rerun its "
                                        "zero-shot jobs so that every run is scored on the same examples")
                    stat[m].append(resampled_ratio(num.to_numpy(), den.to_numpy(), W, R[m]))
                    point[m].append(resampled_ratio(num.to_numpy(), den.to_numpy(), np.ones((1, len(shared))))[0])
            if not stat[a]:
                continue
            score_a, score_b = float(np.mean(point[a])), float(np.mean(point[b]))
            draws = np.mean(stat[a], axis=0) - np.mean(stat[b], axis=0)
            d = percentile_difference(score_a - score_b, draws, n_units)
            rows.append(dict(task=task, a=a, b=b, a_score=score_a, b_score=score_b, difference=d.mean, low=d.low,
                             high=d.high, p=d.p))
    table = pd.DataFrame(rows, columns=PAIRED_COLUMNS[:-1])
    table["p_holm"] = holm(table["p"].to_numpy()) if len(table) else []
    return table


def run_weights(runs_a, runs_b, n_boot: int, seed) -> dict[str, np.ndarray]:
    """How often each run of a and of b is drawn in each of ``n_boot`` draws: {"a": (B, runs of
    a), "b": (B, runs of b)}, rows in the order of ``runs_a`` / ``runs_b`` (tables with columns
    model, seed: a run is one fine-tuning seed of one model or replica).

    When a and b have the same fine-tuning seeds, each run of every replica, a draw picks the
    seeds once for both (S: (B, seeds), a multinomial over the seeds) and each member's
    replicas on its own (P_m: (B, replicas of m)): run (replica r, seed k) of m gets weight
    P_m[r] S[k]. Otherwise (the seeds differ, or some run is missing) the runs of a and b are
    drawn independently."""
    def layout(runs):
        seeds = sorted(set(runs["seed"]))
        replicas = sorted(set(runs["model"]))
        complete = len(runs) == len(seeds) * len(replicas)
        return seeds, replicas, complete

    (seeds_a, reps_a, full_a), (seeds_b, reps_b, full_b) = layout(runs_a), layout(runs_b)
    if seeds_a != seeds_b or not (full_a and full_b):
        return {"a": bootstrap_weights(len(runs_a), n_boot, (*seed, 0, 1)),
                "b": bootstrap_weights(len(runs_b), n_boot, (*seed, 1, 1))}
    S = bootstrap_weights(len(seeds_a), n_boot, (*seed, 2, 1))
    out = {}
    for k, (name, runs, reps) in enumerate((("a", runs_a, reps_a), ("b", runs_b, reps_b))):
        P = bootstrap_weights(len(reps), n_boot, (*seed, k, 1))
        out[name] = np.stack([P[:, reps.index(model)] * S[:, seeds_a.index(s)]
                              for model, s in zip(runs["model"], runs["seed"])], axis=1)
    return out
