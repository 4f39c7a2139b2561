"""``mammocadx segment``: breast masks and overlays for a person to check."""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import cv2
import numpy as np

from mammocadx.errors import MammocadxError
from mammocadx.io.paths import OUTPUT_POLICY_HELP

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``segment`` sub-command."""
    p = subparsers.add_parser(
        "segment",
        help="segment the breast: masks and an overlay PNG per image",
        description=(
            "Automatic breast segmentation. IMAGE may be files or folders (walked for image files; other files "
            "are listed as skipped). For each image writes, into --out, <stem>_breast.png (breast "
            "tissue without pectoral muscle, labels and background; white = breast), <stem>_pectoral.png "
            "(pectoral muscle; black when none is found or on CC views) and <stem>_overlay.png (breast outline "
            "green, pectoral red, removed labels and borders blue), plus segment.json with what was found. Images with the same file name in different folders (two "
            "1-1.dcm) get <stem> from their folders, so none overwrites another; segment.json maps each image to its files. "
            "Images that cannot be read or segmented are listed with their reason; the others are still done."
        ),
        epilog="Exit code: 0 when every image was segmented, 1 when some failed, 2 on usage errors.",
    )
    p.add_argument("images", nargs="+", type=Path, metavar="IMAGE",
                   help="mammograms (PNG, JPEG, TIFF, PGM or DICOM) or folders")
    p.add_argument("--out", type=Path, required=True, metavar="DIR",
                   help=f"folder for the masks and overlays: {OUTPUT_POLICY_HELP}")
    p.add_argument(
        "--view",
        type=str.upper,
        choices=["MLO", "CC"],
        default=None,
        help=(
            "view of every image: CC skips pectoral detection; default: from the DICOM header or the file "
            "name (e.g. LEFT_CC), else unknown, and the muscle is found where present"
        ),
    )
    p.set_defaults(func=handle)


def _write_png(path: Path, array: np.ndarray) -> None:
    if array.ndim == 3:
        array = cv2.cvtColor(array, cv2.COLOR_RGB2BGR)
    if not cv2.imwrite(str(path), array):
        raise OSError(f"cannot write {path}")


def handle(args: argparse.Namespace) -> int:
    """Segment every image; exit 1 if any failed."""
    from mammocadx.io.inspect import expand_inputs
    from mammocadx.io.paths import output_dir

    skipped: list[tuple[Path, str]] = []
    paths = [p for p, _ in expand_inputs(args.images, skipped)]
    with output_dir(args.out) as out:
        return _segment_into(args, paths, skipped, out)


def _segment_into(args: argparse.Namespace, paths: list[Path], skipped: list[tuple[Path, str]], out: Path) -> int:
    from mammocadx.io.dicom import laterality_from_text, view_from_text
    from mammocadx.io.images import read_image
    from mammocadx.io.paths import output_stems
    from mammocadx.preprocess.breast import segment_breast
    from mammocadx.preprocess.overlay import overlay_segmentation

    done: list[dict] = []
    failed: list[tuple[str, str]] = []
    for path, stem in zip(paths, output_stems(paths)):
        try:
            image = read_image(path)
            # View and laterality: --view, else the DICOM header, else the file name (LEFT_CC ...).
            view = args.view or image.meta.get("view") or view_from_text(path.name)
            laterality = image.meta.get("laterality") or laterality_from_text(path.name)
            seg = segment_breast(image.pixels, view=view, laterality=laterality, source=path)
        except MammocadxError as exc:
            failed.append((str(path), str(exc)))
            continue
        files = {kind: out / f"{stem}_{kind}.png" for kind in ("breast", "pectoral", "overlay")}
        try:
            _write_png(files["breast"], seg.breast.astype(np.uint8) * 255)
            _write_png(files["pectoral"], seg.pectoral.astype(np.uint8) * 255)
            _write_png(files["overlay"], overlay_segmentation(image.pixels, seg))
        except OSError as exc:
            failed.append((str(path), f"cannot write outputs ({exc})"))
            continue
        facts = {"image": str(path), "files": {k: f.name for k, f in files.items()}, **seg.summary()}
        done.append(facts)
        log.info(
            "%s: breast %.1f %% of the image, pectoral %s, %d label(s) and %d border(s) removed, chest wall %s",
            path, 100 * facts["breast_fraction"], "found" if seg.has_pectoral else "none",
            seg.removed_labels, seg.removed_borders, seg.chest_wall_side,
        )
    (out / "segment.json").write_text(
        json.dumps({"segmented": done, "failed": [{"image": p, "reason": r} for p, r in failed],
                    "skipped": [{"image": str(p), "reason": r} for p, r in skipped]}, indent=2)
    )
    print(f"segmented {len(done)} of {len(paths)} image(s) into {out}"
          + (f"; {len(skipped)} file(s) skipped (not images, see segment.json)" if skipped else ""))
    if not paths:
        print("no images found", file=sys.stderr)
        return 2
    if failed:
        print(f"{len(failed)} image(s) failed:", file=sys.stderr)
        for p, reason in failed:
            print(f"  {p}: {reason}", file=sys.stderr)
        return 1
    return 0
