"""The ``mtnb`` command line.

    mtnb models                       the model registry as a table
    mtnb random-checkpoints DIR       random-weight checkpoints at the paper models' shapes

Every user error is one line on stderr (``mtnb: error: ...``) and exit status 2.
"""

from __future__ import annotations

import argparse
import sys

from .errors import MtnbError


def _cmd_models(args: argparse.Namespace) -> int:
    from .models import format_table, load_registry

    specs = load_registry(args.registry)
    print(format_table(specs))
    return 0


def _cmd_random_checkpoints(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .random_checkpoints import PAPER_SHAPES, build_random_checkpoint

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
