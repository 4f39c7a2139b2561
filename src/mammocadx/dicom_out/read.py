"""Read the findings back from a mammocadx Structured Report (for tests, and for anyone checking an archive)."""
from __future__ import annotations

from os import PathLike
from pathlib import Path

import numpy as np

from mammocadx.dicom_out.finding import (
    ANALYSED_SQUARE, DECISION, LABEL_CODES, OPERATING_POINT, PIXEL_CENTRE, PROBABILITY, SCORE, Finding,
)
from mammocadx.errors import DicomOutputError


def _num(group, concept) -> float | None:
    found = group.get_measurements(name=concept)
    return float(found[0].value) if found else None


def _texts(group, meaning: str) -> list[str]:
    return [str(item.TextValue) for item in group[0].ContentSequence
            if item.ValueType == "TEXT" and str(item.ConceptNameCodeSequence[0].CodeMeaning) == meaning]


def read_sr(path: str | PathLike[str]) -> list[Finding]:
    """The findings of a Structured Report written by :func:`~mammocadx.dicom_out.write_outputs`.

    Parameters
    ----------
    path : str or PathLike
        The SR file.

    Returns
    -------
    list of Finding
        In the report's order, with ``roi_kind`` ``"circle"`` or ``"box"`` and ``roi`` in image pixels
        (pixel centres at integers, as given to the writer), ``score``, ``threshold``, ``label``,
        ``probability`` where stored,
        ``source_sop_instance_uid``, ``tracking_uid`` and ``extra`` = ``analysed_side`` (side of the analysed
        square, ``crop`` itself is not stored) and the algorithm name/version/parameters.

    Raises
    ------
    DicomOutputError
        Not a readable SR, or a measurement group without the score, operating point, decision or region.
    """
    import highdicom.sr as hsr

    path = Path(path)
    try:
        sr = hsr.srread(path)
    except Exception as exc:  # pydicom/highdicom raise many kinds on a wrong or corrupt file
        raise DicomOutputError(f"not a readable Structured Report ({type(exc).__name__}: {exc})", path) from exc
    content = getattr(sr, "content", None)
    if not isinstance(content, hsr.MeasurementReport):
        raise DicomOutputError("not a TID 1500 Measurement Report", path)
    labels = {(c.value, c.scheme_designator): name for name, c in LABEL_CODES.items()}
    findings = []
    for group in content.get_planar_roi_measurement_groups():
        score, threshold = _num(group, SCORE), _num(group, OPERATING_POINT)
        decisions = group.get_qualitative_evaluations(name=DECISION)
        region = group.roi
        if score is None or threshold is None or not decisions or region is None:
            raise DicomOutputError("a measurement group lacks the score, operating point, decision or region", path)
        label = labels.get((decisions[0].value.value, decisions[0].value.scheme_designator))
        if label is None:
            raise DicomOutputError(f"unknown decision {decisions[0].value.meaning!r}", path)
        points = np.asarray(region.value, dtype=np.float64).reshape(-1, 2) - PIXEL_CENTRE
        if region.graphic_type.value == "CIRCLE":
            (cx, cy), (px, py) = points[:2]
            kind, roi = "circle", (float(cx), float(cy), float(np.hypot(px - cx, py - cy)))
        else:
            lo, hi = points.min(axis=0), points.max(axis=0)
            kind, roi = "box", (float(lo[0]), float(lo[1]), float(hi[0] - lo[0]), float(hi[1] - lo[1]))
        side = _num(group, ANALYSED_SQUARE)
        source = region.ContentSequence[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID
        extra = {"analysed_side": side, "algorithm_name": next(iter(_texts(group, "Algorithm Name")), None),
                 "algorithm_version": next(iter(_texts(group, "Algorithm Version")), None),
                 "algorithm_parameters": _texts(group, "Algorithm Parameters")}
        findings.append(Finding(
            score=score, threshold=threshold, label=label, roi_kind=kind, roi=roi,
            crop=None,
            probability=_num(group, PROBABILITY), source_sop_instance_uid=str(source),
            tracking_uid=str(group.tracking_uid) if group.tracking_uid else None, extra=extra,
        ))
    return findings
