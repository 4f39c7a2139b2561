"""``mammocadx predict``: score lesions with a saved model."""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from mammocadx.cli.common import parse_roi
from mammocadx.errors import MammocadxError

log = logging.getLogger(__name__)

def register(sub: argparse._SubParsersAction) -> None:
    """Add the predict command."""
    p = sub.add_parser(
        "predict", help="score a lesion (or a batch of images) with a saved model",
        description="Print the malignancy score and label of a lesion. The ROI is in image pixels as every viewer "
                    "shows them: X the column from the left, Y the row from the top (mini-MIAS's bottom-left "
                    "origin is converted by its reader, never by you). Without --roi the whole breast is scored. "
                    "IMAGE may be several files or folders: every image gets one output row with its status, and the "
                    "batch goes on past bad files.",
        epilog="example: mammocadx predict models/mias case.png --roi 535,599,197 --explain out/",
    )
    p.add_argument("model", metavar="MODEL", help="model folder written by 'mammocadx train'")
    p.add_argument("images", metavar="IMAGE", nargs="+", help="mammogram file(s) (DICOM, PNG, PGM, JPEG, TIFF) or folders")
    p.add_argument("--roi", type=parse_roi, metavar="X,Y,R",
                   help="lesion circle X,Y,R (or box X,Y,W,H) in image pixels, x from the left, y from the top")
    p.add_argument("--explain", metavar="OUT_DIR", help="also write Grad-CAM figures of the decision to OUT_DIR")
    p.add_argument("--out", metavar="CSV", help="write one row per input (path, status, score, label, reason)")
    p.add_argument("--dicom-out", metavar="DIR",
                   help="for DICOM inputs, also write a DICOM Structured Report (TID 1500) and a Grad-CAM overlay "
                        "(Secondary Capture) in the image's study to DIR (new or mammocadx's own; see docs/dicom_outputs.md)")
    p.set_defaults(func=run_predict)


def run_predict(args: argparse.Namespace) -> int:
    """Handler of ``mammocadx predict``."""
    from mammocadx.datasets.records import Roi
    from mammocadx.model.cadx import CADx

    if args.dicom_out:
        from mammocadx.dicom_out import prepare_output_dir

        prepare_output_dir(args.dicom_out)  # refuse a foreign folder before any work
    cadx = CADx.load(args.model)
    roi = Roi()
    if args.roi is not None:
        roi = Roi(circle=args.roi) if len(args.roi) == 3 else Roi(box=args.roi)
    else:
        log.warning("no --roi given: scoring the whole breast/image (the model was trained on lesion ROIs)")
    from mammocadx.io.inspect import expand_inputs

    # Folders are walked for files whose content is an image (DICOMs often have no extension).
    paths = [p for p, _ in expand_inputs([Path(a) for a in args.images])]
    rows = []
    failed = 0
    for path in paths:
        try:
            pred = cadx.predict(path, roi)
            row = {"path": str(path), "status": "ok", "score": f"{pred.score:.4f}", "label": pred.label, "reason": ""}
            if args.explain:
                from mammocadx.explain import explain_prediction

                written = explain_prediction(cadx, path, roi, Path(args.explain))
                row["reason"] = f"explanation: {written[0].parent}" if written else ""
            if args.dicom_out:
                from mammocadx.dicom_out import write_for_prediction

                dicom_files = write_for_prediction(cadx, path, roi, args.dicom_out, model_dir=args.model)
                row["reason"] = "; ".join(filter(None, [row["reason"], f"DICOM: {dicom_files[0].parent}"]))
        except MammocadxError as exc:
            failed += 1
            row = {"path": str(path), "status": "error", "score": "", "label": "", "reason": str(exc)}
        rows.append(row)
        if row["status"] == "ok":
            print(f"{path}: {row['label']} (score {row['score']}, threshold {cadx.threshold:+.3f}; positive = towards malignant)")
        else:
            print(f"{path}: error: {row['reason']}", file=sys.stderr)
    if args.out:
        from mammocadx.io.atomic import atomic_write_csv

        atomic_write_csv(args.out, rows, ["path", "status", "score", "label", "reason"])
    if not paths:
        print("no images found", file=sys.stderr)
        return 2
    if failed:
        print(f"{failed} of {len(paths)} inputs failed", file=sys.stderr)
        return 1
    return 0
