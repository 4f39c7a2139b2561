"""A folder with one sub-folder per class, as the paper's UIC set is shipped.

Layout::

    DATA/benign/...      (or 0/)   any image files, nested folders allowed
    DATA/malignant/...   (or 1/)
    DATA/patients.csv    optional: columns ``file`` and ``patient_id``

Class folder names are matched without regard to case. Every file whose
*content* is an image (PNG, JPEG, TIFF, PGM, BMP, DICOM; see
:func:`mammocadx.io.images.sniff_format`) is one sample with ``Roi()``: no
lesion location, the whole breast (or image) is classified. Other files
(``README``, ``Thumbs.db`` ...) are ignored and counted in the log.

Patient ids: without ``patients.csv`` each image is its own patient (its file
stem; that makes a patient-grouped split an image-grouped one: say so in any
report). ``patients.csv`` maps ``file`` (a path relative to ``DATA``, a path
relative to the class folder, or a bare file name) to ``patient_id``.
"""
from __future__ import annotations

import csv
import logging
from os import PathLike
from pathlib import Path

from mammocadx.records import BENIGN, MALIGNANT, LesionRecord, Roi
from mammocadx.errors import DatasetError, ImageReadError
from mammocadx.io.images import sniff_format

log = logging.getLogger(__name__)

CLASS_FOLDERS = {"benign": BENIGN, "0": BENIGN, "malignant": MALIGNANT, "1": MALIGNANT}
PATIENTS_CSV = "patients.csv"


def _patients(data: Path) -> dict[str, str]:
    path = data / PATIENTS_CSV
    if not path.is_file():
        return {}
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            names = {(h or "").strip().lower(): h for h in (reader.fieldnames or [])}
            if "file" not in names or "patient_id" not in names:
                raise DatasetError(f"{PATIENTS_CSV} needs columns 'file' and 'patient_id' (has {', '.join(names)})", path)
            mapping: dict[str, str] = {}
            for n, row in enumerate(reader, start=2):
                key = (row.get(names["file"]) or "").strip().replace("\\", "/")
                pid = (row.get(names["patient_id"]) or "").strip()
                if not key or not pid:
                    raise DatasetError(f"line {n}: 'file' and 'patient_id' must both be filled", path)
                mapping[key] = pid
            return mapping
    except UnicodeDecodeError as exc:
        raise DatasetError(f"not a UTF-8 text CSV ({exc.reason})", path) from exc
    except OSError as exc:
        raise DatasetError(f"cannot read ({exc.strerror or exc})", path) from exc
    except csv.Error as exc:
        raise DatasetError(f"malformed CSV ({exc})", path) from exc


def load_folder(data: str | PathLike[str]) -> list[LesionRecord]:
    """Read a class-per-folder dataset (``benign/``, ``malignant/``; or ``0/``, ``1/``).

    Parameters
    ----------
    data : str or PathLike
        The folder holding the class sub-folders.

    Returns
    -------
    list of LesionRecord
        One per image, ``roi=Roi()`` (whole breast), sorted by path;
        ``sample_id`` = ``image_id`` = the path relative to ``data`` without suffix.

    Raises
    ------
    DatasetError
        No such folder, no class sub-folder, a bad ``patients.csv``, a class
        named twice (``benign/`` and ``0/``), or no image at all.
    """
    data = Path(data)
    if not data.is_dir():
        raise DatasetError("folder not found" if not data.exists() else "not a folder", data)
    classes: dict[int, Path] = {}
    for sub in sorted(p for p in data.iterdir() if p.is_dir()):
        label = CLASS_FOLDERS.get(sub.name.lower())
        if label is None:
            log.info("folder dataset %s: sub-folder %s is not a class (benign/malignant/0/1), ignored", data, sub.name)
            continue
        if label in classes:
            raise DatasetError(f"class given twice: {classes[label].name}/ and {sub.name}/", data)
        classes[label] = sub
    if not classes:
        raise DatasetError("no class sub-folder (expected benign/ and malignant/, or 0/ and 1/)", data)
    patients = _patients(data)
    records: list[LesionRecord] = []
    ignored = 0
    for label, folder in sorted(classes.items()):
        for f in sorted(p for p in folder.rglob("*") if p.is_file()):
            try:
                sniff_format(f)
            except ImageReadError:
                ignored += 1
                continue
            rel = f.relative_to(data).as_posix()
            in_class = f.relative_to(folder).as_posix()
            pid = patients.get(rel) or patients.get(in_class) or patients.get(f.name) or f.stem
            sid = f.relative_to(data).with_suffix("").as_posix()
            records.append(LesionRecord(sample_id=sid, image_id=sid, image_path=f, patient_id=pid, label=label,
                                        roi=Roi(), extra={"class_folder": folder.name}))
    if ignored:
        log.info("folder dataset %s: %d non-image file(s) ignored", data, ignored)
    if not records:
        raise DatasetError("no image file in the class folders", data)
    if not patients:
        log.info("folder dataset %s: no %s, every image is its own patient", data, PATIENTS_CSV)
    return records
