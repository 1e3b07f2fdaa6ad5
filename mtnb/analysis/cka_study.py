"""The CKA analyses of the study: model against model, and language against language.

From pooled features of every (model, language, layer) (``mtnb.analysis.features``), one call
of the batched ``mtnb.analysis.cka.cka_matrix`` gives every pairwise similarity; two tidy tables are read
out of it:

- ``model_pairs``: CKA between two models at the same layer on the same language's samples
  (the paper's Figure 1: one heatmap of layers x languages per model pair);
- ``language_pairs``: CKA between two languages' samples at the same layer of one model (the
  paper's Figure 2). This needs parallel samples (row i of every language is the same content),
  which the default sample set, the mini corpus's ``cka-samples``, is.

Models of different depth are compared on the layers they both have (0 = the embeddings).
"""

from __future__ import annotations

from itertools import combinations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from mtnb.analysis.cka import cka_matrix
from mtnb.analysis.cka_inference import cka_uncertainty
from mtnb.core.errors import MtnbError
from mtnb.data.loading import load_task
from mtnb.data.mini.datasets import load_mini

PARALLEL = ("cka-samples", "xnli")   # sample sets whose row i is the same content in every language
SAMPLE_SETS = {
    "cka-samples": "mini corpus: 80 paragraphs translated into en, de, es, fr, ru (parallel)",
    "mini-topic": "mini corpus: the first paragraphs of each language's mini-topic test split (not parallel)",
    "xnli": "XGLUE XNLI test premises (parallel: XNLI's test set is translated from English)",
    "nc": "XGLUE NC test news (title + body), as in the paper (not parallel)",
}


def sample_texts(sample_set: str, languages: list[str], n: int, *, mini_root=None,
                 xglue_dir=None, xglue_parquet=None) -> dict[str, list[str]]:
    """``{lang: n texts}`` from a sample set (see SAMPLE_SETS). Raises MtnbError for an unknown
    set, or when a language has fewer than ``n`` samples."""
    if sample_set not in SAMPLE_SETS:
        raise MtnbError(f"unknown sample set {sample_set!r}: use one of {', '.join(SAMPLE_SETS)}")
    texts = {}
    if sample_set == "cka-samples":
        rows = load_mini("cka-samples", root=mini_root)
        for lang in languages:
            if lang not in rows.column_names:
                raise MtnbError(f"cka-samples has no language {lang!r}: it has en, de, es, fr, ru")
            texts[lang] = rows[lang][:n]
    else:
        for lang in languages:
            records = load_task(sample_set, lang, "test", mini_root=mini_root, xglue_dir=xglue_dir,
                                xglue_parquet=xglue_parquet)
            if sample_set == "nc":
                texts[lang] = [f"{r['news_title']} {r['news_body']}" for r in records.select(range(min(n, len(records))))]
            else:
                texts[lang] = records[{"xnli": "premise", "mini-topic": "text"}[sample_set]][:n]
    short = [lang for lang, t in texts.items() if len(t) < n]
    if short:
        raise MtnbError(f"sample set {sample_set} has only {len(texts[short[0]])} samples in {short[0]!r} "
                        f"(asked for {n}); lower n_samples")
    return texts


def cka_tables(features: dict[tuple[str, str], np.ndarray], unbiased: bool = False):
    """Model-pair and language-pair CKA tables from ``{(model, lang): (layers, n, hidden)}``.

    Returns ``(model_pairs, language_pairs)``, pandas DataFrames with columns
    ``model_a, model_b, lang, layer, cka`` and ``model, lang_a, lang_b, layer, cka``.
    """
    keys = [(model, lang, layer) for (model, lang), f in features.items() for layer in range(f.shape[0])]
    sizes = {f.shape[1] for f in features.values()}
    if len(sizes) != 1:
        raise MtnbError(f"features have different numbers of samples {sorted(sizes)}: use the same samples for all")
    sim = cka_matrix([features[(m, l)][layer] for m, l, layer in keys], unbiased=unbiased)
    index = {key: i for i, key in enumerate(keys)}
    models = list(dict.fromkeys(m for m, _ in features))
    langs = list(dict.fromkeys(l for _, l in features))
    depth = {m: features[(m, langs[0])].shape[0] for m in models}
    model_rows = [dict(model_a=a, model_b=b, lang=lang, layer=layer,
                       cka=sim[index[(a, lang, layer)], index[(b, lang, layer)]])
                  for a, b in combinations(models, 2) for lang in langs
                  for layer in range(min(depth[a], depth[b]))]
    lang_rows = [dict(model=m, lang_a=x, lang_b=y, layer=layer,
                      cka=sim[index[(m, x, layer)], index[(m, y, layer)]])
                 for m in models for x, y in combinations(langs, 2) for layer in range(depth[m])]
    return pd.DataFrame(model_rows), pd.DataFrame(lang_rows)


def cka_tables_with_uncertainty(features: dict[tuple[str, str], np.ndarray], *, unbiased: bool = False,
                                n_boot: int = 1000, n_perm: int = 200, seed: int = 0):
    """``cka_tables``' two tables with CKA's uncertainty added (``mtnb.analysis.cka_inference``): columns
    ``debiased`` and ``biased`` (both estimates), ``low`` and ``high`` (the debiased value's 95%
    bootstrap interval over samples), ``null_debiased`` and ``null_biased`` (the permutation
    null's 95th percentile: what unrelated representations reach by chance at this n). The
    ``cka`` column is the estimator ``unbiased`` picks, as in ``cka_tables``. Every pair shares
    the same bootstrap draws and permutations."""
    model_pairs, language_pairs = cka_tables(features, unbiased=unbiased)
    keys = list(dict.fromkeys([(m, l, layer) for (m, l), f in features.items() for layer in range(f.shape[0])]))
    index = {key: i for i, key in enumerate(keys)}
    stack = [features[(m, l)][layer] for m, l, layer in keys]
    for table, pair_of in ((model_pairs, lambda r: ((r.model_a, r.lang, r.layer), (r.model_b, r.lang, r.layer))),
                           (language_pairs, lambda r: ((r.model, r.lang_a, r.layer), (r.model, r.lang_b, r.layer)))):
        pairs = [tuple(index[k] for k in pair_of(row)) for row in table.itertuples()]
        if not pairs:
            continue
        result = cka_uncertainty(stack, pairs, n_boot=n_boot, n_perm=n_perm, seed=seed)
        for column in ("debiased", "biased", "low", "high", "null_debiased", "null_biased"):
            table[column] = result[column]
    return model_pairs, language_pairs


def plot_cka_intervals(model_pairs, base: str, models: list[str] | None = None):
    """Debiased CKA of each model with ``base`` against the layer, one panel per language: a
    line per model with its 95% bootstrap interval shaded, and the permutation null's 95th
    percentile (the largest over the models) as a grey band from 0."""
    rows = model_pairs[(model_pairs["model_a"] == base) | (model_pairs["model_b"] == base)].copy()
    if rows.empty:
        raise MtnbError(f"no CKA pair involves {base!r}; pass a base among the CKA job's models")
    rows["other"] = rows["model_b"].where(rows["model_a"] == base, rows["model_a"])
    models = models or list(dict.fromkeys(rows["other"]))
    langs = list(dict.fromkeys(rows["lang"]))
    fig, axes = plt.subplots(1, len(langs), figsize=(2.9 * len(langs), 3.0), sharey=True, squeeze=False)
    for ax, lang in zip(axes[0], langs):
        sub = rows[rows["lang"] == lang]
        null = sub.groupby("layer")["null_debiased"].max()
        ax.fill_between(null.index, 0, null.values, color="grey", alpha=0.25, lw=0, label="chance (95%)")
        for model in models:
            line = sub[sub["other"] == model].sort_values("layer")
            if line.empty:
                continue
            drawn, = ax.plot(line["layer"], line["debiased"], marker="o", ms=2.5, lw=1, label=model)
            ax.fill_between(line["layer"], line["low"], line["high"], color=drawn.get_color(), alpha=0.18, lw=0)
        ax.set_title(lang, fontsize=9)
        ax.set_xlabel("layer", fontsize=8)
    axes[0][0].set_ylabel(f"debiased CKA with {base}", fontsize=8)
    axes[0][-1].legend(fontsize=6, loc="lower left")
    fig.tight_layout()
    return fig


def _heatmaps(panels: list[tuple[str, "object"]], xlabel: str, vmin: float, ncols: int = 3):
    """A grid of layer x column heatmaps, one per (title, pivot table); layer 0 at the bottom."""
    nrows = -(-len(panels) // ncols)
    ncols = min(ncols, len(panels))
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.6 * ncols, 3.4 * nrows), squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.axis("off")
    for ax, (title, pivot) in zip(axes.flat, panels):
        image = ax.imshow(pivot.values, origin="lower", aspect="auto", cmap="viridis", vmin=vmin, vmax=1.0)
        ax.set_xticks(range(pivot.shape[1]), pivot.columns, rotation=45 if pivot.shape[1] > 5 else 0)
        ax.set_yticks(range(pivot.shape[0]), pivot.index)
        if pivot.shape[0] * pivot.shape[1] <= 80:
            for (i, j), value in np.ndenumerate(pivot.values):
                ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=6,
                        color="white" if value < (vmin + 1) / 2 else "black")
        ax.set_title(title, fontsize=9)
        ax.set_xlabel(xlabel, fontsize=8)
        ax.set_ylabel("layer", fontsize=8)
    fig.colorbar(image, ax=axes, shrink=0.6, label="CKA")
    return fig


def plot_model_pairs(model_pairs, pairs: list[tuple[str, str]] | None = None, vmin: float | None = None):
    """Figure 1 layout: one heatmap per model pair, layers (rows) x languages (columns)."""
    if pairs is None:
        pairs = list(dict.fromkeys(zip(model_pairs["model_a"], model_pairs["model_b"])))
    panels = []
    for a, b in pairs:
        sub = model_pairs[(model_pairs["model_a"] == a) & (model_pairs["model_b"] == b)]
        if sub.empty:
            sub = model_pairs[(model_pairs["model_a"] == b) & (model_pairs["model_b"] == a)]
        panels.append((f"{a} vs {b}", sub.pivot(index="layer", columns="lang", values="cka")))
    low = float(model_pairs["cka"].min()) if vmin is None else vmin
    return _heatmaps(panels, "language", vmin=min(low, 0.95))


def plot_language_pairs(language_pairs, vmin: float | None = None):
    """Figure 2 layout: one heatmap per model, layers (rows) x language pairs (columns)."""
    table = language_pairs.assign(pair=language_pairs["lang_a"] + "-" + language_pairs["lang_b"])
    panels = [(model, sub.pivot(index="layer", columns="pair", values="cka"))
              for model, sub in table.groupby("model", sort=False)]
    low = float(table["cka"].min()) if vmin is None else vmin
    return _heatmaps(panels, "language pair", vmin=min(low, 0.95))
