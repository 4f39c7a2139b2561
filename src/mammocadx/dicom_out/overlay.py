"""The Grad-CAM heat-map over the mammogram as a DICOM Secondary Capture image (RGB, burned in).

Why a Secondary Capture and not a Parametric Map or a presentation state is
explained in ``docs/dicom_outputs.md``: in short, every PACS and viewer shows
an SC image, while a Parametric Map needs a patient frame of reference that
projection mammograms do not have, and colour blending presentation states
are rarely implemented.

The picture is the image as mammocadx read it (windowed, bright = dense), at
the source's own size so that it lines up pixel for pixel, with the evidence
map (jet colour map, the same as the PNG figures) blended over the analysed
square and that square outlined in yellow.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import RLELossless, generate_uid

from mammocadx.dicom_out.finding import DISCLAIMER, Algorithm

#: Series number of our overlay series.
OVERLAY_SERIES_NUMBER = 9902
#: Largest opacity of the heat-map (where the evidence is 1).
ALPHA = 0.6
_OUTLINE_RGB = (255, 255, 0)


def overlay_rgb(
    pixels: np.ndarray, heatmap: np.ndarray, crop: tuple[float, float, float] | None = None
) -> np.ndarray:
    """RGB uint8 picture: grey ``pixels`` with ``heatmap`` blended in and the analysed square outlined.

    Parameters
    ----------
    pixels : numpy.ndarray
        ``(rows, cols)`` image in [0, 1] (bright = dense).
    heatmap : numpy.ndarray
        Evidence in [0, 1]: ``(rows, cols)`` over the whole image (NaN = not explained), or ``(S, S)``
        over the analysed square ``crop``, which is then placed on the image.
    crop : tuple of float, optional
        ``(cx, cy, side)`` of the analysed square (needed for an ``(S, S)`` map; outlined when given).

    Returns
    -------
    numpy.ndarray
        ``(rows, cols, 3)`` uint8.
    """
    import cv2

    from mammocadx.explain.figures import CAM_CMAP, _blend
    from mammocadx.explain.placement import crop_box, place_on_image

    grey = np.clip(np.asarray(pixels, np.float32), 0.0, 1.0)
    heat = np.asarray(heatmap, np.float32)
    if heat.shape != grey.shape:
        if crop is None:
            raise ValueError(f"a heat-map of shape {heat.shape} over the ROI needs the crop to place it on the "
                             f"{grey.shape} image")
        heat = place_on_image(heat, crop, grey.shape, fill=np.nan)
    alpha = np.nan_to_num(np.clip(heat, 0.0, 1.0)) * ALPHA
    rgb = _blend(grey, np.nan_to_num(heat), alpha, {"cmap": CAM_CMAP, "vmin": 0.0, "vmax": 1.0})
    out = np.ascontiguousarray(np.rint(rgb * 255.0).astype(np.uint8))
    if crop is not None:
        x0, y0, n = crop_box(crop)
        thickness = max(1, round(max(grey.shape) / 500))
        cv2.rectangle(out, (x0, y0), (x0 + n - 1, y0 + n - 1), _OUTLINE_RGB, thickness)
    return out


def build_overlay(
    source: Dataset, rgb: np.ndarray, algorithm: Algorithm, description: str = "",
    series_number: int = OVERLAY_SERIES_NUMBER,
) -> Any:
    """A Secondary Capture image of ``rgb`` in the study of ``source``, referencing it as its source image.

    Parameters
    ----------
    source : pydicom.dataset.Dataset
        The analysed image's header (from :func:`~mammocadx.dicom_out.source.evidence_header`).
    rgb : numpy.ndarray
        ``(rows, cols, 3)`` uint8 picture (:func:`overlay_rgb`).
    algorithm : Algorithm
        Written as the manufacturer model name and software version.
    description : str
        What the map shows (e.g. ``"Grad-CAM evidence towards malignant, score +0.42"``): the derivation text.

    Returns
    -------
    highdicom.sc.SCImage
        RLE Lossless encoded, ready for ``save_as``.
    """
    from highdicom.sc import SCImage

    laterality = str(source.get("ImageLaterality", "") or source.get("Laterality", "") or "").upper()
    sc = SCImage.from_ref_dataset(
        ref_dataset=source,
        pixel_array=np.ascontiguousarray(rgb, dtype=np.uint8),
        photometric_interpretation="RGB",
        bits_allocated=8,
        coordinate_system="PATIENT",
        series_instance_uid=generate_uid(),
        series_number=series_number,
        sop_instance_uid=generate_uid(),
        instance_number=1,
        manufacturer="mammocadx",
        patient_orientation=("A", "R"),  # placeholder, replaced below by the source's own value
        laterality=laterality if laterality in ("L", "R") else None,
        transfer_syntax_uid=RLELossless,
        series_description="mammocadx Grad-CAM overlay (research use only)",
    )
    # Same pixel grid as the source: its patient orientation holds (mammography uses
    # values such as A\R or P\FL, which highdicom's biped enumeration does not take).
    orientation = source.get("PatientOrientation", None)
    sc.PatientOrientation = list(orientation) if orientation else ""
    ref = Dataset()
    ref.ReferencedSOPClassUID = source.SOPClassUID
    ref.ReferencedSOPInstanceUID = source.SOPInstanceUID
    sc.SourceImageSequence = [ref]
    if "Laterality" not in sc:  # type 2C for paired body parts (the breast): present, empty when unknown
        sc.Laterality = ""
    sc.DerivationDescription = (description or "Grad-CAM evidence map over the analysed ROI")[:1024]
    sc.ImageComments = DISCLAIMER[:10240]
    sc.ConversionType = "WSD"  # made on a workstation from the source image (highdicom's default: DI)
    sc.BurnedInAnnotation = "NO"
    sc.ManufacturerModelName = algorithm.name[:64]
    sc.SoftwareVersions = algorithm.version[:64]
    return sc
