"""The source image's header as the outputs need it: checked, and with empty type-2 attributes filled in."""
from __future__ import annotations

import copy
from os import PathLike
from pathlib import Path

from pydicom.dataset import Dataset

from mammocadx.errors import DicomOutputError

#: Type 2 attributes of the Patient and General Study modules (present, may be empty) that
#: highdicom copies from the source into the new objects.
_TYPE2 = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
          "ReferringPhysicianName", "StudyID", "AccessionNumber")
#: What a result needs from its source: the study to join and the image to reference.
REQUIRED = ("StudyInstanceUID", "SOPClassUID", "SOPInstanceUID")


def read_source_header(path: str | PathLike[str]) -> Dataset:
    """Read and check the header of the analysed DICOM image (no pixel data).

    Raises
    ------
    DicomOutputError
        The file is not DICOM (DICOM outputs need a DICOM source), or lacks a UID the outputs need.
    """
    from mammocadx.errors import ImageReadError
    from mammocadx.io.images import sniff_format

    path = Path(path)
    try:
        fmt = sniff_format(path)
    except ImageReadError as exc:
        raise DicomOutputError(f"DICOM outputs need a DICOM source ({exc.reason})", path) from exc
    if fmt != "dicom":
        raise DicomOutputError(
            f"DICOM outputs need a DICOM source image; this is a {fmt.upper()} file (run without --dicom-out, "
            "or give the DICOM it came from)", path)
    from mammocadx.io.dicom import read_dicom_header

    return evidence_header(read_dicom_header(path, force=True), path)


def evidence_header(source: Dataset, path: str | PathLike[str] | None = None) -> Dataset:
    """A copy of ``source`` without pixel data, checked for the UIDs we reference and with empty type-2
    patient/study attributes added where absent (the source itself is never changed).

    Raises
    ------
    DicomOutputError
        ``StudyInstanceUID``, ``SOPClassUID`` or ``SOPInstanceUID`` is missing or empty.
    """
    missing = [k for k in REQUIRED if not str(source.get(k, "") or "").strip()]
    if missing:
        raise DicomOutputError(f"the source image has no {', '.join(missing)}: results cannot be placed in its "
                               "study or reference it", path)
    header = Dataset()
    for elem in source:
        if elem.keyword not in ("PixelData", "FloatPixelData", "DoubleFloatPixelData"):
            header.add(copy.deepcopy(elem))
    if hasattr(source, "file_meta"):
        header.file_meta = copy.deepcopy(source.file_meta)
    for keyword in _TYPE2:
        if keyword not in header:
            setattr(header, keyword, "")
    return header
