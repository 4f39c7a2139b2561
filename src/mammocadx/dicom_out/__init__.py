"""DICOM results a hospital can store and view: a TID 1500 Structured Report and a Grad-CAM overlay.

For an analysed DICOM image, :func:`write_outputs` writes into a folder, in
the image's study (patient and study copied, new series, mammocadx as the
device and algorithm):

- ``<SOPInstanceUID>_sr.dcm``: a Comprehensive 3D SR (TID 1500) with one
  measurement group per lesion (ROI as SCOORD on the source image, score,
  operating point, decision, algorithm identification, research-use text);
- ``<SOPInstanceUID>_gradcam.dcm``: the Grad-CAM overlay as an RGB Secondary
  Capture referencing the source image.

:func:`read_sr` reads the findings back. See ``docs/dicom_outputs.md``.
"""
from __future__ import annotations

from mammocadx.dicom_out.api import finding_from_prediction, output_names, write_for_prediction, write_outputs
from mammocadx.dicom_out.finding import Algorithm, Finding
from mammocadx.dicom_out.folder import MARKER, prepare_output_dir
from mammocadx.dicom_out.read import read_sr
from mammocadx.dicom_out.source import evidence_header, read_source_header

__all__ = [
    "MARKER", "Algorithm", "Finding", "evidence_header", "finding_from_prediction", "output_names",
    "prepare_output_dir", "read_source_header", "read_sr", "write_for_prediction", "write_outputs",
]
