"""The study's conclusions, each written once: the sentences the book states about a family.

Every verdict the book prints is made here from numbers that ``mtnb.study.summary`` (intervals
over seeds, paired bootstrap comparisons) and the analyses (separability, SVD, the pretraining
records) computed; the book's pages place these sentences, they do not write their own.

- ``paired_finding``: the family paragraph from paired comparisons (Holm-corrected), on the
  tasks that resolve what an encoder adds (``tasks_that_resolve``); ``family_finding``, the
  same from overlapping intervals over seeds when no per-example scores exist;
- ``separability_finding`` and ``ceiling_note``: whether the translation members are more
  separable by language than their base (the paper's explanation, measured);
- ``translation_evidence``, ``retrieval_evidence``: whether the translation members learned to
  translate, and what continued pretraining did to translation retrieval;
- ``svd_finding``: which translation member's weights moved furthest from the base.

A difference counts only when it is resolved (non-overlapping intervals, or Holm p < alpha);
where none is, a sentence says how large a difference the intervals exclude, never that there
is no effect.
"""

from __future__ import annotations

import math
import statistics

import numpy as np

from mtnb.analysis.separability import last_layer
from mtnb.study.summary import cross_lingual, overlap


def family_finding(table, base: str, mt: list[str], controls: list[str] = (), protocol: str = "finetune") -> str:
    """One paragraph comparing a family with the paper's finding from overlapping intervals
    (``paired_finding`` is the paired test, used when per-example scores exist): continued
    pretraining on translation (the ``mt`` variants of ``base``) does not help zero-shot
    transfer, and one-to-many (the variant named ``*o2m*``) hurts most.

    ``table`` is a normalized results table restricted to one mode, whose ``system`` is the
    model name. Transfer is the mean score over the non-English languages; two models differ
    only where their 95% intervals do not overlap. ``controls`` are variants continued on their
    own objective for the same steps (e.g. masked LM); translation variants are compared with
    them too. ``protocol`` (``finetune`` or ``probe``): only fine-tuning, the paper's protocol,
    is compared with the paper; a probe paragraph says that it is about representations.
    """
    scores = cross_lingual(table[~table["control"]])
    ci = {(row.task, row.system): row.ci for row in scores.itertuples()}
    tasks = [t for t in dict.fromkeys(scores["task"]) if (t, base) in ci]
    mt = [m for m in mt if any((t, m) in ci for t in tasks)]
    if not tasks or not mt:
        return (f"The results hold no translation variant of {base} beside {base} itself, so the paper's "
                "finding cannot be tested here.")
    seeds = max(c.n for c in ci.values())
    parts = [f"Transfer here is the mean score over the non-English languages, with its 95% t-interval over "
             f"{seeds} seed{'s' * (seeds != 1)} in brackets; two models differ only where their intervals do "
             "not overlap."]
    if seeds < 2:
        parts.append("With one seed there are no intervals, so no difference can be resolved.")
    pooled = int(table["pretraining_seeds"].max()) if "pretraining_seeds" in table else 1
    if pooled > 1:
        parts.append(f"Each continued variant was pretrained with {pooled} seeds: a replica's score is first "
                     "averaged over its fine-tuning seeds, and the variant's interval is over its pretraining seeds.")
    if protocol != "finetune":
        parts.insert(0, PROBE_CAVEAT)
    parts.append(_first_finding(ci, tasks, base, mt, protocol))
    parts.append(_second_finding(ci, tasks, base, mt, protocol))
    for control in controls:
        if any((t, control) in ci for t in tasks):
            parts.append(_control_against_base(ci, tasks, control, base))
            parts.append(_against_control(ci, tasks, control, mt))
    return " ".join(parts)


def compare_intervals(ci: dict, tasks: list[str], model: str, other: str) -> list[tuple[str, str]]:
    """[(task, verdict of model against other)] over the tasks both have."""
    return [(t, overlap(ci[(t, model)], ci[(t, other)])) for t in tasks if (t, model) in ci and (t, other) in ci]


def cite_intervals(ci: dict, task: str, a: str, b: str) -> str:
    """'on T, a 41.2 [38.0, 44.4] against b 45.0 [43.1, 46.9]'."""
    return f"on {task}, {a} {ci[(task, a)].bracket()} against {b} {ci[(task, b)].bracket()}"


def _first_finding(ci: dict, tasks: list[str], base: str, mt: list[str], protocol: str = "finetune") -> str:
    """Whether any translation variant transfers better than the base."""
    verdicts = [(m, t, v) for m in mt for t, v in compare_intervals(ci, tasks, m, base)]
    better = [(m, t) for m, t, v in verdicts if v == "higher"]
    worse = [(m, t) for m, t, v in verdicts if v == "lower"]
    if better:
        cites = "; ".join(cite_intervals(ci, t, m, base) for m, t in better[:3])
        lead = ("The paper's first finding does not hold here: continued" if protocol == "finetune" else "Continued")
        return (f"{lead} pretraining on translation helps "
                f"transfer in {len(better)} of {count(len(verdicts), 'model-task comparison')} ({cites}).")
    m, t = max(((m, t) for m, t, _ in verdicts), key=lambda pair: abs(ci[(pair[1], pair[0])].mean - ci[(pair[1], base)].mean))
    unresolved = len(verdicts) - len(worse)
    half = max((ci[(t, x)].half for x in [*mt, base] for t in tasks if (t, x) in ci and not math.isnan(ci[(t, x)].half)),
               default=float("nan"))
    width = f" (intervals up to ±{half:.1f} points wide)" if not math.isnan(half) else ""
    return (f"No translation variant scores above {base} beyond the intervals{as_paper(protocol, ', as the paper found')}: of "
            f"{count(len(verdicts), 'model-task comparison')}, {len(worse)} lower and {unresolved} overlapping (no "
            f"difference we can resolve{width}); the largest difference is {cite_intervals(ci, t, m, base)}. Overlapping "
            "intervals do not show that there is no effect, only that none this large was resolved.")


def _second_finding(ci: dict, tasks: list[str], base: str, mt: list[str], protocol: str = "finetune") -> str:
    """Whether the one-to-many variant loses most against the base."""
    o2m = next((m for m in mt if "o2m" in m), None)
    if o2m is None:
        return "The family has no one-to-many variant, so the paper's second finding (o2m hurts most) is not tested."
    drop = {m: float(np.mean([ci[(t, base)].mean - ci[(t, m)].mean for t in tasks if (t, m) in ci])) for m in mt}
    worst = max(drop, key=drop.get)
    others = ", ".join(f"{m} {points(drop[m])}" for m in mt if m != o2m)
    verdicts = [v for _, v in compare_intervals(ci, tasks, o2m, base)]
    below, above = verdicts.count("lower"), verdicts.count("higher")
    if worst == o2m and drop[o2m] > 0:
        resolved = (f"its interval lies below {base}'s on {below} of {count(len(verdicts), 'task')}" if below else
                    f"but its intervals overlap {base}'s on every task, so this is not a drop we can resolve")
        return (f"{as_paper(protocol, 'As in the paper, o', 'O')}ne-to-many hurts most: {o2m} {points(drop[o2m])} against {base} on average "
                f"over the tasks" + (f" ({others})" if others else "") + f"; {resolved}.")
    resolved = (f"its interval lies above {base}'s on {above} and below on {below} of {count(len(verdicts), 'task')}"
                if above or below else f"its intervals overlap {base}'s on every task: no difference we can resolve")
    if drop[worst] <= 0:
        return (f"{as_paper(protocol, 'Unlike the paper, n', 'N')}o translation variant loses against {base} on average over the tasks: {o2m} "
                f"{points(drop[o2m])}" + (f" ({others})" if others else "") + f"; {resolved}.")
    return (f"{as_paper(protocol, 'Unlike the paper, o', 'O')}ne-to-many does not hurt most here: {worst} {points(drop[worst])} against {base} "
            f"on average over the tasks, {o2m} {points(drop[o2m])}; for {o2m}, {resolved}.")


def _control_against_base(ci: dict, tasks: list[str], control: str, base: str) -> str:
    """Whether a variant continued on its own objective kept its base's transfer: its mean
    inside or above the base's 95% interval, task by task."""
    kept = [t for t in tasks if (t, control) in ci and not ci[(t, control)].mean < ci[(t, base)].low]
    lost = [t for t in tasks if (t, control) in ci and t not in kept]
    if not lost:
        return (f"{control} keeps {base}'s transfer on every task (its mean inside or above {base}'s interval; "
                + "; ".join(cite_intervals(ci, t, control, base) for t in kept[:2]) + ").")
    return (f"{control} falls below {base}'s interval on {count(len(lost), 'task')} of {len(kept) + len(lost)} ("
            + "; ".join(cite_intervals(ci, t, control, base) for t in lost[:2]) + ").")


def _against_control(ci: dict, tasks: list[str], control: str, mt: list[str]) -> str:
    """How the translation variants compare with a variant continued on its own objective."""
    verdicts = [v for m in mt for _, v in compare_intervals(ci, tasks, m, control)]
    counts = {v: verdicts.count(v) for v in ("higher", "lower", "overlap")}
    return (f"Against {control}, continued for the same steps on its own objective, the translation variants are "
            f"higher in {counts['higher']}, lower in {counts['lower']} and not resolvably different in "
            f"{counts['overlap']} of {count(len(verdicts), 'model-task comparison')}.")


def p_text(p: float) -> str:
    """A p-value as the book prints it: ``0.031``, ``0.0012``, ``1``."""
    return f"{p:.2g}"


PROBE_CAVEAT = ("These are linear probes on frozen encoders: a finding about representations. The paper fine-tunes "
                "whole models, so this paragraph does not test its claim; the fine-tuning verdict does.")


def as_paper(protocol: str, finetune: str, other: str = "") -> str:
    """``finetune``'s words where the protocol is fine-tuning, the paper's, else ``other``: only
    a fine-tuning result is compared with the paper."""
    return finetune if protocol == "finetune" else other


MARGIN = 10.0   # points by which the base must beat the bag-of-subwords control on a task for the verdict to use it


def tasks_that_resolve(dev, base: str, tasks: list[str], margin: float = MARGIN) -> tuple[list[str], str]:
    """The ``tasks`` on which ``base`` beats the bag-of-subwords control by at least ``margin``
    points on English dev (on the others a probe or a fine-tuned model measures little beyond
    shared words, so a difference between encoders there says little about their
    representations), and a sentence naming the tasks left out with their margins ('' when none
    is). ``dev``: normalized rows of one mode with the controls; only its English dev rows (split
    dev, language en) are read, never a test score, so no test result can change the tasks
    chosen. A task without English dev scores of both is kept, and the sentence says so."""
    en = dev[(dev["split"] == "dev") & (dev["language"] == "en")] if len(dev) else dev
    mean = en.groupby(["task", "system"])["value"].mean().to_dict() if len(en) else {}
    gap = {t: mean[(t, base)] - mean[(t, "bag-of-subwords")] for t in tasks
           if (t, base) in mean and (t, "bag-of-subwords") in mean}
    dropped = [t for t in tasks if t in gap and gap[t] < margin]
    unjudged = [t for t in tasks if t not in gap]
    said = []
    if dropped:
        said.append(f"{' and '.join(dropped)} {'is' if len(dropped) == 1 else 'are'} left out of this verdict: there "
                    f"{base} beats the bag-of-subwords control on English dev by only "
                    + " and ".join(f"{gap[t]:+.1f}" for t in dropped) + f" points (the bar is {margin:g}), so "
                    + ("it measures" if len(dropped) == 1 else "they measure") + " little of what an encoder adds.")
    if unjudged:
        said.append(f"{' and '.join(unjudged)} {'is' if len(unjudged) == 1 else 'are'} kept without the English dev "
                    "check (no English dev scores: add dev to the zero-shot section's splits).")
    return [t for t in tasks if t not in dropped], " ".join(said)


def paired_finding(table, base: str, mt: list[str], controls: list[str] = (), alpha: float = 0.05,
                   tasks: list[str] | None = None, dropped: str = "", protocol: str = "finetune") -> str:
    """The family paragraph from paired comparisons (``paired_comparisons``): whether a
    translation member transfers better or worse than ``base``, whether one-to-many loses most,
    whether each control keeps ``base``'s transfer, and how the translation members compare with
    the controls. A difference counts when its Holm-adjusted p is below ``alpha``; where none
    does, the paragraph says how large a difference the intervals exclude, never that there is
    no effect. ``tasks``: the tasks the verdict uses (``tasks_that_resolve``; None: all), and
    ``dropped`` the sentence on those it leaves out. ``protocol``: only fine-tuning, the paper's
    protocol, is compared with the paper; a probe paragraph says that it is about representations."""
    if table is None or table.empty or not (table["b"] == base).any():
        return (f"The results hold no paired comparison with {base} (no per-example scores, or no continued member "
                "beside it), so the paper's finding cannot be tested here.")
    compared = len(table)
    if tasks is not None:
        table = table[table["task"].isin(tasks)]
        if table.empty:
            return (f"No task resolves what the encoders add ({dropped}), so the paper's finding cannot be tested "
                    "here.").replace(".),", "),")

    def sig(rows, sign):
        return rows[(rows["p_holm"] < alpha) & (np.sign(rows["difference"]) == sign)]

    def bound(rows):
        """The largest |interval end| among rows: no difference beyond it is compatible with them."""
        return float(np.max(np.abs(rows[["low", "high"]].to_numpy()))) if len(rows) else 0.0

    def cite(row):
        return (f"{row.a} − {row.b} on {row.task}: {row.difference:+.1f} points [{row.low:+.1f}, {row.high:+.1f}], "
                f"Holm p = {p_text(row.p_holm)}")

    parts = [f"Transfer is the mean score over the non-English languages. Every model is scored on the same test "
             f"examples, so each comparison is paired: a bootstrap over those examples gives the difference's 95% "
             f"interval and p-value, and Holm's method corrects the {compared} comparisons together (a difference "
             f"counts at Holm p < {alpha:g}). The bootstrap draws the runs as well as the examples, so an interval "
             "also spans what another seed could have given; a fine-tuning seed trains both models of a comparison "
             "on the same English subsample, so both draw the same seeds.", resolution(table, base)]
    if protocol != "finetune":
        parts.insert(0, PROBE_CAVEAT)
    if dropped:
        parts.append(dropped)
    vs_base = table[table["a"].isin(mt) & (table["b"] == base)]
    better, worse = sig(vs_base, 1), sig(vs_base, -1)
    flat = vs_base.drop(better.index).drop(worse.index)
    if len(better):
        parts.append(f"Continued pretraining on translation helps transfer in {len(better)} of "
                     f"{count(len(vs_base), 'member-task comparison')}{as_paper(protocol, ', unlike the paper')} ("
                     + "; ".join(cite(r) for r in better.head(3).itertuples()) + ").")
    else:
        parts.append(f"No translation member transfers better than {base}: of "
                     f"{count(len(vs_base), 'member-task comparison')}, {len(worse)} lower and {len(flat)} without a "
                     "resolved difference" + (f" (their intervals exclude differences beyond ±{bound(flat):.1f} "
                                             "points; smaller effects, either way, remain possible)" if len(flat)
                                             else "") + "." + as_paper(protocol, " This agrees with the paper's "
                                                                        "first finding as far as that resolution goes."))
    if len(worse):
        parts.append("Lower: " + "; ".join(cite(r) for r in worse.head(3).itertuples()) + ".")
    o2m = next((m for m in mt if "o2m" in m), None)
    if o2m is not None and (vs_base["a"] == o2m).any():
        mean_diff = vs_base.groupby("a")["difference"].mean()
        worst = mean_diff.idxmin()
        o2m_rows = vs_base[vs_base["a"] == o2m]
        below = len(sig(o2m_rows, -1))
        where = (f"{o2m} lies resolvably below {base} on {below} of {count(len(o2m_rows), 'task')}")
        if worst == o2m and below:
            parts.append(f"{as_paper(protocol, 'As in the paper, o', 'O')}ne-to-many hurts most: {o2m} {mean_diff[o2m]:+.1f} points against {base} "
                         f"on average over the tasks; {where}.")
        else:
            not_reproduced = as_paper(protocol, "The paper's second finding (one-to-many hurts most) is not reproduced",
                                      "One-to-many does not hurt most")
            parts.append(f"{not_reproduced}: the lowest mean "
                         f"difference from {base} over the tasks is {worst}'s ({mean_diff[worst]:+.1f} points; {o2m} "
                         f"{mean_diff[o2m]:+.1f}), and {where}.")
    for control in controls:
        rows = table[(table["a"] == control) & (table["b"] == base)]
        if len(rows):
            lost, gained = sig(rows, -1), sig(rows, 1)
            if len(lost):
                verb, shown = f"loses {base}'s transfer: ", lost
            elif len(gained):
                verb, shown = f"raises {base}'s transfer (no resolved drop on any task): ", gained
            else:
                verb, shown = f"keeps {base}'s transfer (no resolved difference on any task): ", rows
            parts.append(f"{control} {verb}" + "; ".join(cite(r) for r in shown.head(3).itertuples()) + ".")
        against = table[table["a"].isin(mt) & (table["b"] == control)]
        if len(against):
            up, down = sig(against, 1), sig(against, -1)
            rest = against.drop(up.index).drop(down.index)
            parts.append(f"Against {control}, continued for the same steps on its own objective, the translation "
                         f"members are higher in {len(up)}, lower in {len(down)} and without a resolved difference in "
                         f"{len(rest)} of {count(len(against), 'comparison')}"
                         + (f" (within ±{bound(rest):.1f} points)" if len(rest) else "") + ".")
    return " ".join(parts)


RESOLUTION = 3.0   # points: the half-width the study's paired intervals should not exceed


def resolution(table, base: str | None = None, bar: float = RESOLUTION) -> str:
    """How wide the paired intervals are, per task: the half-width (high - low) / 2, its median
    and largest over the task's comparisons and, with ``base``, the largest among the members'
    comparisons with it, which the ``bar`` applies to (issue 18: member − base within ±3
    points); a difference smaller than about the half-width could not have been resolved. The
    bar is checked on the half-widths as printed (one decimal)."""
    if table is None or table.empty:
        return ""
    table = table.assign(half=(table["high"] - table["low"]) / 2)
    cells, wide = [], []
    for task, rows in table.groupby("task", sort=False):
        against = rows[rows["b"] == base] if base is not None else rows
        cell = f"{task} ±{rows['half'].median():.1f} (at most ±{rows['half'].max():.1f}"
        if base is not None and len(against):
            cell += f"; against {base} at most ±{against['half'].max():.1f}"
        cells.append(cell + ")")
        if len(against) and round(float(against["half"].max()), 1) > bar:
            wide.append(task)
    which = f"the comparisons with {base}" if base is not None else "the comparisons"
    return ("Resolution: the intervals' half-widths are, per task, " + "; ".join(cells) + " points; "
            + (f"the bar for {which} is ±{bar:g}, which " + " and ".join(wide) + (" misses" if len(wide) == 1 else " miss")
               + ", so smaller differences there go unresolved." if wide else
               f"{which} meet the bar of ±{bar:g} on every task."))


def count(n: int, noun: str) -> str:
    """'1 task', '2 tasks'."""
    return f"{n} {noun}{'s' * (n != 1)}"


def points(drop: float) -> str:
    """'loses 3.1 points' or 'gains 0.4 points'."""
    return f"loses {drop:.1f} points" if drop >= 0 else f"gains {-drop:.1f} points"


MEASURES = {"language-id": "language ID", "retrieval": "retrieval"}


def separability_finding(table, base: str, mt: list[str], level: float = 0.05) -> str:
    """What the paired comparisons say about the paper's explanation: are the translation
    members more separable by language (language ID up, retrieval down) than ``base``?"""
    def verdict(rows, measure, more):
        """'by language ID, more separable: a; no difference resolved: b (within ±x points)'."""
        sub = rows[rows["measure"] == measure]
        up = sub[(sub["p_holm"] < level) & (sub["difference"] > 0)]["a"].tolist()
        down = sub[(sub["p_holm"] < level) & (sub["difference"] < 0)]["a"].tolist()
        flat = sub[sub["p_holm"] >= level]
        width = max((max(abs(r.low), abs(r.high)) for r in flat.itertuples()), default=0.0)
        parts = []
        if up:
            parts.append(f"{'more' if more else 'less'} separable: {', '.join(up)}")
        if down:
            parts.append(f"{'less' if more else 'more'} separable: {', '.join(down)}")
        if len(flat):
            parts.append(f"no difference resolved: {', '.join(flat['a'])} (within ±{width:.1f} points)")
        return f"by {MEASURES[measure]}, " + "; ".join(parts) if parts else ""

    rows = table[table["a"].isin(mt) & (table["b"] == base)]
    if rows.empty:
        return ""
    said = [verdict(rows, "language-id", True), verdict(rows, "retrieval", False)]
    return (f"The translation members against {base} at the last layer (paired bootstrap over the CKA samples' "
            f"paragraphs, Holm-corrected across the {len(table)} comparisons of the table): "
            + "; ".join(x for x in said if x) + ". The paper's explanation predicts more separable translation "
            "members: language ID up, retrieval down.")


def ceiling_note(per_sample, models: list[str], ceiling: float = 99.0) -> str:
    """A sentence when language ID sits at its ceiling at the last layer of ``models`` (the
    probe tells the languages apart almost perfectly, so it cannot show one model more
    separable than another); else ''."""
    last = last_layer(per_sample)
    last = last[(last["measure"] == "language-id") & last["model"].isin(models)]
    means = last.groupby("model")["score"].mean()
    at = [m for m in models if m in means and means[m] >= ceiling]
    if not at:
        return ""
    return (f" Language ID is at its ceiling (≥ {ceiling:g}%) at the last layer of {len(at)} of {len(means)} of these "
            "models (" + ", ".join(f"{m} {means[m]:.1f}" for m in at) + "): a linear probe tells the languages apart "
            "almost perfectly, so this measure cannot show a member becoming more separable; retrieval carries the "
            "comparison.")


def svd_finding(svd, base: str, mt: list[str]) -> str:
    """' In the weights, <member> moved furthest from <base> ...': the translation member whose
    singular values lie furthest from the base's (mean d over layers and matrices), when the SVD
    table ``svd`` has one; else ''."""
    if svd is None or not svd["model"].isin(mt).any():
        return ""
    moved = svd[svd["model"].isin(mt)].groupby("model")["distance"].mean().sort_values()
    return (f" In the weights, {moved.index[-1]} moved furthest from {base} (mean d {moved.iloc[-1]:.3f} over "
            f"layers and matrices; the paper's furthest mBART variant is o2m).")


BLIND_MARGIN = 10.0   # chrF points over the mismatched-source bar that count as reading the source


TRAINED = {"m2o": lambda d: d.endswith("-en"), "o2m": lambda d: d.startswith("en-"), "m2m": lambda d: True}


def translation_bars(record: dict) -> dict[str, tuple[bool, bool]]:
    """Per direction the member was trained on: (chrF >= copying the source, chrF >= the
    mismatched-source chrF + ``BLIND_MARGIN``). Empty without a chrF record."""
    if not record.get("chrf") or record.get("directions") not in TRAINED:
        return {}
    copy, blind = record.get("chrf_copy_source") or {}, record.get("chrf_mismatched_source") or {}
    return {d: (v >= copy.get(d, -math.inf), v >= blind.get(d, -math.inf) + BLIND_MARGIN)
            for d, v in record["chrf"].items() if TRAINED[record["directions"]](d)}


def translation_evidence(records: dict[str, dict], mt: list[str]) -> str:
    """One or two sentences on whether the translation variants learned to translate: per
    variant, its mean chrF over the directions it was trained on, beside the same directions'
    mean chrF when copying the source and when its decoder reads a mismatched source, and in
    how many of those directions it holds each bar (``translation_bars``; ``records``:
    ``pretraining_records``); then what the counts over all variants mean. Empty when no
    variant has a chrF record."""
    clauses, bars = [], []
    for m in mt:
        r = records.get(m) or {}
        ours_bars = translation_bars(r)
        if not ours_bars:
            continue
        dirs = list(ours_bars)
        ours = statistics.mean(r["chrf"][d] for d in dirs)
        means = [(name, statistics.mean(r[key][d] for d in dirs)) for name, key in
                 (("copying the source", "chrf_copy_source"), ("a mismatched source", "chrf_mismatched_source"))
                 if r.get(key)]
        reads, beats = sum(b for _, b in ours_bars.values()), sum(c for c, _ in ours_bars.values())
        clauses.append(f"{m} {ours:.1f} (" + ", ".join(f"{name} {value:.1f}" for name, value in means)
                       + f"; reads its source in {reads} and beats copying in {beats} of {len(dirs)} "
                       f"direction{'s' * (len(dirs) != 1)})")
        bars += ours_bars.values()
    if not clauses:
        return ""
    n, reads, beats = len(bars), sum(b for _, b in bars), sum(c for c, _ in bars)
    counts = (f"Over all the variants' trained directions, chrF is {BLIND_MARGIN:.0f} or more points above a "
              f"mismatched source in {reads} of {n} (the decoder reads its source) and at least that of copying the "
              f"source in {beats} of {n}. ")
    if reads == beats == n:
        verdict = "Every variant translates, so their encoders were trained by working translation models."
    elif reads >= n / 2:
        verdict = ("The decoders read their sources, so the encoders were trained by translation models that work, "
                   "weakly" + (": where copying scores higher, the names, numbers and interface terms a source shares "
                               "with its translation carry more characters than these translations get right."
                               if beats < n else "."))
    else:
        verdict = ("Most decoders barely read their sources: those variants learned the translation objective's loss "
                   "without learning to translate, so their encoders saw translation gradients, not a working "
                   "translation model; read their rows with that in mind.")
    return ("Did the translation variants learn to translate? Mean chrF over the directions each was trained on: "
            + "; ".join(clauses) + ". " + counts + verdict)


def retrieval_evidence(records: dict[str, dict], family: list[str]) -> str:
    """One or two sentences on what continued pretraining did to the sentence-level geometry the
    probes read: translation retrieval (top-1, mean over the directions) of the base before and
    of each member after (``records``: ``pretraining_records``), and which members lowered it.
    Empty when no member has a retrieval record."""
    members = [m for m in family if (records.get(m) or {}).get("retrieval_after")]
    if not members:
        return ""
    before = statistics.mean(records[members[0]]["retrieval_before"].values())
    after = {m: statistics.mean(records[m]["retrieval_after"].values()) for m in members}
    lowered = [m for m in members if after[m] < before]
    text = ("Translation retrieval on held-out pairs (top-1 accuracy of finding a sentence's translation by the cosine "
            f"of mean-pooled last-layer encodings, mean over the directions): the base {before:.1f} before, then "
            + ", ".join(f"{m} {after[m]:.1f}" for m in members) + ". ")
    if not lowered:
        return text + "No continued objective lowered it."
    return text + (f"Only {', '.join(lowered)} lowered it: where such a member also loses transfer, a likely reason "
                   "is that its objective eroded the sentence-level geometry that e5's contrastive training built and "
                   "that the probes read from the last layer." if len(lowered) < len(members) else
                   "Every continued objective lowered it.")


# --------------------------------------------------------------------------------------------
# The verdict: the answer per protocol, from the plan's comparisons (mtnb.study.verdict)
# --------------------------------------------------------------------------------------------

PROTOCOL_PHRASES = {
    "finetune": "By fine-tuning, the paper's protocol (every weight trained on English, the model chosen on English dev)",
    "probe": "By linear probes on the frozen encoders (a finding about representations, not the paper's protocol)",
}


def holm_text(row) -> str:
    """Holm's p of a verdict row as printed: ``Holm p = 0.031``, or ``Holm p = 4e-08 (normal tail)``
    where no bootstrap draw crossed zero (its p is then the normal tail of the draws:
    ``mtnb.analysis.paired_bootstrap.cluster_difference``)."""
    return f"Holm p = {row.p_holm:.1g} (normal tail)" if row.at_floor else f"Holm p = {p_text(row.p_holm)}"


def cite_row(row, with_task: bool = True) -> str:
    """One comparison: ``mini-topic +1.2 [-0.5, +2.9], Holm p = 0.41``."""
    where = f"{row.task} " if with_task else ""
    return f"{where}{row.difference:+.1f} [{row.low:+.1f}, {row.high:+.1f}], {holm_text(row)}"


def comparison_sentence(rows, a: str, b: str, alpha: float) -> str:
    """Every task of one comparison a − b in one sentence, resolved gains and losses named with
    the same weight: ``me5-m2o − me5-small: higher on ud-pos (...); lower on mini-topic (...).``
    or ``... : no resolved difference (mini-topic ..., ud-pos ...).``"""
    up = rows[(rows["p_holm"] < alpha) & (rows["difference"] > 0)]
    down = rows[(rows["p_holm"] < alpha) & (rows["difference"] < 0)]
    flat = rows.drop(up.index).drop(down.index)
    parts = []
    for label, part in (("higher on", up), ("lower on", down), ("no resolved difference on", flat)):
        if len(part):
            parts.append(f"{label} " + "; ".join(cite_row(r) for r in part.itertuples()))
    return f"{a} − {b}: " + "; ".join(parts) + "."


def excluded_bound(rows) -> float:
    """The largest |interval end| among unresolved rows: the effects their intervals exclude lie
    beyond it."""
    return float(np.max(np.abs(rows[["low", "high"]].to_numpy()))) if len(rows) else 0.0


def protocol_verdict(verdict, plan: dict, protocol: str, filtered=None) -> list[str]:
    """The short sentences of one protocol's verdict: the protocol and what was compared, one
    sentence per comparison of the plan (resolved gains and losses alike), a family-wide
    sentence only where every translation member agrees, and, for fine-tuning alone, whether the
    paper's finding holds. ``verdict``: ``mtnb.study.verdict.verdict_table``'s rows;
    ``filtered``: its task filter (``verdict_filter.csv``), to say why no task entered."""
    rows = verdict[verdict["protocol"] == protocol]
    alpha, base = plan["alpha"], plan["base"]
    if rows.empty:
        why = ""
        if filtered is not None and len(filtered[filtered["protocol"] == protocol]):
            why = (f" (on English dev, {base} minus the bag-of-subwords control: "
                   + "; ".join(f"{r.margin:+.1f} points on {r.task}" for r in filtered[filtered["protocol"] == protocol]
                               .itertuples()) + f"; the plan's bar is +{plan['margin']:g})")
        return [f"{PROTOCOL_PHRASES.get(protocol, protocol)}: no task entered the verdict{why}, so this protocol "
                "gives no answer here" + (", and says nothing for or against the paper." if protocol == "finetune"
                                          else ".")]
    tasks = list(dict.fromkeys(rows["task"]))
    lines = [f"{PROTOCOL_PHRASES.get(protocol, protocol)}, on {', '.join(tasks)}: the difference in non-English "
             f"mean score (points), its 95% interval and Holm's p over the {len(rows)} comparisons of this protocol."]
    for (a, b), sub in rows.groupby(["a", "b"], sort=False):
        lines.append(comparison_sentence(sub, a, b, alpha))
    vs_base = rows[rows["a"].isin(plan["translation"]) & (rows["b"] == base)]
    if len(vs_base):
        resolved = vs_base["p_holm"] < alpha
        signs = set(np.sign(vs_base.loc[resolved, "difference"]))
        members = list(dict.fromkeys(vs_base["a"]))
        who = (f"The translation member {members[0]}" if len(members) == 1
               else f"Every translation member ({', '.join(members)})")
        where = f"on {tasks[0]}" if len(tasks) == 1 else "on every task"
        if resolved.all() and signs == {1.0}:
            family = f"{who} transfers better than {base} {where}."
        elif resolved.all() and signs == {-1.0}:
            family = f"{who} transfers worse than {base} {where}."
        elif not resolved.any():
            family = (f"No translation member differs resolvably from {base}; the intervals exclude differences "
                      f"beyond ±{excluded_bound(vs_base):.1f} points, and smaller ones, either way, remain possible.")
        else:
            family = (f"The translation members do not agree: no sentence holds for the family "
                      f"({int((resolved & (vs_base['difference'] > 0)).sum())} resolved gains, "
                      f"{int((resolved & (vs_base['difference'] < 0)).sum())} resolved losses, "
                      f"{int((~resolved).sum())} unresolved, of {len(vs_base)} member-task comparisons).")
        lines.append(family)
        if protocol == "finetune":
            lines.append(paper_sentence(vs_base, alpha))
    return lines


def paper_sentence(vs_base, alpha: float) -> str:
    """Whether the paper's finding (continued pretraining on translation does not improve
    zero-shot transfer) holds under its own protocol here: unlike the paper where a translation
    member resolvably gains on some task; like the paper otherwise, as far as the intervals
    resolve (their bound)."""
    gains = vs_base[(vs_base["p_holm"] < alpha) & (vs_base["difference"] > 0)]
    losses = vs_base[(vs_base["p_holm"] < alpha) & (vs_base["difference"] < 0)]
    if len(gains):
        return ("Unlike the paper, continued pretraining on translation improves transfer after fine-tuning here: "
                + "; ".join(f"{r.a} on {r.task}" for r in gains.itertuples()) + ".")
    unresolved = vs_base.drop(losses.index)
    bound = (f"; on the rest the intervals exclude gains beyond {excluded_bound(unresolved):.1f} points"
             if len(unresolved) else "")
    if len(losses):
        return ("Like the paper, continued pretraining on translation does not improve transfer after fine-tuning "
                "here: it lowers it for " + "; ".join(f"{r.a} on {r.task}" for r in losses.itertuples()) + bound + ".")
    return ("Like the paper, continued pretraining on translation does not resolvably improve transfer after "
            f"fine-tuning here{bound}.")


def plan_lines(plan: dict, filter_table, verdict) -> list[str]:
    """The analysis plan as the book prints it above the verdict: the comparisons, alpha, the
    draws, the task filter on English dev (with each task's margin), the probes' layers and
    what a pretraining seed changes."""
    from_plan = [f"Base {plan['base']}; masked-LM control {plan.get('control') or '(none)'}; translation "
                 f"{', '.join(plan['translation']) or '(none)'}; alignment {plan.get('alignment') or '(none)'}.",
                 "Comparisons: each continued member − the base; each translation member − the masked-LM control; "
                 "alignment − the control; alignment − each translation member.",
                 f"Level: Holm-corrected p < {plan['alpha']:g} within each protocol; draws: "
                 + (f"{int(verdict['n_boot'].max()):,}" if len(verdict) else "as planned")
                 + " (enough that the smallest attainable Holm p stays at least ten times below the level; where "
                 "no draw crosses 0, p is the draws' normal tail).",
                 "Intervals draw each member's pretraining replicas, then the fine-tuning seeds (shared by the two "
                 "models of a comparison), then the test clusters (a help page, or a UD sentence, one draw for every "
                 "language)."]
    if len(filter_table):
        margins = "; ".join(f"{r.task} by {'fine-tuning' if r.protocol == 'finetune' else r.protocol} {r.margin:+.1f} "
                            f"({'enters' if r.enters else 'left out'})"
                            for r in filter_table.drop_duplicates(["task", "protocol"]).itertuples())
        from_plan.append(f"Tasks: {', '.join(plan['tasks'])}; a task enters when the base beats the bag-of-subwords "
                         f"control on English dev by at least {plan['margin']:g} points (test scores are never read "
                         f"for this): {margins}.")
    for key in ("probe_layers", "pretraining_seeds"):
        if plan.get(key):
            from_plan.append(plan[key])
    return from_plan
