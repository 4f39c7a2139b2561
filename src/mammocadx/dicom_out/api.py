"""One call per analysed image: the SR and the overlay written to a folder (the CLI and the web app use these)."""
from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.dataset import Dataset

from mammocadx.dicom_out.finding import Algorithm, Finding
from mammocadx.dicom_out.folder import save_dataset
from mammocadx.dicom_out.overlay import build_overlay, overlay_rgb
from mammocadx.dicom_out.source import evidence_header, read_source_header
from mammocadx.dicom_out.sr import build_sr

log = logging.getLogger(__name__)


def output_names(source: Dataset) -> tuple[str, str]:
    """``(SR file name, overlay file name)`` for a source image: named by its SOP Instance UID, which is unique
    even where file names are not (CBIS-DDSM names every image ``1-1.dcm``)."""
    uid = re.sub(r"[^0-9.]", "_", str(source.SOPInstanceUID))[:64]
    return f"{uid}_sr.dcm", f"{uid}_gradcam.dcm"


def write_outputs(
    source: Dataset,
    findings: Sequence[Finding],
    pixels: np.ndarray,
    heatmap: np.ndarray,
    algorithm: Algorithm | dict[str, Any],
    out_dir: str | PathLike[str],
    notes: Sequence[str] = (),
    description: str = "",
) -> list[Path]:
    """Write the Structured Report and the Grad-CAM overlay of one image into ``out_dir``.

    Parameters
    ----------
    source : pydicom.dataset.Dataset
        The analysed DICOM image's header (pixel data ignored; never modified).
    findings : sequence of Finding
        Score, operating point, label and ROI of each lesion.
    pixels : numpy.ndarray
        ``(rows, cols)`` image in [0, 1] as analysed (the overlay's background).
    heatmap : numpy.ndarray
        Evidence in [0, 1] over the whole image (NaN outside what was explained), or ``(S, S)`` over the
        first finding's ``crop``.
    algorithm : Algorithm or dict
        Name, version, model fingerprint; a model card dict is turned into one by :meth:`Algorithm.from_card`.
    out_dir : str or PathLike
        Created if absent; refused if it holds files mammocadx did not write (see
        :mod:`mammocadx.dicom_out.folder`).
    notes : sequence of str
        Extra text for the report (e.g. input warnings).
    description : str
        What the overlay shows (its Derivation Description).

    Returns
    -------
    list of Path
        ``[SR file, overlay file]``.

    Raises
    ------
    DicomOutputError
        The source lacks a UID, or the folder/file is not ours to write.
    """
    if isinstance(algorithm, dict):
        algorithm = Algorithm.from_card(algorithm)
    header = evidence_header(source, getattr(source, "filename", None))
    if np.asarray(pixels).shape != (int(header.Rows), int(header.Columns)):
        raise ValueError(f"pixels {np.asarray(pixels).shape} do not match the source's {header.Rows}x{header.Columns}")
    sr_name, sc_name = output_names(header)
    sr = build_sr(header, findings, algorithm, notes=notes)
    rgb = overlay_rgb(pixels, heatmap, findings[0].crop if findings else None)
    sc = build_overlay(header, rgb, algorithm, description)
    out = Path(out_dir)
    written = [save_dataset(out, sr_name, sr), save_dataset(out, sc_name, sc)]
    log.info("DICOM outputs: %s", ", ".join(str(p) for p in written))
    return written


def finding_from_prediction(score: float, threshold: float, label: str, roi: Any,
                            crop: tuple[float, float, float], probability: float | None = None) -> Finding:
    """A :class:`Finding` from plain prediction values and a :class:`~mammocadx.datasets.records.Roi`.

    A circle or box ROI is written as given; without one (whole breast, or a mask) the analysed square
    ``crop`` is written as a box.
    """
    crop = tuple(float(v) for v in crop)
    if getattr(roi, "circle", None) is not None:
        kind, geom = "circle", tuple(float(v) for v in roi.circle)
    elif getattr(roi, "box", None) is not None:
        kind, geom = "box", tuple(float(v) for v in roi.box)
    else:
        cx, cy, side = crop
        kind, geom = "box", (cx - side / 2.0, cy - side / 2.0, side, side)
    return Finding(score=float(score), threshold=float(threshold), label=str(label), roi_kind=kind, roi=geom,
                   crop=crop, probability=probability)


def write_for_prediction(cadx: Any, image: str | PathLike[str], roi: Any, out_dir: str | PathLike[str],
                         model_dir: str | PathLike[str] | None = None) -> list[Path]:
    """Score and explain one lesion with a fitted CADx and write its DICOM outputs (what ``--dicom-out`` runs).

    Uses only the CADx's public face (``explain_lesion`` gives score, label, threshold, crop and the
    Grad-CAM; ``card`` the model card); ``model_dir`` adds the saved model's fingerprint.

    Raises
    ------
    DicomOutputError
        ``image`` is not DICOM (DICOM outputs need a DICOM source), lacks a UID, or the folder is not ours.
    """
    from mammocadx.explain import explain_lesion
    from mammocadx.io.images import read_image

    source = read_source_header(image)  # fails fast, before any CNN work, for a PNG or a UID-less file
    img = read_image(image)
    expl, pred, img = explain_lesion(cadx, img, roi)
    towards = "malignant" if pred.score > pred.threshold else "benign"
    fingerprint = ""
    if model_dir is not None:
        from mammocadx.model.persist import model_fingerprint

        fingerprint = model_fingerprint(model_dir)
    card = dict(getattr(cadx, "card", None) or {})
    finding = finding_from_prediction(pred.score, pred.threshold, pred.label, roi, pred.crop,
                                      probability=getattr(pred, "probability", None))
    notes = [f"Input warning: {w}" for w in img.meta.get("warnings", [])]
    return write_outputs(
        source, [finding], img.pixels, expl.cam_for(towards), Algorithm.from_card(card, fingerprint), out_dir,
        notes=notes, description=f"Grad-CAM evidence towards {towards} over the analysed square; "
                                 f"score {pred.score:+.4f}, operating point {pred.threshold:+.4f}",
    )
