"""Cut the lesion region of interest out of a mammogram.

A ROI is a square centred on the lesion whose side is the lesion's extent
(circle diameter, or the longer side of a box or of a mask's bounding box)
times ``context`` (1.0 = tight; the default 1.5 keeps a ring of surrounding
tissue, which carries margin and spiculation cues). The square is padded with
zeros (background) where it crosses the image border and resized to the
backbone's input size (area interpolation when shrinking, bicubic when enlarging).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np

from mammocadx.records import Roi
from mammocadx.errors import ConfigError, ImageReadError, RoiError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RoiConfig:
    """How a ROI is cut.

    Attributes
    ----------
    size : int
        Output side in pixels (the backbone's input size).
    context : float
        Side of the square crop as a multiple of the lesion's extent (>= 1).
    min_side : int
        Smallest crop side in image pixels (tiny lesions get this much context).
    """

    size: int = 224
    context: float = 1.5
    min_side: int = 32

    def __post_init__(self) -> None:
        if self.size < 8:
            raise ConfigError(f"ROI size must be at least 8 pixels, got {self.size}", stage="roi")
        if self.context < 1.0:
            raise ConfigError(f"ROI context must be >= 1 (1 = tight crop), got {self.context}", stage="roi")


def load_mask(path: Path, shape: tuple[int, int]) -> np.ndarray:
    """Read a lesion mask and bring it to ``shape`` (rows, cols) if it differs.

    CBIS-DDSM has masks whose size does not match their image; they are resized
    with nearest-neighbour interpolation and the mismatch is logged.
    """
    from mammocadx.io.images import read_image

    mask = read_image(path).pixels > 0.5
    if mask.shape != tuple(shape):
        log.warning("mask %s is %s but its image is %s: resized (nearest)", path, mask.shape, tuple(shape))
        mask = cv2.resize(mask.astype(np.uint8), (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST) > 0
    return mask


def roi_square(roi: Roi, shape: tuple[int, int], config: RoiConfig, mask: np.ndarray | None = None) -> tuple[float, float, float]:
    """Centre (cx, cy) and side of the square crop for ``roi`` on an image of ``shape``.

    ``mask`` is the lesion mask for ``Roi(mask_path=...)`` (already loaded), or
    the breast mask for a ROI without location (whole-breast mode).

    Raises
    ------
    RoiError
        If the lesion lies entirely outside the image or its mask is empty.
    """
    rows, cols = shape
    if roi.circle is not None:
        cx, cy, r = roi.circle
        extent = 2.0 * r
    elif roi.box is not None:
        x, y, w, h = roi.box
        cx, cy, extent = x + w / 2.0, y + h / 2.0, max(w, h)
    else:
        if mask is None:
            cx, cy, extent = cols / 2.0, rows / 2.0, float(max(rows, cols))
        else:
            ys, xs = np.nonzero(mask)
            if ys.size == 0:
                raise RoiError("the mask is empty")
            y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
            cx, cy, extent = (x0 + x1) / 2.0, (y0 + y1) / 2.0, float(max(x1 - x0, y1 - y0))
        if roi.kind == "none":
            # Whole image / whole breast: no extra context ring.
            return cx, cy, max(extent, float(config.min_side))
    if not (0 <= cx < cols and 0 <= cy < rows):
        raise RoiError(f"lesion centre ({cx:.1f}, {cy:.1f}) lies outside the {cols}x{rows} image")
    if extent > 2 * max(rows, cols):
        raise RoiError(f"lesion size {extent:.0f} px is more than twice the {cols}x{rows} image; check the ROI "
                       "(X,Y,R takes a radius, X,Y,W,H a width and height, in image pixels)")
    if extent > max(rows, cols):
        log.warning("lesion size %.0f px exceeds the %dx%d image: the crop is mostly padding", extent, cols, rows)
    side = max(extent * config.context, float(config.min_side))
    return float(cx), float(cy), float(side)


class RoiGeometry(NamedTuple):
    """Where a square ROI lies on its image: centre ``(cx, cy)`` and ``side`` in image pixels.

    The one definition of the crop and its inverse: :meth:`crop` cuts the
    ``n x n`` square of image pixels starting at ``x0 = round(cx - side/2)``,
    ``y0 = round(cy - side/2)`` with ``n = max(round(side), 1)`` (zero-padded
    where it leaves the image) and resizes it to ``S x S``; :meth:`place` puts an
    ``S x S`` map back at the same place on the full image; :meth:`to_roi` brings
    an image-resolution map (e.g. a lesion mask) into ROI coordinates.
    A plain tuple ``(cx, cy, side)`` too.
    """

    cx: float
    cy: float
    side: float

    def box(self) -> tuple[int, int, int]:
        """``(x0, y0, n)``: top-left image pixel and side of the square :meth:`crop` cuts."""
        cx, cy, side = (float(v) for v in self)
        if not np.isfinite([cx, cy, side]).all() or side <= 0:
            raise RoiError(f"invalid ROI crop (cx, cy, side) = {tuple(self)}")
        half = side / 2.0
        return round(cx - half), round(cy - half), max(round(side), 1)

    def crop(self, pixels: np.ndarray, out_size: int) -> np.ndarray:
        """The square of ``pixels`` (2-D, [0, 1]), zero-padded at borders, resized to ``out_size`` (float32)."""
        rows, cols = pixels.shape
        x0, y0, n = self.box()
        x1, y1 = x0 + n, y0 + n
        crop = np.zeros((n, n), dtype=np.float32)
        sx0, sy0, sx1, sy1 = max(x0, 0), max(y0, 0), min(x1, cols), min(y1, rows)
        if sx1 > sx0 and sy1 > sy0:
            crop[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = pixels[sy0:sy1, sx0:sx1]
        interp = cv2.INTER_AREA if n > out_size else cv2.INTER_CUBIC
        out = cv2.resize(crop, (out_size, out_size), interpolation=interp)
        return np.clip(out, 0.0, 1.0).astype(np.float32)

    def place(self, roi_map: np.ndarray, image_shape: tuple[int, int], fill: float = 0.0) -> np.ndarray:
        """Put an ``(S, S)`` ROI-resolution map back on an image of ``image_shape`` (inverse of :meth:`crop`).

        Bilinear (area when shrinking) resize to the crop's side, pasted where
        :meth:`crop` cut it; ``fill`` elsewhere (``numpy.nan`` to mark "not explained").
        """
        cam = np.asarray(roi_map, np.float32)
        if cam.ndim != 2 or cam.shape[0] != cam.shape[1]:
            raise RoiError(f"expected a square 2-D map, got shape {cam.shape}")
        rows, cols = int(image_shape[0]), int(image_shape[1])
        x0, y0, n = self.box()
        interp = cv2.INTER_AREA if n < cam.shape[0] else cv2.INTER_LINEAR
        big = cv2.resize(cam, (n, n), interpolation=interp)
        out = np.full((rows, cols), fill, dtype=np.float32)
        sx0, sy0, sx1, sy1 = max(x0, 0), max(y0, 0), min(x0 + n, cols), min(y0 + n, rows)
        if sx1 > sx0 and sy1 > sy0:
            out[sy0:sy1, sx0:sx1] = big[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0]
        return out

    def to_roi(self, image_map: np.ndarray, size: int) -> np.ndarray:
        """An image-resolution map in ROI coordinates, as :meth:`crop` cuts pixels (threshold at 0.5 for a mask)."""
        return self.crop(np.asarray(image_map, np.float32), size)


def crop_square(pixels: np.ndarray, cx: float, cy: float, side: float, out_size: int) -> np.ndarray:
    """Crop a ``side``-pixel square centred on (cx, cy), zero-padded at borders, resized to ``out_size``."""
    return RoiGeometry(cx, cy, side).crop(pixels, out_size)


def roi_geometry(roi: Roi, shape: tuple[int, int], config: RoiConfig, breast_mask: np.ndarray | None = None,
                 source: Path | None = None) -> RoiGeometry:
    """Where the ROI of ``roi`` is cut on an image of ``shape`` (the lesion mask is read when ``roi`` has one).

    Raises
    ------
    RoiError
        If the lesion lies outside the image, its mask is empty or cannot be read (names ``source``).
    """
    try:
        lesion_mask = None
        if roi.mask_path is not None:
            lesion_mask = load_mask(roi.mask_path, shape)
        elif roi.kind == "none":
            lesion_mask = breast_mask
        return RoiGeometry(*roi_square(roi, shape, config, lesion_mask))
    except RoiError as exc:
        raise RoiError(exc.reason, source or exc.path) from exc
    except ImageReadError as exc:
        raise RoiError(f"cannot read the lesion mask ({exc})", source) from exc


def extract_roi(
    pixels: np.ndarray,
    roi: Roi,
    config: RoiConfig = RoiConfig(),
    breast_mask: np.ndarray | None = None,
    source: Path | None = None,
) -> np.ndarray:
    """Cut, pad and resize the lesion ROI of one image.

    Parameters
    ----------
    pixels : numpy.ndarray
        2-D float32 image in [0, 1].
    roi : Roi
        Lesion location in image pixels; ``Roi()`` (no location) takes the whole
        breast (``breast_mask``'s bounding box) or the whole image.
    config : RoiConfig
        Output size and context.
    breast_mask : numpy.ndarray, optional
        Boolean breast mask from segmentation: pixels outside it (labels,
        pectoral muscle, background) are set to 0 before cropping.
    source : Path, optional
        The image's file, named in errors.

    Returns
    -------
    numpy.ndarray
        float32 ``(config.size, config.size)`` in [0, 1].

    Raises
    ------
    RoiError
        If the ROI is empty or outside the image (the message names ``source``).
    """
    if pixels.ndim != 2:
        raise RoiError(f"expected a 2-D image, got shape {pixels.shape}", source)
    geometry = roi_geometry(roi, pixels.shape, config, breast_mask, source)
    if breast_mask is not None:
        if breast_mask.shape != pixels.shape:
            raise RoiError(f"breast mask shape {breast_mask.shape} differs from image {pixels.shape}", source)
        pixels = np.where(breast_mask, pixels, 0.0).astype(np.float32)
    return geometry.crop(pixels, config.size)
