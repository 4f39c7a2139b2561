"""``mammocadx inspect``: what the reader sees in each file, and optional preview PNGs."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from mammocadx.io.inspect import clean_text, expand_inputs, inspect_file
from mammocadx.io.paths import OUTPUT_POLICY_HELP


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "inspect",
        help="show what the image reader sees in mammogram files (size, bits, windowing, side, view)",
        description=(
            "Read each FILE as the pipeline would and print its format, size, bit depth, photometric "
            "interpretation, laterality, view and the windowing applied (DICOM: modality LUT -> VOI -> "
            "MONOCHROME1 inversion). Folders are walked for image files (others are listed as skipped). With --out, an 8-bit preview PNG "
            "of what the pipeline sees is written per file (named NNN_<file name>.png). A file that cannot "
            "be read is reported with its reason and the batch goes on."
        ),
        epilog="Exit code: 0 when every file was read, 1 when any failed.",
    )
    p.add_argument("files", nargs="+", type=Path, metavar="FILE", help="image files (PNG, JPEG, TIFF, PGM, DICOM) or folders")
    p.add_argument("--out", type=Path, metavar="DIR", help=f"write a preview PNG per file into DIR: {OUTPUT_POLICY_HELP}")
    p.add_argument("--preview-size", type=int, default=1024, metavar="PX",
                   help="longest side of the previews in pixels (0 = full size; default 1024)")
    p.add_argument("--no-voi", dest="apply_voi", action="store_false",
                   help="DICOM: ignore the file's VOI window/LUT and take the min-max range instead")
    p.add_argument("--force", action="store_true", help="DICOM: read modalities other than MG too")
    p.add_argument("--json", action="store_true", help="one JSON object per file instead of text")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Handler of ``mammocadx inspect``."""
    import contextlib

    from mammocadx.io.paths import output_dir

    skipped: list[tuple[Path, str]] = []
    inputs = expand_inputs(args.files, skipped)
    for path, why in skipped:
        print(json.dumps({"file": str(path), "ok": False, "skipped": True, "error": why}) if args.json
              else f"{clean_text(path, 200)}: skipped (not read): {why}")
    if not inputs:
        print("mammocadx inspect: no image file found", file=sys.stderr)
        return 1
    with output_dir(args.out) if args.out else contextlib.nullcontext() as out:
        return _inspect(args, inputs, out, len(skipped))


def _inspect(args: argparse.Namespace, inputs: list[tuple[Path, bool]], out: Path | None, n_skipped: int) -> int:
    failed = 0
    for i, (path, _named) in enumerate(inputs, start=1):
        r = inspect_file(path, out_dir=out, index=i, max_side=max(args.preview_size, 0),
                         apply_voi=args.apply_voi, force=args.force)
        failed += not r.ok
        shown = clean_text(path, 200)
        if args.json:
            print(json.dumps({"file": str(path), "ok": r.ok, "error": r.error, **r.facts,
                              "preview": str(r.preview) if r.preview else None}, default=str))
            continue
        if r.image is None:
            print(f"{shown}: FAILED: {r.error}")
            continue
        f = r.facts
        print(f"{shown}")
        print(f"  {f['format']}, {f['size']} px, {f['bits']} bit, {f['photometric']}"
              + (f" (inverted: {f['inverted']})" if f.get("inverted", "no") != "no" else ""))
        lat = f["laterality"] or "unknown"
        view = f["view"] or "unknown"
        if f.get("laterality_source"):
            lat += f" (from {f['laterality_source']})"
        if f.get("view_source"):
            view += f" (from {f['view_source']})"
        print(f"  laterality {lat}, view {view}")
        print(f"  windowing: {f['windowing']}")
        if f["format"] == "dicom":
            print(f"  modality {f['modality'] or '-'}, intent {f['presentation_intent'] or '-'}, "
                  f"rescale {f['rescale'] or '-'}, {f['transfer_syntax']}")
            for warning in f.get("warnings") or []:
                print(f"  WARNING: {warning}")
        if r.preview:
            print(f"  preview: {r.preview}")
        if r.error:
            print(f"  FAILED: {r.error}")
    total = len(inputs)
    if not args.json:
        print(f"{total - failed} of {total} file(s) read" + (f", {failed} failed" if failed else "")
              + (f", {n_skipped} skipped (not images)" if n_skipped else ""))
    return 1 if failed else 0
