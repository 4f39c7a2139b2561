"""Automatic breast segmentation: breast mask, labels and borders removed, pectoral muscle.

The paper segments every image by hand. This module does it automatically, with
scikit-image, OpenCV and SciPy primitives only:

1. **Checks**: a 2-D image at least 64 pixels on each side with some contrast;
   all-black, all-white, constant or tiny images raise
   :class:`~mammocadx.errors.SegmentationError` naming the file. An empty mask
   is never returned.
2. **Foreground**: the image is shrunk to at most ``work_size`` pixels (area
   interpolation), smoothed with a Gaussian, and thresholded with Li's
   minimum cross-entropy threshold (it sits between the film background and
   the fatty skin-line region on film and on digital images; Otsu splits fat
   from dense tissue instead, the triangle method is unstable on padded films).
3. **Borders**: bands of foreground lying along a whole image edge and
   shallower than ``border_band`` x side (scanner borders, film-edge lines) are
   taken out first, so they can neither join labels to the breast nor enclose
   background that hole filling would then take for breast.
4. **Breast body**: a morphological opening (disc of radius ``opening`` x
   image side) cuts thin bridges to labels and film strips; the largest
   connected component is the breast. It is grown back into the thresholded
   foreground by at most the opening radius + 1 (so the skin line keeps its full
   extent but strips and bridges do not come back), and holes are filled.
   Every other foreground component is *removed*: those touching the image edge
   are counted as borders (scanner edges, bright rectangles, film strips), the
   others as labels (burned-in text, markers). Specks under 0.05 % of the image
   are removed but not counted.
5. **Chest-wall side** from the pixels (:func:`mammocadx.preprocess.orientation.chest_wall_side`).
   Near-white regions (``saturation``) of the body that reach the image edge
   opposite the chest wall are film edges or bright rectangles (the nipple side
   of a breast is thin, dark tissue): they are cut off too.
6. **Pectoral muscle** (MLO, or view unknown), in canonical orientation
   (chest wall on the left), on a coarser copy (``pectoral_size``): inside the
   upper 70 % and chest-wall 70 % of the breast, the pixels brighter than a
   threshold form candidate regions; the one in the upper chest-wall corner is
   kept; its edge (the end of its run from the chest wall, row by row) is
   fitted with a straight line by RANSAC (:func:`skimage.measure.ransac`). Several
   thresholds are tried (3-class multi-Otsu and the 50th-90th percentiles of the
   zone) because the muscle merges with dense tissue at low thresholds; the
   accepted line with the largest edge step wins. The muscle is the breast on
   the chest-wall side of that line (a half-plane computed at full resolution).

   Rule for accepting a pectoral (the same whatever the view; CC views skip the
   step): the line must run down and towards the chest wall with a slope
   between 0.1 and 4 columns per row; cut the top of the breast between 5 % and
   95 % of its width and reach the chest wall between 5 % and 95 % of its
   height; at least 8 edge points (and 8 % of the breast's height) must be RANSAC
   inliers, and 60 % of the points above the line's meeting with the chest
   wall; the muscle must be brighter than the band of tissue just beyond the
   line (``pectoral_band`` x breast width) by ``pectoral_contrast`` grey units,
   and so must its strip of that width just inside the line (the edge step,
   which also ranks the candidate lines); it must cover 1 % to 50 % of the breast. Otherwise no pectoral is reported
   (empty mask); with ``view="MLO"`` that is logged (info) and noted. With the view
   unknown the same rule decides whether a muscle is present; on the synthetic
   cohort no CC view gets one.

Bright means dense: MONOCHROME1 images must be inverted by the reader first
(:func:`mammocadx.io.images.read_image` does it).
"""
from __future__ import annotations

import logging
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from skimage.filters import threshold_li, threshold_multiotsu
from skimage.measure import LineModelND, ransac

from mammocadx.errors import SegmentationError
from mammocadx.preprocess.enhance import enhance_clahe  # noqa: F401  (re-exported: the pipeline calls breast.enhance_clahe)
from mammocadx.preprocess.orientation import Side, chest_wall_side

log = logging.getLogger(__name__)

#: Smallest accepted image side, in pixels.
MIN_SIDE = 64


@dataclass(frozen=True)
class SegmentationConfig:
    """Parameters of :func:`segment_breast` (fractions are of the working image's longer side).

    Attributes
    ----------
    work_size : int
        Longer side of the working image; larger images are shrunk to it.
    smooth : float
        Gaussian sigma before thresholding, as a fraction of the working side.
    opening : float
        Radius of the opening that detaches labels and strips, fraction of the side.
    min_breast_fraction : float
        Smallest breast area, as a fraction of the image, before it is called "no breast found".
    pectoral_contrast : float
        How much brighter (grey units in [0, 1]) the muscle must be than the tissue next to it.
    pectoral_band : float
        Width of that neighbouring band, fraction of the breast's width.
    pectoral_size : int
        Longer side of the (coarser) image the pectoral line is searched on.
    border_band : float
        Deepest scanner-border band taken off an image edge, fraction of the side.
    saturation : float
        Grey level (in [0, 1]) from which a region touching the edge opposite the
        chest wall is a film edge or bright rectangle, not breast.
    """

    work_size: int = 512
    smooth: float = 1.0 / 256.0
    opening: float = 0.012
    min_breast_fraction: float = 0.01
    pectoral_contrast: float = 0.03
    pectoral_band: float = 0.08
    pectoral_size: int = 256
    border_band: float = 0.04
    saturation: float = 0.92


@dataclass
class BreastSegmentation:
    """What :func:`segment_breast` found on one image (all masks at the image's size).

    Attributes
    ----------
    breast : numpy.ndarray
        Boolean mask of breast tissue: without the pectoral muscle, labels,
        markers, borders and background. Never empty.
    pectoral : numpy.ndarray
        Boolean mask of the pectoral muscle (all False on CC views or when none is found).
    removed : numpy.ndarray
        Boolean mask of the bright components removed (labels, markers, borders).
    chest_wall_side : {"left", "right"}
        Image edge the chest wall lies on.
    threshold : float
        Foreground threshold used, in grey units of the input ([0, 1]).
    removed_labels : int
        Bright components removed that do not touch the image edge (labels, markers).
    removed_borders : int
        Bright components removed that touch the image edge (scanner borders, film strips, rectangles).
    pectoral_line : tuple or None
        ``((x_top, y_top), (x_wall, y_wall))``: where the muscle's edge meets the top
        of the breast and the chest wall, in image pixels; ``None`` when no muscle.
    view : str or None
        The view given (upper case), ``None`` when unknown.
    seconds : float
        Wall time of the segmentation.
    notes : list of str
        What the pectoral search decided (threshold, line agreement, contrast, area), for reports.
    """

    breast: np.ndarray
    pectoral: np.ndarray
    removed: np.ndarray
    chest_wall_side: Side
    threshold: float
    removed_labels: int = 0
    removed_borders: int = 0
    pectoral_line: tuple[tuple[float, float], tuple[float, float]] | None = None
    view: str | None = None
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def foreground(self) -> np.ndarray:
        """Breast plus pectoral muscle (everything of the body on the image)."""
        return self.breast | self.pectoral

    @property
    def has_pectoral(self) -> bool:
        """Whether a pectoral muscle was found."""
        return self.pectoral_line is not None

    def summary(self) -> dict:
        """JSON-friendly facts (areas as fractions of the image)."""
        n = float(self.breast.size)
        return {
            "chest_wall_side": self.chest_wall_side,
            "threshold": round(float(self.threshold), 4),
            "breast_fraction": round(float(self.breast.sum()) / n, 4),
            "pectoral_fraction": round(float(self.pectoral.sum()) / n, 4),
            "pectoral_found": self.has_pectoral,
            "pectoral_line": (
                [[round(v, 1) for v in point] for point in self.pectoral_line] if self.pectoral_line else None
            ),
            "removed_labels": self.removed_labels,
            "removed_borders": self.removed_borders,
            "view": self.view,
            "seconds": round(self.seconds, 4),
        }


def _check_input(pixels: np.ndarray, source: Path | None) -> np.ndarray:
    img = np.asarray(pixels)
    if img.ndim != 2:
        raise SegmentationError(f"expected a 2-D greyscale image, got shape {img.shape}", source)
    if min(img.shape) < MIN_SIDE:
        raise SegmentationError(
            f"image too small to segment ({img.shape[1]}x{img.shape[0]} pixels; at least {MIN_SIDE} on each side)", source
        )
    if np.issubdtype(img.dtype, np.integer):
        # Integer pixels (uint8/uint16 straight from a file) are scaled by their type's range.
        img = img.astype(np.float32) / float(np.iinfo(img.dtype).max)
    img = img.astype(np.float32, copy=False)
    if not np.all(np.isfinite(img)):
        raise SegmentationError("image holds NaN or infinite values", source)
    if float(img.min()) < -1e-3 or float(img.max()) > 1.0 + 1e-3:
        raise SegmentationError(
            f"float pixels must lie in [0, 1] (got {float(img.min()):.3g} .. {float(img.max()):.3g})", source
        )
    lo, hi = float(img.min()), float(img.max())
    if hi <= 0.02:
        raise SegmentationError("image is all black (no breast to segment)", source)
    if lo >= 0.98:
        raise SegmentationError("image is all white (saturated; no background to separate)", source)
    if hi - lo < 0.02:
        raise SegmentationError(f"image is constant (grey value {lo:.3f}; no breast to segment)", source)
    return img


def _disc(radius: int) -> np.ndarray:
    r = max(int(radius), 1)
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))


def _fill_holes(mask: np.ndarray) -> np.ndarray:
    """Fill holes: background components that do not touch the image edge become foreground.

    Same result as :func:`scipy.ndimage.binary_fill_holes` (4-connected background),
    several times faster with OpenCV's connected components at this size.
    """
    n, labels = cv2.connectedComponents((~mask).astype(np.uint8), connectivity=4)
    if n <= 1:
        return mask.copy()
    edge = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    outside = np.isin(labels, edge[edge > 0])
    return ~outside


def _edge_bands(fg: np.ndarray, max_depth: float) -> np.ndarray:
    """Bright bands along whole image edges (scanner borders, film-edge lines).

    Along each edge, the foreground share of the lines at depth 0, 1, 2 ... from
    the edge is followed: a band is where the first line is at least 90 %
    foreground and the share falls below 50 % within ``max_depth`` x side. A
    breast lying against an edge stays foreground far deeper, so it is not a band.
    """
    bands = np.zeros_like(fg)
    rows, cols = fg.shape
    depth = max(2, int(round(max_depth * max(rows, cols))))
    views = {
        "top": (fg[:depth, :].mean(axis=1), lambda t: (slice(0, t), slice(None))),
        "bottom": (fg[::-1][:depth, :].mean(axis=1), lambda t: (slice(rows - t, rows), slice(None))),
        "left": (fg[:, :depth].mean(axis=0), lambda t: (slice(None), slice(0, t))),
        "right": (fg[:, ::-1][:, :depth].mean(axis=0), lambda t: (slice(None), slice(cols - t, cols))),
    }
    for share, where in views.values():
        if share[0] < 0.9:
            continue
        low = np.nonzero(share < 0.5)[0]
        if low.size:
            bands[where(int(low[0]))] = True
    return bands


def _largest(mask: np.ndarray) -> np.ndarray:
    """The largest 8-connected component of ``mask`` (all False when empty)."""
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if n <= 1:
        return np.zeros_like(mask)
    return labels == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))


def _far_edge_saturated(sm: np.ndarray, body: np.ndarray, side: str, level: float, min_area: int) -> np.ndarray:
    """Near-white regions of ``body`` that touch the image edge opposite the chest wall."""
    sat = body & (sm >= level)
    if not sat.any():
        return np.zeros_like(body)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(sat.astype(np.uint8), connectivity=8)
    col = sat.shape[1] - 1 if side == "left" else 0
    out = np.zeros_like(body)
    for i in range(1, n):
        if stats[i, cv2.CC_STAT_AREA] >= min_area and (labels[:, col] == i).any():
            out |= labels == i
    return out


def _body_mask(fg: np.ndarray, radius: int, fg_raw: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Largest component after an opening, grown back within ``fg``; plus what was removed
    (from ``fg_raw``, the foreground before edge bands were taken out, when given)."""
    u8 = fg.astype(np.uint8)
    opened = cv2.morphologyEx(u8, cv2.MORPH_OPEN, _disc(radius))
    n, labels, stats, _ = cv2.connectedComponentsWithStats(opened, connectivity=8)
    if n <= 1:
        # Everything is thinner than the opening: fall back on the raw foreground.
        n, labels, stats, _ = cv2.connectedComponentsWithStats(u8, connectivity=8)
        if n <= 1:
            return np.zeros_like(fg), np.zeros_like(fg), 0, 0
        opened = u8
    biggest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    core = labels == biggest
    # Grow back the skin line lost to the opening, but no further than its radius + 1.
    grown = cv2.dilate(core.astype(np.uint8), _disc(radius + 1)).astype(bool) & fg
    # Keep only the part of the regrown mask connected to the core.
    n2, lab2 = cv2.connectedComponents(grown.astype(np.uint8), connectivity=8)
    keep = np.unique(lab2[core])
    body = np.isin(lab2, keep[keep > 0])
    body = _fill_holes(body)
    removed = (fg if fg_raw is None else fg_raw) & ~body
    # Count removed components (ignore specks smaller than a 0.05 %-of-image blob: film noise).
    n3, lab3, st3, _ = cv2.connectedComponentsWithStats(removed.astype(np.uint8), connectivity=8)
    min_area = max(4, int(0.0005 * fg.size))
    rows, cols = fg.shape
    labels_n = borders_n = 0
    for i in range(1, n3):
        x, y, w, h, area = st3[i]
        if area < min_area:
            continue
        if x == 0 or y == 0 or x + w >= cols or y + h >= rows:
            borders_n += 1
        else:
            labels_n += 1
    return body, removed, labels_n, borders_n


@dataclass
class _Geometry:
    """Where the breast lies in the working image (canonical orientation)."""

    y0: int
    height: int
    width: int
    has: np.ndarray
    left: np.ndarray
    yy: np.ndarray
    xx: np.ndarray
    zone: np.ndarray


def _geometry(body: np.ndarray) -> _Geometry | None:
    has = body.any(axis=1)
    rows_any = np.nonzero(has)[0]
    if rows_any.size < 10:
        return None
    y0 = int(rows_any[0])
    height = int(rows_any[-1]) - y0 + 1
    left = np.where(has, np.argmax(body, axis=1), -1)
    right = np.where(has, body.shape[1] - 1 - np.argmax(body[:, ::-1], axis=1), -1)
    width = int((right - left)[has].max()) + 1
    if width < 10:
        return None
    yy, xx = np.mgrid[0 : body.shape[0], 0 : body.shape[1]]
    # Where a pectoral muscle can lie: upper 70 % of the breast, 70 % of its width from the chest wall.
    zone = body & (yy <= y0 + 0.7 * height) & (xx - left[:, None] <= 0.7 * width)
    return _Geometry(y0, height, width, has, left, yy, xx, zone)


def _plausible_line(model: LineModelND, *_: np.ndarray) -> bool:
    # A pectoral edge runs down and towards the chest wall, neither flat nor vertical.
    dy, dx = model.direction
    return bool(abs(dy) > 1e-6 and -4.0 <= dx / dy <= -0.1)


def _pectoral_candidate(
    sm: np.ndarray, body: np.ndarray, g: _Geometry, t: float, config: SegmentationConfig
) -> tuple[float, tuple[float, float], tuple[float, float], str] | None:
    """Fit the muscle edge of the bright region above ``t`` in the upper chest-wall corner.

    Returns ``(contrast, (x_top, y_top), (x_wall, y_wall), note)`` or ``None`` when
    the rule of the module docstring rejects it.
    """
    y0, height, width, has, left, yy, xx = g.y0, g.height, g.width, g.has, g.left, g.yy, g.xx
    bright = g.zone & (sm > t)
    n, labels = cv2.connectedComponents(bright.astype(np.uint8), connectivity=8)
    if n <= 1:
        return None
    corner_h = max(2, int(0.08 * height))
    corner_w = max(2, int(0.08 * width))
    corner = bright & (yy <= y0 + corner_h) & (xx - left[:, None] <= corner_w)
    ids, counts = np.unique(labels[corner], return_counts=True)
    counts, ids = counts[ids > 0], ids[ids > 0]
    if ids.size == 0:
        return None
    region = labels == int(ids[np.argmax(counts)])
    # Edge points: per row, the end of the region's run that starts at the chest wall
    # (a gap of up to `tol` pixels at the chest-wall edge is tolerated).
    tol = max(2, corner_w // 2)
    near_wall = (xx >= left[:, None]) & (xx < left[:, None] + tol)
    touches = (region & near_wall).any(axis=1) & has
    stop = int(y0 + 0.7 * height) + 1
    below = np.nonzero(~touches[y0:stop])[0]
    last = y0 + (int(below[0]) if below.size else stop - y0)  # first row that no longer touches
    if last - y0 < 8:
        return None
    ys = np.arange(y0, last)
    passable = region[ys] | (xx[ys] < left[ys, None] + tol)
    run_end = np.cumprod(passable, axis=1).sum(axis=1)  # first column not in the run
    # (row centre, column of the run's right edge) in continuous pixel coordinates.
    data = np.column_stack([ys + 0.5, run_end]).astype(np.float64)
    with warnings.catch_warnings():
        # ransac warns when no sample gives a plausible line: that is a "no muscle" answer here.
        warnings.simplefilter("ignore", UserWarning)
        model, inliers = ransac(
            data,
            LineModelND,
            min_samples=2,
            residual_threshold=max(1.5, 0.02 * width),
            is_model_valid=_plausible_line,
            max_trials=100,
            stop_probability=0.999,
            rng=0,
        )
    if model is None or inliers is None or inliers.sum() < max(8, 0.08 * height):
        return None
    (oy, ox), (dy, dx) = model.origin, model.direction
    slope = dx / dy  # x = ox + slope * (y - oy)
    wall_x = float(left[y0])
    y_wall = oy + (wall_x - ox) / slope
    x_top = ox + slope * (y0 - oy)
    # Rows above the line's meeting with the chest wall must mostly follow the line.
    above = data[:, 0] <= y_wall
    agreement = float(inliers[above].mean()) if above.any() else 0.0
    if agreement < 0.6:
        return None
    top_frac = (x_top - wall_x) / width
    wall_frac = (y_wall - y0) / height
    if not (0.05 <= top_frac <= 0.95 and 0.05 <= wall_frac <= 0.95):
        return None
    line_x = ox + slope * (yy + 0.5 - oy)
    muscle = body & (xx < line_x)
    band = body & (xx >= line_x) & (xx < line_x + config.pectoral_band * width) & (yy <= y_wall)
    area_frac = float(muscle.sum()) / max(float(body.sum()), 1.0)
    if not (0.01 <= area_frac <= 0.5) or band.sum() < 10:
        return None
    # The muscle as a whole, and its strip just inside the line, must both be brighter than the
    # tissue just beyond the line; the strip's step (a local edge) ranks the candidates, so a line
    # cut too deep into bright breast tissue loses to the line on the muscle's own edge.
    inner = body & (xx < line_x) & (xx >= line_x - config.pectoral_band * width) & (yy <= y_wall)
    if inner.sum() < 10:
        return None
    outside = float(sm[band].mean())
    overall = float(sm[muscle].mean()) - outside
    contrast = float(sm[inner].mean()) - outside
    if min(overall, contrast) < config.pectoral_contrast:
        return None
    note = f"pectoral: threshold {t:.3f}, line agreement {agreement:.2f}, contrast {contrast:.3f}, area {area_frac:.3f} of breast"
    return contrast, (float(x_top), float(y0)), (wall_x, float(y_wall)), note


def _find_pectoral(
    sm: np.ndarray, body: np.ndarray, config: SegmentationConfig
) -> tuple[tuple[float, float], tuple[float, float], str] | None:
    """Pectoral line in canonical orientation (chest wall on the left), working pixels.

    Several thresholds are tried (the 3-class multi-Otsu thresholds of the
    upper chest-wall zone and its 50th-90th percentiles), because the muscle is
    the brightest class on fatty breasts but merges with dense tissue at low
    thresholds on dense ones; the accepted line with the largest edge step wins.
    Returns ``((x_top, y_top), (x_wall, y_wall), note)`` or ``None``.
    """
    g = _geometry(body)
    if g is None:
        return None
    values = sm[g.zone]
    if values.size < 50 or float(values.max() - values.min()) < 1e-3:
        return None
    thresholds = set(np.round(np.percentile(values, [50, 60, 70, 80, 90]), 4).tolist())
    thresholds.update(np.round(threshold_multiotsu(values, classes=3), 4).tolist())
    best = None
    for t in sorted(thresholds):
        cand = _pectoral_candidate(sm, body, g, float(t), config)
        if cand is not None and (best is None or cand[0] > best[0]):
            best = cand
    if best is None:
        return None
    return best[1], best[2], best[3]


def segment_breast(
    pixels: np.ndarray,
    view: str | None = None,
    laterality: str | None = None,
    source: Path | None = None,
    config: SegmentationConfig = SegmentationConfig(),
) -> BreastSegmentation:
    """Segment the breast of one mammogram: tissue mask, pectoral muscle, removed labels.

    Parameters
    ----------
    pixels : numpy.ndarray
        2-D float image in [0, 1], bright = dense (as :func:`~mammocadx.io.images.read_image` gives);
        integer arrays (uint8, uint16) are scaled by their type's maximum.
    view : str, optional
        ``"CC"`` skips pectoral detection; ``"MLO"`` (or ``"ML"``) and ``None``
        (unknown) run it with the acceptance rule in the module docstring.
    laterality : str, optional
        ``"L"``/``"R"``, a tie-breaker for the chest-wall side only.
    source : Path, optional
        The image's file, named in errors.
    config : SegmentationConfig
        Parameters (defaults suit film and digital mammograms alike).

    Returns
    -------
    BreastSegmentation

    Raises
    ------
    SegmentationError
        Tiny, non-2-D, all-black, all-white or constant images, or when no
        breast is found (the message names ``source``).
    """
    started = time.perf_counter()
    img = _check_input(pixels, source)
    rows, cols = img.shape
    scale = min(1.0, config.work_size / max(rows, cols))
    work = cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1.0 else img.copy()
    side_px = max(work.shape)
    sm = cv2.GaussianBlur(work, (0, 0), max(config.smooth * side_px, 0.5))
    threshold = float(threshold_li(sm))
    fg = sm > threshold
    fg_frac = float(fg.mean())
    if fg_frac > 0.99:
        raise SegmentationError(
            "no background found: the image is bright almost everywhere (a crop, or an inverted image?)", source
        )
    radius = max(1, int(round(config.opening * side_px)))
    fg_clean = fg & ~_edge_bands(fg, config.border_band)
    body, removed, n_labels, n_borders = _body_mask(fg_clean, radius, fg)
    if body.sum() < config.min_breast_fraction * body.size:
        raise SegmentationError(
            f"no breast found (largest bright region covers {100.0 * body.mean():.2f} % of the image)", source
        )
    side = chest_wall_side(sm, laterality=laterality, mask=body)
    # Saturated film edges (bright rectangles) reaching the image edge opposite the chest wall:
    # the nipple side of a breast is thin, dark tissue, so such a region is never breast.
    far = _far_edge_saturated(sm, body, side, config.saturation, min_area=int(0.002 * body.size))
    if far.any():
        body = _largest(_fill_holes(body & ~far))
        removed = fg & ~body
        n_borders += 1
    view_u = view.strip().upper() if view else None

    line = None
    notes: list[str] = []
    if view_u != "CC":
        flip = side == "right"
        p_scale = min(1.0, config.pectoral_size / side_px)
        p_sm, p_body = sm, body
        if p_scale < 1.0:
            p_sm = cv2.resize(sm, None, fx=p_scale, fy=p_scale, interpolation=cv2.INTER_AREA)
            p_body = cv2.resize(body.astype(np.float32), (p_sm.shape[1], p_sm.shape[0]), interpolation=cv2.INTER_AREA) > 0.5
        c_sm = np.fliplr(p_sm) if flip else p_sm
        c_body = np.fliplr(p_body) if flip else p_body
        found = _find_pectoral(c_sm, c_body, config)
        if found is not None:
            (xt, yt), (xw, yw), note = found
            notes.append(note)
            if flip:  # back to the image's own columns (continuous coordinates)
                xt, xw = p_sm.shape[1] - xt, p_sm.shape[1] - xw
            # Continuous coordinates scale exactly (up to the rounding of resized sizes).
            fx, fy = cols / p_sm.shape[1], rows / p_sm.shape[0]
            line = ((xt * fx, yt * fy), (xw * fx, yw * fy))
        elif view_u in {"MLO", "ML"}:
            log.info("%s: no pectoral muscle found on an MLO view", source or "image")
            notes.append("pectoral: not found")

    # Back to full resolution: smooth upsampling of the body, exact half-plane for the muscle.
    if scale < 1.0:
        body_full = cv2.resize(body.astype(np.float32), (cols, rows), interpolation=cv2.INTER_LINEAR) > 0.5
        removed_full = cv2.resize(removed.astype(np.uint8), (cols, rows), interpolation=cv2.INTER_NEAREST) > 0
    else:
        body_full, removed_full = body, removed
    pectoral = np.zeros((rows, cols), dtype=bool)
    if line is not None:
        (xt, yt), (xw, yw) = line
        yy = np.arange(rows, dtype=np.float32)[:, None] + 0.5
        xx = np.arange(cols, dtype=np.float32)[None, :] + 0.5
        # Points on the chest-wall side of the line through (xt, yt) and (xw, yw).
        cross = (xw - xt) * (yy - yt) - (yw - yt) * (xx - xt)
        on_wall_side = cross > 0 if side == "left" else cross < 0
        pectoral = body_full & on_wall_side & (yy <= max(yt, yw))
        line = ((float(xt), float(yt)), (float(xw), float(yw)))
    breast = body_full & ~pectoral
    # Cutting the muscle may leave slivers above the line: keep the main body.
    n, lab, st, _ = cv2.connectedComponentsWithStats(breast.astype(np.uint8), connectivity=8)
    if n > 2:
        main = 1 + int(np.argmax(st[1:, cv2.CC_STAT_AREA]))
        sliver = breast & (lab != main)
        breast = lab == main
        if line is not None:
            pectoral |= sliver
        else:
            removed_full |= sliver
    if not breast.any():
        raise SegmentationError("segmentation left an empty breast mask", source)
    seconds = time.perf_counter() - started
    return BreastSegmentation(
        breast=breast,
        pectoral=pectoral,
        removed=removed_full & ~breast,
        chest_wall_side=side,
        threshold=threshold,
        removed_labels=n_labels,
        removed_borders=n_borders,
        pectoral_line=line,
        view=view_u,
        seconds=seconds,
        notes=notes,
    )
