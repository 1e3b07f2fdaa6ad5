"""Linear CKA (mtnb.analysis.cka): its invariances, its two formulations and two estimators, the batched
all-pairs matrix, an independent naive reference, known values, and the errors."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from mtnb.analysis.cka import center_gram, cka, cka_features, cka_gram, cka_matrix, gram_linear
from mtnb.core.errors import MtnbError

ESTIMATORS = [False, True]  # unbiased?
METHODS = ["features", "gram"]


def related_pair(seed: int = 0, n: int = 60, d1: int = 12, d2: int = 20):
    """X (n × d1) and Y (n × d2) that share a linear signal, with non-zero column means."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d1)) + 3.0
    Y = X @ rng.normal(size=(d1, d2)) + 2.0 * rng.normal(size=(n, d2)) - 1.0
    return X, Y


# --- an independent reference, written from the definitions with explicit matrices ----------

def naive_cka(X, Y, unbiased):
    """CKA from HSIC as defined: explicit centring matrix H (biased) or Song et al.'s HSIC_1."""
    X, Y = np.asarray(X, dtype=np.float64), np.asarray(Y, dtype=np.float64)
    n = X.shape[0]

    def hsic_biased(K, L):  # HSIC_0 = tr(K H L H) / (n - 1)^2
        H = np.eye(n) - np.ones((n, n)) / n
        return np.trace(K @ H @ L @ H) / (n - 1) ** 2

    def hsic_unbiased(K, L):  # HSIC_1 (Song et al. 2012, eq. 5)
        Kt, Lt = K - np.diag(np.diag(K)), L - np.diag(np.diag(L))
        one = np.ones(n)
        return (np.trace(Kt @ Lt) + (one @ Kt @ one) * (one @ Lt @ one) / ((n - 1) * (n - 2))
                - 2.0 / (n - 2) * (one @ Kt @ Lt @ one)) / (n * (n - 3))

    hsic = hsic_unbiased if unbiased else hsic_biased
    K, L = X @ X.T, Y @ Y.T
    return hsic(K, L) / np.sqrt(hsic(K, K) * hsic(L, L))


@pytest.mark.parametrize("unbiased", ESTIMATORS)
def test_agrees_with_naive_reference(unbiased):
    for seed, (n, d1, d2) in enumerate([(10, 3, 7), (40, 50, 5), (120, 16, 16)]):
        X, Y = related_pair(seed, n, d1, d2)
        Y[:, 0] += np.random.default_rng(seed).normal(size=n) * 10  # an uneven, badly scaled feature
        expected = naive_cka(X, Y, unbiased)
        for method in METHODS:
            assert cka(X, Y, unbiased, method) == pytest.approx(expected, abs=1e-6)


# --- basic properties -------------------------------------------------------------------

@pytest.mark.parametrize("unbiased", ESTIMATORS)
@pytest.mark.parametrize("method", METHODS)
def test_cka_of_a_representation_with_itself_is_one(unbiased, method):
    X, _ = related_pair()
    assert cka(X, X, unbiased, method) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("unbiased", ESTIMATORS)
@pytest.mark.parametrize("method", METHODS)
def test_invariant_to_orthogonal_maps_and_scaling_but_not_to_general_linear_maps(unbiased, method):
    X, Y = related_pair()
    rng = np.random.default_rng(1)
    Q, _ = np.linalg.qr(rng.normal(size=(X.shape[1], X.shape[1])))
    base = cka(X, Y, unbiased, method)
    assert cka(X @ Q, Y, unbiased, method) == pytest.approx(base, abs=1e-10)
    assert cka(3.7 * X, 0.01 * Y, unbiased, method) == pytest.approx(base, abs=1e-10)
    assert cka(X + 5.0, Y - 2.0, unbiased, method) == pytest.approx(base, abs=1e-10)  # centring
    # An invertible but anisotropic map re-weights the features, so CKA must move.
    A = Q @ np.diag(np.geomspace(0.05, 20.0, X.shape[1])) @ np.linalg.qr(rng.normal(size=Q.shape))[0]
    assert abs(np.linalg.det(A)) > 1e-6
    assert abs(cka(X @ A, Y, unbiased, method) - base) > 0.05


@pytest.mark.parametrize("unbiased", ESTIMATORS)
@pytest.mark.parametrize("method", METHODS)
def test_symmetric(unbiased, method):
    X, Y = related_pair(2)
    assert cka(X, Y, unbiased, method) == pytest.approx(cka(Y, X, unbiased, method), abs=1e-14)


@pytest.mark.parametrize("unbiased", ESTIMATORS)
def test_gram_and_feature_formulations_agree(unbiased):
    for seed, (n, d1, d2) in enumerate([(5, 2, 9), (30, 64, 8), (200, 10, 30)]):
        X, Y = related_pair(seed, n, d1, d2)
        assert cka_features(X, Y, unbiased) == pytest.approx(
            cka_gram(gram_linear(X), gram_linear(Y), unbiased), abs=1e-10)


def test_centred_grams_have_the_stated_structure():
    X, _ = related_pair(n=20)
    K = gram_linear(X)
    Kc = center_gram(K)
    assert np.allclose(Kc.sum(axis=0), 0, atol=1e-9) and np.allclose(Kc.sum(axis=1), 0, atol=1e-9)
    Ku = center_gram(K, unbiased=True)
    assert np.all(np.diag(Ku) == 0)
    assert np.allclose(Ku.sum(axis=1), 0, atol=1e-9)  # rows sum to 0 off the diagonal
    stack = np.stack([K, 2 * K + 1])  # a stack is centred item by item
    for unbiased in ESTIMATORS:
        got = center_gram(stack, unbiased)
        assert np.allclose(got[1], center_gram(stack[1], unbiased), atol=1e-12)


# --- the batched all-pairs matrix ---------------------------------------------------------

@pytest.mark.parametrize("unbiased", ESTIMATORS)
def test_cka_matrix_matches_pairwise_on_a_stack(unbiased):
    rng = np.random.default_rng(3)
    base = rng.normal(size=(40, 24))
    stack = np.stack([base @ rng.normal(size=(24, 24)) * 0.3 ** k + rng.normal(size=(40, 24))
                      for k in range(6)]).astype(np.float32)
    C = cka_matrix(stack, unbiased, chunk=4)  # 2 chunks
    assert C.shape == (6, 6) and np.array_equal(C, C.T)
    for i, j in itertools.product(range(6), repeat=2):
        assert C[i, j] == pytest.approx(cka_features(stack[i], stack[j], unbiased), abs=1e-12)
    off = C[~np.eye(6, dtype=bool)]  # the representations differ, so the check is not vacuous
    assert off.max() < 0.9 and off.max() - off.min() > 0.2
    assert np.allclose(cka_matrix(torch.from_numpy(stack), unbiased), C, atol=1e-14, rtol=0)


@pytest.mark.parametrize("unbiased", ESTIMATORS)
def test_cka_matrix_matches_pairwise_on_different_widths(unbiased):
    rng = np.random.default_rng(4)
    base = rng.normal(size=(30, 8))
    reps = [base @ rng.normal(size=(8, d)) + rng.normal(size=(30, d)) for d in (3, 8, 50, 120)]
    reps[2] = torch.tensor(reps[2], dtype=torch.float64)  # numpy and torch may be mixed
    C = cka_matrix(reps, unbiased)
    for i, j in itertools.product(range(4), repeat=2):
        assert C[i, j] == pytest.approx(cka_gram(gram_linear(reps[i]), gram_linear(reps[j]), unbiased),
                                        abs=1e-12)
    assert np.allclose(np.diag(C), 1.0, atol=1e-12)


# --- known values -------------------------------------------------------------------------

def test_independent_representations():
    """Independent Gaussians, n = 500, d = 10: the biased CKA is about d/n = 0.02, the debiased
    one about 0. Measured over 200 seeds: biased 0.0198 ± 0.0027 (min 0.014), debiased
    0.0002 ± 0.0028 (|max| 0.0087)."""
    biased, debiased = [], []
    for seed in range(20):
        rng = np.random.default_rng(seed)
        X, Y = rng.normal(size=(500, 10)), rng.normal(size=(500, 10))
        biased.append(cka(X, Y))
        debiased.append(cka(X, Y, unbiased=True))
    biased, debiased = np.array(biased), np.array(debiased)
    assert np.all((biased > 0.01) & (biased < 0.035))
    assert np.all(np.abs(debiased) < 0.012)
    assert abs(biased.mean() - 0.02) < 0.003 and abs(debiased.mean()) < 0.003
    assert np.all(biased - debiased > 0.005)  # the bias the unbiased estimator removes


@pytest.mark.parametrize("unbiased", ESTIMATORS)
def test_small_noise_keeps_cka_close_to_one(unbiased):
    rng = np.random.default_rng(5)
    X = rng.normal(size=(300, 16))
    values = [cka(X, X + s * rng.normal(size=X.shape), unbiased) for s in (0.05, 0.5, 2.0)]
    assert 0.99 < values[0] < 1.0
    assert values[0] > values[1] > values[2]  # more noise, less similar


# --- errors -------------------------------------------------------------------------------

def test_mismatched_numbers_of_samples_are_refused_with_a_useful_message():
    X, Y = related_pair()
    for call in (lambda: cka(X, Y[:-1]), lambda: cka(X, Y[:-1], method="gram"),
                 lambda: cka_matrix([X, Y[:-1]])):
        with pytest.raises(MtnbError, match=r"different numbers of samples \(60 and 59\).*same n"):
            call()


def test_unbiased_needs_more_than_three_samples():
    X, Y = related_pair(n=3)
    assert np.isfinite(cka(X, Y))  # the biased estimator is defined
    for call in (lambda: cka(X, Y, unbiased=True), lambda: cka(X, Y, True, "gram"),
                 lambda: cka_matrix(np.stack([X, X]), unbiased=True),
                 lambda: center_gram(gram_linear(X), unbiased=True)):
        with pytest.raises(MtnbError, match="at least 4 samples, got 3"):
            call()
    X4, Y4 = related_pair(n=4)
    assert np.isfinite(cka(X4, Y4, unbiased=True))


def test_bad_input_is_refused():
    X, Y = related_pair()
    X[3, 2] = np.nan
    with pytest.raises(MtnbError, match="NaN or infinite"):
        cka(X, Y)
    with pytest.raises(MtnbError, match="NaN or infinite"):
        cka_matrix([Y, X])
    with pytest.raises(MtnbError, match="shape"):
        cka(Y[:, 0], Y)
    with pytest.raises(MtnbError, match="zero .*variance"):
        cka(np.ones((10, 4)), Y[:10])
    with pytest.raises(MtnbError, match="unknown CKA method"):
        cka(Y, Y, method="rbf")
