"""The CKA page: the CKA job's figures and tables, CKA's uncertainty, separability by language.
"""

from __future__ import annotations

import math
from pathlib import Path

from mtnb.analysis.separability import last_layer
from mtnb.study.book.collect import Study
from mtnb.study.book.markdown import copy_figure, figure, md_table, note, prose
from mtnb.study.outputs import figure_path, read_table


def cka_page(study: Study, figures: Path) -> str:
    """The CKA job's two figures and per-layer tables."""
    parts = [prose("cka", "intro") + "\n"]
    pairs, langs = read_table(study.cka, "cka_model_pairs"), read_table(study.cka, "cka_language_pairs")
    if pairs is None and langs is None:
        return parts[0] + "\n" + note("No finished CKA job" + ("" if "cka" in study.grid.sections
                                                                else ": the grid has no cka section") + ".")
    job = study.done("cka")[0]
    parts.append("\nParameters: " + ", ".join(f"`{k}={v}`" for k, v in job.parameters.items()) + "\n")
    if pairs is not None:
        parts += ["\n" + prose("cka", "model-pairs") + "\n\n",
                  md_table(pairs.assign(pair=pairs["model_a"] + " / " + pairs["model_b"])
                           .pivot_table(index="pair", columns="layer", values="cka", sort=False).round(3))]
        path = copy_figure(figure_path(study.cka, "cka_model_pairs_figure"), figures, "cka_model_pairs.png")
        parts.append("\n" + (figure(path, "CKA model against model") if path else note(prose("cka", "no-figure"))))
    if langs is not None:
        parts += ["\n" + prose("cka", "language-pairs") + "\n\n",
                  md_table(langs.pivot_table(index="model", columns="layer", values="cka", sort=False).round(3))]
        path = copy_figure(figure_path(study.cka, "cka_language_pairs_figure"), figures, "cka_language_pairs.png")
        parts.append("\n" + (figure(path, "CKA language against language") if path else note(prose("cka", "no-figure"))))
        parts.append(language_pair_intervals(langs))
    parts.append(cka_uncertainty_section(pairs, job.parameters, study.cka, figures))
    parts.append(separability_section(study.cka, figures))
    return "".join(parts)


UNSTABLE_WIDTH = 1.0   # a 95% interval of CKA (a value near [0, 1]) wider than this says nothing


def with_interval(value: float, low: float, high: float) -> str:
    """``0.61 [0.52, 0.70]``; the value and "(no interval)" where the bootstrap returned none
    (NaN bounds, as with the tests' 8 samples), or "(unstable interval)" where the interval
    excludes its own estimate or is wider than ``UNSTABLE_WIDTH``: debiased CKA is a ratio whose
    denominator, the debiased HSIC of a representation with itself, comes near 0 in some draws
    of few samples of wide features (the smoke grid's 20 samples gave 0.08 [0.76, 2.75]), and a
    percentile interval of such draws means nothing."""
    if math.isnan(low) or math.isnan(high):
        return f"{value:.2f} (no interval)"
    if not low <= value <= high or high - low > UNSTABLE_WIDTH:
        return f"{value:.2f} (unstable interval)"
    return f"{value:.2f} [{low:.2f}, {high:.2f}]"


def interval_width(width: float) -> str:
    """``0.37 wide``, or what a NaN width means: the bootstrap returned no interval."""
    return "not defined (the bootstrap returned none)" if math.isnan(width) else f"{width:.2f} wide"


def language_pair_intervals(langs) -> str:
    """The last layer's debiased CKA between each pair of languages, per model, with its 95%
    bootstrap interval, and the model's largest biased chance level; '' without intervals."""
    if langs is None or "low" not in langs or "debiased" not in langs:
        return ""
    last = langs[langs["layer"] == langs["layer"].max()].copy()
    last["pair"] = last["lang_a"] + "–" + last["lang_b"]
    last["cell"] = [with_interval(r.debiased, r.low, r.high) for r in last.itertuples()]
    table = last.pivot_table(index="model", columns="pair", values="cell", aggfunc="first", sort=False)
    if "null_biased" in last:
        table["biased chance"] = last.groupby("model", sort=False)["null_biased"].max().round(2)
    return "\n" + prose("cka", "language-pair-intervals") + "\n\n" + md_table(table)


def cka_uncertainty_section(pairs, parameters: dict, folder: Path, figures: Path) -> str:
    """The debiased CKA's bootstrap intervals and the permutation null (chance level)."""
    head = "\n## How precise is CKA here, and what does chance reach?\n\n"
    if pairs is None or "null_biased" not in pairs:
        return head + note(prose("cka", "no-intervals"))
    n = parameters.get("n_samples", "n")
    text = prose("cka", "chance", n=n, null_biased=f"{pairs['null_biased'].median():.2f}",
                 null_min=f"{pairs['null_biased'].min():.2f}", null_max=f"{pairs['null_biased'].max():.2f}",
                 null_debiased=f"{pairs['null_debiased'].median():.2f}",
                 width=interval_width((pairs["high"] - pairs["low"]).median())) + "\n\n"
    last = pairs[pairs["layer"] == pairs["layer"].max()].copy()
    last["pair"] = last["model_a"] + " / " + last["model_b"]
    last["debiased [95%]"] = [with_interval(r.debiased, r.low, r.high) for r in last.itertuples()]
    table = last.pivot_table(index="pair", columns="lang", values="debiased [95%]", aggfunc="first", sort=False)
    biased = last.groupby("pair", sort=False).agg(biased=("biased", "mean"), chance=("null_biased", "max")).round(2)
    table = table.join(biased.rename(columns={"biased": "biased (mean)", "chance": "biased chance"}))
    path = copy_figure(figure_path(folder, "cka_intervals_figure"), figures, "cka_intervals.png")
    return (head + text + md_table(table) + "\n"
            + (figure(path, "debiased CKA with intervals and chance level") if path else ""))


def separability_section(folder: Path | None, figures: Path) -> str:
    """Language ID and retrieval per model and layer, and mutual k-NN with the base."""
    head = "\n## Separability by language\n\n"
    summary = read_table(folder, "separability")
    if summary is None:
        return head + note(prose("cka", "no-separability"))
    last = last_layer(summary).copy()
    last["cell"] = [f"{r.value:.1f} [{r.low:.1f}, {r.high:.1f}]" for r in last.itertuples()]
    table = last.pivot_table(index="model", columns="measure", values="cell", aggfunc="first", sort=False)
    table.columns = [{"language-id": "language ID (%)", "retrieval": "retrieval top-1 (%)"}.get(c, c)
                     for c in table.columns]
    parts = [head, prose("cka", "separability") + "\n\n", md_table(table)]
    path = copy_figure(figure_path(folder, "separability_figure"), figures, "separability.png")
    if path:
        parts.append("\n" + figure(path, "separability per layer"))
    knn = read_table(folder, "mutual_knn")
    if knn is not None and len(knn):
        base = knn["model_a"].iloc[0]
        per = last_layer(knn, "model_b")
        per = per.groupby("model_b", sort=False)["value"].mean().round(3)
        parts.append("\n" + prose("cka", "mutual-knn", k=knn["k"].iloc[0], base=base,
                                   values=", ".join(f"{m} {v:.2f}" for m, v in per.items())) + "\n")
    return "".join(parts)
