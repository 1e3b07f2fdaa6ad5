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

from mtnb.analysis.paired_bootstrap import (ClusterSums, cluster_difference, cluster_sums_of_rows, draws_needed,
                                            holm)
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


PAIRED_COLUMNS = ["task", "a", "b", "a_score", "b_score", "difference", "low", "high", "p", "p_holm", "n_boot",
                  "at_floor", "floor", "n_clusters", "runs_a", "runs_b"]


def family_pairs(base: str, mt: list[str], controls: list[str]) -> list[tuple[str, str]]:
    """The comparisons the family paragraph draws: every continued member against ``base``, and
    every translation member against every control."""
    return [(m, base) for m in [*mt, *controls]] + [(m, c) for m in mt for c in controls]


def paired_comparisons(units, pairs: list[tuple[str, str]], *, n_boot: int | None = None, seed: int = 0,
                       runs: bool = True):
    """The hierarchical cluster bootstrap (``mtnb.analysis.paired_bootstrap.cluster_difference``)
    of each (a, b) in ``pairs`` on every task both were scored on: the difference a - b of their
    non-English mean scores (points), with its 95% interval, p, and Holm's p over all rows.
    ``units``: the model rows (``system == "model"``) of one split and mode of the zero-shot jobs'
    ``units.csv.gz``. Columns ``PAIRED_COLUMNS``: ``n_boot`` the draws, ``at_floor`` whether no
    draw crossed 0 (counting would then give only p <= ``floor``, 2 / (n_boot + 1); p is the
    draws' normal tail instead),
    ``n_clusters`` the clusters drawn, ``runs_a`` / ``runs_b`` the runs (replica, seed) of each.

    A score is a ratio of sums per run and language (``metric_units``: sum num / sum den over
    the units both models hold), averaged over the languages (``averaged_languages`` minus
    English), then over the runs. A draw takes, in order (``cluster_draws``):

    - each member's pretraining replicas (``<member>@p<seed>``), on their own;
    - the fine-tuning seeds (the ``seed`` column), one draw for a and b: seed k trains both on
      the same English sample;
    - the clusters (the ``cluster`` column: a help page, a UD sentence), one draw for every
      language and both models; a units table without ``cluster`` makes each unit its own
      cluster (unit i of every language one cluster).

    Runs come in one of two layouts, else MtnbError naming the model and what is missing:
    a full grid (every replica of a and of b fine-tuned with the same seeds), or the paired
    diagonal of ``replica_seeds: paired`` (replica ``@p<k>`` fine-tuned with seed k alone; a
    model without replicas, the base, with the same seeds k): a member's runs are then one level
    of K runs labelled by k, and draw k pairs its run k with the other model's run k, so the
    interval carries pretraining and fine-tuning variation together.

    ``runs=False`` holds every run fixed and draws the clusters alone (the interval over test
    examples). ``n_boot`` None draws ``draws_needed(rows)``: enough that Holm's smallest
    attainable p over the family stays ten times below 0.05 (at least 10,000). ``seed`` seeds
    the draws (each row its own stream)."""
    if units is None or len(units) == 0:
        return pd.DataFrame(columns=PAIRED_COLUMNS)
    u = units.copy()
    u["model"] = u["model"].astype(str)
    u["member"] = u["model"].str.extract(REPLICA)["member"].fillna(u["model"])
    u["unit"] = u["unit"].astype(str)
    u["cluster"] = u["cluster"].astype(str).where(u["cluster"].notna(), u["unit"]) if "cluster" in u else u["unit"]
    prepared = []
    for t_index, (task, sub) in enumerate(u.groupby("task", sort=False)):
        langs = [lang for lang in averaged_languages(task, list(dict.fromkeys(sub["language"]))) if lang != "en"]
        sub = sub[sub["language"].isin(langs)]
        for p_index, (a, b) in enumerate(pairs):
            both = sub[sub["member"].isin((a, b))]
            if set(both["member"]) != {a, b}:
                continue
            sums = comparison_sums(task, both, a, b)
            if sums is not None:
                prepared.append((task, a, b, *sums, (seed, t_index, p_index)))
    B = n_boot if n_boot is not None else draws_needed(max(1, len(prepared)), alpha=0.05)
    rows = []
    for task, a, b, sums_a, sums_b, stream in prepared:
        drawn = (sums_a, sums_b) if runs else runs_held_fixed(sums_a, sums_b)
        d = cluster_difference(*drawn, n_boot=B, seed=stream)
        score_a, score_b = sums_score(sums_a), sums_score(sums_b)
        rows.append(dict(task=task, a=a, b=b, a_score=score_a, b_score=score_b, difference=score_a - score_b,
                         low=d.low, high=d.high, p=d.p, n_boot=B, at_floor=d.at_floor, floor=d.floor,
                         n_clusters=len(sums_a.clusters), runs_a=int(np.prod(sums_a.num.shape[:2])),
                         runs_b=int(np.prod(sums_b.num.shape[:2]))))
    table = pd.DataFrame(rows, columns=[c for c in PAIRED_COLUMNS if c != "p_holm"])
    table.insert(PAIRED_COLUMNS.index("p_holm"), "p_holm", holm(table["p"].to_numpy()) if len(table) else [])
    return table


def comparison_sums(task: str, rows, a: str, b: str) -> tuple[ClusterSums, ClusterSums] | None:
    """The ``ClusterSums`` of a and of b on the units both hold: ``rows`` are the unit rows of
    one task's compared languages whose ``member`` is a or b (columns model, member, seed,
    language, unit, cluster, num, den). Each language keeps the units both members hold, and
    the clusters present in every language; the runs' layout is ``run_layout``'s. None when no
    language keeps two units. MtnbError when a run lacks units the other runs hold."""
    by_member = {m: rows[rows["member"] == m] for m in (a, b)}
    shared = pd.merge(*(g[["language", "unit"]].drop_duplicates() for g in by_member.values()))
    rows = rows.merge(shared, on=["language", "unit"])
    in_every = rows.groupby("cluster")["language"].nunique()
    rows = rows[rows["cluster"].isin(in_every.index[in_every == rows["language"].nunique()])]
    if rows.empty or rows.groupby("language")["unit"].nunique().max() < 2:
        return None
    layout = run_layout(task, a, rows.loc[rows["member"] == a, ["model", "seed"]].drop_duplicates(),
                        b, rows.loc[rows["member"] == b, ["model", "seed"]].drop_duplicates())
    rows = rows.assign(replica=rows["model"] if layout == "full" else rows["member"])
    sums = []
    for m in (a, b):
        own = rows[rows["member"] == m]
        held = own.groupby(["model", "seed"])["unit"].size()
        expected = own.groupby("language")["unit"].nunique().sum()
        if (held != expected).any():
            (model, run_seed), count = next((k, v) for k, v in held.items() if v != expected)
            raise MtnbError(f"{task}: {model} seed {run_seed} holds {count} units where {m}'s runs hold {expected} "
                            "together; rerun its zero-shot jobs so that every run is scored on the same examples")
        sums.append(cluster_sums_of_rows(own["replica"], own["seed"], own["language"], own["unit"],
                                         own["cluster"], own["num"], own["den"]))
    return sums[0], sums[1]


def run_layout(task: str, a: str, runs_a, b: str, runs_b) -> str:
    """How the cluster bootstrap draws the runs of a and b (tables with columns model, seed: one
    row per run; a replica ``<member>@p<k>`` is a model): ``"full"`` when every replica of a and
    of b was fine-tuned with every seed, the same seeds for both (replicas, then seeds, are
    drawn); ``"paired"`` for the paired diagonal, where a member's replica ``@p<k>`` was
    fine-tuned with seed k alone and the other model (a member paired the same way, or one
    without replicas) with the same seeds k: each member's runs are then one replica level of K
    runs labelled by their seed. MtnbError (task, model, what is missing) otherwise."""
    seeds, full, diagonal, lacking = {}, {}, {}, {}
    for m, runs in ((a, runs_a), (b, runs_b)):
        per_model = {model: sorted(set(g["seed"])) for model, g in runs.groupby("model")}
        seeds[m] = sorted(set(runs["seed"]))
        lacking[m] = [(model, sorted(set(seeds[m]) - set(have))) for model, have in per_model.items()
                      if have != seeds[m]]
        full[m] = not lacking[m]
        found = {model: REPLICA.match(model) for model in per_model}
        diagonal[m] = len(per_model) >= 2 and all(found[model] and have == [int(found[model]["seed"])]
                                                  for model, have in per_model.items())
    single = {m: diagonal[m] or (full[m] and len(set(r["model"])) == 1) for m, r in ((a, runs_a), (b, runs_b))}
    if seeds[a] == seeds[b]:
        if full[a] and full[b]:
            return "full"
        if (diagonal[a] or diagonal[b]) and single[a] and single[b]:
            return "paired"
    for m in (a, b):
        if not (full[m] or diagonal[m]):
            model, missing = lacking[m][0]
            raise MtnbError(f"{task}: {m}'s runs are neither a full grid nor paired: {model} lacks fine-tuning seed(s) "
                            f"{', '.join(map(str, missing))} that {m}'s other runs have (every replica needs every "
                            "seed, or with replica_seeds: paired replica @p<k> seed k alone); rerun its jobs")
    if seeds[a] != seeds[b]:
        short, other = (a, b) if set(seeds[b]) - set(seeds[a]) else (b, a)
        missing = sorted(set(seeds[other]) - set(seeds[short]))
        raise MtnbError(f"{task}: {short} lacks fine-tuning seed(s) {', '.join(map(str, missing))} that {other} has "
                        f"({a}: {', '.join(map(str, seeds[a]))}; {b}: {', '.join(map(str, seeds[b]))}); a paired "
                        "comparison needs the same seeds for both models: run them")
    grid, paired = (b, a) if diagonal[a] else (a, b)
    raise MtnbError(f"{task}: {grid}'s replicas were each fine-tuned with every seed but {paired}'s with one seed each "
                    "(replica_seeds: paired); give both the same replica_seeds")


def runs_held_fixed(a: ClusterSums, b: ClusterSums) -> tuple[ClusterSums, ClusterSums]:
    """a and b with their runs held fixed, so that ``cluster_draws`` draws the clusters alone:
    each model's runs move onto the language axis, crossed with the other model's runs (R_a x
    R_b x K x L "languages", one replica, one seed) so that both share that axis; the mean over
    it is each model's mean over its runs and languages, as before."""
    R_a, K, L, C = a.num.shape
    R_b = b.num.shape[0]
    shape = (R_a, R_b, K, L, C)

    def fixed(x: ClusterSums, axis: int) -> ClusterSums:
        spread = [np.broadcast_to(np.expand_dims(v, axis), shape).reshape(1, 1, -1, C) for v in (x.num, x.den)]
        return ClusterSums(spread[0], spread[1], np.tile(x.units, (R_a * R_b * K, 1)), (0,), (0,),
                           tuple(range(R_a * R_b * K * L)), x.clusters)
    return fixed(a, 1), fixed(b, 0)


def sums_score(sums: ClusterSums) -> float:
    """A model's score in points from its ``ClusterSums``: 100 x the mean over runs and
    languages of sum num / sum den over the clusters (0 where the denominator is 0)."""
    top, bottom = sums.num.sum(axis=3), sums.den.sum(axis=3)
    return float(100 * np.divide(top, bottom, out=np.zeros_like(top), where=bottom > 0).mean())
