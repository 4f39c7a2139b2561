"""CBIS-DDSM (Curated Breast Imaging Subset of DDSM, TCIA) as lesion records.

What is read
------------
The four case-description CSVs, found in ``data`` or one folder below it:
``mass_case_description_{train,test}_set.csv`` and
``calc_case_description_{train,test}_set.csv``. Both layouts that TCIA has
published are understood, by column name (case, spaces and underscores
ignored): the older one without file paths, and the newer one with
``image file path``, ``cropped image file path`` and ``ROI mask file path``;
``breast_density`` and ``breast density`` alike. Each CSV row is one
abnormality: one :class:`~mammocadx.records.LesionRecord` with

- ``label``: ``MALIGNANT`` = 1, ``BENIGN`` and ``BENIGN_WITHOUT_CALLBACK`` = 0;
- ``patient_id``: the CSV's ``patient_id`` (``P_00001``);
- ``split``: the official split, from the CSV's file name (``train``/``test``);
- ``laterality`` ``L``/``R`` and ``view`` ``CC``/``MLO``;
- ``roi``: ``Roi(mask_path=...)``, the abnormality's ROI mask DICOM;
- ``sample_id``: the ROI folder name (``Mass-Training_P_00001_LEFT_CC_1``),
  ``image_id``: the image folder name (``Mass-Training_P_00001_LEFT_CC``);
- ``extra``: abnormality id and type, subset (``mass``/``calc``), pathology,
  assessment, subtlety, breast density, mass shape/margins or calcification
  type/distribution, and the crop's path.

Where the DICOMs are
--------------------
The TCIA download tree, anywhere under ``data``::

    Mass-Training_P_00001_LEFT_CC/<study>/<series>/1-1.dcm        full mammogram
    Mass-Training_P_00001_LEFT_CC_1/<study>/<series>/1-1.dcm      ROI mask  } possibly in one
    Mass-Training_P_00001_LEFT_CC_1/<study>/<series>/1-2.dcm      crop      } "ROI mask images" series

The study/series folder names differ between download tools and never match
the UIDs in the CSVs, so only the case folder name (the CSV path's first part,
or built from patient, side and view in the older layout) is trusted. Inside
an ROI folder the mask and the crop are told apart by their SeriesDescription
(``ROI mask images`` / ``cropped images``) and, since both can sit in a series
called "ROI mask images", by size: the mask has the full image's size (or is the
larger file); the crop is small. Masks whose size differs from the image are
accepted here and resized when read (:func:`mammocadx.preprocess.roi.load_mask`).

Rows whose image or mask cannot be found, or whose pathology is unknown, are
skipped with a logged warning that lists them (:func:`scan_cbis_ddsm` also
returns them); a :class:`~mammocadx.errors.DatasetError` is raised only when
the CSVs are missing or malformed, or nothing at all is usable.
"""
from __future__ import annotations

import csv as csvlib
import logging
import os
import re
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any, Literal

from mammocadx.records import LesionRecord, Roi, parse_label
from mammocadx.errors import DatasetError

log = logging.getLogger(__name__)

CSV_NAMES = {
    ("mass", "train"): "mass_case_description_train_set.csv",
    ("mass", "test"): "mass_case_description_test_set.csv",
    ("calc", "train"): "calc_case_description_train_set.csv",
    ("calc", "test"): "calc_case_description_test_set.csv",
}
_CSV_NAME = re.compile(r"(mass|calc)_case_description_(train|test)_set", re.IGNORECASE)
_CASE_DIR = re.compile(r"^(Mass|Calc)-(Training|Test)_(P_\d+)_(LEFT|RIGHT)_(CC|MLO)(?:_(\d+))?$", re.IGNORECASE)
_REQUIRED = ("patient id", "left or right breast", "image view", "abnormality id", "pathology")
_EXTRA = {
    "abnormality type": "abnormality_type",
    "assessment": "assessment",
    "subtlety": "subtlety",
    "breast density": "breast_density",
    "mass shape": "mass_shape",
    "mass margins": "mass_margins",
    "calc type": "calc_type",
    "calc distribution": "calc_distribution",
}
_SPLIT_WORD = {"train": "Training", "test": "Test"}
_SUBSET_WORD = {"mass": "Mass", "calc": "Calc"}


@dataclass
class CbisDdsmLoad:
    """What :func:`scan_cbis_ddsm` found.

    Attributes
    ----------
    records : list of LesionRecord
        The usable abnormalities.
    skipped : list of (str, str)
        ``(sample id, reason)`` of every CSV row left out.
    csv_files : list of Path
        The case-description CSVs read.
    """

    records: list[LesionRecord] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    csv_files: list[Path] = field(default_factory=list)


def _key(name: str) -> str:
    return re.sub(r"[\s_]+", " ", name.strip().lower())


def find_case_csvs(data: Path, subset: str = "all", split: str | None = None) -> list[Path]:
    """The case-description CSVs under ``data`` (itself or one folder below) for ``subset`` and ``split``."""
    subsets = ("mass", "calc") if subset == "all" else (subset,)
    splits = ("train", "test") if split is None else (split,)
    wanted = {CSV_NAMES[(s, p)].lower() for s in subsets for p in splits}
    found: dict[str, Path] = {}
    candidates = list(data.glob("*.csv")) + list(data.glob("*/*.csv"))
    for path in sorted(candidates):
        name = path.name.lower()
        if name in wanted and name not in found:
            found[name] = path
    return [found[n] for n in sorted(found)]


def _csv_kind(path: Path) -> tuple[str | None, str | None]:
    m = _CSV_NAME.search(path.name)
    return (m.group(1).lower(), m.group(2).lower()) if m else (None, None)


def _index_case_folders(data: Path) -> dict[str, Path]:
    """Map every CBIS-DDSM case folder name (upper case) under ``data`` to its path."""
    index: dict[str, Path] = {}
    for root, dirs, _files in os.walk(data):
        keep = []
        for d in dirs:
            if _CASE_DIR.match(d):
                index.setdefault(d.upper(), Path(root) / d)
            else:
                keep.append(d)
        dirs[:] = keep  # don't descend into case folders here; their files are listed on demand
    return index


def _files_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))


def _header(path: Path) -> Any | None:
    """The DICOM header of ``path``, or None if it is not a readable DICOM."""
    import pydicom

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return pydicom.dcmread(path, stop_before_pixels=True)
    except Exception:  # pydicom raises many kinds on non-DICOM or corrupt files; such files are just not candidates
        return None


def _shape(ds: Any) -> tuple[int, int] | None:
    try:
        return int(ds.Rows), int(ds.Columns)
    except (AttributeError, TypeError, ValueError):
        return None


def _pick_image(folder: Path) -> tuple[Path | None, tuple[int, int] | None, str]:
    """The full mammogram in a case folder: (path, shape, reason if none)."""
    best: tuple[int, Path, tuple[int, int]] | None = None
    for f in _files_in(folder):
        ds = _header(f)
        shape = _shape(ds) if ds is not None else None
        if shape is None:
            continue
        desc = str(ds.get("SeriesDescription", "")).lower()
        score = shape[0] * shape[1] + (1 << 40 if "full" in desc else 0)
        if best is None or score > best[0]:
            best = (score, f, shape)
    if best is None:
        return None, None, f"no readable DICOM image in {folder}"
    return best[1], best[2], ""


def classify_roi_files(files: Iterable[Path], image_shape: tuple[int, int] | None) -> tuple[Path | None, Path | None]:
    """Tell an ROI folder's mask from its crop: returns ``(mask, crop)``.

    SeriesDescription decides when it says "cropped" (a crop). Otherwise a
    file of the full image's size is the mask; failing that, the largest
    remaining file is (CBIS-DDSM stores crops and masks together in series
    both called "ROI mask images"; the crop is always much smaller).
    """
    crops: list[tuple[int, Path]] = []
    others: list[tuple[int, Path, tuple[int, int], str]] = []
    for f in files:
        ds = _header(f)
        shape = _shape(ds) if ds is not None else None
        if shape is None:
            continue
        desc = str(ds.get("SeriesDescription", "")).lower()
        area = shape[0] * shape[1]
        if "crop" in desc:
            crops.append((area, f))
        else:
            others.append((area, f, shape, desc))
    mask = None
    exact = [o for o in others if image_shape is not None and o[2] == tuple(image_shape)]
    if exact:
        mask = exact[0][1]
    elif others:
        _area, largest, shape, _desc = max(others, key=lambda o: o[0])
        if len(others) + len(crops) > 1 or image_shape is None:
            mask = largest  # of two files of unexpected sizes the crop is the small one
        else:
            # A lone file of another size: a mask (resized later) if it has the image's aspect
            # ratio; otherwise most likely a crop left without its mask.
            ratio = (shape[0] / shape[1]) / (image_shape[0] / image_shape[1])
            if 0.85 <= ratio <= 1 / 0.85:
                mask = largest
    rest = [(a, f) for a, f, _s, _d in others if f != mask] + crops
    crop = min(rest)[1] if rest else None
    return mask, crop


def _resolve_csv_path(data: Path, value: str) -> Path | None:
    """A CSV file path that exists as written, under ``data`` (or ``data/CBIS-DDSM``)."""
    value = value.strip().strip('"').replace("\\", "/")
    if not value or value.startswith("/") or ".." in Path(value).parts:
        return None
    for base in (data, data / "CBIS-DDSM"):
        p = base / value
        if p.is_file():
            return p
    return None


def _read_rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csvlib.DictReader(fh)
            if reader.fieldnames is None:
                raise DatasetError("empty CSV (no header row)", path)
            header = [_key(h or "") for h in reader.fieldnames]
            rows = []
            for raw in reader:
                rows.append({_key(k or ""): (v or "").strip() for k, v in raw.items() if k is not None})
    except UnicodeDecodeError as exc:
        raise DatasetError(f"not a UTF-8 text CSV ({exc.reason})", path) from exc
    except OSError as exc:
        raise DatasetError(f"cannot read ({exc.strerror or exc})", path) from exc
    except csvlib.Error as exc:
        raise DatasetError(f"malformed CSV ({exc})", path) from exc
    missing = [c for c in _REQUIRED if c not in header]
    if missing:
        raise DatasetError(f"not a CBIS-DDSM case-description CSV: missing column(s) {', '.join(missing)}", path)
    return header, rows


def scan_cbis_ddsm(
    data: str | PathLike[str],
    subset: Literal["mass", "calc", "all"] = "mass",
    split: Literal["train", "test"] | None = None,
    csv: str | PathLike[str] | Sequence[str | PathLike[str]] | None = None,
) -> CbisDdsmLoad:
    """Read CBIS-DDSM and report both the usable records and the skipped rows.

    Parameters are those of :func:`load_cbis_ddsm`.

    Returns
    -------
    CbisDdsmLoad
    """
    data = Path(data)
    if subset not in ("mass", "calc", "all"):
        raise DatasetError(f"subset must be mass, calc or all, not {subset!r}", data)
    if split not in (None, "train", "test"):
        raise DatasetError(f"split must be train, test or None, not {split!r}", data)
    if not data.is_dir():
        raise DatasetError("CBIS-DDSM folder not found" if not data.exists() else "not a folder", data)
    if csv is None:
        csv_files = find_case_csvs(data, subset, split)
        if not csv_files:
            names = ", ".join(CSV_NAMES[k] for k in CSV_NAMES if subset in ("all", k[0]) and split in (None, k[1]))
            raise DatasetError(f"no case-description CSV found (looked for {names} here and one folder below)", data)
    else:
        csv_files = [Path(c) for c in ([csv] if isinstance(csv, (str, PathLike)) else csv)]
        for c in csv_files:
            if not c.is_file():
                raise DatasetError("case-description CSV not found", c)

    index = _index_case_folders(data)
    image_cache: dict[str, tuple[Path | None, tuple[int, int] | None, str]] = {}
    out = CbisDdsmLoad(csv_files=csv_files)
    seen: set[str] = set()
    for csv_path in csv_files:
        file_subset, file_split = _csv_kind(csv_path)
        _header_names, rows = _read_rows(csv_path)
        for n, row in enumerate(rows, start=2):  # line 1 is the header
            record_subset = file_subset or ("calc" if "calc" in row.get("abnormality type", "").lower() else "mass")
            if subset != "all" and record_subset != subset:
                continue
            if split is not None and file_split is not None and file_split != split:
                continue
            rec, reason = _row_to_record(row, record_subset, file_split, data, index, image_cache)
            where = f"{csv_path.name} line {n}"
            if rec is None:
                out.skipped.append((reason[0], f"{where}: {reason[1]}"))
                continue
            if split is not None and rec.split != split:
                continue
            if rec.sample_id in seen:
                out.skipped.append((rec.sample_id, f"{where}: duplicate abnormality"))
                continue
            seen.add(rec.sample_id)
            out.records.append(rec)
    if out.skipped:
        shown = "; ".join(f"{sid} ({why})" for sid, why in out.skipped[:20])
        more = f" and {len(out.skipped) - 20} more" if len(out.skipped) > 20 else ""
        log.warning("CBIS-DDSM: %d of %d abnormalities skipped: %s%s", len(out.skipped),
                    len(out.skipped) + len(out.records), shown, more)
    if not out.records:
        first = out.skipped[0][1] if out.skipped else "the CSVs hold no rows for this subset/split"
        raise DatasetError(f"no usable CBIS-DDSM abnormality (first problem: {first})", data)
    return out


def _row_to_record(
    row: dict[str, str],
    subset: str,
    split: str | None,
    data: Path,
    index: dict[str, Path],
    image_cache: dict[str, tuple[Path | None, tuple[int, int] | None, str]],
) -> tuple[LesionRecord | None, tuple[str, str]]:
    patient = row.get("patient id", "")
    side = row.get("left or right breast", "").upper()
    view = row.get("image view", "").upper()
    abn = row.get("abnormality id", "")
    image_value = row.get("image file path", "")
    mask_value = row.get("roi mask file path", "")
    crop_value = row.get("cropped image file path", "")
    case = image_value.strip().strip('"').replace("\\", "/").split("/")[0] if image_value else ""
    if not case:
        if split is None:
            return None, (f"{patient}_{side}_{view}_{abn}", "no image file path and no split in the CSV name")
        case = f"{_SUBSET_WORD[subset]}-{_SPLIT_WORD[split]}_{patient}_{side}_{view}"
    sample_id = f"{case}_{abn}"
    if not patient or side not in ("LEFT", "RIGHT") or view not in ("CC", "MLO") or not abn.isdigit():
        return None, (sample_id, f"malformed row (patient {patient!r}, side {side!r}, view {view!r}, abnormality {abn!r})")
    try:
        label = parse_label(row.get("pathology", ""))
    except ValueError as exc:
        return None, (sample_id, str(exc))
    if split is None:
        m = _CASE_DIR.match(case)
        split = {"training": "train", "test": "test"}.get(m.group(2).lower()) if m else None

    # Full image: the CSV path as written if it exists, else the case folder's image.
    if case.upper() not in image_cache:
        direct = _resolve_csv_path(data, image_value) if image_value else None
        if direct is not None:
            ds = _header(direct)
            image_cache[case.upper()] = (direct, _shape(ds) if ds is not None else None, "")
        elif case.upper() in index:
            image_cache[case.upper()] = _pick_image(index[case.upper()])
        else:
            image_cache[case.upper()] = (None, None, f"image folder {case} not found")
    image_path, image_shape, why = image_cache[case.upper()]
    if image_path is None:
        return None, (sample_id, why)

    roi_folder = index.get(sample_id.upper())
    if roi_folder is None and mask_value:  # the ROI folder as the CSV names it, if it differs
        roi_folder = index.get(mask_value.strip().strip('"').replace("\\", "/").split("/")[0].upper())
    candidates: list[Path] = _files_in(roi_folder) if roi_folder is not None else []
    for value in (mask_value, crop_value):  # the CSV's own paths, where they exist as written
        p = _resolve_csv_path(data, value) if value else None
        if p is not None and p not in candidates:
            candidates.append(p)
    if not candidates:
        return None, (sample_id, f"ROI folder {sample_id} not found")
    mask_path, crop_path = classify_roi_files(candidates, image_shape)
    if mask_path is None:
        return None, (sample_id, f"no ROI mask DICOM in {roi_folder or sample_id}")

    extra: dict[str, Any] = {"subset": subset, "abnormality_id": int(abn), "pathology": row.get("pathology", "").upper()}
    for column, name in _EXTRA.items():
        if row.get(column, "") != "":
            extra[name] = row[column]
    extra["crop_path"] = str(crop_path) if crop_path else None
    rec = LesionRecord(
        sample_id=sample_id,
        image_id=case,
        image_path=image_path,
        patient_id=patient,
        label=label,
        roi=Roi(mask_path=mask_path),
        laterality=side[0],
        view=view,
        split=split,
        extra=extra,
    )
    return rec, (sample_id, "")


def load_cbis_ddsm(
    data: str | PathLike[str],
    subset: Literal["mass", "calc", "all"] = "mass",
    split: Literal["train", "test"] | None = None,
    csv: str | PathLike[str] | Sequence[str | PathLike[str]] | None = None,
) -> list[LesionRecord]:
    """Read CBIS-DDSM's case descriptions and DICOM tree as one record per abnormality.

    Parameters
    ----------
    data : str or PathLike
        Folder holding the case-description CSVs (here or one folder below)
        and the TCIA DICOM tree (anywhere below).
    subset : {"mass", "calc", "all"}, default "mass"
        Masses (the paper's data), calcifications, or both.
    split : {"train", "test"} or None
        Keep only one official split; None keeps both (each record's
        ``split`` still says which it is).
    csv : path or list of paths, optional
        Case-description CSV(s) to read instead of looking in ``data``.

    Returns
    -------
    list of LesionRecord
        In CSV order. Rows without image or mask are skipped and logged
        (see :func:`scan_cbis_ddsm` to get them).

    Raises
    ------
    DatasetError
        No such folder, no or malformed CSV, or no usable abnormality.
    """
    return scan_cbis_ddsm(data, subset=subset, split=split, csv=csv).records
