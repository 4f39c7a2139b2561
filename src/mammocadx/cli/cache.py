"""``mammocadx cache info|clear``: look at or empty the on-disk feature cache."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mammocadx.cli import EXIT_OK, EXIT_USAGE


def register(sub: argparse._SubParsersAction) -> None:
    """Add the cache command group."""
    p = sub.add_parser(
        "cache", help="show or clear the deep-feature cache",
        description="Deep features are cached on disk per ROI, keyed by the ROI pixels, the preprocessing, the "
                    "backbone and its weights' SHA-256, the engine/precision and the library versions, so repeated "
                    "evaluations reuse them. The cache lives in $MAMMOCADX_CACHE_DIR, or ~/.cache/mammocadx/features.",
        epilog="examples: mammocadx cache info ; mammocadx cache clear --yes ; mammocadx cache clear --yes --dir /tmp/feats",
    )
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])
    actions = p.add_subparsers(dest="cache_action", metavar="ACTION")
    for name, helptext, func in (
        ("info", "print the cache folder, number of feature vectors and size", _info),
        ("clear", "delete every cached feature vector and Grad-CAM explanation (--all: also the backbones' ONNX exports)", _clear),
    ):
        a = actions.add_parser(name, help=helptext, description=helptext)
        a.add_argument("--dir", metavar="DIR", type=Path,
                       help="cache folder (default $MAMMOCADX_CACHE_DIR or ~/.cache/mammocadx/features)")
        if name == "clear":
            a.add_argument("--all", action="store_true",
                           help="also delete the ONNX exports of the backbones (rebuilt on next use)")
            a.add_argument("-y", "--yes", action="store_true",
                           help="delete without asking; without it the command asks on a terminal and refuses "
                                "when its input is not a terminal (a pipe, a script), so 'cache info | cache clear' "
                                "deletes nothing")
        a.set_defaults(func=func)


def _info(args: argparse.Namespace) -> int:
    from mammocadx.features.cache import FeatureCache

    info = FeatureCache(args.dir).info()
    print(f"location: {info.location}")
    print(f"entries:  {info.entries} cached vectors (features and explanations)")
    print(f"size:     {info.bytes / 1e6:.1f} MB ({info.bytes} bytes, the backbones' ONNX exports included)")
    return EXIT_OK


def _clear(args: argparse.Namespace) -> int:
    from mammocadx.features.cache import FeatureCache

    cache = FeatureCache(args.dir)
    before = cache.info()
    what = "every cached feature vector and explanation" + (" and the ONNX exports" if args.all else "")
    if not args.yes:
        if not sys.stdin.isatty():
            print(f"mammocadx cache clear: not clearing {before.location}: its input is not a terminal, so it "
                  "cannot ask; add --yes to delete " + what, file=sys.stderr)
            return EXIT_USAGE
        answer = input(f"delete {what} in {before.location} ({before.entries} entries, "
                       f"{before.bytes / 1e6:.1f} MB)? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("nothing deleted")
            return EXIT_OK
    cache.clear(models=args.all)
    after = cache.info()
    kept = f"; kept {after.bytes / 1e6:.1f} MB of ONNX exports (--all deletes them too)" if after.bytes else ""
    print(f"cleared {before.location}: {before.entries - after.entries} entries, "
          f"{(before.bytes - after.bytes) / 1e6:.1f} MB{kept}")
    return EXIT_OK
