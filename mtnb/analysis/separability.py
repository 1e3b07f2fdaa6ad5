"""Output separability: how far a model's representations keep languages apart, layer by layer.

The paper explains its finding by "output separability" (machine-translation training makes
representations more separable by language) but measures only CKA and singular values. Three
measures, all from the pooled features the CKA study already extracts for parallel samples
(row i of every language is a translation of the same paragraph):

- **language identification**: the held-out accuracy (%) of a linear probe (multinomial
  logistic regression on standardized features) telling the languages apart. The folds split
  *paragraphs*, every language version of a paragraph in the same fold, so the probe cannot
  lean on content it has seen. High = separable by language; chance = 100 / languages.
- **translation retrieval**: top-1 accuracy (%) of finding a paragraph's translation among the
  other language's n paragraphs by cosine similarity, over every ordered language pair. High =
  the languages meet in a shared space: the opposite of separable.
- **mutual k-nearest neighbours** (Huh et al. 2024), a similarity between two models beside
  CKA: for each sample, the share of its k nearest neighbours (cosine, itself excluded) that the
  two representations have in common, averaged over samples. 1 = the same neighbourhoods.

Each measure is returned per paragraph (a value in [0, 100] or [0, 1] per sample), so
``mtnb.analysis.paired_bootstrap`` gives intervals over paragraphs and paired differences between models.
"""

from __future__ import annotations

from itertools import permutations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from mtnb.analysis.paired_bootstrap import mean_interval
from mtnb.core.errors import MtnbError

__all__ = ["last_layer", "language_id_per_sample", "retrieval_per_sample", "mutual_knn_per_sample", "separability_tables",
           "mutual_knn_table", "plot_separability"]


def last_layer(table, model: str = "model"):
    """The rows of ``table`` (a separability or mutual k-NN table) at each model's deepest layer;
    ``model`` names the column that identifies a model."""
    return table[table["layer"] == table.groupby(model)["layer"].transform("max")]


def _unit_rows(X: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (a zero row stays zero): (n, d)."""
    X = np.asarray(X, dtype=np.float64)
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    return X / np.where(norms > 0, norms, 1.0)


def _check_parallel(by_lang: dict[str, np.ndarray]) -> int:
    """The common sample count of ``{lang: (n, d)}``, or a one-line error."""
    if len(by_lang) < 2:
        raise MtnbError(f"separability needs at least two languages, got {list(by_lang)}")
    sizes = {np.shape(x)[0] for x in by_lang.values()}
    if len(sizes) != 1:
        raise MtnbError(f"the languages have different numbers of samples {sorted(sizes)}: separability needs "
                        "parallel samples (row i of every language is the same paragraph)")
    return sizes.pop()


def language_id_per_sample(by_lang: dict[str, np.ndarray], folds: int = 5, seed: int = 0) -> np.ndarray:
    """Per paragraph, the share (%) of its language versions that a linear probe, trained on the
    other folds' paragraphs, assigns to the right language; ``by_lang``: {lang: (n, d)} of
    parallel samples. (n,); its mean is the held-out accuracy."""
    n = _check_parallel(by_lang)
    if n < folds:
        raise MtnbError(f"{n} paragraphs cannot be split into {folds} folds; pass more samples or fewer folds")
    langs = list(by_lang)
    X = np.concatenate([np.asarray(by_lang[lang], dtype=np.float64) for lang in langs])     # (L n, d)
    y = np.repeat(np.arange(len(langs)), n)
    paragraph = np.tile(np.arange(n), len(langs))
    fold_of = np.random.default_rng(seed).permutation(n) % folds
    correct = np.zeros(len(X))
    for fold in range(folds):
        test = fold_of[paragraph] == fold
        scaler = StandardScaler().fit(X[~test])
        probe = LogisticRegression(max_iter=2000).fit(scaler.transform(X[~test]), y[~test])
        correct[test] = probe.predict(scaler.transform(X[test])) == y[test]
    return 100 * correct.reshape(len(langs), n).mean(axis=0)


def retrieval_per_sample(by_lang: dict[str, np.ndarray]) -> np.ndarray:
    """Per paragraph, the share (%) of ordered language pairs (x, y) in which its x version's
    nearest y paragraph by cosine is its own translation; (n,)."""
    n = _check_parallel(by_lang)
    unit = {lang: _unit_rows(x) for lang, x in by_lang.items()}
    hits = np.zeros(n)
    pairs = list(permutations(unit, 2))
    for x, y in pairs:
        hits += (unit[x] @ unit[y].T).argmax(axis=1) == np.arange(n)
    return 100 * hits / len(pairs)


def mutual_knn_per_sample(A: np.ndarray, B: np.ndarray, k: int = 10) -> np.ndarray:
    """Per sample, |N_A(i) & N_B(i)| / k, N(i) the k nearest other samples by cosine in each of
    two representations A (n, d1) and B (n, d2) of the same samples; (n,)."""
    n = len(A)
    if len(B) != n:
        raise MtnbError(f"mutual k-NN compares the same samples, got {n} and {len(B)} rows")
    if not 1 <= k < n:
        raise MtnbError(f"k = {k} neighbours need 1 <= k < {n} samples")

    def neighbours(X):
        sim = _unit_rows(X) @ _unit_rows(X).T
        np.fill_diagonal(sim, -np.inf)
        return np.argsort(-sim, axis=1, kind="stable")[:, :k]

    na, nb = neighbours(A), neighbours(B)
    return np.array([len(set(a) & set(b)) for a, b in zip(na, nb)]) / k


def separability_tables(features: dict[tuple[str, str], np.ndarray], *, folds: int = 5, n_boot: int = 2000,
                        seed: int = 0):
    """Language identification and translation retrieval for every model and layer, from
    ``{(model, lang): (layers, n, d)}`` of parallel samples.

    Returns ``(summary, per_sample)``: ``summary`` has columns ``model, layer, measure, value,
    low, high`` (the mean over paragraphs and its bootstrap interval, %); ``per_sample`` has
    ``model, layer, measure, sample, score`` (what paired comparisons need)."""
    models = list(dict.fromkeys(m for m, _ in features))
    langs = list(dict.fromkeys(l for _, l in features))
    rows, samples = [], []
    for model in models:
        depth = features[(model, langs[0])].shape[0]
        for layer in range(depth):
            by_lang = {lang: features[(model, lang)][layer] for lang in langs}
            for measure, scores in (("language-id", language_id_per_sample(by_lang, folds, seed)),
                                    ("retrieval", retrieval_per_sample(by_lang))):
                ci = mean_interval(scores, n_boot=n_boot, seed=seed)
                rows.append(dict(model=model, layer=layer, measure=measure, value=ci.mean, low=ci.low, high=ci.high))
                samples += [dict(model=model, layer=layer, measure=measure, sample=i, score=float(s))
                            for i, s in enumerate(scores)]
    return pd.DataFrame(rows), pd.DataFrame(samples)


def mutual_knn_table(features: dict[tuple[str, str], np.ndarray], pairs: list[tuple[str, str]], *, k: int = 10,
                     n_boot: int = 2000, seed: int = 0):
    """Mutual k-NN alignment of each model pair at each layer they share and each language,
    with its bootstrap interval over samples: columns ``model_a, model_b, lang, layer, k, value,
    low, high``."""
    langs = list(dict.fromkeys(l for _, l in features))
    rows = []
    for a, b in pairs:
        for lang in langs:
            fa, fb = features[(a, lang)], features[(b, lang)]
            for layer in range(min(len(fa), len(fb))):
                ci = mean_interval(mutual_knn_per_sample(fa[layer], fb[layer], k), n_boot=n_boot, seed=seed)
                rows.append(dict(model_a=a, model_b=b, lang=lang, layer=layer, k=k, value=ci.mean, low=ci.low,
                                 high=ci.high))
    return pd.DataFrame(rows)


def plot_separability(summary, chance: float | None = None):
    """Two panels, language identification and translation retrieval against the layer: a
    line per model with its 95% interval shaded; ``chance``: the language-ID chance level (%)."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
    titles = {"language-id": "language identification (held-out accuracy, %)",
              "retrieval": "translation retrieval (top-1 accuracy, %)"}
    for ax, (measure, title) in zip(axes, titles.items()):
        sub = summary[summary["measure"] == measure]
        for model, rows in sub.groupby("model", sort=False):
            line, = ax.plot(rows["layer"], rows["value"], marker="o", ms=3, label=model)
            ax.fill_between(rows["layer"], rows["low"], rows["high"], color=line.get_color(), alpha=0.15)
        if measure == "language-id" and chance is not None:
            ax.axhline(chance, color="grey", ls=":", lw=1, label="chance")
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("layer (0 = embeddings)", fontsize=8)
        ax.set_ylim(-2, 102)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    return fig
