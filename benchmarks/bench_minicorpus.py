"""Wall time of building the offline mini corpus from already-downloaded Debian packages.

Times ``mtnb.data.mini.corpus.build_corpus(out, cache=<folder with the five .deb files>, force=True,
progress=False)`` into a fresh temporary folder: unpacking the five libreoffice-help-* packages
with ``dpkg-deb -x``, parsing about 12,800 HTML pages in 2 worker processes, aligning the
paragraphs across languages, splitting, building the six datasets and writing them as Parquet
with a SHA-256 manifest. The download is not timed: the .deb files must already be in --cache
(where they are missing, ``fetch_packages`` is called once, untimed, to download them).

Prints the median over --repeats whole builds, and checks that every build wrote byte-identical
files (the manifests' ``files`` checksums agree; at least two builds are made for this check).

Phases are timed inside the same builds, without changing the library: for the duration of the
benchmark, the module-level functions that ``build_corpus`` calls (``fetch_packages`` +
``deb_version``, ``unpack``, ``parse_all``, ``align``, ``split_units``, ``build_tables``,
``write_parquet`` + ``sha256``) are replaced in ``mtnb.data.mini.corpus`` by wrappers that add up the
seconds spent in each; ``build_corpus`` looks them up there at call time. "other" is the rest of
the build (size checks, the manifest, moving the folder into place). ``mc.tempfile`` is replaced
the same way, by a module whose TemporaryDirectory times its cleanup: deleting the unpacked tree
(13,000 files, 157 MB) when build_corpus returns. Each phase is reported as its median over the
timed builds and as a share of the median build, in wall time and in CPU time (``os.times``:
this process plus its finished children, i.e. the parsing workers and dpkg-deb). CPU time does
not grow when other jobs take the cores, so it tells what an idle machine would need: a phase
that waits (on the disk) has CPU time far below its wall time.

The machine is shared (2 cores, other jobs may run): the load average at start, after each
build and at the end is printed and recorded, and the figures are medians.

    python benchmarks/bench_minicorpus.py [--repeats 3] [--cache runs/data/cache/apt]
                                          [--out runs/benchmarks/minicorpus.json]
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
import types
from pathlib import Path

from mtnb.data.mini import corpus as mc

GOAL_S = 60.0


# build_corpus's steps, as (phase, functions of mtnb.data.mini.corpus timed under that name)
PHASES = (("packages (fetch_packages, deb_version)", ("fetch_packages", "deb_version")),
          ("unpack (dpkg-deb -x)", ("unpack",)),
          ("parse_all (HTML, worker processes)", ("parse_all",)),
          ("align", ("align",)),
          ("split_units", ("split_units",)),
          ("build_tables", ("build_tables",)),
          ("write (write_parquet, sha256_file)", ("write_parquet", "sha256_file")))


def cpu_seconds() -> float:
    """CPU seconds of this process and of its finished children (parsing workers, dpkg-deb)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


class PhaseTimer:
    """Replaces the phase functions in ``mtnb.data.mini.corpus`` with wrappers adding up their wall and
    CPU seconds, and ``mc.tempfile`` with one whose TemporaryDirectory times its own cleanup
    (deleting the unpacked tree at the end of build_corpus)."""

    CLEANUP = "delete the unpacked tree (temp folder cleanup)"

    def __init__(self):
        self.seconds = {phase: 0.0 for phase, _ in PHASES}
        self.seconds[self.CLEANUP] = 0.0
        self.cpu = dict.fromkeys(self.seconds, 0.0)
        self._saved = {}

    def _wrap(self, phase, fn):
        def wrapper(*args, **kwargs):
            start, cpu = time.perf_counter(), cpu_seconds()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[phase] += time.perf_counter() - start
                self.cpu[phase] += cpu_seconds() - cpu
        return wrapper

    def __enter__(self):
        for phase, names in PHASES:
            for name in names:
                self._saved[name] = getattr(mc, name)
                setattr(mc, name, self._wrap(phase, self._saved[name]))
        timer = self

        class TimedTemporaryDirectory(tempfile.TemporaryDirectory):
            def cleanup(self):
                timer._wrap(PhaseTimer.CLEANUP, super().cleanup)()

        self._saved["tempfile"] = mc.tempfile
        mc.tempfile = types.SimpleNamespace(TemporaryDirectory=TimedTemporaryDirectory)
        return self

    def __exit__(self, *exc):
        for name, fn in self._saved.items():
            setattr(mc, name, fn)


def timed_build(cache: Path, workers: int) -> tuple[float, float, dict[str, float], dict[str, float], dict]:
    """(wall seconds, CPU seconds, {phase: wall seconds}, {phase: CPU seconds}, manifest) of one
    ``build_corpus`` into a fresh temporary folder."""
    with tempfile.TemporaryDirectory(prefix="bench-minicorpus-") as tmp, PhaseTimer() as timer:
        start, cpu = time.perf_counter(), cpu_seconds()
        manifest = mc.build_corpus(Path(tmp) / "mini", cache=cache, workers=workers, force=True, progress=False)
        seconds, cpu = time.perf_counter() - start, cpu_seconds() - cpu
    phases, phases_cpu = dict(timer.seconds), dict(timer.cpu)
    phases["other"] = seconds - sum(phases.values())
    phases_cpu["other"] = cpu - sum(phases_cpu.values())
    return seconds, cpu, phases, phases_cpu, manifest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="whole builds timed (median); at least 2 "
                        "builds are made to check that they are byte-identical")
    parser.add_argument("--cache", default="runs/data/cache/apt", help="folder with the five .deb files")
    parser.add_argument("--workers", type=int, default=2, help="parsing processes (build_corpus's default: 2)")
    parser.add_argument("--out", default="runs/benchmarks/minicorpus.json")
    args = parser.parse_args()
    cache = Path(args.cache)
    if any(mc.cached_deb(cache, pkg) is None for pkg in mc.PACKAGES.values()):
        print(f"{cache} lacks some of the five .deb files: downloading them (not timed)")
        mc.fetch_packages(cache)
    debs = mc.fetch_packages(cache)
    load_start = list(os.getloadavg())
    print(f"building the mini corpus from {cache} ({sum(d.stat().st_size for d in debs.values()) / 2**20:.1f} MiB "
          f"of .deb), {args.workers} workers; load average {load_start[0]:.1f} on {os.cpu_count()} cores")

    times, cpu_times, phase_runs, phase_cpu_runs, manifests, load_after = [], [], [], [], [], []
    for i in range(max(args.repeats, 2)):
        seconds, cpu, phases, phases_cpu, manifest = timed_build(cache, args.workers)
        manifests.append(manifest)
        load_after.append(os.getloadavg()[0])
        if i < args.repeats:
            times.append(seconds)
            cpu_times.append(cpu)
            phase_runs.append(phases)
            phase_cpu_runs.append(phases_cpu)
        print(f"  build {i + 1}: {seconds:.1f} s, {cpu:.1f} CPU s (load average {load_after[-1]:.1f}; "
              + ", ".join(f"{k.split()[0]} {v:.1f}" for k, v in phases.items())
              + ")" + ("" if i < args.repeats else " (identity check only, not timed)"))
    identical = all(m["files"] == manifests[0]["files"] for m in manifests[1:])
    median, cpu_median = statistics.median(times), statistics.median(cpu_times)
    phase_median = {name: statistics.median(run[name] for run in phase_runs) for name in phase_runs[0]}
    phase_cpu_median = {name: statistics.median(run[name] for run in phase_cpu_runs) for name in phase_runs[0]}

    m0 = manifests[0]
    record = {
        "what": "mtnb.data.mini.corpus.build_corpus(out, cache=..., force=True, progress=False), .debs already cached",
        "goal_s": GOAL_S, "repeats": args.repeats, "workers": args.workers,
        "build_times_s": times, "median_s": median, "goal_met": median <= GOAL_S,
        "median_over_goal": median / GOAL_S,
        "builds_compared": len(manifests), "byte_identical": identical,
        "build_cpu_s": cpu_times, "median_cpu_s": cpu_median,
        "phase_times_s": phase_runs, "phase_median_s": phase_median,
        "phase_cpu_s": phase_cpu_runs, "phase_median_cpu_s": phase_cpu_median,
        "phase_share_of_median_build": {k: v / median for k, v in phase_median.items()},
        "pages_parsed": {lang: m0["pages"][lang]["parsed"] for lang in mc.LANGS},
        "pages_failed": {lang: m0["pages"][lang]["failed"] for lang in mc.LANGS},
        "aligned_paragraphs": m0["aligned_paragraphs"], "files": len(m0["files"]),
        "sources": {lang: s["version"] for lang, s in m0["sources"].items()},
        "cpu_count": os.cpu_count(), "machine": platform.processor() or platform.machine(),
        "load_average_at_start": load_start, "load_average_after_builds": load_after,
        "load_average_at_end": list(os.getloadavg()),
    }
    print(f"pages parsed: {sum(record['pages_parsed'].values())} ({sum(record['pages_failed'].values())} failed); "
          f"aligned paragraphs: {m0['aligned_paragraphs']}; {len(m0['files'])} Parquet files")
    print(f"whole build: median {median:.1f} s over {args.repeats} (runs: {', '.join(f'{t:.1f}' for t in times)}); "
          f"goal <= {GOAL_S:.0f} s: {'met' if median <= GOAL_S else 'NOT met'} ({median / GOAL_S:.2f} x goal)")
    print(f"byte-identical files across {len(manifests)} builds (manifest checksums): {'yes' if identical else 'NO'}")
    print(f"CPU time (this process + parsing workers + dpkg-deb): median {cpu_median:.1f} s per build")
    print(f"phases, median over the {args.repeats} timed builds: wall s (share of the median build), CPU s:")
    for name, seconds in phase_median.items():
        print(f"  {name:<48} {seconds:6.1f} s  {100 * seconds / median:5.1f}%  {phase_cpu_median[name]:6.1f} CPU s")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
