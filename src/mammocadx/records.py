"""The shared vocabulary: lesion records, ROIs and images (the bottom layer; imports nothing of ours).

One :class:`LesionRecord` is one sample of the benign-vs-malignant task: one
lesion on one image. Several records may share an image (mini-MIAS mdb005,
CBIS-DDSM images with several masses). Coordinates are always in the pixels of
the image as read: ``x`` is the column from the left, ``y`` the row from the top.
Readers convert their dataset's own conventions (mini-MIAS's bottom-left origin,
CBIS-DDSM masks) into this one, so no later stage needs to know the source.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

BENIGN = 0
MALIGNANT = 1
LABEL_NAMES = {BENIGN: "benign", MALIGNANT: "malignant"}


@dataclass(frozen=True)
class Roi:
    """Where the lesion is, in image pixels (x from the left, y from the top).

    Exactly one of the three forms is set:

    - ``circle=(cx, cy, r)`` (mini-MIAS, a click with a radius),
    - ``box=(x, y, w, h)`` with (x, y) the top-left corner,
    - ``mask_path`` a binary mask image of the lesion (CBIS-DDSM ROI masks,
      synthetic cohort); non-zero pixels are the lesion.
    ``None`` for all three means "no lesion location": the whole breast is used.
    """

    circle: tuple[float, float, float] | None = None
    box: tuple[float, float, float, float] | None = None
    mask_path: Path | None = None

    def __post_init__(self) -> None:
        n = sum(v is not None for v in (self.circle, self.box, self.mask_path))
        if n > 1:
            raise ValueError("Roi takes one of circle, box or mask_path, not several")
        if self.circle is not None and self.circle[2] <= 0:
            raise ValueError(f"circle radius must be positive, got {self.circle[2]}")
        if self.box is not None and (self.box[2] <= 0 or self.box[3] <= 0):
            raise ValueError(f"box width and height must be positive, got {self.box}")

    @property
    def kind(self) -> Literal["circle", "box", "mask", "none"]:
        """Which form this ROI takes."""
        if self.circle is not None:
            return "circle"
        if self.box is not None:
            return "box"
        if self.mask_path is not None:
            return "mask"
        return "none"

    @property
    def area(self) -> float | None:
        """The ROI's area in image pixels (circle or box; None for a mask or no ROI)."""
        if self.circle is not None:
            return float(np.pi * self.circle[2] ** 2)
        if self.box is not None:
            return float(self.box[2] * self.box[3])
        return None

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form (used in reports and model cards)."""
        return {
            "kind": self.kind,
            "circle": list(self.circle) if self.circle else None,
            "box": list(self.box) if self.box else None,
            "mask_path": str(self.mask_path) if self.mask_path else None,
        }


@dataclass(frozen=True)
class LesionRecord:
    """One lesion on one image: the unit that is classified and evaluated.

    Attributes
    ----------
    sample_id : str
        Unique id of this lesion within its dataset (``mdb005_1``).
    image_id : str
        Id of the image the lesion is on (``mdb005``); several records may share it.
    image_path : Path
        File the image is read from.
    patient_id : str
        The woman the image belongs to: every split groups by this.
    label : int or None
        ``1`` malignant, ``0`` benign, ``None`` unknown (prediction only).
    roi : Roi
        Lesion location in image pixels.
    laterality : str or None
        ``"L"`` or ``"R"`` when known.
    view : str or None
        ``"CC"``, ``"MLO"`` ... when known.
    split : str or None
        Official split (``"train"``/``"test"``) when the dataset has one.
    extra : dict
        Dataset-specific fields kept for reports (tissue, class, pathology ...).
    """

    sample_id: str
    image_id: str
    image_path: Path
    patient_id: str
    label: int | None
    roi: Roi = field(default_factory=Roi)
    laterality: str | None = None
    view: str | None = None
    split: str | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def label_name(self) -> str:
        """``"benign"``, ``"malignant"`` or ``"unknown"``."""
        return LABEL_NAMES.get(self.label, "unknown") if self.label is not None else "unknown"

    def with_roi(self, roi: Roi) -> "LesionRecord":
        """Copy of this record with another ROI."""
        return replace(self, roi=roi)


def parse_label(value: object) -> int:
    """Map the label spellings found in the wild to 0 (benign) or 1 (malignant).

    Accepts ``benign``/``malignant`` in any case, ``B``/``M``, ``0``/``1``, and the
    CBIS-DDSM pathologies ``MALIGNANT``, ``BENIGN``, ``BENIGN_WITHOUT_CALLBACK``.

    Raises
    ------
    ValueError
        For anything else (the caller adds the file and row).
    """
    text = str(value).strip().upper()
    if text in {"1", "M", "MALIGNANT", "1.0"}:
        return MALIGNANT
    if text in {"0", "B", "BENIGN", "BENIGN_WITHOUT_CALLBACK", "0.0"}:
        return BENIGN
    raise ValueError(f"unknown label {value!r} (expected benign/malignant, B/M or 0/1)")


@dataclass
class ImageData:
    """A greyscale image and what is known about where it came from.

    Attributes
    ----------
    pixels : numpy.ndarray
        2-D float32 array in [0, 1]; 0 is black (no attenuation) after any
        MONOCHROME1 inversion, so bright means dense tissue for every source.
    source : Path
        The file read.
    format : str
        ``png``, ``jpeg``, ``tiff``, ``pgm``, ``bmp`` or ``dicom``.
    bit_depth : int
        Bits per sample stored in the file (8, 12, 16 ...).
    meta : dict
        Format-specific facts (DICOM laterality, view, windowing applied, flips ...).
    """

    pixels: np.ndarray
    source: Path
    format: str
    bit_depth: int
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, columns)."""
        return int(self.pixels.shape[0]), int(self.pixels.shape[1])

    def to_uint8(self) -> np.ndarray:
        """The pixels windowed to 8 bit (0..255), as the paper's equations expect."""
        return to_uint8(self.pixels)


def to_uint8(pixels: np.ndarray) -> np.ndarray:
    """Map float pixels in [0, 1] to uint8 0..255 with rounding (values outside are clipped)."""
    return np.clip(np.rint(np.asarray(pixels, dtype=np.float32) * 255.0), 0, 255).astype(np.uint8)
