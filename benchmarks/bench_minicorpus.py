"""Wall time of building the offline mini corpus from already-downloaded Debian packages.

Times ``mtnb.minicorpus.build_corpus(out, cache=<folder with the five .deb files>, force=True,
progress=False)`` into a fresh temporary folder: unpacking the five libreoffice-help-* packages
with ``dpkg-deb -x``, parsing about 12,800 HTML pages in 2 worker processes, aligning the
paragraphs across languages, splitting, building the six datasets and writing them as Parquet
with a SHA-256 manifest. The download is not timed: the .deb files must already be in --cache
(where they are missing, ``fetch_packages`` is called once, untimed, to download them).

Prints the median over --repeats whole builds, and checks that every build wrote byte-identical
files (the manifests' ``files`` checksums agree). Then, to show where the time goes, it runs the
build once more (--phase-repeats times) step by step, calling the module's own functions in the
order ``build_corpus`` calls them (fetch_packages + deb_version, unpack, parse_all, align,
split_units, build_tables + _check_sizes, write_parquet + sha256 + manifest), timing each step;
the phased build's checksums are compared with the whole builds' too. Phases are reported as
medians and as shares of their own total; the phased total is reported beside the whole-build
median as a ratio (about 1 when the split accounts for the whole build).

The machine is shared (2 cores, other jobs may run): the load average at start and end is
recorded, and the figures are medians.

    python benchmarks/bench_minicorpus.py [--repeats 3] [--phase-repeats 1]
                                          [--cache runs/data/cache/apt] [--out runs/benchmarks/minicorpus.json]
Goal (issue): a build takes <= 60 s on this 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path

from mtnb import minicorpus as mc

GOAL_S = 60.0


def whole_build(cache: Path, workers: int) -> tuple[float, dict]:
    """(wall seconds, manifest) of one ``build_corpus`` into a fresh temporary folder."""
    with tempfile.TemporaryDirectory(prefix="bench-minicorpus-") as tmp:
        start = time.perf_counter()
        manifest = mc.build_corpus(Path(tmp) / "mini", cache=cache, workers=workers, force=True, progress=False)
        return time.perf_counter() - start, manifest


def phased_build(cache: Path, workers: int, seed: int = 0) -> tuple[dict[str, float], dict[str, str]]:
    """The steps of ``build_corpus`` (source = packages), each timed: ({phase: seconds}, {file: sha256}).

    Same calls, same order, same arguments as build_corpus; the manifest's JSON file itself is
    left out (its ``files`` checksums are what is compared)."""
    times: dict[str, float] = {}

    def lap(name: str, start: float) -> float:
        now = time.perf_counter()
        times[name] = now - start
        return now

    with tempfile.TemporaryDirectory(prefix="bench-minicorpus-phased-") as tmp:
        tmp = Path(tmp)
        t = time.perf_counter()
        debs = mc.fetch_packages(cache)  # cached: only globs the folder
        {lang: mc.deb_version(deb) for lang, deb in debs.items()}
        t = lap("packages (fetch_packages from cache + deb_version)", t)
        help_root = mc.unpack(debs, tmp / "tree")
        t = lap("unpack (dpkg-deb -x)", t)
        pages, failures = mc.parse_all(help_root, workers=workers, progress=False)
        t = lap("parse_all (HTML, worker processes)", t)
        units, titles, untranslated = mc.align(pages)
        t = lap("align", t)
        by_split, leak_dropped = mc.split_units(units)
        t = lap("split_units", t)
        files = mc.build_tables(by_split, titles, seed=seed)
        mc._check_sizes(files, mc.MIN_RECORDS)
        t = lap("build_tables", t)
        staging = tmp / "corpus"
        for name, rows in files.items():
            mc.write_parquet(rows, staging / f"{name}.parquet")
        # the manifest's counts and class balance, as build_corpus computes them
        {name: len(rows) for name, rows in files.items()}
        {name: Counter(r["label"] for r in rows) for name, rows in files.items() if name.startswith("mini-topic/")}
        sums = {p.relative_to(staging).as_posix(): mc.sha256(p) for p in sorted(staging.rglob("*.parquet"))}
        t = lap("write (Parquet + SHA-256)", t)
    return times, sums


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="whole builds timed (median); at least 2 "
                        "builds are made to check that they are byte-identical")
    parser.add_argument("--phase-repeats", type=int, default=1, help="step-by-step builds (0: skip)")
    parser.add_argument("--cache", default="runs/data/cache/apt", help="folder with the five .deb files")
    parser.add_argument("--workers", type=int, default=2, help="parsing processes (build_corpus's default: 2)")
    parser.add_argument("--out", default="runs/benchmarks/minicorpus.json")
    args = parser.parse_args()
    cache = Path(args.cache)
    if any(mc._cached_deb(cache, pkg) is None for pkg in mc.PACKAGES.values()):
        print(f"{cache} lacks some of the five .deb files: downloading them (not timed)")
        mc.fetch_packages(cache)
    debs = mc.fetch_packages(cache)
    load_start = list(os.getloadavg())
    print(f"building the mini corpus from {cache} ({sum(d.stat().st_size for d in debs.values()) / 2**20:.1f} MiB "
          f"of .deb), {args.workers} workers; load average {load_start[0]:.1f} on {os.cpu_count()} cores")

    times, manifests = [], []
    for i in range(max(args.repeats, 2)):
        seconds, manifest = whole_build(cache, args.workers)
        manifests.append(manifest)
        if i < args.repeats:
            times.append(seconds)
        print(f"  build {i + 1}: {seconds:.1f} s" + ("" if i < args.repeats else " (identity check only, not timed)"))
    identical = all(m["files"] == manifests[0]["files"] for m in manifests[1:])
    median = statistics.median(times)

    phase_runs: list[dict[str, float]] = []
    phased_identical = None
    for i in range(args.phase_repeats):
        phases, sums = phased_build(cache, args.workers)
        phase_runs.append(phases)
        phased_identical = (phased_identical is not False) and sums == manifests[0]["files"]
        print(f"  step-by-step build {i + 1}: {sum(phases.values()):.1f} s")
    phase_median = {name: statistics.median(run[name] for run in phase_runs) for name in phase_runs[0]} \
        if phase_runs else {}
    phase_total = sum(phase_median.values())

    m0 = manifests[0]
    record = {
        "what": "mtnb.minicorpus.build_corpus(out, cache=..., force=True, progress=False), .debs already cached",
        "goal_s": GOAL_S, "repeats": args.repeats, "workers": args.workers,
        "build_times_s": times, "median_s": median, "goal_met": median <= GOAL_S,
        "median_over_goal": median / GOAL_S,
        "builds_compared": len(manifests), "byte_identical": identical,
        "phase_repeats": args.phase_repeats, "phase_times_s": phase_runs, "phase_median_s": phase_median,
        "phase_share": {k: v / phase_total for k, v in phase_median.items()} if phase_total else {},
        "phased_total_s": phase_total, "phased_total_over_whole_median": phase_total / median if phase_runs else None,
        "phased_byte_identical_to_whole": phased_identical,
        "pages_parsed": {lang: m0["pages"][lang]["parsed"] for lang in mc.LANGS},
        "pages_failed": {lang: m0["pages"][lang]["failed"] for lang in mc.LANGS},
        "aligned_paragraphs": m0["aligned_paragraphs"], "files": len(m0["files"]),
        "sources": {lang: s["version"] for lang, s in m0["sources"].items()},
        "cpu_count": os.cpu_count(), "machine": platform.processor() or platform.machine(),
        "load_average_at_start": load_start, "load_average_at_end": list(os.getloadavg()),
    }
    print(f"pages parsed: {sum(record['pages_parsed'].values())} ({sum(record['pages_failed'].values())} failed); "
          f"aligned paragraphs: {m0['aligned_paragraphs']}; {len(m0['files'])} Parquet files")
    print(f"whole build: median {median:.1f} s over {args.repeats} (runs: {', '.join(f'{t:.1f}' for t in times)}); "
          f"goal <= {GOAL_S:.0f} s: {'met' if median <= GOAL_S else 'NOT met'} ({median / GOAL_S:.2f} x goal)")
    print(f"byte-identical files across {len(manifests)} builds (manifest checksums): {'yes' if identical else 'NO'}")
    if phase_runs:
        print(f"phases (median of {args.phase_repeats} step-by-step build(s), total {phase_total:.1f} s = "
              f"{phase_total / median:.2f} x the whole-build median; same files: "
              f"{'yes' if phased_identical else 'NO'}):")
        for name, seconds in phase_median.items():
            print(f"  {name:<52} {seconds:6.1f} s  {100 * seconds / phase_total:5.1f}%")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
