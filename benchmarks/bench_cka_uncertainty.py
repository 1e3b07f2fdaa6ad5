"""CKA's uncertainty and separability at the mini grid's shape: the batched code against a per-draw loop.

Random "cached features" (float64, seeded) for 6 models x 5 languages x 13 layers, n = 80
samples of width 384 (multilingual-e5-small's), parallel across languages. Times:

(a) ``cka_study.cka_tables_with_uncertainty``: every model pair per language and layer and every
    language pair per model and layer (1,755 pairs), with B = 1000 bootstrap draws (the weighted
    debiased estimator of ``mtnb.analysis.cka_inference``) and P = 200 permutations, all pairs sharing
    the draws;
(b) the per-draw baseline on a sample of those pairs: for each draw, ``mtnb.analysis.cka.cka`` of the drawn
    rows (the plain debiased estimator on the expanded sample, as a straightforward bootstrap
    would) and, for each permutation, ``cka`` of the shuffled rows; extrapolated to all pairs;
(c) ``separability.separability_tables`` (language-ID probes and retrieval, every model and layer).

Prints the median wall times over --repeats and the ratio (b)/(a) measured in the same run, and
writes the figures as JSON. BLAS runs on one thread (threadpoolctl).

    python benchmarks/bench_cka_uncertainty.py [--repeats 3] [--loop-pairs 20]
                                               [--out runs/benchmarks/cka_uncertainty.json]
The machine must be otherwise idle.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from mtnb.analysis.cka import cka
from mtnb.analysis.cka_study import cka_tables_with_uncertainty
from mtnb.analysis.paired_bootstrap import bootstrap_weights
from mtnb.analysis.separability import separability_tables

ROOT = Path(__file__).resolve().parent.parent
MODELS, LANGS, LAYERS, N, WIDTH = 6, ("de", "en", "es", "fr", "ru"), 13, 80, 384
N_BOOT, N_PERM = 1000, 200


def features(seed: int = 0) -> dict[tuple[str, str], np.ndarray]:
    """{(model, lang): (layers, n, width)}: a shared content signal per paragraph plus noise."""
    rng = np.random.default_rng(seed)
    content = rng.normal(size=(LAYERS, N, WIDTH))
    return {(f"m{i}", lang): content + 0.5 * rng.normal(size=(LAYERS, N, WIDTH))
            for i in range(MODELS) for lang in LANGS}


def loop_seconds_per_pair(feats, pairs: int) -> float:
    """Seconds per pair of the per-draw loop (b), over ``pairs`` model pairs at layer 6."""
    keys = list(feats)
    W = bootstrap_weights(N, N_BOOT, 0).astype(int)
    rng = np.random.default_rng(1)
    perms = [rng.permutation(N) for _ in range(N_PERM)]
    start = time.perf_counter()
    for k in range(pairs):
        X, Y = feats[keys[k % len(keys)]][6], feats[keys[(k + 5) % len(keys)]][6]
        for w in W:
            rows = np.repeat(np.arange(N), w)
            cka(X[rows], Y[rows], unbiased=True)
        for p in perms:
            cka(X, Y[p], unbiased=True)
    return (time.perf_counter() - start) / pairs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--loop-pairs", type=int, default=20, help="pairs of the per-draw loop, extrapolated")
    parser.add_argument("--out", default="runs/benchmarks/cka_uncertainty.json")
    args = parser.parse_args()
    feats = features()
    with threadpool_limits(1):
        batched, separability, loop = [], [], []
        for _ in range(args.repeats):
            start = time.perf_counter()
            model_pairs, language_pairs = cka_tables_with_uncertainty(feats, n_boot=N_BOOT, n_perm=N_PERM)
            batched.append(time.perf_counter() - start)
            start = time.perf_counter()
            separability_tables(feats)
            separability.append(time.perf_counter() - start)
            loop.append(loop_seconds_per_pair(feats, args.loop_pairs))
    pairs = len(model_pairs) + len(language_pairs)
    record = {"shape": f"{MODELS} models x {len(LANGS)} languages x {LAYERS} layers, n = {N}, width {WIDTH}",
              "pairs": pairs, "bootstrap_draws": N_BOOT, "permutations": N_PERM, "repeats": args.repeats,
              "batched_seconds": round(statistics.median(batched), 2),
              "batched_ms_per_pair": round(1000 * statistics.median(batched) / pairs, 2),
              "loop_ms_per_pair": round(1000 * statistics.median(loop), 1),
              "loop_seconds_all_pairs_extrapolated": round(statistics.median(loop) * pairs, 1),
              "speedup": round(statistics.median(loop) * pairs / statistics.median(batched), 1),
              "separability_seconds": round(statistics.median(separability), 2)}
    for key, value in record.items():
        print(f"{key:38s} {value}")
    out = ROOT / args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
