"""``mammocadx predict``: score lesions with a saved model."""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from mammocadx.cli.common import add_engine_options, engine_from_args, parse_roi, running
from mammocadx.errors import MammocadxError
from mammocadx.io.paths import OUTPUT_POLICY_HELP

log = logging.getLogger(__name__)

#: Columns of ``predict --out``; its header line tells a CSV this command wrote (and may replace).
FIELDS = ["path", "roi", "status", "score", "label", "probability", "answer", "ood", "ood_reasons", "reason"]
#: Header lines of CSVs written by earlier versions (still recognised as ours, so they may be replaced).
OLD_HEADERS = ("path,status,score,label,reason", "path,roi,status,score,label,reason")


def register(sub: argparse._SubParsersAction) -> None:
    """Add the predict command."""
    p = sub.add_parser(
        "predict", help="score a lesion (or a batch of images) with a saved model",
        description="Print the malignancy score and label of a lesion. The ROI is in image pixels as every viewer "
                    "shows them: X the column from the left, Y the row from the top (mini-MIAS's bottom-left "
                    "origin is converted by its reader, never by you). Without --roi the whole breast is scored. "
                    "IMAGE may be several files or folders: every file gets one output row with its status "
                    "(ok, error, or skipped when a folder holds a file that is not an image), and the batch goes "
                    "on past bad files. For one lesion per row, give --rois CSV instead of IMAGE.",
        epilog="examples: mammocadx predict models/mias case.png --roi 535,599,197 --explain out/ ; "
               "mammocadx predict models/mias --rois lesions.csv --out scores.csv  (lesions.csv: path,cx,cy,r or "
               "path,x,y,w,h, paths relative to the CSV's folder)",
    )
    p.add_argument("model", metavar="MODEL", help="model folder written by 'mammocadx train'")
    p.add_argument("images", metavar="IMAGE", nargs="*",
                   help="mammogram file(s) (DICOM, PNG, PGM, JPEG, TIFF) or folders")
    p.add_argument("--roi", type=parse_roi, metavar="X,Y,R",
                   help="lesion circle X,Y,R (or box X,Y,W,H) in image pixels, x from the left, y from the top; "
                        "the same ROI for every IMAGE")
    p.add_argument("--rois", metavar="CSV",
                   help="one lesion per row: columns path and cx,cy,r (circle) or x,y,w,h (box; box_x.. as in a "
                        "manifest also read), paths relative to the CSV's folder; a bad row is reported, the others go on")
    p.add_argument("--allow-outside", action="store_true",
                   help="--rois: accept absolute paths and paths outside the CSV's folder")
    p.add_argument("--explain", metavar="OUT_DIR",
                   help=f"also write Grad-CAM figures of each decision into OUT_DIR ({OUTPUT_POLICY_HELP}); "
                        "inputs with the same file name get names from their folders")
    p.add_argument("--out", metavar="CSV",
                   help="write one row per input (path, roi, status, score, label, probability, answer, ood, ood_reasons, "
                        "reason) as CSV, or as Parquet when the name ends in .parquet; an existing file is "
                        "replaced only if it is a predictions table written by this command, never another file")
    p.add_argument("--dicom-out", metavar="DIR",
                   help="for DICOM inputs, also write a DICOM Structured Report (TID 1500) and a Grad-CAM overlay "
                        "(Secondary Capture) in the image's study to DIR (new or mammocadx's own; files mammocadx did "
                        "not write are never overwritten; see docs/dicom_outputs.md)")
    add_engine_options(p)
    p.set_defaults(func=run_predict)


def _ours(path: Path) -> bool:
    """Whether ``path`` starts with the header line ``predict --out`` writes (Parquet: has its columns)."""
    if path.suffix.lower() == ".parquet":
        try:
            import pyarrow.parquet as pq

            return pq.read_schema(path).names == FIELDS
        except (ImportError, OSError, ValueError):  # pyarrow's ArrowInvalid is a ValueError
            return False
    try:
        with path.open(encoding="utf-8", errors="replace") as fh:
            return fh.readline().rstrip("\r\n") in (",".join(FIELDS), *OLD_HEADERS)
    except OSError:
        return False


def _jobs(args: argparse.Namespace) -> tuple[list[tuple[Path, object, str]], list[dict]]:
    """(image, Roi, roi text) per lesion to score, and rows already decided (skipped files, bad table rows)."""
    from mammocadx.datasets.records import Roi
    from mammocadx.io.inspect import expand_inputs

    decided: list[dict] = []
    if args.rois:
        from mammocadx.datasets.manifest import load_roi_table

        good, bad = load_roi_table(args.rois, allow_outside=args.allow_outside)
        decided += [{"path": where, "status": "error", "reason": reason} for where, reason in bad]
        return [(image, roi, _roi_text(roi)) for _where, image, roi in good], decided
    roi = Roi()
    if args.roi is not None:
        roi = Roi(circle=args.roi) if len(args.roi) == 3 else Roi(box=args.roi)
    else:
        log.warning("no --roi given: scoring the whole breast/image (the model was trained on lesion ROIs)")
    skipped: list[tuple[Path, str]] = []
    # Folders are walked for files whose content is an image (DICOMs often have no extension);
    # every other file they hold is listed as skipped with its reason.
    paths = [p for p, _ in expand_inputs([Path(a) for a in args.images], skipped)]
    decided += [{"path": str(p), "status": "skipped", "reason": why} for p, why in skipped]
    return [(p, roi, _roi_text(roi)) for p in paths], decided


def _roi_text(roi: object) -> str:
    shape = getattr(roi, "circle", None) or getattr(roi, "box", None)
    if shape is not None:
        return ",".join(f"{v:g}" for v in shape)
    mask = getattr(roi, "mask_path", None)
    return f"mask {mask}" if mask else "whole breast"


def _score(cadx: object, jobs: list, explain_dir: Path | None, per_row: bool,
           dicom_out: str | None = None, model_dir: str | None = None) -> tuple[list[dict], int]:
    """Score (and explain) each lesion; print one line each; returns (rows, number failed)."""
    from mammocadx.io.paths import output_stems

    stems = output_stems([p for p, _, _ in jobs])
    if per_row:  # several lesions of one image: number them by their table row
        stems = [f"{s}_row{i + 1}" for i, s in enumerate(stems)]
    rows = []
    failed = 0
    for (path, roi, roi_text), stem in zip(jobs, stems):
        row = {"path": str(path), "roi": roi_text}
        try:
            pred = cadx.predict(path, roi)
            row.update(status="ok", score=f"{pred.score:.4f}", label=pred.label, reason="",
                       probability="" if pred.probability is None else f"{pred.probability:.4f}",
                       answer=pred.answer or "", ood="" if pred.ood is None else ("yes" if pred.ood else "no"),
                       ood_reasons="; ".join(pred.ood_reasons or []))
            if explain_dir is not None:
                from mammocadx.explain import explain_prediction

                written = explain_prediction(cadx, path, roi, explain_dir, sample_id=stem)
                row["reason"] = "explanation: " + ", ".join(str(w) for w in written)
            if dicom_out:
                from mammocadx.dicom_out import write_for_prediction

                dicom_files = write_for_prediction(cadx, path, roi, dicom_out, model_dir=model_dir)
                row["reason"] = "; ".join(filter(None, [row["reason"], "DICOM: " + ", ".join(map(str, dicom_files))]))
        except MammocadxError as exc:
            failed += 1
            row.update(status="error", score="", label="", reason=str(exc))
        rows.append(row)
        _print_row(row, path, roi_text, cadx.threshold)
    return rows, failed


def _print_row(row: dict, path: object, roi_text: str, threshold: float) -> None:
    """The lines ``predict`` prints for one scored (or failed) lesion."""
    if row["status"] == "ok":
        print(_result_line(path, roi_text, row, threshold))
        if row.get("ood") == "yes":
            print(f"  OUT OF DISTRIBUTION (unlike the training images; the result may not apply): "
                  f"{row['ood_reasons']}")
        for part in row["reason"].split("; "):
            if part:
                print(f"  {part.replace('explanation: ', 'Grad-CAM figures: ', 1)}")
    else:
        print(f"{path}: error: {row['reason']}", file=sys.stderr)


def _score_on(engine: object, cadx: object, model_dir: str, jobs: list) -> tuple[list[dict], int]:
    """As :func:`_score` (without figures), with the images read and scored by ``engine`` (:mod:`mammocadx.scale`)."""
    results = engine.score(cadx, model_dir, [(path, roi) for path, roi, _ in jobs])
    rows = []
    for (path, _roi, roi_text), res in zip(jobs, results):
        row = {"path": str(path), "roi": roi_text, "status": res["status"], "reason": res["reason"]}
        if res["status"] == "ok":
            prob = res["probability"]
            row.update(score=f"{res['score']:.4f}", label=res["label"], answer=res["answer"], ood=res["ood"],
                       ood_reasons=res["ood_reasons"], probability="" if prob is None else f"{prob:.4f}")
        else:
            row.update(score="", label="")
        rows.append(row)
        _print_row(row, path, roi_text, cadx.threshold)
    return rows, sum(r["status"] == "error" for r in rows)


def _result_line(path: object, roi_text: str, row: dict, threshold: float) -> str:
    """One scored lesion: the label at the operating point, the calibrated probability when the model has one."""
    head = f"{path} [{roi_text}]: {row['label']}"
    if row.get("answer") == "uncertain":
        head = f"{path} [{roi_text}]: uncertain ({row['label']} at the threshold, but the conformal set holds both classes)"
    prob = f"probability of malignancy {float(row['probability']):.2f}, " if row.get("probability") else ""
    return f"{head}: {prob}score {row['score']} (threshold {threshold:+.3f}; positive = towards malignant)"


def metrics_line(card: dict) -> str | None:
    """The model card's validated metrics (``train --cv``) in one line, or None when the card has none."""
    m = card.get("metrics")
    if not isinstance(m, dict) or m.get("auc") is None:
        return None
    ci = m.get("auc_ci95")
    ci_text = f" [95% CI {ci[0]:.3f}-{ci[1]:.3f}]" if isinstance(ci, (list, tuple)) and len(ci) == 2 else ""
    return f"model validated by {m.get('protocol', 'cross-validation')}: AUC {float(m['auc']):.3f}{ci_text}"


def run_predict(args: argparse.Namespace) -> int:
    """Handler of ``mammocadx predict``."""
    import contextlib

    from mammocadx.io.paths import claim_output_file, output_dir
    from mammocadx.model.cadx import CADx

    if bool(args.images) == bool(args.rois):
        raise MammocadxError("give IMAGE(s), or --rois CSV, not both" if args.images
                             else "give IMAGE(s) or --rois CSV", stage="usage")
    if args.rois and args.roi is not None:
        raise MammocadxError("--roi and --rois exclude each other (--rois gives each row its own ROI)", stage="usage")
    if args.engine != "local" and (args.explain or args.dicom_out):
        raise MammocadxError("--explain and --dicom-out are written case by case on this machine: run them "
                             "without --engine ray", stage="usage")
    engine = engine_from_args(args)
    out_csv = claim_output_file(args.out, option="--out", owned=_ours) if args.out else None
    if out_csv is not None and out_csv.suffix.lower() == ".parquet":
        from mammocadx.scale.parquet import require_pyarrow

        require_pyarrow()  # before the work, not after
    if args.dicom_out:
        from mammocadx.dicom_out import prepare_output_dir

        prepare_output_dir(args.dicom_out)  # refuse a foreign folder before any work
    with output_dir(args.explain, option="--explain") if args.explain else contextlib.nullcontext() as explain_dir:
        cadx = CADx.load(args.model)
        line = metrics_line(cadx.card)
        if line:
            print(line)
        jobs, decided = _jobs(args)
        with running(engine):
            if engine is None:
                rows, failed = _score(cadx, jobs, explain_dir, per_row=bool(args.rois), dicom_out=args.dicom_out,
                                      model_dir=args.model)
            elif jobs:
                rows, failed = _score_on(engine, cadx, args.model, jobs)
            else:
                rows, failed = [], 0
    for row in decided:
        print(f"{row['path']}: {row['status']}: {row['reason']}", file=sys.stderr)
        failed += row["status"] == "error"
    rows += [{**{f: "" for f in FIELDS}, **r} for r in decided]
    if out_csv is not None and out_csv.suffix.lower() == ".parquet":
        from mammocadx.scale.parquet import write_table

        write_table(out_csv, {f: [str(r.get(f, "")) for r in rows] for f in FIELDS})
    elif out_csv is not None:
        from mammocadx.io.atomic import atomic_write_csv

        atomic_write_csv(out_csv, rows, FIELDS)
    n_ok = sum(r["status"] == "ok" for r in rows)
    n_skipped = sum(r["status"] == "skipped" for r in rows)
    print(f"{len(rows)} input(s): {n_ok} scored, {failed} failed, {n_skipped} skipped (not images)"
          + (f"; table: {out_csv}" if out_csv else "") + (f"; figures: {explain_dir}" if args.explain else ""),
          file=sys.stderr)
    if not jobs:
        print("no images found", file=sys.stderr)
        return 2
    return 1 if failed else 0
