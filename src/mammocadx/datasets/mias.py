"""mini-MIAS reader (322 films, ``Info.txt`` ground truth).

Quirks handled here, so no later stage needs to know them (see the data's
PROVENANCE.md):

- only lines matching ``^mdb\\d{3}\\s`` are data rows (the file starts with ~100
  lines of README text and ends with a separator);
- rows are ``REFNUM BG CLASS [SEVERITY X Y RADIUS]``; NORM rows and the
  ``*NOTE 3*`` calcification rows have no coordinates;
- the **Y origin is the bottom-left corner**: image row = 1024 - Y. Records carry
  image coordinates (y from the top) so nothing downstream flips anything;
- several rows per image (mdb005, mdb132, mdb144 (one benign, one malignant),
  mdb223, mdb226, mdb239, mdb249): one record per row (lesion);
- films mdb(2k-1) and mdb(2k) are the two breasts of one woman:
  patient = (n + 1) // 2; per Info.txt's note, even numbers are left breasts.
"""
from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path

from mammocadx.records import LesionRecord, Roi, parse_label
from mammocadx.errors import DatasetError

log = logging.getLogger(__name__)

_ROW = re.compile(r"^mdb\d{3}\s")
#: mini-MIAS images are 1024 x 1024; Info.txt's Y counts from the bottom row.
MIAS_SIZE = 1024
CLASSES = {"CALC", "CIRC", "SPIC", "MISC", "ARCH", "ASYM", "NORM"}
MASS_CLASSES = {"CIRC", "SPIC", "MISC"}


@dataclass(frozen=True)
class InfoRow:
    """One parsed data row of ``Info.txt`` (coordinates as in the file: Y from the bottom)."""

    refnum: str
    tissue: str
    abnormality: str
    severity: str | None
    x: float | None
    y: float | None
    radius: float | None
    line_no: int


def parse_info(text: str, source: Path | None = None) -> list[InfoRow]:
    """Parse the data rows of a mini-MIAS ``Info.txt``.

    Parameters
    ----------
    text : str
        The file's content.
    source : Path, optional
        Named in errors.

    Raises
    ------
    DatasetError
        On a data row that does not follow ``REFNUM BG CLASS [SEVERITY X Y RADIUS]``.
    """
    rows: list[InfoRow] = []
    for line_no, line in enumerate(text.splitlines(), start=1):
        if not _ROW.match(line):
            continue
        fields = line.split()
        where = f"line {line_no}: {line.strip()!r}"
        if len(fields) < 3:
            raise DatasetError(f"{where}: expected at least REFNUM BG CLASS", source)
        ref, tissue, klass = fields[0], fields[1], fields[2]
        if klass not in CLASSES:
            raise DatasetError(f"{where}: unknown class {klass!r}", source)
        severity = x = y = radius = None
        rest = fields[3:]
        if rest:
            if rest[0] not in {"B", "M"}:
                raise DatasetError(f"{where}: severity must be B or M, got {rest[0]!r}", source)
            severity = rest[0]
            coords = rest[1:]
            # '*NOTE 3*' rows (widely distributed calcifications) have no coordinates.
            if coords and not coords[0].startswith("*"):
                if len(coords) < 3:
                    raise DatasetError(f"{where}: expected X Y RADIUS after the severity", source)
                try:
                    x, y, radius = (float(v) for v in coords[:3])
                except ValueError as exc:
                    raise DatasetError(f"{where}: X Y RADIUS must be numbers", source) from exc
                if not (0 <= x <= MIAS_SIZE and 0 <= y <= MIAS_SIZE) or not 0 < radius < math.inf:
                    raise DatasetError(f"{where}: coordinates outside the 1024x1024 film", source)
        rows.append(InfoRow(ref, tissue, klass, severity, x, y, radius, line_no))
    if not rows:
        raise DatasetError("no data rows (lines starting 'mdbNNN ') found", source)
    return rows


def mias_patient(refnum: str) -> str:
    """Patient id of a film: mdb(2k-1) and mdb(2k) are one woman's two breasts."""
    n = int(refnum[3:])
    return f"mias_p{(n + 1) // 2:03d}"


def load_mias(
    data: str | Path,
    classes: set[str] | None = None,
    with_coordinates: bool = True,
) -> list[LesionRecord]:
    """Load mini-MIAS lesions as records (benign vs malignant).

    Parameters
    ----------
    data : str or Path
        Folder holding ``Info.txt`` and ``images/mdbNNN.png`` (or ``.pgm``, or the
        images next to Info.txt).
    classes : set of str, optional
        Abnormality classes to keep (e.g. ``{"CIRC", "SPIC", "MISC"}`` for masses);
        default all abnormal classes.
    with_coordinates : bool
        Keep only lesions with a centre and radius (119 rows). ``False`` also keeps
        the 4 rows without coordinates, with ``Roi()`` (whole breast).

    Returns
    -------
    list of LesionRecord
        One per lesion row, ROI a circle in image pixels (row = 1024 - Y).

    Raises
    ------
    DatasetError
        If Info.txt is missing or malformed, or an image is missing.
    """
    data = Path(data)
    info = data / "Info.txt"
    if not info.is_file():
        raise DatasetError("Info.txt not found (expected the mini-MIAS folder)", data)
    try:
        text = info.read_text(encoding="latin-1")
    except OSError as exc:
        raise DatasetError(f"cannot read ({exc})", info) from exc
    records: list[LesionRecord] = []
    per_image: dict[str, int] = {}
    for row in parse_info(text, info):
        if row.severity is None:
            continue  # NORM
        if classes is not None and row.abnormality not in classes:
            continue
        has_xy = row.x is not None
        if with_coordinates and not has_xy:
            continue
        image_path = _find_image(data, row.refnum)
        k = per_image.get(row.refnum, 0) + 1
        per_image[row.refnum] = k
        roi = Roi(circle=(row.x, MIAS_SIZE - row.y, row.radius)) if has_xy else Roi()
        n = int(row.refnum[3:])
        records.append(
            LesionRecord(
                sample_id=f"{row.refnum}_{k}",
                image_id=row.refnum,
                image_path=image_path,
                patient_id=mias_patient(row.refnum),
                label=parse_label(row.severity),
                roi=roi,
                laterality="L" if n % 2 == 0 else "R",
                view="MLO",
                extra={"tissue": row.tissue, "class": row.abnormality, "info_line": row.line_no},
            )
        )
    log.info("mini-MIAS: %d lesions (%d malignant) from %s", len(records), sum(r.label for r in records), data)
    return records


def _find_image(data: Path, refnum: str) -> Path:
    for folder in (data / "images", data):
        for ext in (".png", ".pgm", ".PNG", ".PGM"):
            p = folder / f"{refnum}{ext}"
            if p.is_file():
                return p
    raise DatasetError(f"image of {refnum} not found under images/", data)
