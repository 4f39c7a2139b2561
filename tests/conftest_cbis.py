"""A tiny synthetic CBIS-DDSM download (TCIA tree + case-description CSVs) for the cbis tests."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from conftest_dicom import write_dicom

IMAGE_SHAPE = (64, 48)
# (subset, split, patient, side, view, abnormality id, pathology, mask layout, lesion box (x, y, w, h))
#  mask layout: "same" = mask and crop both in a series named "ROI mask images";
#               "separate" = "ROI mask images" and "cropped images" series;
#               "small" = like "same" but the mask is half the image's size (resized when read).
CASES = [
    ("mass", "train", "P_00001", "LEFT", "CC", 1, "MALIGNANT", "same", (10, 20, 8, 6)),
    ("mass", "train", "P_00001", "LEFT", "MLO", 1, "MALIGNANT", "separate", (20, 30, 10, 10)),
    ("mass", "train", "P_00002", "RIGHT", "CC", 1, "BENIGN", "separate", (5, 5, 6, 6)),
    ("mass", "train", "P_00002", "RIGHT", "CC", 2, "BENIGN_WITHOUT_CALLBACK", "small", (30, 40, 8, 8)),
    ("mass", "test", "P_00003", "LEFT", "CC", 1, "MALIGNANT", "same", (12, 12, 12, 12)),
    ("calc", "train", "P_00004", "RIGHT", "MLO", 1, "BENIGN", "separate", (8, 40, 4, 4)),
    ("calc", "test", "P_00005", "LEFT", "MLO", 1, "MALIGNANT", "same", (25, 10, 6, 6)),
]
#: A row whose DICOMs were never downloaded: must be skipped and listed.
MISSING = ("mass", "train", "P_00009", "LEFT", "CC", 1, "BENIGN")


def case_name(subset: str, split: str, patient: str, side: str, view: str) -> str:
    return f"{'Mass' if subset == 'mass' else 'Calc'}-{'Training' if split == 'train' else 'Test'}_{patient}_{side}_{view}"


def build_cbis_tree(root: Path, layout: str = "new", cases: list | None = None, shape: tuple[int, int] = IMAGE_SHAPE) -> Path:
    """Write the tree under ``root/CBIS-DDSM`` and the four CSVs in ``root`` (``layout`` "new" or "old")."""
    tree = root / "CBIS-DDSM"
    rng = np.random.default_rng(7)
    written: set[str] = set()
    rows: dict[tuple[str, str], list[dict[str, str]]] = {}
    for subset, split, patient, side, view, abn, pathology, mask_layout, (x, y, w, h) in (cases or CASES):
        case = case_name(subset, split, patient, side, view)
        if case not in written:
            img = rng.integers(0, 4096, shape).astype(np.uint16)
            write_dicom(tree / case / "07-20-2016-DDSM-11111" / "1.000000-full mammogram images-22222" / "1-1.dcm",
                        img, bits_stored=12, PatientID=case, SeriesDescription="full mammogram images")
            written.add(case)
        mask = np.zeros(shape, np.uint8)
        mask[y:y + h, x:x + w] = 255
        if mask_layout == "small":
            mask = mask[::2, ::2].copy()
        crop = rng.integers(0, 255, (h + 4, w + 4)).astype(np.uint8)
        roi = tree / f"{case}_{abn}" / "07-21-2016-DDSM-33333"
        if mask_layout == "separate":
            write_dicom(roi / "1.000000-ROI mask images-44444" / "1-1.dcm", mask, PatientID=f"{case}_{abn}",
                        SeriesDescription="ROI mask images")
            write_dicom(roi / "1.000000-cropped images-55555" / "1-1.dcm", crop, PatientID=f"{case}_{abn}",
                        SeriesDescription="cropped images")
        else:  # crop first (1-1) and mask second (1-2): file order must not matter
            write_dicom(roi / "1.000000-ROI mask images-44444" / "1-1.dcm", crop, PatientID=f"{case}_{abn}",
                        SeriesDescription="ROI mask images")
            write_dicom(roi / "1.000000-ROI mask images-44444" / "1-2.dcm", mask, PatientID=f"{case}_{abn}",
                        SeriesDescription="ROI mask images")
        rows.setdefault((subset, split), []).append(_row(subset, case, patient, side, view, abn, pathology, layout))
    subset, split, patient, side, view, abn, pathology = MISSING
    rows.setdefault((subset, split), []).append(_row(subset, case_name(subset, split, patient, side, view), patient, side, view,
                                      abn, pathology, layout))
    for (subset, split), rs in rows.items():
        with (root / f"{subset}_case_description_{split}_set.csv").open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rs[0]))
            writer.writeheader()
            writer.writerows(rs)
    return root


def _row(subset: str, case: str, patient: str, side: str, view: str, abn: int, pathology: str, layout: str) -> dict[str, str]:
    density = "breast_density" if subset == "mass" else "breast density"
    row = {"patient_id": patient, density: "3", "left or right breast": side, "image view": view,
           "abnormality id": str(abn), "abnormality type": "mass" if subset == "mass" else "calcification"}
    if subset == "mass":
        row |= {"mass shape": "OVAL", "mass margins": "CIRCUMSCRIBED"}
    else:
        row |= {"calc type": "PLEOMORPHIC", "calc distribution": "CLUSTERED"}
    row |= {"assessment": "4", "pathology": pathology, "subtlety": "3"}
    if layout == "new":
        # As TCIA's newer CSVs: UID folders that do not match the downloaded tree; mask/crop names swapped.
        uid = "1.3.6.1.4.1.9590.100.1.2"
        row["image file path"] = f"{case}/{uid}.1/{uid}.2/000000.dcm"
        row["cropped image file path"] = f"{case}_{abn}/{uid}.3/{uid}.4/000000.dcm"
        row["ROI mask file path"] = f"{case}_{abn}/{uid}.3/{uid}.4/000001.dcm\n"
    return row
