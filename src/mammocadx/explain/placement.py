"""Put a ROI-resolution map back on the full mammogram (inverse of ``preprocess.roi.crop_square``).

``crop_square(pixels, cx, cy, side, S)`` takes the ``n x n`` square of image
pixels starting at ``x0 = round(cx - side/2)``, ``y0 = round(cy - side/2)``
with ``n = max(round(side), 1)`` (zero-padded where it leaves the image) and
resizes it to ``S x S``. :func:`place_on_image` resizes an ``S x S`` map back to
``n x n`` and writes it at the same place, dropping what falls outside the image.
"""
from __future__ import annotations

import cv2
import numpy as np

from mammocadx.errors import RoiError

__all__ = ["crop_box", "map_to_roi", "place_on_image"]


def crop_box(crop: tuple[float, float, float]) -> tuple[int, int, int]:
    """``(x0, y0, n)``: top-left image pixel and side of the square ``crop_square`` cuts for ``(cx, cy, side)``."""
    cx, cy, side = (float(v) for v in crop)
    if not np.isfinite([cx, cy, side]).all() or side <= 0:
        raise RoiError(f"invalid ROI crop (cx, cy, side) = {crop}")
    half = side / 2.0
    return round(cx - half), round(cy - half), max(round(side), 1)


def place_on_image(
    cam: np.ndarray, crop: tuple[float, float, float], image_shape: tuple[int, int], fill: float = 0.0
) -> np.ndarray:
    """Place a ROI-resolution map on an image of ``image_shape``.

    Parameters
    ----------
    cam : numpy.ndarray
        ``(S, S)`` map at ROI resolution (e.g. :attr:`Explanation.cam`).
    crop : tuple of float
        ``(cx, cy, side)`` of the square ROI in image pixels (``Prediction.crop``,
        ``preprocess.roi.roi_square``).
    image_shape : tuple of int
        ``(rows, cols)`` of the full image.
    fill : float
        Value outside the ROI (``numpy.nan`` to mark "not explained").

    Returns
    -------
    numpy.ndarray
        ``(rows, cols)`` float32 map: bilinear (area when shrinking) resize of
        ``cam`` to the crop's side, pasted where ``crop_square`` cut it.
    """
    cam = np.asarray(cam, np.float32)
    if cam.ndim != 2 or cam.shape[0] != cam.shape[1]:
        raise ValueError(f"expected a square 2-D map, got shape {cam.shape}")
    rows, cols = int(image_shape[0]), int(image_shape[1])
    x0, y0, n = crop_box(crop)
    interp = cv2.INTER_AREA if n < cam.shape[0] else cv2.INTER_LINEAR
    big = cv2.resize(cam, (n, n), interpolation=interp)
    out = np.full((rows, cols), fill, dtype=np.float32)
    sx0, sy0, sx1, sy1 = max(x0, 0), max(y0, 0), min(x0 + n, cols), min(y0 + n, rows)
    if sx1 > sx0 and sy1 > sy0:
        out[sy0:sy1, sx0:sx1] = big[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0]
    return out


def map_to_roi(image_map: np.ndarray, crop: tuple[float, float, float], size: int) -> np.ndarray:
    """Bring an image-resolution map (e.g. a lesion mask) into ROI coordinates, as ``crop_square`` does.

    Returns ``(size, size)`` float32 (threshold at 0.5 for a mask).
    """
    from mammocadx.preprocess.roi import crop_square

    cx, cy, side = crop
    return crop_square(np.asarray(image_map, np.float32), cx, cy, side, size)
