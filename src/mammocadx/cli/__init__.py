"""The ``mammocadx`` command line: a thin shell over the library.

Each command group lives in its own module of this package and exposes
``register(subparsers)``, which adds its sub-command(s) and sets
``func=handler`` on them. A handler takes the parsed ``argparse.Namespace`` and
returns an exit code. Library errors (:class:`~mammocadx.errors.MammocadxError`)
are turned into one-line messages here, never in the library.

Exit codes: 0 success, 1 some inputs failed (batch commands), 2 usage or input
error, 3 internal error.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import re
import sys
from collections.abc import Sequence

from mammocadx import __version__
from mammocadx.errors import MammocadxError

log = logging.getLogger("mammocadx")

#: Modules of this package that register sub-commands, in ``--help`` order.
COMMAND_MODULES: tuple[str, ...] = (
    "demo",
    "evaluate",
    "extract",
    "predict",
    "inspect",
    "segment",
    "cache",
    "serve",
    "ablate",
)

EXIT_OK, EXIT_PARTIAL, EXIT_USAGE, EXIT_INTERNAL = 0, 1, 2, 3


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every registered sub-command."""
    parser = argparse.ArgumentParser(
        prog="mammocadx",
        description=(
            "Computer-aided diagnosis of breast lesions on mammograms: benign or malignant, "
            "how sure, and why. Implements Almaraz-Damian et al. 2021 (sine pseudocolour -> "
            "ImageNet CNN features -> z-score + PCA -> RBF-SVM) with honest, patient-grouped evaluation."
        ),
        epilog="Run 'mammocadx COMMAND --help' for each command's options.",
    )
    parser.add_argument("--version", action="version", version=f"mammocadx {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors, no progress bars")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        module = importlib.import_module(f"mammocadx.cli.{name}")
        module.register(sub)
    return parser


def _setup_logging(verbose: int, quiet: bool) -> None:
    level = logging.WARNING if quiet else (logging.DEBUG if verbose > 1 else logging.INFO)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s" if verbose else "%(message)s")


#: Options whose value may start with a minus sign: ``--roi -50,-50,30`` (argparse would read
#: ``-50,-50,30`` as an option and say "expected one argument").
_NUMERIC_LIST_OPTIONS = ("--roi",)
_NUMBERS = re.compile(r"-?\d*\.?\d+(?:[eE][-+]?\d+)?(?:,\s*-?\d*\.?\d+(?:[eE][-+]?\d+)?)+")


def _join_negative_values(argv: Sequence[str]) -> list[str]:
    """``--roi -50,-50,30`` -> ``--roi=-50,-50,30``, so argparse takes the numbers as the value."""
    out: list[str] = []
    for arg in argv:
        if out and out[-1] in _NUMERIC_LIST_OPTIONS and arg.startswith("-") and _NUMBERS.fullmatch(arg):
            out[-1] = f"{out[-1]}={arg}"
        else:
            out.append(arg)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(_join_negative_values(sys.argv[1:] if argv is None else list(argv)))
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    _setup_logging(args.verbose, args.quiet)
    try:
        return int(args.func(args) or 0)
    except MammocadxError as exc:
        print(f"mammocadx {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("mammocadx: interrupted", file=sys.stderr)
        return 130
