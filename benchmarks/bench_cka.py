"""All-pairs linear CKA over cached features: the batched ``cka_matrix`` against a per-pair loop.

Builds random "cached features" (float32, seeded) for 7 models × 13 layers × 5 languages with
n = 80 samples and width 768, i.e. m = 455 representations, and computes the full m × m CKA
matrix, for the biased and the unbiased estimator, two ways:

(a) ``mtnb.analysis.cka.cka_matrix(features)``: every centred Gram once, all HSICs as one G Gᵀ;
(b) the per-pair baseline: each representation's raw Gram ``gram_linear(X_i)`` computed once
    (outside the timing, which favours the baseline), then ``cka_gram(K_i, K_j)`` called in a
    Python double loop over the upper triangle, diagonal included (m(m+1)/2 = 103,740 calls).
    ``cka_gram`` is the natural per-pair function here: with n = 80 < d = 768 it is far cheaper
    than ``cka_features``, whose ‖YᵀX‖²_F costs n·d² per pair (about 30 ms, an hour for all
    pairs). A sample of pairs of ``cka_features`` is timed too and extrapolated, for reference.

Checks that the two matrices agree to 1e-10, prints the median wall times and the speed-up
measured in the same run, and writes the figures as JSON.

BLAS runs on --blas-threads threads (default 1, set with threadpoolctl, which comes with
scikit-learn; 0 leaves the library's default). One thread is the like-for-like comparison
(the loop is single-threaded Python) and is stable on a shared machine: on a busy 2-core
machine, multi-threaded OpenBLAS made the batched time swing between 0.3 s and 7 s.

    python benchmarks/bench_cka.py [--repeats 5] [--loop-repeats 3] [--blas-threads 1]
                                   [--out runs/benchmarks/cka.json]
Goal: the batched matrix is >= 20× faster than the loop, with identical values.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

from mtnb.analysis.cka import cka_features, cka_gram, cka_matrix, gram_linear

MODELS, LAYERS, LANGUAGES, N, WIDTH = 7, 13, 5, 80, 768


def cached_features(seed: int = 0) -> np.ndarray:
    """(455, 80, 768) float32: per model a shared random signal, drifting with depth and
    language, plus noise, so that the CKA values spread over a range rather than all ~0."""
    rng = np.random.default_rng(seed)
    reps = np.empty((MODELS * LAYERS * LANGUAGES, N, WIDTH), dtype=np.float32)
    base = rng.standard_normal((N, 32))
    k = 0
    for _ in range(MODELS):
        signal = base @ rng.standard_normal((32, WIDTH))
        for layer in range(LAYERS):
            signal = signal + 0.5 * rng.standard_normal((N, 32)) @ rng.standard_normal((32, WIDTH))
            for _ in range(LANGUAGES):
                reps[k] = signal + (1 + layer / 4) * rng.standard_normal((N, WIDTH))
                k += 1
    return reps


def loop_matrix(grams: np.ndarray, unbiased: bool) -> np.ndarray:
    """The per-pair baseline: cka_gram on every pair of the upper triangle, mirrored."""
    m = len(grams)
    C = np.empty((m, m))
    for i in range(m):
        for j in range(i, m):
            C[i, j] = C[j, i] = cka_gram(grams[i], grams[j], unbiased)
    return C


def timed(fn, repeats: int):
    """(last result, list of wall times in seconds) of ``repeats`` calls of fn()."""
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return result, times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="runs of the batched cka_matrix (median)")
    parser.add_argument("--loop-repeats", type=int, default=3, help="runs of the per-pair loop (median)")
    parser.add_argument("--feature-pairs", type=int, default=200,
                        help="pairs of cka_features timed to extrapolate its all-pairs time (0: skip)")
    parser.add_argument("--blas-threads", type=int, default=1, help="BLAS threads (0: the library default)")
    parser.add_argument("--out", default="runs/benchmarks/cka.json")
    args = parser.parse_args()
    if args.blas_threads:
        threadpool_limits(limits=args.blas_threads, user_api="blas")
    blas = [{k: info[k] for k in ("internal_api", "version", "num_threads")}
            for info in threadpool_info() if info["user_api"] == "blas"]

    features = cached_features()
    m = len(features)
    pairs = m * (m + 1) // 2
    grams = gram_linear(features)  # the baseline's raw Grams, built once, not timed
    record = {"m": m, "n": N, "width": WIDTH, "dtype": "float32 in, float64 sums",
              "models": MODELS, "layers": LAYERS, "languages": LANGUAGES, "pairs_in_loop": pairs,
              "baseline": "cka_gram(K_i, K_j) in a Python double loop over the upper triangle, "
                          "raw Grams precomputed", "cpu_count": os.cpu_count(),
              "machine": platform.processor() or platform.machine(), "numpy": np.__version__,
              "blas": blas, "load_average_at_start": list(os.getloadavg()),
              "estimators": {}}
    print(f"{m} representations ({MODELS} models × {LAYERS} layers × {LANGUAGES} languages), "
          f"n = {N}, width {WIDTH}; {pairs} pairs in the loop; BLAS threads "
          f"{[b['num_threads'] for b in blas]}, load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    for unbiased in (False, True):
        name = "unbiased" if unbiased else "biased"
        batched, batched_times = timed(lambda: cka_matrix(features, unbiased), args.repeats)
        looped, loop_times = timed(lambda: loop_matrix(grams, unbiased), args.loop_repeats)
        diff = float(np.max(np.abs(batched - looped)))
        t_batched, t_loop = statistics.median(batched_times), statistics.median(loop_times)
        entry = {"batched_median_s": t_batched, "batched_times_s": batched_times,
                 "batched_repeats": args.repeats, "loop_median_s": t_loop, "loop_times_s": loop_times,
                 "loop_repeats": args.loop_repeats, "speedup": t_loop / t_batched,
                 "max_abs_diff": diff, "identical_to_1e-10": diff <= 1e-10,
                 "cka_offdiag_range": [float(batched[~np.eye(m, dtype=bool)].min()),
                                       float(batched[~np.eye(m, dtype=bool)].max())]}
        if args.feature_pairs:
            rng = np.random.default_rng(1)
            idx = rng.integers(0, m, size=(args.feature_pairs, 2))
            _, t = timed(lambda: [cka_features(features[i], features[j], unbiased) for i, j in idx], 1)
            entry["cka_features_loop_extrapolated_s"] = t[0] / args.feature_pairs * pairs
            entry["cka_features_pairs_timed"] = args.feature_pairs
        record["estimators"][name] = entry
        print(f"{name:>8}: batched {t_batched:.3f} s (median of {args.repeats}), "
              f"loop {t_loop:.2f} s (median of {args.loop_repeats}): batched is {t_loop / t_batched:.0f}× faster; "
              f"max |difference| {diff:.1e} ({'identical' if diff <= 1e-10 else 'NOT identical'} to 1e-10)")
        if args.feature_pairs:
            print(f"          (a cka_features loop would take about {entry['cka_features_loop_extrapolated_s']:.0f} s, "
                  f"extrapolated from {args.feature_pairs} pairs)")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
