"""Optional contrast enhancement: CLAHE (contrast-limited adaptive histogram equalisation).

Off in paper mode (the paper feeds the unenhanced image to the pseudocolour
step). When turned on it runs on the whole image before the ROI is cut, so the
lesion is equalised with the same tiles as its surroundings. With a breast mask,
pixels outside it are left as they were (so a background set to 0 stays 0 and
film labels are not stretched into the picture).
"""
from __future__ import annotations

import numpy as np
from skimage.exposure import equalize_adapthist


def enhance_clahe(
    pixels: np.ndarray,
    clip_limit: float = 0.01,
    kernel_size: int | tuple[int, int] | None = None,
    nbins: int = 256,
    breast_mask: np.ndarray | None = None,
) -> np.ndarray:
    """Contrast-limited adaptive histogram equalisation (:func:`skimage.exposure.equalize_adapthist`).

    Parameters
    ----------
    pixels : numpy.ndarray
        2-D float image in [0, 1].
    clip_limit : float
        Contrast limit in (0, 1]; higher gives stronger contrast (skimage's default 0.01).
    kernel_size : int or (int, int), optional
        Tile size in pixels; default 1/8 of each image side (skimage's default).
    nbins : int
        Histogram bins.
    breast_mask : numpy.ndarray, optional
        Boolean mask: pixels outside it are returned unchanged (0 stays 0).

    Returns
    -------
    numpy.ndarray
        float32 image in [0, 1] of the same shape.

    Raises
    ------
    ValueError
        For a non-2-D image, a clip limit outside (0, 1], or a mask of another shape.
    """
    img = np.asarray(pixels, dtype=np.float32)
    if img.ndim != 2:
        raise ValueError(f"CLAHE takes a 2-D greyscale image, got shape {img.shape}")
    if not 0.0 < clip_limit <= 1.0:
        raise ValueError(f"clip_limit must lie in (0, 1], got {clip_limit}")
    out = equalize_adapthist(np.clip(img, 0.0, 1.0), kernel_size=kernel_size, clip_limit=clip_limit, nbins=nbins)
    out = out.astype(np.float32)
    if breast_mask is not None:
        if breast_mask.shape != img.shape:
            raise ValueError(f"breast mask shape {breast_mask.shape} differs from image {img.shape}")
        out = np.where(breast_mask, out, img).astype(np.float32)
    return out
