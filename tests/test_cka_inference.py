"""CKA uncertainty (mtnb.analysis.cka_inference): the weighted estimators against mtnb.analysis.cka and brute-force
sums, known cases, the permutation null's centre, and the bootstrap's coverage of a population
CKA computed in closed form."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from mtnb.analysis.cka import cka, gram_linear
from mtnb.analysis.cka_inference import (cka_bootstrap, cka_uncertainty, permutation_null, weighted_hsic_biased,
                                weighted_hsic_debiased)
from mtnb.analysis.paired_bootstrap import bootstrap_weights
from mtnb.core.errors import MtnbError


def zero_diag(K):
    K = K.copy()
    np.fill_diagonal(K, 0)
    return K


def test_unit_weights_give_the_plain_estimators():
    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=(30, 7)), rng.normal(size=(30, 5))
    Y[:, :3] += X[:, :3]
    K, L = gram_linear(X), gram_linear(Y)
    ones = np.ones((1, 30))
    for unbiased, hsic, (a, b) in [(True, weighted_hsic_debiased, (zero_diag(K), zero_diag(L))),
                                   (False, weighted_hsic_biased, (K, L))]:
        value = hsic(a, b, ones)[0] / np.sqrt(hsic(a, a, ones)[0] * hsic(b, b, ones)[0])
        assert value == pytest.approx(cka(X, Y, unbiased=unbiased), abs=1e-12)


def test_debiased_hsic_with_unit_weights_is_songs_u_statistic():
    """Song et al.'s closed form, HSIC_1 = [tr(K~L~) + 1'K~1 1'L~1 / ((n-1)(n-2)) - 2/(n-2) 1'K~L~1] / (n(n-3))."""
    rng = np.random.default_rng(1)
    X, Y = rng.normal(size=(12, 4)), rng.normal(size=(12, 3))
    K, L = zero_diag(gram_linear(X)), zero_diag(gram_linear(Y))
    n, one = 12, np.ones(12)
    song = (np.trace(K @ L) + one @ K @ one * (one @ L @ one) / ((n - 1) * (n - 2))
            - 2 / (n - 2) * one @ K @ L @ one) / (n * (n - 3))
    assert weighted_hsic_debiased(K, L, np.ones((1, n)))[0] == pytest.approx(song, rel=1e-12)


def test_integer_weights_average_over_distinct_originals_of_the_expanded_sample():
    """Brute force: expand the sample by its weights; E1, E3, E2 average k_ij l_ij, k_ij l_iq,
    k_ij l_qr over position tuples whose original samples are all distinct."""
    rng = np.random.default_rng(2)
    n = 6
    X, Y = rng.normal(size=(n, 3)), rng.normal(size=(n, 3))
    w = np.array([2, 0, 1, 3, 1, 1], dtype=float)
    origin = np.repeat(np.arange(n), w.astype(int))
    k, l = gram_linear(X)[np.ix_(origin, origin)], gram_linear(Y)[np.ix_(origin, origin)]
    positions = range(len(origin))

    def average(size, term):
        values = [term(*t) for t in itertools.permutations(positions, size) if len(set(origin[list(t)])) == size]
        return np.mean(values)

    e1 = average(2, lambda i, j: k[i, j] * l[i, j])
    e3 = average(3, lambda i, j, q: k[i, j] * l[i, q])
    e2 = average(4, lambda i, j, q, r: k[i, j] * l[q, r])
    got = weighted_hsic_debiased(zero_diag(gram_linear(X)), zero_diag(gram_linear(Y)), w[None])[0]
    assert got == pytest.approx(e1 + e2 - 2 * e3, rel=1e-10)


def test_biased_weights_equal_the_expanded_sample():
    rng = np.random.default_rng(3)
    X, Y = rng.normal(size=(9, 4)), rng.normal(size=(9, 2))
    w = np.array([1, 2, 0, 0, 3, 1, 1, 0, 1], dtype=float)
    origin = np.repeat(np.arange(9), w.astype(int))
    K, L = gram_linear(X), gram_linear(Y)
    ratio = weighted_hsic_biased(K, L, w[None])[0] / np.sqrt(weighted_hsic_biased(K, K, w[None])[0]
                                                             * weighted_hsic_biased(L, L, w[None])[0])
    assert ratio == pytest.approx(cka(X[origin], Y[origin]), abs=1e-12)


def test_bootstrap_weights_are_seeded_multinomial_draws():
    W = bootstrap_weights(50, 200, seed=4)
    assert W.shape == (200, 50) and (W.sum(1) == 50).all() and (W >= 0).all()
    assert np.array_equal(W, bootstrap_weights(50, 200, seed=4))
    assert not np.array_equal(W, bootstrap_weights(50, 200, seed=5))


def test_identical_and_rotated_representations_have_cka_one_with_a_tight_interval():
    rng = np.random.default_rng(5)
    X = rng.normal(size=(40, 10))
    Q, _ = np.linalg.qr(rng.normal(size=(10, 10)))
    for Y in (X, 3.0 * X @ Q):
        estimate, low, high = cka_bootstrap(X, Y, n_boot=200)
        assert estimate == pytest.approx(1.0, abs=1e-10)
        assert low == pytest.approx(1.0, abs=1e-8) and high == pytest.approx(1.0, abs=1e-8)


def test_shuffled_rows_fall_to_the_null_and_related_ones_stand_above_it():
    rng = np.random.default_rng(6)
    X = rng.normal(size=(80, 20))
    Y = X @ rng.normal(size=(20, 20)) + 0.5 * rng.normal(size=(80, 20))
    shuffled = Y[rng.permutation(80)]
    table = cka_uncertainty([X, Y, shuffled], [(0, 1), (0, 2)], n_boot=300, n_perm=300)
    related, unrelated = 0, 1
    assert table["debiased"][related] > table["null_debiased"][related]
    assert table["low"][related] > table["null_debiased"][related]
    assert table["debiased"][unrelated] < table["null_debiased"][unrelated]
    assert table["low"][unrelated] <= 0 <= table["high"][unrelated]


def test_permutation_null_matches_recomputing_cka_on_permuted_rows():
    rng = np.random.default_rng(7)
    X, Y = rng.normal(size=(25, 6)), rng.normal(size=(25, 4))
    perms = np.stack([rng.permutation(25) for _ in range(5)])
    for unbiased in (True, False):
        got = permutation_null(gram_linear(X), gram_linear(Y), perms, unbiased=unbiased)
        want = [cka(X, Y[p], unbiased=unbiased) for p in perms]
        assert got == pytest.approx(want, abs=1e-12)


def test_debiased_null_is_centred_on_zero_and_biased_chance_is_not():
    """Independent random features at the paper's n = 80: the debiased null's mean lies within
    three standard errors of 0; the biased estimator's chance level is far above 0."""
    rng = np.random.default_rng(8)
    X, Y = rng.normal(size=(80, 384)), rng.normal(size=(80, 384))
    table = cka_uncertainty([X, Y], [(0, 1)], n_boot=10, n_perm=2000)
    assert abs(table["null_debiased_mean"][0]) < 3 * table["null_debiased_se"][0]
    assert table["null_biased_mean"][0] > 0.3          # wide features, n = 80: chance is large
    assert table["null_debiased"][0] < 0.1


def population_case(rng, n):
    """Jointly Gaussian X = Z A' + E1, Y = Z B' + E2 (Z ~ N(0, I_k), E ~ N(0, s^2 I)) and its
    population CKA tr(Sxy Syx) / sqrt(tr(Sxx^2) tr(Syy^2))."""
    k, dx, dy, s = 4, 12, 10, 1.0
    A, B = rng.normal(size=(dx, k)), rng.normal(size=(dy, k))
    sxx, syy, sxy = A @ A.T + s ** 2 * np.eye(dx), B @ B.T + s ** 2 * np.eye(dy), A @ B.T
    truth = np.trace(sxy @ sxy.T) / np.sqrt(np.trace(sxx @ sxx) * np.trace(syy @ syy))
    return A, B, s, truth


def test_bootstrap_intervals_cover_the_population_cka():
    """Issue 18's bar: at least 90% of 200 repetitions (n = 80) cover the population value."""
    rng = np.random.default_rng(9)
    A, B, s, truth = population_case(rng, 80)
    covered = 0
    for rep in range(200):
        Z = rng.normal(size=(80, A.shape[1]))
        X = Z @ A.T + s * rng.normal(size=(80, A.shape[0]))
        Y = Z @ B.T + s * rng.normal(size=(80, B.shape[0]))
        _, low, high = cka_bootstrap(X, Y, n_boot=400, seed=rep)
        covered += low <= truth <= high
    assert covered >= 180, f"coverage {covered / 200:.2f}"


def test_bad_input_is_refused():
    rng = np.random.default_rng(10)
    with pytest.raises(MtnbError, match="different numbers of samples"):
        cka_uncertainty([rng.normal(size=(10, 3)), rng.normal(size=(11, 3))], [(0, 1)])
    with pytest.raises(MtnbError, match="at least 5 samples"):
        cka_uncertainty([rng.normal(size=(4, 3)), rng.normal(size=(4, 3))], [(0, 1)])
    with pytest.raises(MtnbError, match="between 0 and 1"):
        cka_uncertainty([rng.normal(size=(10, 3)), rng.normal(size=(10, 3))], [(0, 1)], level=95)
