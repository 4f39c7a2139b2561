"""Pictures of a segmentation for a person to check: overlays and contact sheets."""
from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from mammocadx.io.images import to_uint8
from mammocadx.preprocess.breast import BreastSegmentation

#: Outline colours (RGB): breast green, pectoral red, removed labels/borders blue.
BREAST_RGB = (0, 220, 0)
PECTORAL_RGB = (255, 40, 40)
REMOVED_RGB = (40, 120, 255)


def _outline(rgb: np.ndarray, mask: np.ndarray, colour: tuple[int, int, int], thickness: int) -> None:
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(rgb, contours, -1, colour, thickness, lineType=cv2.LINE_AA)


def overlay_segmentation(
    pixels: np.ndarray,
    seg: BreastSegmentation,
    thickness: int | None = None,
    points: Sequence[tuple[float, float]] = (),
) -> np.ndarray:
    """RGB uint8 picture of the image with the breast outlined in green, the pectoral in red
    and removed labels/borders in blue; ``points`` (x, y) are drawn as yellow crosses."""
    grey = to_uint8(pixels)
    rgb = np.ascontiguousarray(np.repeat(grey[:, :, None], 3, axis=2))
    t = thickness or max(1, int(round(max(grey.shape) / 300)))
    _outline(rgb, seg.removed, REMOVED_RGB, t)
    _outline(rgb, seg.pectoral, PECTORAL_RGB, t)
    _outline(rgb, seg.breast, BREAST_RGB, t)
    size = max(6, max(grey.shape) // 60)
    for x, y in points:
        cv2.drawMarker(rgb, (int(round(x)), int(round(y))), (255, 230, 0), cv2.MARKER_CROSS, size, t + 1)
    return rgb


def contact_sheet(images: Sequence[np.ndarray], captions: Sequence[str] = (), tile: int = 256, columns: int = 8) -> np.ndarray:
    """Tile RGB (or grey) images into one RGB uint8 sheet, each resized to ``tile`` pixels square, with captions."""
    tiles = []
    for i, im in enumerate(images):
        rgb = im if im.ndim == 3 else np.repeat(im[:, :, None], 3, axis=2)
        t = cv2.resize(rgb, (tile, tile), interpolation=cv2.INTER_AREA)
        if i < len(captions):
            cv2.putText(t, str(captions[i]), (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 0), 1, cv2.LINE_AA)
        tiles.append(t)
    if not tiles:
        return np.zeros((tile, tile, 3), dtype=np.uint8)
    while len(tiles) % columns:
        tiles.append(np.zeros_like(tiles[0]))
    rows = [np.hstack(tiles[i : i + columns]) for i in range(0, len(tiles), columns)]
    return np.vstack(rows)
