"""Separability measures and paired bootstrap tests against scipy/sklearn and known cases."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from scipy.spatial.distance import cdist

from mtnb.core.errors import MtnbError
from mtnb.analysis.paired_bootstrap import holm, mean_interval, paired_difference
from mtnb.analysis.separability import (language_id_per_sample, mutual_knn_per_sample, mutual_knn_table,
                               retrieval_per_sample, separability_tables)

LANGS = ["de", "en", "es", "fr", "ru"]


def parallel(rng, n=40, d=16, language_shift=0.0, noise=0.3):
    """Parallel samples: one content vector per paragraph, plus per language an offset of size
    ``language_shift`` and noise."""
    content = rng.normal(size=(n, d))
    return {lang: content + language_shift * rng.normal(size=d) + noise * rng.normal(size=(n, d)) for lang in LANGS}


def test_retrieval_matches_scipy_cosine_nearest_neighbour():
    rng = np.random.default_rng(0)
    by_lang = parallel(rng, noise=1.2)
    hits = np.zeros(40)
    for x in LANGS:
        for y in LANGS:
            if x != y:
                hits += cdist(by_lang[x], by_lang[y], metric="cosine").argmin(axis=1) == np.arange(40)
    assert retrieval_per_sample(by_lang) == pytest.approx(100 * hits / 20)
    assert 0 < retrieval_per_sample(by_lang).mean() < 100        # the noise makes some misses


def test_language_id_separates_shifted_languages_and_not_identical_ones():
    rng = np.random.default_rng(1)
    assert language_id_per_sample(parallel(rng, language_shift=3.0)).mean() == 100.0
    same = parallel(rng, noise=0.0)          # every language version identical: nothing to tell apart
    assert language_id_per_sample(same).mean() <= 40.0


def test_mutual_knn_matches_sklearn_neighbours():
    from sklearn.neighbors import NearestNeighbors

    rng = np.random.default_rng(2)
    A = rng.normal(size=(50, 8))
    B = A + 0.8 * rng.normal(size=(50, 8))
    k = 5

    def sk(X):
        # k + 1 neighbours: each sample's nearest is itself (distance 0), dropped
        return NearestNeighbors(n_neighbors=k + 1, metric="cosine").fit(X).kneighbors(X)[1][:, 1:]

    want = np.array([len(set(a) & set(b)) / k for a, b in zip(sk(A), sk(B))])
    assert mutual_knn_per_sample(A, B, k) == pytest.approx(want)


def test_mutual_knn_known_cases():
    rng = np.random.default_rng(3)
    A = rng.normal(size=(60, 10))
    Q, _ = np.linalg.qr(rng.normal(size=(10, 10)))
    assert mutual_knn_per_sample(A, 2.0 * A @ Q, k=5).mean() == 1.0          # a rotation keeps neighbourhoods
    unrelated = mutual_knn_per_sample(A, rng.normal(size=(60, 10)), k=5).mean()
    assert unrelated < 0.25                                                  # chance: k / (n - 1) ~ 0.08


def test_tables_have_a_row_per_model_layer_and_measure():
    rng = np.random.default_rng(4)
    feats = {}
    for model, shift in (("a", 0.0), ("b", 3.0)):
        by_lang = [parallel(rng, n=20, d=6, language_shift=shift) for _ in range(3)]     # 3 layers
        for lang in LANGS:
            feats[(model, lang)] = np.stack([layer[lang] for layer in by_lang])
    summary, samples = separability_tables(feats, n_boot=200)
    assert len(summary) == 2 * 3 * 2 and len(samples) == 2 * 3 * 2 * 20
    lid = summary[summary.measure == "language-id"].groupby("model")["value"].mean()
    assert lid["b"] > lid["a"]
    assert (summary["low"] <= summary["value"]).all() and (summary["value"] <= summary["high"]).all()
    knn = mutual_knn_table(feats, [("a", "b")], k=3, n_boot=100)
    assert len(knn) == 5 * 3 and knn["value"].between(0, 1).all()


def test_paired_difference_known_cases():
    rng = np.random.default_rng(5)
    a = rng.normal(size=50)
    same = paired_difference(a, a)
    assert (same.mean, same.low, same.high, same.p) == (0.0, 0.0, 0.0, 1.0)
    shifted = paired_difference(a + 2.0, a, n_boot=999)
    # no draw crosses 0: p = 2 (1 + 0) / (999 + 1), the smallest p that 999 draws can give
    assert shifted.mean == pytest.approx(2.0) and shifted.low == pytest.approx(2.0) and shifted.p == pytest.approx(0.002)


def test_paired_interval_agrees_with_scipy_bootstrap():
    rng = np.random.default_rng(6)
    shared = 2.0 * rng.normal(size=200)               # what both systems share: cancels when paired
    a, b = shared + 0.3 + 0.5 * rng.normal(size=200), shared + 0.5 * rng.normal(size=200)
    ours = paired_difference(a, b, n_boot=4000)
    theirs = stats.bootstrap((a - b,), np.mean, n_resamples=4000, method="percentile",
                             random_state=np.random.default_rng(7)).confidence_interval
    assert ours.low == pytest.approx(theirs.low, abs=0.03) and ours.high == pytest.approx(theirs.high, abs=0.03)
    unpaired = mean_interval(a, n_boot=4000)
    assert ours.high - ours.low < 0.5 * (unpaired.high - unpaired.low)     # the shared part cancels in a - b
    assert ours.p < 0.01


def test_scores_with_seed_and_sample_axes_resample_samples_only():
    rng = np.random.default_rng(8)
    x = rng.normal(size=30)
    # (seeds, samples): the seeds differ wildly on each sample, but every sample's mean over the
    # seeds is 4/3. A bootstrap that draws whole samples (all seeds of a sample together) has
    # every draw's mean at 4/3; one that drew seeds, or seeds and samples apart, would not.
    d = np.stack([x, 2.0 - x, np.full(30, 2.0)])
    together = paired_difference(d, np.zeros_like(d), n_boot=500)
    assert together.n == 30 and together.mean == pytest.approx(4 / 3)
    assert together.low == pytest.approx(4 / 3) and together.high == pytest.approx(4 / 3), \
        "every draw keeps a sample's seeds together"
    alone = mean_interval(d, n_boot=500)
    assert alone.low == pytest.approx(4 / 3) and alone.high == pytest.approx(4 / 3)
    # the draws do resample: where the samples' means differ, the interval has width, and it is
    # the interval of the samples' seed-averaged differences (seeds averaged, samples drawn)
    a = x + rng.normal(size=(3, 30))
    b = rng.normal(size=(3, 30))
    both = paired_difference(a, b, n_boot=4000)
    assert both.low < both.mean < both.high, "the draws differ from the observed samples"
    flat = (a - b).mean(axis=0)                        # (samples,): each sample's difference over the seeds
    averaged = paired_difference(flat, np.zeros(30), n_boot=4000)
    assert (both.low, both.high) == pytest.approx((averaged.low, averaged.high))
    # the interval is the one of 30 samples, not of the 90 seed-sample pairs taken as samples
    se = flat.std(ddof=1) / np.sqrt(30)
    assert both.high - both.low == pytest.approx(2 * 1.96 * se, rel=0.15)


def test_holm_against_a_worked_example():
    # sorted: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, 0.04*1 = 0.04 -> running max 0.06
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])      # 0.5 * 2 caps at 1; monotone after it


def test_bad_input_is_refused():
    with pytest.raises(MtnbError, match="same shape"):
        paired_difference(np.zeros(5), np.zeros(6))
    with pytest.raises(MtnbError, match="at least 2 samples"):
        mean_interval([1.0])
    with pytest.raises(MtnbError, match="between 0 and 1"):
        holm([0.2, 1.5])
    with pytest.raises(MtnbError, match="parallel samples"):
        retrieval_per_sample({"de": np.zeros((4, 2)), "en": np.zeros((5, 2))})
    with pytest.raises(MtnbError, match="1 <= k"):
        mutual_knn_per_sample(np.zeros((4, 2)), np.zeros((4, 2)), k=4)
