"""Put a ROI-resolution map back on the full mammogram: thin names over :class:`mammocadx.preprocess.roi.RoiGeometry`.

The crop and its inverse are defined once, in ``RoiGeometry`` (``crop`` / ``place`` / ``to_roi``).
"""
from __future__ import annotations

import numpy as np

from mammocadx.preprocess.roi import RoiGeometry

__all__ = ["crop_box", "map_to_roi", "place_on_image"]


def crop_box(crop: tuple[float, float, float]) -> tuple[int, int, int]:
    """``(x0, y0, n)`` of the square cut for ``(cx, cy, side)`` (:meth:`RoiGeometry.box`)."""
    return RoiGeometry(*crop).box()


def place_on_image(cam: np.ndarray, crop: tuple[float, float, float], image_shape: tuple[int, int],
                   fill: float = 0.0) -> np.ndarray:
    """An ``(S, S)`` map placed on an image of ``image_shape`` (:meth:`RoiGeometry.place`)."""
    return RoiGeometry(*crop).place(cam, image_shape, fill)


def map_to_roi(image_map: np.ndarray, crop: tuple[float, float, float], size: int) -> np.ndarray:
    """An image-resolution map in ROI coordinates (:meth:`RoiGeometry.to_roi`)."""
    return RoiGeometry(*crop).to_roi(image_map, size)
