"""The hierarchical cluster bootstrap (mtnb.analysis.paired_bootstrap.cluster_difference): its
intervals cover a known difference when examples are clustered and translated, the per-example
bootstrap's do not; it reduces to the plain paired bootstrap; each level (replicas, shared seeds,
shared clusters) does what it says; bad input stops it in one line."""

import numpy as np
from statistics import NormalDist
import pandas as pd
import pytest

from mtnb.analysis.paired_bootstrap import (bootstrap_weights, cluster_difference, cluster_draws, cluster_sums,
                                            cluster_sums_of_rows, draws_needed, paired_difference,
                                            resampling_floor)
from mtnb.core.errors import MtnbError


def means(scores, clusters):
    """ClusterSums of scores (R, K, L, U) with den = 1."""
    scores = np.asarray(scores, dtype=np.float64)
    return cluster_sums(scores, np.ones_like(scores), clusters)


def width(d):
    return d.high - d.low


def test_cluster_intervals_cover_a_known_difference_where_per_example_intervals_do_not():
    """60 clusters of 10 units in 4 languages; the A - B difference of a unit is delta plus a
    cluster effect (variance 0.4, correlation 0.8 across the languages of a cluster) plus unit
    noise (variance 0.6): within a language the intra-cluster correlation of the difference is
    0.4. Over 200 simulated test sets the cluster bootstrap's 95% interval covers delta at least
    90% of the time (about 93% over other simulation seeds: 0.905 to 0.96 in eight), the
    per-example bootstrap of today (units drawn independently in each language) far less often
    (about 40%)."""
    rng = np.random.default_rng(29)
    n_sets, L, C, size, delta, rho, n_boot = 200, 4, 60, 10, 0.3, 0.8, 1000
    shared = rng.normal(size=(n_sets, 1, C, 1))
    effect = np.sqrt(0.4) * (np.sqrt(rho) * shared + np.sqrt(1 - rho) * rng.normal(size=(n_sets, L, C, 1)))
    b = rng.normal(size=(n_sets, L, C, 1)) + rng.normal(size=(n_sets, L, C, size))   # B's own scores
    a = b + delta + effect + np.sqrt(0.6) * rng.normal(size=(n_sets, L, C, size))
    a, b = a.reshape(n_sets, 1, 1, L, C * size), b.reshape(n_sets, 1, 1, L, C * size)
    clusters = np.repeat(np.arange(C), size)

    covered = [(d.low <= delta <= d.high) for d in
               (cluster_difference(means(a[s], clusters), means(b[s], clusters), n_boot=n_boot, seed=s, scale=1.0)
                for s in range(n_sets))]

    # today's paired bootstrap, written out: each language's units drawn on their own, the
    # languages' paired mean differences averaged (one set of draw counts serves every test set)
    n = C * size
    diffs = (a - b)[:, 0, 0]                                          # (sets, L, n)
    draws = sum(bootstrap_weights(n, n_boot, (7, lang)) @ diffs[:, lang].T / n for lang in range(L)) / L
    low, high = np.quantile(draws, [0.025, 0.975], axis=0)            # (sets,) each
    per_example = (low <= delta) & (delta <= high)

    assert np.mean(covered) >= 0.90, np.mean(covered)
    assert np.mean(per_example) < 0.85, np.mean(per_example)
    assert np.mean(per_example) < np.mean(covered) - 0.2


def test_one_replica_one_seed_one_language_and_singleton_clusters_is_the_paired_bootstrap():
    rng = np.random.default_rng(0)
    a = rng.normal(0.6, 1.0, size=300)
    b = a - 0.1 + rng.normal(0, 1.0, size=300)
    plain = paired_difference(a, b, n_boot=20_000, seed=1)
    cluster = cluster_difference(means(a[None, None, None], np.arange(300)), means(b[None, None, None], np.arange(300)),
                                 n_boot=20_000, seed=2, scale=1.0)
    assert cluster.mean == pytest.approx(plain.mean, abs=1e-12)
    tolerance = 0.03 * width(plain)
    assert cluster.low == pytest.approx(plain.low, abs=tolerance)
    assert cluster.high == pytest.approx(plain.high, abs=tolerance)
    assert cluster.p == pytest.approx(plain.p, abs=0.02)
    assert cluster.n == 300 and cluster.n_boot == 20_000


def test_replicas_that_differ_widen_the_interval():
    """Three pretraining replicas of A that score 5 points apart: the interval is wider than with
    the replicas collapsed into their mean, and the estimate is the same."""
    rng = np.random.default_rng(1)
    R, K, L, U = 3, 4, 2, 200
    b = rng.normal(0.6, 0.1, (1, K, L, U))
    a = b + rng.normal(0.03, 0.1, (1, K, L, U)) + np.array([-0.05, 0.0, 0.05])[:, None, None, None]
    clusters = np.arange(U) // 5
    spread = cluster_difference(means(a, clusters), means(b, clusters), n_boot=4000)
    collapsed = cluster_difference(means(a.mean(axis=0, keepdims=True), clusters), means(b, clusters), n_boot=4000)
    assert spread.mean == pytest.approx(collapsed.mean, abs=1e-9)
    assert width(spread) > 1.5 * width(collapsed)


def test_a_fine_tuning_seed_is_drawn_for_both_models_at_once():
    """A seed effect both models share cancels draw by draw (the draws equal those without it);
    one that only A has widens the interval."""
    rng = np.random.default_rng(2)
    K, L, U = 5, 3, 120
    a, b = rng.normal(0.7, 0.3, (1, K, L, U)), rng.normal(0.6, 0.3, (1, K, L, U))
    seed_effect = np.array([-0.2, -0.1, 0.0, 0.1, 0.2])[None, :, None, None]
    clusters = np.arange(U) // 4

    def draws(x, y):
        return cluster_draws(means(x, clusters), means(y, clusters), n_boot=3000, seed=5)[1]

    plain = draws(a, b)
    assert np.allclose(draws(a + seed_effect, b + seed_effect), plain, atol=1e-9)
    alone = draws(a + seed_effect, b)
    assert np.std(alone) > 1.5 * np.std(plain)


def test_one_cluster_draw_serves_every_language_and_both_models():
    """Language 1's differences are minus language 2's, cluster by cluster: averaged over the
    languages they cancel in every draw only if both languages draw the same clusters (drawn on
    their own, as the per-example bootstrap does, they do not). Likewise A = B plus a cluster
    pattern that is the same for both models gives draws of exactly 0 only with a shared draw."""
    rng = np.random.default_rng(3)
    C, size = 30, 3
    clusters = np.repeat(np.arange(C), size)
    pattern = np.repeat(rng.normal(0, 1, C), size)
    b = np.zeros((1, 1, 2, C * size))
    a = np.stack([pattern, -pattern])[None, None]
    estimate, draws = cluster_draws(means(a, clusters), means(b, clusters), n_boot=2000, seed=0)
    assert estimate == pytest.approx(0, abs=1e-9)
    assert np.abs(draws).max() < 1e-9
    apart = sum(sign * bootstrap_weights(C * size, 2000, lang) @ pattern / (C * size)
                for lang, sign in ((0, 1), (1, -1))) / 2
    assert np.std(apart) > 0.05

    noise = rng.normal(0, 1, (1, 2, 4, C * size)) + np.repeat(rng.normal(0, 3, C), size)
    same = cluster_draws(means(noise + 0.5, clusters), means(noise, clusters), n_boot=2000, seed=1)[1]
    assert np.allclose(same, 50.0)                                    # 0.5 in points, in every draw


def test_clusters_given_per_language_in_any_order_and_rows_from_a_frame_agree():
    """The same units listed in another order in one language, with their cluster ids, change
    nothing; a long table of units (pandas) gives the same sums as the dense arrays."""
    rng = np.random.default_rng(4)
    R, K, L, U = 2, 3, 2, 40
    num, den = rng.integers(0, 4, (R, K, L, U)).astype(float), rng.integers(1, 5, (R, K, L, U)).astype(float)
    clusters = np.arange(U) // 4
    dense = cluster_sums(num, den, clusters)
    order = rng.permutation(U)
    num2, den2, ids = num.copy(), den.copy(), np.stack([clusters, clusters])
    num2[:, :, 1], den2[:, :, 1], ids[1] = num[:, :, 1, order], den[:, :, 1, order], clusters[order]
    shuffled = cluster_sums(num2, den2, ids)
    assert np.array_equal(dense.num, shuffled.num) and np.array_equal(dense.den, shuffled.den)

    r, k, lang, u = np.indices((R, K, L, U)).reshape(4, -1)
    frame = pd.DataFrame(dict(model=np.array(["me5@p0", "me5@p1"])[r], seed=k, language=np.array(["de", "fr"])[lang],
                              unit=u.astype(str), cluster=[f"page{c}" for c in clusters[u]], num=num.ravel(),
                              den=den.ravel())).sample(frac=1.0, random_state=0)
    rows = cluster_sums_of_rows(frame["model"], frame["seed"], frame["language"], frame["unit"], frame["cluster"],
                                frame["num"], frame["den"])
    order_of = np.argsort([int(c[4:]) for c in rows.clusters])       # "page10" sorts before "page2"
    assert np.allclose(rows.num[..., order_of], dense.num) and np.allclose(rows.den[..., order_of], dense.den)
    assert rows.languages == ("de", "fr") and rows.replicas == ("me5@p0", "me5@p1") and rows.seeds == (0, 1, 2)


def test_a_p_at_the_floor_is_marked_and_draws_needed_keeps_holm_off_it():
    rng = np.random.default_rng(5)
    clusters = np.arange(100) // 5
    a, b = rng.normal(1.0, 0.1, (1, 2, 2, 100)), rng.normal(0.0, 0.1, (1, 2, 2, 100))
    d = cluster_difference(means(a, clusters), means(b, clusters), n_boot=5000)
    # no draw crossed 0: the p is the draws' normal tail, far below what 5,000 draws can count
    _, draws = cluster_draws(means(a, clusters), means(b, clusters), n_boot=5000)
    z = abs(d.mean) / np.std(draws, ddof=1)
    assert d.at_floor and d.p == pytest.approx(2 * NormalDist().cdf(-z), rel=1e-6, abs=1e-300)
    assert d.p < resampling_floor(5000) and "(normal tail; no draw crossed 0)" in d.text()
    near = cluster_difference(means(b + rng.normal(0.005, 0.1, b.shape), clusters), means(b, clusters), n_boot=5000)
    assert not near.at_floor and near.p > resampling_floor(5000), "counted where draws cross 0"
    shifted = cluster_difference(means(b + 0.01, clusters), means(b, clusters), n_boot=5000)
    assert shifted.at_floor and shifted.p == resampling_floor(5000), "draws that do not vary: nothing to extrapolate"

    for m in (1, 5, 33, 200):
        B = draws_needed(m, alpha=0.05)
        assert B >= 10_000 and m * resampling_floor(B) <= 0.05 / 10
        assert B == 10_000 or m * resampling_floor(B - 1) > 0.05 / 10
    assert draws_needed(33) == 13_199


@pytest.mark.parametrize("case", ["shapes", "clusters shape", "cluster missing", "den zero", "seeds differ",
                                  "units differ", "unit missing", "nan", "alpha"])
def test_bad_input_stops_in_one_line(case):
    ones = np.ones((1, 2, 2, 6))
    clusters = np.array([0, 0, 1, 1, 2, 2])
    good = means(ones, clusters)
    with pytest.raises(MtnbError) as caught:
        if case == "shapes":
            cluster_sums(ones, np.ones((1, 2, 2, 5)), clusters)
        elif case == "clusters shape":
            cluster_sums(ones, ones, clusters[:5])
        elif case == "cluster missing":
            cluster_sums(ones, ones, np.array([[0, 0, 1, 1, 2, 2], [0, 0, 1, 1, 1, 1]]))
        elif case == "den zero":
            den = ones.copy()
            den[0, 1, 1] = 0
            cluster_sums(ones, den, clusters)
        elif case == "seeds differ":
            cluster_difference(good, means(np.ones((1, 3, 2, 6)), clusters))
        elif case == "units differ":
            cluster_difference(good, means(ones, np.array([0, 0, 0, 1, 2, 2])))
        elif case == "unit missing":
            cluster_sums_of_rows(["r"] * 3, [0, 0, 1], ["de"] * 3, [0, 1, 0], [0, 1, 0], [1, 1, 1], [1, 1, 1])
        elif case == "nan":
            cluster_sums(np.full((1, 1, 1, 6), np.nan), ones[:, :1, :1], clusters)
        elif case == "alpha":
            draws_needed(10, alpha=1.5)
    assert "\n" not in str(caught.value) and len(str(caught.value)) > 20
