"""A CSV manifest: the generic way to bring any labelled mammograms.

One row per lesion; several rows may share an image. Columns (header names
are matched without regard to case or surrounding spaces):

``path`` (required)
    The image file, relative to the CSV's folder (``images/00001_LEFT_CC.jpg``).
    Absolute paths and paths leaving that folder (``../x.png``) are refused
    unless ``allow_outside=True`` (command line: ``--allow-outside``).
``label`` (required)
    ``benign``/``malignant``, ``B``/``M``, ``0``/``1`` or a CBIS-DDSM pathology.
``patient_id`` (required)
    The woman the image belongs to; every split groups by it.
``split`` (optional)
    ``train`` or ``test`` (the official split used by ``--split official``).
``laterality``, ``view`` (optional)
    ``L``/``R`` (or ``LEFT``/``RIGHT``) and ``CC``/``MLO`` ...
The lesion (optional, at most one form per row, image pixels, x from the left, y from the top)
    a box ``box_x, box_y, box_w, box_h`` (top-left corner, width, height), or
    a circle ``cx, cy, r``, or a ``mask_path`` (relative like ``path``).
    A row without any is "no location": the whole breast is used.

``lesion_id``, ``exam_id`` (optional)
    One lesion seen in several images (its CC and MLO views) shares a ``lesion_id``;
    ``exam_id`` names the examination. Breast-level evaluation groups by ``lesion_id``,
    else by patient + laterality (+ ``exam_id``): see
    :func:`mammocadx.evaluate.calibration_report.breast_key`. Kept in ``extra``.

Any other columns are kept in ``LesionRecord.extra``. Ids: ``image_id`` is
the image's file stem (its relative path without suffix where stems collide)
and ``sample_id`` is ``<image_id>_<row>``, ``row`` the 1-based data row.

A malformed row raises :class:`~mammocadx.errors.DatasetError` naming the
file, the row (file line) and the column. Rows whose image file does not
exist are kept with a logged warning listing them (``skip_missing=True``,
the default), so the feature stage reports each in ``skipped.csv`` with the
reason "file not found" and counts it in ``n_skipped``; nothing usable at all
is an error.

:func:`load_roi_table` reads the same path and lesion columns (``x, y, w, h``
also name a box) for ``mammocadx predict --rois``.
"""
from __future__ import annotations

import csv
import logging
import math
import os
from os import PathLike
from pathlib import Path
from typing import Any

from mammocadx.datasets.records import LesionRecord, Roi, parse_label
from mammocadx.errors import DatasetError

log = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.csv"
REQUIRED = ("path", "label", "patient_id")
BOX = ("box_x", "box_y", "box_w", "box_h")
CIRCLE = ("cx", "cy", "r")
KNOWN = set(REQUIRED) | {"split", "laterality", "view", "mask_path"} | set(BOX) | set(CIRCLE)
_SPLITS = {"train": "train", "training": "train", "test": "test", "testing": "test"}
_SIDES = {"L": "L", "LEFT": "L", "R": "R", "RIGHT": "R"}


def _find_csv(data: Path) -> Path:
    if data.is_dir():
        path = data / MANIFEST_NAME
        if not path.is_file():
            raise DatasetError(f"no {MANIFEST_NAME} in this folder", data)
        return path
    if not data.exists():
        raise DatasetError("manifest not found", data)
    return data


def _safe_path(base: Path, value: str, allow_outside: bool, where: str, column: str, csv_path: Path) -> Path:
    """``value`` resolved against ``base``; absolute or escaping paths refused unless allowed."""
    text = value.strip()
    if not text:
        raise DatasetError(f"{where}: column {column!r} is empty", csv_path)
    raw = Path(text.replace("\\", "/"))
    if raw.is_absolute() and not allow_outside:
        raise DatasetError(f"{where}: column {column!r} holds an absolute path ({text}); paths must be "
                           "relative to the manifest's folder (--allow-outside, or allow_outside=True, to permit)", csv_path)
    # Lexical normalisation (not resolve()): ".." is judged on the path as written, and
    # symlinks inside the folder pointing to an archive elsewhere stay allowed.
    root = Path(os.path.abspath(base))
    full = Path(os.path.abspath(root / raw))
    if not allow_outside:
        try:
            full.relative_to(root)
        except ValueError:
            raise DatasetError(f"{where}: column {column!r} points outside the manifest's folder ({text}); "
                               "--allow-outside (allow_outside=True) to permit", csv_path) from None
    return full


def _number(row: dict[str, str], column: str, where: str, csv_path: Path) -> float:
    text = row.get(column, "").strip()
    try:
        value = float(text)
    except ValueError:
        raise DatasetError(f"{where}: column {column!r} must be a number, got {text!r}", csv_path) from None
    if not math.isfinite(value):
        raise DatasetError(f"{where}: column {column!r} must be finite, got {text!r}", csv_path)
    return value


def _roi(row: dict[str, str], base: Path, allow_outside: bool, where: str, csv_path: Path) -> Roi:
    forms = []
    for name, columns in (("box", BOX), ("circle", CIRCLE), ("mask", ("mask_path",))):
        filled = [c for c in columns if row.get(c, "").strip()]
        if filled and len(filled) != len(columns):
            missing = [c for c in columns if c not in filled]
            raise DatasetError(f"{where}: {name} is incomplete, column(s) {', '.join(missing)} empty", csv_path)
        if filled:
            forms.append(name)
    if "mask" in forms:
        # A mask is the most precise form; manifests often carry its bounding box too (as the
        # synthetic cohort and CBIS-DDSM exports do), which is then redundant and not used.
        forms = ["mask"]
    if len(forms) > 1:
        raise DatasetError(f"{where}: give one lesion form per row, not {' and '.join(forms)}", csv_path)
    if not forms:
        return Roi()
    if forms[0] == "box":
        x, y, w, h = (_number(row, c, where, csv_path) for c in BOX)
        if w <= 0 or h <= 0:
            raise DatasetError(f"{where}: columns 'box_w'/'box_h' must be positive, got {w:g} x {h:g}", csv_path)
        if x + w <= 0 or y + h <= 0:
            raise DatasetError(f"{where}: box ({x:g}, {y:g}, {w:g}, {h:g}) lies outside the image", csv_path)
        return Roi(box=(x, y, w, h))
    if forms[0] == "circle":
        cx, cy, r = (_number(row, c, where, csv_path) for c in CIRCLE)
        if r <= 0:
            raise DatasetError(f"{where}: column 'r' must be positive, got {r:g}", csv_path)
        return Roi(circle=(cx, cy, r))
    return Roi(mask_path=_safe_path(base, row["mask_path"], allow_outside, where, "mask_path", csv_path))


def _read_rows(csv_path: Path, required: tuple[str, ...]) -> list[tuple[int, dict[str, str]]]:
    """``(line number, row)`` of a CSV, header names lower-cased and stripped; ``required`` columns checked."""
    try:
        with csv_path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            if not reader.fieldnames:
                raise DatasetError("empty CSV (no header row)", csv_path)
            names = [(h or "").strip().lower() for h in reader.fieldnames]
            missing = [c for c in required if c not in names]
            if missing:
                raise DatasetError(f"the CSV lacks required column(s) {', '.join(missing)} "
                                   f"(has {', '.join(n for n in names if n)})", csv_path)
            rows = []
            for raw in reader:
                if None in raw:
                    raise DatasetError(f"row {len(rows) + 1} (line {reader.line_num}): more values than columns", csv_path)
                rows.append((reader.line_num, {(k or "").strip().lower(): (v or "").strip() for k, v in raw.items()}))
    except UnicodeDecodeError as exc:
        raise DatasetError(f"not a UTF-8 text CSV ({exc.reason})", csv_path) from exc
    except OSError as exc:
        raise DatasetError(f"cannot read ({exc.strerror or exc})", csv_path) from exc
    except csv.Error as exc:
        raise DatasetError(f"malformed CSV ({exc})", csv_path) from exc

    return rows


def load_manifest(
    data: str | PathLike[str],
    allow_outside: bool = False,
    skip_missing: bool = True,
) -> list[LesionRecord]:
    """Read a CSV manifest into lesion records.

    Parameters
    ----------
    data : str or PathLike
        The CSV file, or a folder holding ``manifest.csv``.
    allow_outside : bool, default False
        Accept absolute paths and paths leaving the CSV's folder.
    skip_missing : bool, default True
        Keep (and log) rows whose image file does not exist, for the feature
        stage to report as skipped; False raises.

    Returns
    -------
    list of LesionRecord
        In file order.

    Raises
    ------
    DatasetError
        Missing or unreadable file, missing required column, or a malformed
        row (the message names the file, row and column); or no row usable.
    """
    csv_path = _find_csv(Path(data))
    base = csv_path.parent
    rows = _read_rows(csv_path, REQUIRED)

    parsed: list[tuple[int, Path, dict[str, Any]]] = []
    for i, (line, row) in enumerate(rows, start=1):
        if not any(row.values()):
            continue  # blank line
        where = f"row {i} (line {line})"
        image = _safe_path(base, row["path"], allow_outside, where, "path", csv_path)
        try:
            label = parse_label(row["label"])
        except ValueError as exc:
            raise DatasetError(f"{where}: column 'label': {exc}", csv_path) from None
        patient = row["patient_id"]
        if not patient:
            raise DatasetError(f"{where}: column 'patient_id' is empty", csv_path)
        split = row.get("split", "").lower() or None
        if split is not None:
            if split not in _SPLITS:
                raise DatasetError(f"{where}: column 'split' must be train or test, got {row['split']!r}", csv_path)
            split = _SPLITS[split]
        side = row.get("laterality", "").upper() or None
        if side is not None:
            if side not in _SIDES:
                raise DatasetError(f"{where}: column 'laterality' must be L/R or LEFT/RIGHT, got {row['laterality']!r}", csv_path)
            side = _SIDES[side]
        view = row.get("view", "").upper() or None
        roi = _roi(row, base, allow_outside, where, csv_path)
        extra = {k: v for k, v in row.items() if k not in KNOWN and k}
        parsed.append((i, image, {"label": label, "patient_id": patient, "split": split, "laterality": side,
                                   "view": view, "roi": roi, "extra": extra}))

    stems: dict[str, set[Path]] = {}
    for _i, image, _f in parsed:
        stems.setdefault(image.stem, set()).add(image)
    records, skipped = [], []
    for i, image, fields in parsed:
        if not image.is_file():
            if not skip_missing:
                raise DatasetError(f"row {i}: image file {image} not found", csv_path)
            skipped.append(f"row {i}: {image.name}")
        if len(stems[image.stem]) == 1:
            image_id = image.stem
        else:
            root = Path(os.path.abspath(base))
            image_id = (image.relative_to(root) if image.is_relative_to(root) else image).with_suffix("").as_posix()
        records.append(LesionRecord(sample_id=f"{image_id}_{i}", image_id=image_id, image_path=image, **fields))
    if skipped:
        log.warning("manifest %s: %d row(s) name a missing image (reported as skipped): %s%s", csv_path,
                    len(skipped), "; ".join(skipped[:20]), " ..." if len(skipped) > 20 else "")
    if not records:
        raise DatasetError("the manifest has no rows", csv_path)
    if len(skipped) == len(records):
        raise DatasetError("no usable row (every image is missing)", csv_path)
    return records


#: Other names of the box columns accepted by :func:`load_roi_table` (``path,x,y,w,h``).
_SHORT_BOX = dict(zip(("x", "y", "w", "h"), BOX))


def load_roi_table(
    csv_file: str | PathLike[str], allow_outside: bool = False
) -> tuple[list[tuple[str, Path, Roi]], list[tuple[str, str]]]:
    """Read a lesion table for batch prediction: one row per lesion, several rows may share an image.

    Columns: ``path`` (relative to the CSV's folder, like a manifest) and one lesion
    form: ``cx, cy, r`` (circle), ``x, y, w, h`` or ``box_x, box_y, box_w, box_h``
    (box, top-left corner), or ``mask_path``; image pixels, x from the left, y from
    the top. A row with no lesion columns filled scores the whole breast. Other
    columns (``label``, ``patient_id`` ...) are ignored, so a manifest is a valid table.

    Parameters
    ----------
    csv_file : str or PathLike
        The CSV file.
    allow_outside : bool, default False
        Accept absolute paths and paths leaving the CSV's folder.

    Returns
    -------
    (rows, bad)
        ``rows``: ``(where, image path, Roi)`` per good row, ``where`` such as
        ``"rois.csv row 3 (line 4)"``; ``bad``: ``(where, reason)`` per malformed
        row. A bad row never stops the others.

    Raises
    ------
    DatasetError
        The file cannot be read, has no ``path`` column, or has no row.
    """
    csv_path = Path(csv_file)
    if not csv_path.is_file():
        raise DatasetError("ROI table not found", csv_path)
    rows = _read_rows(csv_path, ("path",))
    good: list[tuple[str, Path, Roi]] = []
    bad: list[tuple[str, str]] = []
    for i, (line, row) in enumerate(rows, start=1):
        if not any(row.values()):
            continue
        where = f"{csv_path.name} row {i} (line {line})"
        for short, long in _SHORT_BOX.items():
            if row.get(short, "") and not row.get(long, ""):
                row[long] = row.pop(short)
        try:
            image = _safe_path(csv_path.parent, row["path"], allow_outside, where, "path", csv_path)
            good.append((where, image, _roi(row, csv_path.parent, allow_outside, where, csv_path)))
        except DatasetError as exc:
            bad.append((where, exc.reason.removeprefix(f"{where}: ")))
    if not good and not bad:
        raise DatasetError("the ROI table has no rows", csv_path)
    return good, bad
