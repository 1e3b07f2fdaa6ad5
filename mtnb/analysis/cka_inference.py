"""Uncertainty for CKA: bootstrap intervals over samples and a permutation null.

A CKA value from n = 80 samples is an estimate. Two questions decide what it can support:

- **How precise is it?** A percentile bootstrap over samples: draw n samples with replacement
  B times, recompute CKA on each draw, report the 2.5th and 97.5th percentiles.
- **What would unrelated representations score?** A permutation null: shuffle the rows of one
  side (sample i of X now meets sample π(i) of Y), which keeps both representations' geometry
  but breaks their correspondence. The biased estimator's null sits well above 0 at n = 80
  (its chance level); the debiased estimator's is centred on 0.

The debiased estimator and the bootstrap need care together. The debiased HSIC (Song et al.
2012) is a U-statistic: an average over tuples of *distinct* samples of

    h(i, j, q, r) = k_ij l_ij + k_ij l_qr - 2 k_ij l_iq,
    HSIC_1 = E1 + E2 - 2 E3,   E1 = avg_{i!=j} k_ij l_ij,   E2 = avg_{i,j,q,r distinct} k_ij l_qr,
                               E3 = avg_{i,j,q distinct} k_ij l_iq,

with k_ij = x_i . x_j and l_ij = y_i . y_j (linear kernels; no centring needed). A bootstrap draw
repeats samples, and a repeated sample paired with itself would bring k_ii (a squared norm)
into the off-diagonal averages: the very bias the estimator exists to remove. So a draw is
treated as weights w_i (how often sample i was drawn) and each average runs over tuples of
distinct *original* samples, weighted by the product of their weights. With K~, L~ the Gram
matrices with zero diagonal, M = K~ o L~, a = K~ w, b = L~ w and p_k = sum_i w_i^k:

    E1 = w'Mw / (p1^2 - p2)
    E3 = (sum_i w_i a_i b_i - w'M w^2) / (p1^3 - 3 p1 p2 + 2 p3)
    E2 = ((w'a)(w'b) - 4 sum_i w_i^2 a_i b_i + 2 (w^2)'M(w^2))
         / (p1^4 - 6 p1^2 p2 + 3 p2^2 + 8 p1 p3 - 6 p4)

(the denominators are the weighted counts of distinct pairs, triples and quadruples). With
every w_i = 1 this is Song's HSIC_1 exactly; with integer weights each of E1, E2, E3 is its
average over the expanded sample's tuples whose samples are all distinct originals (both are
tested).
The biased estimator is a V-statistic, for which repeats are harmless: a draw's biased CKA is
that of the expanded sample, HSIC_0 = sum_ij w_i w_j Kc_ij Lc_ij with weighted centring.

CKA = HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L)). ``cka_uncertainty`` computes both for many
pairs of representations at once, every pair under the same B draws and P permutations, so a
table of intervals costs a few matrix products per pair. Everything is float64.
"""

from __future__ import annotations

import numpy as np

from mtnb.analysis.cka import gram_linear
from mtnb.analysis.paired_bootstrap import bootstrap_weights
from mtnb.core.errors import MtnbError

__all__ = ["weighted_hsic_debiased", "weighted_hsic_biased", "permutation_null", "permuted_indices",
           "cka_uncertainty", "cka_bootstrap"]

LEVEL = 0.95


def _zero_diagonal(K: np.ndarray) -> np.ndarray:
    """K (..., n, n) with its diagonal set to 0 (a copy)."""
    K = np.array(K, dtype=np.float64, copy=True)
    n = K.shape[-1]
    K[..., np.arange(n), np.arange(n)] = 0.0
    return K


def _pair_counts(W: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weighted numbers of ordered pairs, triples and quadruples of distinct samples, from
    weights W (B, n): the power-sum forms of 2! e2, 3! e3 and 4! e4. Each (B,)."""
    p1, p2, p3, p4 = (np.sum(W ** k, axis=1) for k in (1, 2, 3, 4))
    return (p1 ** 2 - p2, p1 ** 3 - 3 * p1 * p2 + 2 * p3,
            p1 ** 4 - 6 * p1 ** 2 * p2 + 3 * p2 ** 2 + 8 * p1 * p3 - 6 * p4)


def weighted_hsic_debiased(K0: np.ndarray, L0: np.ndarray, W: np.ndarray, counts=None) -> np.ndarray:
    """The debiased HSIC of Gram matrices K0, L0 (n, n) with zero diagonals, for each row of
    sample weights W (B, n) (see the module's formulas); (B,). W = ones gives Song's HSIC_1.
    ``counts``: ``_pair_counts(W)``, when the caller reuses one W for many pairs."""
    W = np.atleast_2d(np.asarray(W, dtype=np.float64))
    M = K0 * L0
    W2 = W * W
    A, Bv = W @ K0, W @ L0                        # (B, n): a = K~w, b = L~w per draw
    WM = W @ M                                    # (B, n): M w per draw (M is symmetric)
    wMw, wMw2 = np.sum(WM * W, axis=1), np.sum(WM * W2, axis=1)
    w2Mw2 = np.sum((W2 @ M) * W2, axis=1)
    ab = A * Bv
    n2, n3, n4 = _pair_counts(W) if counts is None else counts
    e1 = wMw / n2
    e3 = (np.sum(W * ab, axis=1) - wMw2) / n3
    e2 = (np.sum(W * A, axis=1) * np.sum(W * Bv, axis=1) - 4 * np.sum(W2 * ab, axis=1) + 2 * w2Mw2) / n4
    return e1 + e2 - 2 * e3


def weighted_hsic_biased(K: np.ndarray, L: np.ndarray, W: np.ndarray) -> np.ndarray:
    """The biased HSIC (V-statistic) of full Gram matrices K, L (n, n) under sample weights W
    (B, n): sum_ij w_i w_j Kc_ij Lc_ij / p1^2 with Kc = (I - 1 w'/p1) K (I - w 1'/p1), i.e.
    the plain estimator on the sample expanded by its weights, up to CKA's cancelling factor;
    (B,)."""
    W = np.atleast_2d(np.asarray(W, dtype=np.float64))
    p1 = W.sum(axis=1)
    out = np.empty(len(W))
    for b, w in enumerate(W):
        u = w / p1[b]
        Kc = K - (K @ u)[:, None] - (u @ K)[None, :] + u @ K @ u
        Lc = L - (L @ u)[:, None] - (u @ L)[None, :] + u @ L @ u
        out[b] = u @ (Kc * Lc) @ u
    return out


def permutation_null(K: np.ndarray, L: np.ndarray, perms: np.ndarray, unbiased: bool, flat=None) -> np.ndarray:
    """CKA(X, Y[pi]) for each permutation pi in ``perms`` (P, n), from the Gram matrices K, L
    (n, n): the permutation null of CKA; (P,). The self-terms HSIC(K, K) and HSIC(L, L) do not
    change under a permutation, so only the cross term is recomputed: sum_ij K_ij L_pi(i)pi(j),
    read from L through the flat indices pi(i) n + pi(j) (``flat``, (P, n^2); computed here
    unless a caller reusing ``perms`` passes them)."""
    n = len(K)
    if flat is None:
        flat = permuted_indices(perms)
    if unbiased:
        K0, L0 = _zero_diagonal(K), _zero_diagonal(L)
        ones = np.ones((1, n))
        self_k, self_l = weighted_hsic_debiased(K0, K0, ones)[0], weighted_hsic_debiased(L0, L0, ones)[0]
        # HSIC_1 for w = 1, term by term as in weighted_hsic_debiased, with L0 permuted
        k1, l1 = K0.sum(1), L0.sum(1)
        n2, n3, n4 = n * (n - 1), n * (n - 1) * (n - 2), n * (n - 1) * (n - 2) * (n - 3)
        m = np.take(L0.ravel(), flat) @ K0.ravel()                                 # tr(K~ L~p), (P,)
        ab = (k1[None, :] * l1[perms]).sum(1)                                       # sum_i a_i b_i, (P,)
        e1, e3 = m / n2, (ab - m) / n3
        e2 = (k1.sum() * l1.sum() - 4 * ab + 2 * m) / n4
        out = e1 + e2 - 2 * e3
        return out / np.sqrt(self_k * self_l)
    H = np.eye(n) - 1.0 / n
    Kc, Lc = H @ K @ H, H @ L @ H
    scale = np.sqrt(np.sum(Kc * Kc) * np.sum(Lc * Lc))
    return np.take(Lc.ravel(), flat) @ Kc.ravel() / scale


def permuted_indices(perms: np.ndarray) -> np.ndarray:
    """Flat indices pi(i) n + pi(j) of each permutation in ``perms`` (P, n): (P, n^2), so that
    ``np.take(L.ravel(), flat)[p]`` is L with rows and columns permuted by perms[p], flattened."""
    n = perms.shape[1]
    return (perms[:, :, None] * n + perms[:, None, :]).reshape(len(perms), n * n)


def _check_features(features: list, name: str = "features") -> int:
    """The common sample count of a list of (n, d) arrays, or a one-line error."""
    sizes = {np.shape(f)[0] for f in features}
    if len(sizes) != 1:
        raise MtnbError(f"{name} have different numbers of samples {sorted(sizes)}: pass rows for the same samples")
    n = sizes.pop()
    if n < 5:
        raise MtnbError(f"CKA intervals need at least 5 samples, got {n}; pass more samples")
    return n


def cka_uncertainty(features: list, pairs: list[tuple[int, int]], *, n_boot: int = 1000, n_perm: int = 200,
                    level: float = LEVEL, seed: int = 0) -> dict[str, np.ndarray]:
    """Debiased and biased CKA of each pair (i, j) of ``features`` (a list of (n, d_i) arrays
    of the same n samples), with a percentile bootstrap interval for the debiased value and
    the permutation null of both. All pairs share the same ``n_boot`` draws and ``n_perm``
    permutations (seeded by ``seed``).

    Returns arrays of shape (len(pairs),): ``debiased``, ``biased`` (the estimates on all
    samples), ``low``, ``high`` (the debiased bootstrap interval at ``level``), ``null_debiased``
    and ``null_biased`` (the permutation nulls' upper ``level`` quantiles: the value chance
    alone reaches one time in 20 at the default level), ``null_debiased_mean``,
    ``null_debiased_se`` (mean and standard error of the debiased null) and ``null_biased_mean``.
    A draw whose self-HSIC is not positive (possible for the debiased estimator on a draw with
    few distinct samples) is left out of the interval."""
    n = _check_features(features)
    if not 0 < level < 1:
        raise MtnbError(f"level {level} must lie strictly between 0 and 1, e.g. 0.95")
    grams = [gram_linear(f) for f in features]
    used = sorted({i for pair in pairs for i in pair})
    zero = {i: _zero_diagonal(grams[i]) for i in used}
    W = bootstrap_weights(n, n_boot, seed)
    ones = np.ones((1, n))
    rng = np.random.default_rng((seed, 1))
    perms = np.stack([rng.permutation(n) for _ in range(n_perm)]) if n_perm else np.zeros((0, n), dtype=int)
    flat = permuted_indices(perms)
    counts = _pair_counts(W)
    self_boot = {i: weighted_hsic_debiased(zero[i], zero[i], W, counts) for i in used}
    self_full = {i: weighted_hsic_debiased(zero[i], zero[i], ones)[0] for i in used}
    self_biased = {i: weighted_hsic_biased(grams[i], grams[i], ones)[0] for i in used}
    tail = (1 - level) / 2
    out = {k: np.empty(len(pairs)) for k in ("debiased", "biased", "low", "high", "null_debiased", "null_biased",
                                               "null_debiased_mean", "null_debiased_se", "null_biased_mean")}
    for k, (i, j) in enumerate(pairs):
        cross = weighted_hsic_debiased(zero[i], zero[j], ones)[0]
        out["debiased"][k] = cross / np.sqrt(self_full[i] * self_full[j])
        out["biased"][k] = weighted_hsic_biased(grams[i], grams[j], ones)[0] / np.sqrt(self_biased[i] * self_biased[j])
        denominator = self_boot[i] * self_boot[j]
        ok = (self_boot[i] > 0) & (self_boot[j] > 0)
        draws = weighted_hsic_debiased(zero[i], zero[j], W, counts)[ok] / np.sqrt(denominator[ok])
        out["low"][k], out["high"][k] = np.quantile(draws, [tail, 1 - tail]) if len(draws) else (np.nan, np.nan)
        if n_perm:
            null_d = permutation_null(grams[i], grams[j], perms, unbiased=True, flat=flat)
            null_b = permutation_null(grams[i], grams[j], perms, unbiased=False, flat=flat)
            out["null_debiased"][k], out["null_biased"][k] = np.quantile(null_d, level), np.quantile(null_b, level)
            out["null_debiased_mean"][k], out["null_biased_mean"][k] = null_d.mean(), null_b.mean()
            out["null_debiased_se"][k] = null_d.std(ddof=1) / np.sqrt(n_perm)
        else:
            for key in ("null_debiased", "null_biased", "null_debiased_mean", "null_debiased_se", "null_biased_mean"):
                out[key][k] = np.nan
    return out


def cka_bootstrap(X, Y, *, n_boot: int = 1000, level: float = LEVEL, seed: int = 0) -> tuple[float, float, float]:
    """Debiased CKA of X (n, d1) and Y (n, d2) with its percentile bootstrap interval at
    ``level``: (estimate, low, high)."""
    table = cka_uncertainty([X, Y], [(0, 1)], n_boot=n_boot, n_perm=0, level=level, seed=seed)
    return float(table["debiased"][0]), float(table["low"][0]), float(table["high"][0])
