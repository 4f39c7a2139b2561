"""A small mammogram phantom with known breast, pectoral and label masks (segmentation tests only).

Independent of the synthetic cohort: a half-ellipse breast against the chest
wall with smooth texture and a darker skin rim, a brighter triangular pectoral
muscle on MLO views, a bright film label detached from the breast, and film
background noise. Used to check the segmentation on exactly known truth.
"""
from __future__ import annotations

import cv2
import numpy as np


def make_phantom(
    size: int = 512,
    side: str = "left",
    view: str = "MLO",
    label: bool = True,
    seed: int = 0,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Return ``(pixels float32 [0, 1], {"breast", "pectoral", "label"} bool masks)``."""
    rng = np.random.default_rng(seed)
    rows = cols = size
    yy, xx = np.mgrid[0:rows, 0:cols].astype(np.float32) + 0.5
    ax = cols * rng.uniform(0.55, 0.65)
    if view == "MLO":
        # MLO: the breast hangs from the axilla, which reaches the top edge at the chest wall.
        cy, ay = rows * rng.uniform(0.55, 0.6), rows * rng.uniform(0.36, 0.4)
        r = np.sqrt((xx / ax) ** 2 + ((yy - cy) / ay) ** 2)
        upper = (yy < cy) & (xx < ax * (0.45 + 0.55 * yy / cy))
        r = np.where(upper, np.minimum(r, 0.5 + 0.5 * xx / (ax * (0.45 + 0.55 * yy / cy))), r)
    else:
        cy, ay = rows * rng.uniform(0.48, 0.55), rows * rng.uniform(0.40, 0.46)
        r = np.sqrt((xx / ax) ** 2 + ((yy - cy) / ay) ** 2)
    body = r <= 1.0
    texture = cv2.GaussianBlur(rng.normal(0, 1, (rows, cols)).astype(np.float32), (0, 0), size / 64)
    texture /= texture.std() + 1e-6
    # Tissue thickness falls off towards the skin line.
    thickness = np.clip(1.0 - r, 0, 1) ** 0.35
    img = 0.03 + rng.normal(0, 0.01, (rows, cols)).astype(np.float32)
    img = np.where(body, 0.18 + 0.32 * thickness + 0.05 * texture * thickness, img)
    pectoral = np.zeros_like(body)
    if view == "MLO":
        x_top = cols * rng.uniform(0.25, 0.4)
        y_wall = rows * rng.uniform(0.35, 0.5)
        pectoral = body & (xx / x_top + yy / y_wall <= 1.0)
        img = np.where(pectoral, 0.78 + 0.02 * texture, img)
    lab = np.zeros_like(body)
    if label:
        x0, y0 = int(cols * 0.82), int(rows * 0.05)
        lab[y0 : y0 + size // 12, x0 : x0 + size // 10] = True
        img = np.where(lab, 0.95, img)
        img[y0 + size // 40 : y0 + size // 30, x0 + 4 : x0 + size // 12] = 0.3  # "text" on the label
    img = np.clip(img, 0, 1).astype(np.float32)
    masks = {"breast": body & ~pectoral, "pectoral": pectoral, "label": lab}
    if side == "right":
        img = np.ascontiguousarray(img[:, ::-1])
        masks = {k: np.ascontiguousarray(v[:, ::-1]) for k, v in masks.items()}
    return img, masks


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice coefficient of two boolean masks (1.0 when both are empty)."""
    a, b = a.astype(bool), b.astype(bool)
    total = a.sum() + b.sum()
    return 1.0 if total == 0 else float(2.0 * (a & b).sum() / total)
