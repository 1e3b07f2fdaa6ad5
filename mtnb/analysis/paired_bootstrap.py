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
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mtnb.core.errors import MtnbError

__all__ = ["Interval", "Difference", "mean_interval", "paired_difference", "holm", "bootstrap_weights",
           "resampled_ratio", "percentile_difference"]

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
