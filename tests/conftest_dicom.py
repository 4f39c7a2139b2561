"""Build small DICOM files in code for the dicom / cbis tests (no data files in the repo)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

MG_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.1.2"  # Digital Mammography X-Ray Image Storage - For Presentation
SC_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.7"  # Secondary Capture


def make_dataset(
    arr: np.ndarray,
    photometric: str = "MONOCHROME2",
    modality: str | None = "MG",
    bits_stored: int | None = None,
    window: tuple[float, float] | None = None,
    function: str | None = None,
    voi_lut: tuple[list[int], list[int]] | None = None,
    rescale: tuple[float, float] | None = None,
    sop_class: str | None = None,
    **tags: Any,
) -> Dataset:
    """A single-frame (or multi-frame for 3-D ``arr``) greyscale dataset holding ``arr``."""
    arr = np.asarray(arr)
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = sop_class or (MG_SOP_CLASS if modality == "MG" else SC_SOP_CLASS)
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    if modality is not None:
        ds.Modality = modality
    if arr.ndim == 3:
        ds.NumberOfFrames = arr.shape[0]
    ds.Rows, ds.Columns = arr.shape[-2:]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = arr.dtype.itemsize * 8
    ds.BitsStored = bits_stored or ds.BitsAllocated
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 1 if arr.dtype.kind == "i" else 0
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    if function is not None:
        ds.VOILUTFunction = function
    if voi_lut is not None:
        descriptor, data = voi_lut
        item = Dataset()
        item.LUTDescriptor = descriptor
        item.LUTData = data
        item["LUTData"].VR = "US"
        item.LUTExplanation = "test LUT"
        ds.VOILUTSequence = Sequence([item])
    if rescale is not None:
        ds.RescaleSlope, ds.RescaleIntercept = rescale
    for key, value in tags.items():
        setattr(ds, key, value)
    ds.PixelData = arr.tobytes()
    return ds


def write_dicom(path: Path, arr: np.ndarray, compress: str | None = None, **kwargs: Any) -> Path:
    """Write ``arr`` as a DICOM file (optionally compressed with pydicom's encoder, e.g. RLELossless)."""
    ds = make_dataset(arr, **kwargs)
    if compress is not None:
        ds.compress(compress, np.asarray(arr), encoding_plugin="pydicom" if compress.endswith(".5") else "")
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path
