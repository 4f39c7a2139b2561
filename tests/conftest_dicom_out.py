"""Synthetic full-field mammograms as 16-bit RLE DICOMs in a study (for the DICOM-output tests and the README figure)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from pydicom.uid import RLELossless, generate_uid

from conftest_dicom import write_dicom
from mammocadx.datasets.synthetic import generate_case


def study_tags(**over: Any) -> dict[str, Any]:
    """Patient and study attributes a modality writes (what our outputs copy)."""
    tags = {"StudyInstanceUID": generate_uid(), "SeriesInstanceUID": generate_uid(), "PatientID": "SYN-0001",
            "PatientName": "Synthetic^Case", "PatientBirthDate": "19600101", "PatientSex": "F",
            "StudyDate": "20260101", "StudyTime": "101010", "StudyID": "1", "AccessionNumber": "A1",
            "ReferringPhysicianName": "", "SeriesNumber": 1, "InstanceNumber": 1,
            "PresentationIntentType": "FOR PRESENTATION"}
    tags.update(over)
    return tags


def full_field_dicom(path: Path, seed: int = 0, size: int = 512, label: str = "malignant", **over: Any):
    """Write a synthetic left MLO mammogram as a 16-bit RLE Lossless MG DICOM; returns ``(path, case)``."""
    case = generate_case(seed, label, "L", "MLO", size, bit_depth=16)
    tags = study_tags(ImageLaterality="L", ViewPosition="MLO", PatientOrientation=["A", "FR"],
                      SeriesDescription="L MLO")
    tags.update(over)
    write_dicom(path, np.asarray(case.image, np.uint16), compress=RLELossless, **tags)
    return path, case
