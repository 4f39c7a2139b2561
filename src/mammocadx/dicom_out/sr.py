"""Write the CADx findings as a Comprehensive 3D SR following TID 1500 (Measurement Report) with highdicom.

Content tree (one ``Measurement Group`` per lesion, TID 1410)::

    Imaging Measurement Report (TID 1500)
      Language, Observation context: device observer = mammocadx (name, model = model name,
        serial number = model fingerprint)
      Procedure reported: Mammography
      Imaging Measurements
        Measurement Group (TID 1410)
          Tracking identifier + UID, Finding: Lesion, Finding site: Breast (+ laterality)
          Algorithm identification (TID 4019): name, version, parameters (fingerprint, backbone ...)
          Image Region: SCOORD CIRCLE (circle ROI) or closed POLYLINE (box)
                        referencing the source image's SOP Class + Instance UID
          NUM Malignancy decision score        (99MAMMOCADX, MCADX001), no units
          NUM Threshold Value                  (DCM 112144 ... the operating point), no units
          NUM Side of the analysed square ROI  (99MAMMOCADX, MCADX003), pixels
          NUM Probability of cancer            (DCM 111047), only for a calibrated model
          CODE CADx decision at the operating point = Benign / Malignant (SCT)
      Qualitative Evaluations
        TEXT Comment: research-use disclaimer (and any input warning)

The concepts without a standard code use a private scheme (:data:`~mammocadx.dicom_out.finding.SCHEME`):
no standard concept names an uncalibrated classifier score, and "Probability of cancer" would misstate it.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid

from mammocadx.dicom_out.finding import (
    ANALYSED_SQUARE, DECISION, DISCLAIMER, LABEL_CODES, NO_UNITS, OPERATING_POINT, PIXEL_CENTRE, PIXELS,
    PROBABILITY, QUALITATIVE_EVALUATIONS, SCORE, Algorithm, Finding, coding_scheme_item,
)

#: Series number of our SR series (a high number, out of the way of the modality's own series).
SR_SERIES_NUMBER = 9901
_MANUFACTURER = "mammocadx"


def region_graphic(finding: Finding) -> tuple[str, np.ndarray]:
    """``(graphic type, (N, 2) column/row points)`` of a finding's ROI in DICOM SCOORD pixel space."""
    if finding.roi_kind == "circle":
        cx, cy, r = finding.roi
        pts = [(cx, cy), (cx + r, cy)]  # centre, then a point on the circle (PS3.3 C.18.6.1.2)
        kind = "CIRCLE"
    else:
        x, y, w, h = finding.roi
        pts = [(x, y), (x + w, y), (x + w, y + h), (x, y + h), (x, y)]  # closed polyline
        kind = "POLYLINE"
    return kind, np.asarray(pts, dtype=np.float64) + PIXEL_CENTRE


def _group(source: Dataset, finding: Finding, index: int, algorithm: Any, laterality: str | None) -> Any:
    import highdicom.sr as hsr

    kind, points = region_graphic(finding)
    region = hsr.ImageRegion(
        graphic_type=kind, graphic_data=points,
        source_image=hsr.SourceImageForRegion(str(source.SOPClassUID), str(source.SOPInstanceUID)),
    )
    measurements = [
        hsr.Measurement(name=SCORE, value=float(finding.score), unit=NO_UNITS),
        hsr.Measurement(name=OPERATING_POINT, value=float(finding.threshold), unit=NO_UNITS),
    ]
    if finding.crop is not None:
        measurements.append(hsr.Measurement(name=ANALYSED_SQUARE, value=float(finding.crop[2]), unit=PIXELS))
    if finding.probability is not None:
        measurements.append(hsr.Measurement(name=PROBABILITY, value=float(finding.probability), unit=NO_UNITS))
    side = {"L": codes.SCT.Left, "R": codes.SCT.Right}.get((laterality or "").upper())
    return hsr.PlanarROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=hsr.TrackingIdentifier(uid=finding.tracking_uid or generate_uid(),
                                                   identifier=f"lesion {index}"),
        referenced_region=region,
        finding_type=codes.SCT.Lesion,
        finding_sites=[hsr.FindingSite(codes.SCT.Breast, laterality=side)],
        algorithm_id=algorithm,
        measurements=measurements,
        qualitative_evaluations=[hsr.QualitativeEvaluation(DECISION, LABEL_CODES[finding.label])],
    )


def build_sr(
    source: Dataset,
    findings: Sequence[Finding],
    algorithm: Algorithm,
    notes: Sequence[str] = (),
    series_number: int = SR_SERIES_NUMBER,
) -> Dataset:
    """The Comprehensive 3D SR of ``findings`` on the image ``source`` (in its study, in a new series).

    Parameters
    ----------
    source : pydicom.dataset.Dataset
        The analysed image's header (pixel data not needed): patient, study and the
        image's SOP Class/Instance UIDs are taken from it.
    findings : sequence of Finding
        One measurement group each (at least one).
    algorithm : Algorithm
        Name, version, fingerprint: the algorithm identification and the device observer.
    notes : sequence of str
        Further text (e.g. input warnings), written next to the disclaimer.
    series_number : int
        The new series' number.

    Returns
    -------
    highdicom.sr.Comprehensive3DSR
        A pydicom dataset ready for ``save_as``.
    """
    import highdicom.sr as hsr

    if not findings:
        raise ValueError("a report needs at least one finding")
    params = [*algorithm.parameters] + ([f"model_fingerprint={algorithm.fingerprint}"] if algorithm.fingerprint else [])
    algo = hsr.AlgorithmIdentification(name=algorithm.name, version=algorithm.version, parameters=params or None,
                                       manufacturer=_MANUFACTURER)
    device = hsr.DeviceObserverIdentifyingAttributes(
        uid=generate_uid(), name="mammocadx", manufacturer_name=_MANUFACTURER, model_name=algorithm.name[:64],
        serial_number=algorithm.fingerprint[:64] or None,
    )
    context = hsr.ObservationContext(observer_device_context=hsr.ObserverContext(codes.DCM.Device, device))
    laterality = str(source.get("ImageLaterality", "") or source.get("Laterality", "") or "") or None
    groups = [_group(source, f, i, algo, laterality) for i, f in enumerate(findings, start=1)]
    report = hsr.MeasurementReport(observation_context=context, procedure_reported=codes.SCT.Mammography,
                                   imaging_measurements=groups)
    # TID 1500 row 12: Qualitative Evaluations (highdicom builds rows 1-10 only): the disclaimer as TEXT.
    evaluations = hsr.ContainerContentItem(name=QUALITATIVE_EVALUATIONS, relationship_type="CONTAINS")
    evaluations.ContentSequence = hsr.ContentSequence(
        [hsr.TextContentItem(name=codes.DCM.Comment, value=text[:1024], relationship_type="CONTAINS")
         for text in (DISCLAIMER, *notes)]
    )
    report[0].ContentSequence.append(evaluations)
    sr = hsr.Comprehensive3DSR(
        evidence=[source],
        content=report[0],
        series_instance_uid=generate_uid(),
        series_number=series_number,
        sop_instance_uid=generate_uid(),
        instance_number=1,
        manufacturer=_MANUFACTURER,
        is_complete=True,
        series_description="mammocadx CADx report (research use only)",
    )
    sr.CodingSchemeIdentificationSequence = [coding_scheme_item()]
    sr.ManufacturerModelName = algorithm.name[:64]
    sr.SoftwareVersions = algorithm.version[:64]
    return sr
