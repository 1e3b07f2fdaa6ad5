"""Bootstrap intervals and paired tests over the samples two systems share, and Holm's correction.

When two models are scored on the same samples (test examples, or the CKA study's parallel
paragraphs), the comparison is paired: what varies from sample to sample is shared by both, so
the difference of their per-sample scores is far less noisy than either score. Over n samples
with per-sample scores a_i, b_i and differences d_i = a_i - b_i:

- the estimate is mean(d); a percentile bootstrap draws n samples with replacement B times and
  takes the 2.5th and 97.5th percentiles of the draws' mean differences as the 95% interval;
- the two-sided p-value is twice the smaller share of draws on either side of 0, counted as
  (1 + draws) / (B + 1) so that it is never 0 (a p-value of 0 from B draws only says p < 1/B),
  capped at 1; the interval excludes 0 about when p < 0.05;
- a family of m comparisons is corrected with Holm's step-down method: sort the p-values
  p_(1) <= ... <= p_(m); adjusted p_(k) = max over j <= k of min(1, (m - j + 1) p_(j)). A
  comparison is significant at level alpha when its adjusted p-value is below alpha; this holds
  the chance of any false claim in the family at alpha (Holm 1979).

Scores may carry more than one axis (seeds, languages): the bootstrap resamples the sample axis
(the last) and averages over the rest, so every draw keeps a sample's scores together.

A metric that is not a mean of per-sample scores (micro F1 = 2 correct / (predicted + reference))
is resampled as a ratio of sums: each sample carries a numerator and a denominator, and a draw
with counts w (how often each sample was drawn) scores sum(w num) / sum(w den)
(``resampled_ratio``); a mean is the case den = 1.

Test examples are rarely independent: the paragraphs of one page share its topic label, and the
non-English test sets are translations of the same paragraphs. ``cluster_difference`` is the
hierarchical paired bootstrap for that case: a draw takes pretraining replicas (each model its
own), then fine-tuning seeds (one draw for both models), then clusters of examples (pages, or
sentences), one draw shared by every language and both models; its docstring gives the math.
With m comparisons corrected by Holm, the smallest p a draw count B can give, 2 / (B + 1), is
multiplied by up to m: ``draws_needed`` picks a B that keeps that floor well below alpha. Where no
draw at all crosses 0, the count only says p < 2 / (B + 1); ``cluster_difference`` then reports
the normal tail of the draws instead, p = 2 Φ(−|d| / sd(draws)) = erfc(|d| / (sd √2)): an
extrapolation beyond what B draws can count, marked ``at_floor``, so that no reported p sits at
the resampling floor.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from mtnb.core.errors import MtnbError

__all__ = ["Interval", "Difference", "mean_interval", "paired_difference", "holm", "bootstrap_weights",
           "resampled_ratio", "percentile_difference", "ClusterSums", "ClusterDifference", "cluster_sums",
           "cluster_sums_of_rows", "cluster_draws", "cluster_difference", "resampling_floor", "draws_needed"]

LEVEL = 0.95


@dataclass(frozen=True)
class Interval:
    """A mean over samples with its bootstrap interval."""
    mean: float
    low: float
    high: float


@dataclass(frozen=True)
class Difference:
    """mean(a - b) over shared samples, its bootstrap interval and two-sided p-value."""
    mean: float
    low: float
    high: float
    p: float
    n: int

    def text(self, digits: int = 1, unit: str = "") -> str:
        """``+2.3 [0.4, 4.1]{unit}, p = 0.02``."""
        return f"{self.mean:+.{digits}f} [{self.low:+.{digits}f}, {self.high:+.{digits}f}]{unit}, p = {self.p:.2g}"


def bootstrap_weights(n: int, n_boot: int, seed=0) -> np.ndarray:
    """How often each of n samples is drawn in each of ``n_boot`` bootstrap draws of size n:
    (n_boot, n), rows summing to n (multinomial with equal probabilities); ``seed`` is anything
    ``numpy.random.default_rng`` takes."""
    rng = np.random.default_rng(seed)
    return rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot).astype(np.float64)


def resampled_ratio(num: np.ndarray, den: np.ndarray, W: np.ndarray, R: np.ndarray | None = None) -> np.ndarray:
    """A metric recomputed on bootstrap draws, in points: 100 x the mean over runs of
    sum_i w_i num_ri / sum_i w_i den_ri (0 where the denominator is 0). ``num``, ``den``: (runs,
    n) per-sample numerators and denominators of each run (e.g. seeds) on the same n samples;
    ``W``: (B, n) draw counts of the samples (``bootstrap_weights``; a row of ones gives the
    metric itself); ``R``: (B, runs) draw counts of the runs, for a bootstrap that resamples runs
    too (the mean over runs is then weighted by them). Returns (B,)."""
    top, bottom = W @ np.atleast_2d(num).T, W @ np.atleast_2d(den).T          # (B, runs)
    ratio = np.divide(top, bottom, out=np.zeros_like(top), where=bottom > 0)
    if R is None:
        return 100 * ratio.mean(axis=1)
    return 100 * (ratio * R).sum(axis=1) / R.sum(axis=1)


def percentile_difference(estimate: float, draws: np.ndarray, n: int, level: float = LEVEL) -> Difference:
    """A ``Difference`` from its estimate and its bootstrap draws (B,): the percentile interval
    at ``level`` and the two-sided p-value of the module's docstring."""
    tail = (1 - level) / 2
    low, high = np.quantile(draws, [tail, 1 - tail])
    crossing = min(np.sum(draws <= 0), np.sum(draws >= 0))
    p = min(1.0, 2 * (1 + crossing) / (len(draws) + 1))
    return Difference(float(estimate), float(low), float(high), float(p), int(n))


def _draws(scores: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    """Means of ``n_boot`` bootstrap draws over the last axis of ``scores`` (..., n), averaged
    over the other axes; (n_boot,)."""
    n = scores.shape[-1]
    per_sample = scores.reshape(-1, n).mean(axis=0)                # (n,): every other axis averaged
    idx = np.random.default_rng(seed).integers(0, n, size=(n_boot, n))
    return per_sample[idx].mean(axis=1)


def _check(scores, name: str) -> np.ndarray:
    x = np.asarray(scores, dtype=np.float64)
    if x.ndim == 0 or x.shape[-1] < 2:
        raise MtnbError(f"{name} needs at least 2 samples on its last axis, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise MtnbError(f"{name} holds NaN or infinite scores; drop those samples first")
    return x


def mean_interval(scores, *, n_boot: int = 2000, level: float = LEVEL, seed: int = 0) -> Interval:
    """The mean of ``scores`` (..., n samples) and its percentile bootstrap interval at ``level``."""
    x = _check(scores, "scores")
    draws = _draws(x, n_boot, seed)
    tail = (1 - level) / 2
    low, high = np.quantile(draws, [tail, 1 - tail])
    return Interval(float(x.mean()), float(low), float(high))


def paired_difference(a, b, *, n_boot: int = 2000, level: float = LEVEL, seed: int = 0) -> Difference:
    """mean(a - b) for two systems' scores on the same samples (arrays of equal shape, samples
    on the last axis), with its paired percentile bootstrap interval at ``level`` and two-sided
    p-value (see the module's docstring)."""
    a, b = _check(a, "a"), _check(b, "b")
    if a.shape != b.shape:
        raise MtnbError(f"paired scores must have the same shape (same samples in the same order), got {a.shape} "
                        f"and {b.shape}")
    d = a - b
    return percentile_difference(d.mean(), _draws(d, n_boot, seed), d.shape[-1], level)


def holm(pvalues) -> np.ndarray:
    """Holm-adjusted p-values, in the input's order (see the module's docstring)."""
    p = np.asarray(pvalues, dtype=np.float64)
    if p.ndim != 1 or ((p < 0) | (p > 1)).any():
        raise MtnbError("holm needs a flat list of p-values between 0 and 1")
    m = len(p)
    order = np.argsort(p, kind="stable")
    adjusted = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    out = np.empty(m)
    out[order] = adjusted
    return out


# ---------------------------------------------------------------------------------------------
# The hierarchical cluster bootstrap
# ---------------------------------------------------------------------------------------------

MIN_DRAWS = 10_000


@dataclass(frozen=True)
class ClusterSums:
    """One model's per-unit scores summed over the units of each cluster, in each run and
    language: what the cluster bootstrap draws from.

    ``num``, ``den``: (R replicas, K fine-tuning seeds, L languages, C clusters), the sums of the
    units' numerators and denominators; ``units``: (L, C) how many units each cluster holds in each
    language; ``replicas``, ``seeds``, ``languages``, ``clusters``: the labels of the four axes,
    in order (sorted when built from rows)."""
    num: np.ndarray
    den: np.ndarray
    units: np.ndarray
    replicas: tuple
    seeds: tuple
    languages: tuple
    clusters: tuple


@dataclass(frozen=True)
class ClusterDifference(Difference):
    """A ``Difference`` from the cluster bootstrap: ``n`` is the number of clusters, ``n_boot``
    the number of draws, and ``at_floor`` says that no draw fell on the far side of 0: counting
    could then only say p <= ``resampling_floor`` (2 / (B + 1)), and ``p`` is the normal tail of
    the draws instead (``cluster_difference``)."""
    n_boot: int
    at_floor: bool

    @property
    def floor(self) -> float:
        """The smallest two-sided p-value ``n_boot`` draws can give: 2 / (n_boot + 1)."""
        return resampling_floor(self.n_boot)

    def text(self, digits: int = 1, unit: str = "") -> str:
        """``+2.3 [0.4, 4.1]{unit}, p = 0.02``, or ``p = 3e-08 (normal tail; no draw crossed 0)``."""
        if not self.at_floor:
            return super().text(digits, unit)
        return (f"{self.mean:+.{digits}f} [{self.low:+.{digits}f}, {self.high:+.{digits}f}]{unit}, "
                f"p = {self.p:.1g} (normal tail; no draw crossed 0)")


def resampling_floor(n_boot: int) -> float:
    """The smallest two-sided p-value of the percentile bootstrap with ``n_boot`` draws, when no
    draw falls on the far side of 0: 2 (1 + 0) / (n_boot + 1)."""
    return 2.0 / (n_boot + 1)


def draws_needed(m: int, alpha: float = 0.05, margin: float = 10.0, minimum: int = MIN_DRAWS) -> int:
    """How many bootstrap draws a family of ``m`` Holm-corrected comparisons needs so that the
    largest Holm-adjusted floor, m x 2 / (B + 1), is at most alpha / ``margin``: the smallest B
    with B + 1 >= 2 m margin / alpha, and at least ``minimum``. For m = 33, alpha = 0.05: 13,199."""
    if m < 1 or not 0 < alpha < 1 or margin < 1:
        raise MtnbError(f"draws_needed needs m >= 1, 0 < alpha < 1 and margin >= 1, got m={m}, alpha={alpha}, "
                        f"margin={margin}")
    return max(int(minimum), int(np.ceil(2 * m * margin / alpha - 1e-9)) - 1)


def cluster_sums(num, den, clusters, *, replicas=None, seeds=None, languages=None) -> ClusterSums:
    """``ClusterSums`` of one model from dense per-unit scores: ``num``, ``den`` (R replicas, K
    fine-tuning seeds, L languages, U units), a mean being den = 1; ``clusters``: (U,) the cluster
    id of each unit, the same in every language (unit u of every language is a translation of the
    same example), or (L, U) one row per language. Every cluster must hold at least one unit in
    every language; a language with fewer units may pad with units of num = den = 0 (they add
    nothing). Labels of the other axes default to 0, 1, ..."""
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    if num.ndim != 4 or num.shape != den.shape:
        raise MtnbError(f"num and den must both be (replicas, seeds, languages, units), got {num.shape} and "
                        f"{den.shape}")
    R, K, L, U = num.shape
    ids = np.asarray(clusters)
    if ids.shape == (U,):
        ids = np.broadcast_to(ids, (L, U))
    if ids.shape != (L, U):
        raise MtnbError(f"clusters must be (units,) = ({U},) or (languages, units) = ({L}, {U}), got {ids.shape}")
    grid = np.indices((R, K, L, U)).reshape(4, -1)
    labels = [np.arange(R) if replicas is None else np.asarray(replicas),
              np.arange(K) if seeds is None else np.asarray(seeds),
              np.arange(L) if languages is None else np.asarray(languages)]
    for axis, (name, lab) in enumerate(zip(("replicas", "seeds", "languages"), labels)):
        if lab.shape != (num.shape[axis],) or len(np.unique(lab)) != num.shape[axis]:
            raise MtnbError(f"{name} must be {num.shape[axis]} distinct labels, one per entry of axis {axis}")
    return cluster_sums_of_rows(labels[0][grid[0]], labels[1][grid[1]], labels[2][grid[2]], grid[3],
                                np.broadcast_to(ids, num.shape).ravel(), num.ravel(), den.ravel())


def cluster_sums_of_rows(replica, seed, language, unit, cluster, num, den) -> ClusterSums:
    """``ClusterSums`` of one model from one row per scored unit: seven equal-length columns
    (sequences, numpy arrays or pandas Series; e.g. ``frame["seed"]``), a row being unit ``unit``
    of ``language`` scored by fine-tuning seed ``seed`` of pretraining replica ``replica``, with
    its numerator, denominator and cluster (a unit keeps its cluster in every run; units of
    different languages that share a cluster id are translations of the same page or sentence).

    Every run (replica, seed) must score the same units, each once; every cluster must appear
    in every language; every run's denominators must sum to more than 0 in every language."""
    columns = dict(replica=replica, seed=seed, language=language, unit=unit, cluster=cluster, num=num, den=den)
    arrays = {k: np.asarray(v) for k, v in columns.items()}
    lengths = {k: v.shape for k, v in arrays.items()}
    n_rows = len(arrays["num"]) if arrays["num"].ndim == 1 else -1
    if n_rows < 1 or any(shape != (n_rows,) for shape in lengths.values()):
        raise MtnbError(f"the unit columns must be 1-D, non-empty and of equal length, got shapes {lengths}")
    x, y = arrays["num"].astype(np.float64), arrays["den"].astype(np.float64)
    if not (np.isfinite(x).all() and np.isfinite(y).all()) or (y < 0).any():
        raise MtnbError("num and den must be finite and den >= 0; drop or fix those units first")
    (replicas, r), (seeds, k), (languages, l), (clusters, c) = (
        np.unique(arrays[name], return_inverse=True) for name in ("replica", "seed", "language", "cluster"))
    R, K, L, C = len(replicas), len(seeds), len(languages), len(clusters)
    unit_ids = np.unique(arrays["unit"], return_inverse=True)[1].reshape(-1)
    v = np.unique(l * (unit_ids.max() + 1) + unit_ids, return_inverse=True)[1].reshape(-1)
    V = v.max() + 1                                                   # distinct (language, unit) pairs
    held = np.bincount((r * K + k) * V + v, minlength=R * K * V)
    if (held != 1).any():
        raise MtnbError(f"every run (replica, seed) must score every unit once; {int((held == 0).sum())} are "
                        f"missing and {int((held > 1).sum())} doubled: rerun or deduplicate the scores")
    lowest, highest = np.full(V, C), np.full(V, -1)
    np.minimum.at(lowest, v, c)
    np.maximum.at(highest, v, c)
    if (lowest != highest).any():
        raise MtnbError("a unit has different cluster ids in different runs: give each unit one cluster")
    first = np.unique(v, return_index=True)[1]                      # one row per (language, unit)
    units = np.bincount(l[first] * C + c[first], minlength=L * C).reshape(L, C)
    if (units == 0).any():
        lang, clu = np.argwhere(units == 0)[0]
        raise MtnbError(f"cluster ids are not shared across languages: {(units == 0).sum()} (language, cluster) "
                        f"pairs hold no unit, e.g. cluster {clusters[clu]!r} in {languages[lang]!r}; give every "
                        "language the same clusters")
    cell = ((r * K + k) * L + l) * C + c
    sums = [np.bincount(cell, weights=w, minlength=R * K * L * C).reshape(R, K, L, C) for w in (x, y)]
    if (sums[1].sum(axis=3) <= 0).any():
        raise MtnbError("some run's denominators sum to 0 in a language, so its score is undefined: drop that "
                        "language or check the scores")
    return ClusterSums(sums[0], sums[1], units, tuple(replicas.tolist()), tuple(seeds.tolist()),
                       tuple(languages.tolist()), tuple(clusters.tolist()))


def _model_draws(sums: ClusterSums, P: np.ndarray, S: np.ndarray, W: np.ndarray) -> np.ndarray:
    """The statistic T of ``cluster_draws`` for one model under draws P (B, R), S (B, K), W (B, C):
    (B,), as a fraction (not yet scaled)."""
    R, K, L, C = sums.num.shape
    top = W @ sums.num.reshape(-1, C).T                              # (B, R K L)
    bottom = W @ sums.den.reshape(-1, C).T
    ratio = np.divide(top, bottom, out=np.zeros_like(top), where=bottom > 0)
    per_run = ratio.reshape(-1, R, K, L).mean(axis=3)                # (B, R, K): languages averaged
    return ((per_run * P[:, :, None]).sum(axis=1) * S).sum(axis=1) / (R * K)


def cluster_draws(a: ClusterSums, b: ClusterSums, *, n_boot: int = MIN_DRAWS, seed=0,
                  scale: float = 100.0) -> tuple[float, np.ndarray]:
    """The estimate of "a minus b" and its ``n_boot`` hierarchical paired bootstrap draws (B,).

    Model m (a or b) has cluster sums X_m, Y_m of shape (R_m replicas, K seeds, L languages, C
    clusters) (``ClusterSums``); a and b share the seeds, languages, clusters and units. Draw t
    takes three sets of counts, each a multinomial of n items with equal probabilities:

    - P_m[t] (R_m,): the pretraining replicas, drawn for each model on its own (a model with one
      replica keeps it: P_m = 1);
    - S[t] (K,): the fine-tuning seeds, one draw for both models (seed k trains both on the same
      English sample);
    - W[t] (C,): the clusters, one draw for every language and both models (a cluster drawn twice
      counts each of its units twice, in every language).

    Each run and language is scored on the drawn clusters as a ratio of sums, and the runs are
    averaged with their draw counts (the counts sum to R_m and K):

        ratio_m[t, r, k, l] = sum_c W[t, c] X_m[r, k, l, c] / sum_c W[t, c] Y_m[r, k, l, c]
        T_m[t] = scale / (R_m K) sum_{r, k} P_m[t, r] S[t, k] (1 / L) sum_l ratio_m[t, r, k, l]
        draw[t] = T_a[t] - T_b[t]

    (a ratio with denominator 0 counts 0, as in ``resampled_ratio``). The estimate is the same
    statistic with every count 1. ``seed``: an int or a tuple of ints (numpy ``SeedSequence``);
    ``scale``: 100 gives points, as ``resampled_ratio``. Returns (estimate, draws)."""
    for name, lab_a, lab_b in (("seeds", a.seeds, b.seeds), ("languages", a.languages, b.languages),
                               ("clusters", a.clusters, b.clusters)):
        if lab_a != lab_b:
            raise MtnbError(f"the paired models must share their {name}, got {len(lab_a)} and {len(lab_b)} "
                            f"({list(lab_a)[:3]}... vs {list(lab_b)[:3]}...): score both on the same {name}")
    if not np.array_equal(a.units, b.units):
        raise MtnbError("the paired models hold different numbers of units in some cluster: score both on the same "
                        "test units")
    if n_boot < 1:
        raise MtnbError(f"n_boot must be at least 1, got {n_boot}")
    K, C = a.num.shape[1], a.num.shape[3]
    streams = np.random.SeedSequence(seed).spawn(4)
    P_a = bootstrap_weights(a.num.shape[0], n_boot, streams[0])
    P_b = bootstrap_weights(b.num.shape[0], n_boot, streams[1])
    S = bootstrap_weights(K, n_boot, streams[2])
    W = bootstrap_weights(C, n_boot, streams[3])
    ones = [np.ones((1, n)) for n in (a.num.shape[0], b.num.shape[0], K, C)]
    estimate = _model_draws(a, ones[0], ones[2], ones[3])[0] - _model_draws(b, ones[1], ones[2], ones[3])[0]
    draws = _model_draws(a, P_a, S, W) - _model_draws(b, P_b, S, W)
    return float(scale * estimate), scale * draws


def cluster_difference(a: ClusterSums, b: ClusterSums, *, n_boot: int = MIN_DRAWS, level: float = LEVEL,
                       seed=0, scale: float = 100.0) -> ClusterDifference:
    """a minus b on the mean over languages of a ratio-of-sums score, with the percentile interval
    at ``level`` and the two-sided p-value of the module's docstring from the hierarchical cluster
    bootstrap (``cluster_draws``: replicas, then shared seeds, then shared clusters).
    ``at_floor`` marks a difference no draw crossed 0 against; its p is then the normal tail of
    the draws, erfc(|d| / (sd(draws) √2)) (the module's docstring), not the count's floor. In
    points with ``scale`` = 100."""
    estimate, draws = cluster_draws(a, b, n_boot=n_boot, seed=seed, scale=scale)
    d = percentile_difference(estimate, draws, a.num.shape[3], level)
    at_floor = bool(min(np.sum(draws <= 0), np.sum(draws >= 0)) == 0)
    p, spread = d.p, float(np.std(draws, ddof=1))
    if at_floor and spread > 1e-9 * max(1.0, abs(estimate)):   # draws that do not vary (a constant shift) keep the floor
        p = math.erfc(abs(estimate) / (spread * math.sqrt(2)))
    return ClusterDifference(d.mean, d.low, d.high, p, d.n, n_boot, at_floor)
