"""Which side the chest wall is on, and flipping images to one canonical side.

Canonical orientation
---------------------
mammocadx's canonical orientation puts the **chest wall on the LEFT image edge**
(the breast lies against the left edge, the nipple points right). This is the
usual display of a left breast; right breasts are usually shown mirrored. Only a
horizontal flip is ever applied: rows (top/bottom, i.e. cranial/caudal on MLO)
never change.

The side is read from the pixels, because files in the wild do not reliably
follow laterality conventions (CBIS-DDSM holds right-breast images with the chest
wall on either side). Laterality (``"L"``/``"R"``) is only a tie-breaker when the
pixels are ambiguous: ``R`` means chest wall on the right, ``L`` on the left
(the standard display, and mini-MIAS's convention).

Coordinates
-----------
A *point* (a circle's centre, a click) is a pixel position: column ``x`` maps to
``width - 1 - x`` under a flip (pixel centres map onto pixel centres). A *box*
``(x, y, w, h)`` covers columns ``x .. x + w`` (edges), so it maps to
``(width - x - w, y, w, h)``. Both maps are their own inverse, so flipping twice
gives back the original ROI exactly.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
from scipy import ndimage as ndi
from skimage.filters import threshold_li

from mammocadx.records import Roi
from mammocadx.errors import RoiError

log = logging.getLogger(__name__)

Side = Literal["left", "right"]
#: The side the chest wall is put on by :func:`canonical_flip`.
CANONICAL_SIDE: Side = "left"

#: Left/right intensity-mass ratio below which the pixels are called ambiguous
#: and the laterality (when given) decides.
AMBIGUOUS_RATIO = 1.05


def _laterality_side(laterality: str | None) -> Side | None:
    if not laterality:
        return None
    text = str(laterality).strip().upper()
    if text in {"L", "LEFT"}:
        return "left"
    if text in {"R", "RIGHT"}:
        return "right"
    return None


def side_from_patient_orientation(value: object) -> Side | None:
    """Chest-wall side from DICOM PatientOrientation (0020,0020), when it says.

    Its first value is the patient direction of the image's rows (towards
    increasing column). ``A`` (anterior: towards the nipple) puts the chest wall
    on the left, ``P`` (posterior) on the right; e.g. left CC ``A\\R`` -> left,
    right MLO ``P\\FL`` -> right. Anything else gives ``None``.
    """
    if value is None or isinstance(value, (int, float)):
        return None
    parts = [str(v) for v in value] if not isinstance(value, str) else value.split("\\")
    if len(parts) != 2:
        return None
    row = parts[0].strip().upper()
    if ("A" in row) == ("P" in row):
        return None
    return "left" if "A" in row else "right"


def _side_masses(img: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
    """Intensity mass of the breast in the left and right halves of its bounding box."""
    cols = np.nonzero(mask.any(axis=0))[0]
    if cols.size == 0:
        return 1.0, 1.0
    mid = (cols[0] + cols[-1] + 1) / 2.0
    col_mass = np.where(mask, img, 0.0).sum(axis=0)
    x = np.arange(img.shape[1]) + 0.5
    return float(col_mass[x < mid].sum()), float(col_mass[x >= mid].sum())


def _edge_contact(mask: np.ndarray) -> tuple[float, float]:
    """Share of the breast's rows that reach the left and the right side of its bounding box.

    The chest wall is a straight edge (the film or detector edge) that the breast
    touches along most of its rows; the nipple side is a curve that reaches its
    extreme on only a few rows.
    """
    has = mask.any(axis=1)
    cols = np.nonzero(mask.any(axis=0))[0]
    if not has.any() or cols.size == 0:
        return 0.0, 0.0
    c0, c1 = int(cols[0]), int(cols[-1])
    tol = max(2, int(round(0.02 * (c1 - c0 + 1))))
    left_col = np.argmax(mask, axis=1)[has]
    right_col = mask.shape[1] - 1 - np.argmax(mask[:, ::-1], axis=1)[has]
    return float(np.mean(left_col <= c0 + tol)), float(np.mean(right_col >= c1 - tol))


def _outer_area(mask: np.ndarray, fraction: float = 0.15) -> tuple[float, float]:
    """Breast area in the outer ``fraction`` of the bounding box's columns, left and right."""
    cols = np.nonzero(mask.any(axis=0))[0]
    if cols.size == 0:
        return 0.0, 0.0
    c0, c1 = int(cols[0]), int(cols[-1]) + 1
    k = max(1, int(round(fraction * (c1 - c0))))
    return float(mask[:, c0 : c0 + k].sum()), float(mask[:, c1 - k : c1].sum())


def _mask_of(pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Stand-alone use: a quick breast estimate (largest Li-thresholded region) at low resolution."""
    img = np.asarray(pixels, dtype=np.float32)
    scale = 256.0 / max(img.shape)
    small = cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else img
    small = cv2.GaussianBlur(small, (0, 0), 1.5)
    if float(small.max() - small.min()) < 1e-6:
        return small, np.zeros(small.shape, dtype=bool)
    fg = small > threshold_li(small)
    labels, n = ndi.label(fg)
    if n == 0:
        return small, fg
    sizes = ndi.sum_labels(fg, labels, index=np.arange(1, n + 1))
    return small, labels == (int(np.argmax(sizes)) + 1)


def chest_wall_side(
    pixels: np.ndarray,
    laterality: str | None = None,
    mask: np.ndarray | None = None,
) -> Side:
    """Tell which image edge the chest wall is on, from the pixels.

    Two cues, in order:

    1. The chest wall is a straight edge the breast touches along most of its
       rows, while the nipple side is a curve: the side of the breast's bounding
       box reached by clearly more rows (a difference of at least 0.2 in the
       share of rows) is the chest wall.
    2. Otherwise (both sides cut by the image edges, e.g. a large breast), the
       columns next to the chest wall are the tallest (the breast narrows towards
       the nipple): the outer 15 % of the bounding box holding over 10 % more
       breast area is the chest wall.
    3. Otherwise the tissue is thickest and brightest at the chest wall: the half of the
       bounding box with more intensity mass wins, unless the two differ by less
       than :data:`AMBIGUOUS_RATIO`, where ``laterality`` (when given) decides.

    Parameters
    ----------
    pixels : numpy.ndarray
        2-D float image in [0, 1] (bright = dense).
    laterality : str, optional
        ``"L"``/``"R"``: a tie-breaker only.
    mask : numpy.ndarray, optional
        Breast mask of the same shape (from segmentation); estimated when absent.

    Returns
    -------
    {"left", "right"}
    """
    img = np.asarray(pixels, dtype=np.float32)
    if mask is None:
        img, mask = _mask_of(img)
    touch_left, touch_right = _edge_contact(mask)
    if abs(touch_left - touch_right) >= 0.2:
        return "left" if touch_left > touch_right else "right"
    outer_left, outer_right = _outer_area(mask)
    if max(outer_left, outer_right) > 1.1 * max(min(outer_left, outer_right), 1.0):
        return "left" if outer_left > outer_right else "right"
    left, right = _side_masses(img, mask)
    hi, lo = max(left, right), max(min(left, right), 1e-9)
    if hi / lo < AMBIGUOUS_RATIO:
        hint = _laterality_side(laterality)
        if hint is not None:
            log.debug("chest-wall side ambiguous from pixels (%.3f vs %.3f): laterality %s decides", left, right, laterality)
            return hint
    return "left" if left >= right else "right"


def canonical_flip(
    pixels: np.ndarray,
    laterality: str | None = None,
    side: Side | None = None,
) -> tuple[np.ndarray, bool]:
    """Flip an image horizontally if needed so that its chest wall is on the left.

    Parameters
    ----------
    pixels : numpy.ndarray
        2-D image.
    laterality : str, optional
        Tie-breaker for :func:`chest_wall_side`.
    side : {"left", "right"}, optional
        The chest-wall side when already known (e.g. from segmentation); skips detection.

    Returns
    -------
    (numpy.ndarray, bool)
        The image in canonical orientation and whether it was flipped. Flip
        lesion coordinates with :func:`flip_roi` / :func:`flip_point` when it was.
    """
    if side is None:
        side = chest_wall_side(pixels, laterality=laterality)
    if side == CANONICAL_SIDE:
        return pixels, False
    return np.ascontiguousarray(np.fliplr(pixels)), True


def flip_point(x: float, y: float, width: int) -> tuple[float, float]:
    """Where pixel (x, y) goes under a horizontal flip of an image ``width`` columns wide."""
    return float(width - 1 - x), float(y)


def flip_roi(roi: Roi, width: int, mask_dir: Path | None = None) -> Roi:
    """The same lesion's ROI after a horizontal flip of its image.

    Parameters
    ----------
    roi : Roi
        Circle, box, mask or no-location ROI in the unflipped image's pixels.
    width : int
        Image width in pixels.
    mask_dir : Path, optional
        Folder where the flipped lesion mask of a mask ROI is written
        (``<stem>_flipped.png``, or ``<stem minus _flipped>.png`` when flipping
        back). Required for mask ROIs.

    Returns
    -------
    Roi

    Raises
    ------
    RoiError
        For a mask ROI without ``mask_dir`` or whose mask cannot be read.
    """
    if roi.circle is not None:
        cx, cy, r = roi.circle
        fx, fy = flip_point(cx, cy, width)
        return Roi(circle=(fx, fy, r))
    if roi.box is not None:
        x, y, w, h = roi.box
        return Roi(box=(float(width - x - w), float(y), float(w), float(h)))
    if roi.mask_path is not None:
        if mask_dir is None:
            raise RoiError("flipping a mask ROI needs a folder for the flipped mask (mask_dir)", roi.mask_path)
        from mammocadx.io.images import read_image
        from mammocadx.errors import ImageReadError

        try:
            mask = read_image(roi.mask_path).pixels > 0.5
        except ImageReadError as exc:
            raise RoiError(f"cannot read the lesion mask ({exc.reason})", roi.mask_path) from exc
        if mask.shape[1] != width:
            log.warning("mask %s is %d wide but its image is %d: flipped at its own width", roi.mask_path, mask.shape[1], width)
        stem = roi.mask_path.stem
        name = stem[: -len("_flipped")] if stem.endswith("_flipped") else f"{stem}_flipped"
        mask_dir = Path(mask_dir)
        mask_dir.mkdir(parents=True, exist_ok=True)
        out = mask_dir / f"{name}.png"
        if not cv2.imwrite(str(out), np.fliplr(mask).astype(np.uint8) * 255):
            raise RoiError("cannot write the flipped mask", out)
        return Roi(mask_path=out)
    return roi
