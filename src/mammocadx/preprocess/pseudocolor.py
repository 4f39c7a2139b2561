"""Sine pseudocolour (Almaraz-Damian et al. 2021, equations 1-4) and its grey control.

For an 8-bit lesion image ``I``::

    R = |sin(2*pi*(I/255 + pi/2))|      (eq. 1)
    G = |sin(2*pi*(I/255 + pi/4))|      (eq. 2)
    B = |sin(2*pi*(I/255 + pi/6))|      (eq. 3)
    I_p = [R, G, B]                     (eq. 4)

implemented exactly as written. A property worth knowing: ``|sin|`` has period
pi, so each channel repeats every 127.5 grey levels, and I = 0 and I = 255 get
the same colour (dark fat and bright dense tissue fold together). ``grey``
(the image replicated on three channels) is the ablation control.
"""
from __future__ import annotations

from typing import Literal

import numpy as np

PseudocolorMode = Literal["sine", "grey"]
MODES: tuple[str, ...] = ("sine", "grey")

# Phase offsets of equations 1, 2, 3 (R, G, B).
_PHASES = np.array([np.pi / 2, np.pi / 4, np.pi / 6], dtype=np.float64)


def _sine_lut() -> np.ndarray:
    levels = np.arange(256, dtype=np.float64)[:, None] / 255.0
    return np.abs(np.sin(2.0 * np.pi * (levels + _PHASES[None, :]))).astype(np.float32)


#: Look-up table of equations 1-3 for every 8-bit level: shape (256, 3).
SINE_LUT: np.ndarray = _sine_lut()


def sine_pseudocolor(image_u8: np.ndarray) -> np.ndarray:
    """Apply equations 1-4 to an 8-bit greyscale image.

    Parameters
    ----------
    image_u8 : numpy.ndarray
        uint8 array of any shape (``(H, W)`` or a batch ``(N, H, W)``).

    Returns
    -------
    numpy.ndarray
        float32 array of shape ``image_u8.shape + (3,)`` in [0, 1], channels R, G, B.
    """
    image_u8 = np.asarray(image_u8)
    if image_u8.dtype != np.uint8:
        raise TypeError(f"sine pseudocolour takes 8-bit images (window first), got {image_u8.dtype}")
    return SINE_LUT[image_u8]


def grey_pseudocolor(image_u8: np.ndarray) -> np.ndarray:
    """Replicate an 8-bit greyscale image on three channels, scaled to [0, 1]."""
    image_u8 = np.asarray(image_u8)
    if image_u8.dtype != np.uint8:
        raise TypeError(f"grey pseudocolour takes 8-bit images, got {image_u8.dtype}")
    g = image_u8.astype(np.float32) / 255.0
    return np.repeat(g[..., None], 3, axis=-1)


def pseudocolor(image_u8: np.ndarray, mode: str = "sine") -> np.ndarray:
    """Colour an 8-bit greyscale image by ``mode`` (``"sine"`` or ``"grey"``).

    Raises
    ------
    ValueError
        For an unknown mode.
    """
    if mode == "sine":
        return sine_pseudocolor(image_u8)
    if mode == "grey":
        return grey_pseudocolor(image_u8)
    raise ValueError(f"unknown pseudocolour mode {mode!r}; choose one of {MODES}")
