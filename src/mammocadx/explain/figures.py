"""Figures of an explanation: the paper's figure-6 panel and a full-mammogram overlay.

Drawn with matplotlib's object API on the Agg canvas (no pyplot state, safe in
a web server thread). Every file is written to a temporary name in the output
folder and renamed, so a failure leaves no half-written PNG; file names come
only from a sanitised sample id.
"""
from __future__ import annotations

import json
import logging
import os
import re
import uuid
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from mammocadx.explain.gradcam import Explanation
from mammocadx.explain.placement import crop_box, place_on_image

log = logging.getLogger(__name__)

__all__ = ["mammogram_figure", "panel_figure", "safe_id", "save_explanation"]

#: Longest side of the full mammogram in the overlay figure (display only).
MAMMOGRAM_DISPLAY_SIDE = 1024
SIGNED_CMAP = "RdBu_r"  # red = towards malignant, blue = towards benign
CAM_CMAP = "jet"


def safe_id(sample_id: str, max_len: int = 80) -> str:
    """File-name-safe form of an id: letters, digits, ``._-`` only, no leading dot, never empty."""
    s = re.sub(r"[^A-Za-z0-9._-]+", "_", str(sample_id)).strip("._-")[:max_len]
    return s or "lesion"


#: What a figure can show: evidence for the decided class, towards malignant, towards benign, or both (signed).
SHOW = ("decision", "malignant", "benign", "signed")


def _label(score: float, threshold: float) -> str:
    return "malignant" if score > threshold else "benign"


def _heat_args(expl: Explanation, show: str, threshold: float) -> tuple[np.ndarray, dict[str, Any], str]:
    if show == "signed":
        return expl.signed_cam, {"cmap": SIGNED_CMAP, "vmin": -1.0, "vmax": 1.0}, "towards benign  <-  0  ->  towards malignant"
    if show not in SHOW:
        raise ValueError(f"show must be one of {SHOW}, got {show!r}")
    towards = expl.decided(threshold) if show == "decision" else show
    return expl.cam_for(towards), {"cmap": CAM_CMAP, "vmin": 0.0, "vmax": 1.0}, f"evidence towards {towards} (0..1)"


def panel_figure(
    expl: Explanation,
    roi_grey: np.ndarray,
    roi_rgb: np.ndarray,
    title: str = "",
    threshold: float = 0.0,
    show: str = "decision",
) -> Figure:
    """Four panels as the paper's figure 6: original ROI, pseudocolour ROI, heat-map, overlay.

    Parameters
    ----------
    expl : Explanation
        From :func:`mammocadx.explain.gradcam.explain_roi`.
    roi_grey, roi_rgb : numpy.ndarray
        ``(S, S)`` grey ROI and ``(S, S, 3)`` pseudocolour ROI in [0, 1].
    title : str
        Shown above the panels with the score and decision.
    threshold : float
        Decision threshold on the score (default 0).
    show : str
        ``"decision"`` (default): Grad-CAM of the decided class (evidence
        towards malignant if ``score > threshold``, else towards benign);
        ``"malignant"`` / ``"benign"``: that class's evidence; ``"signed"``:
        both on a diverging map (red = towards malignant, blue = towards benign).
    """
    signed = show == "signed"
    heat, kw, cbar_label = _heat_args(expl, show, threshold)
    fig = Figure(figsize=(13.0, 3.6), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 4)
    axes[0].imshow(roi_grey, cmap="gray", vmin=0, vmax=1)
    axes[0].set_title("original ROI")
    axes[1].imshow(np.clip(roi_rgb, 0, 1))
    # Grey modes replicate one channel three times: name what the CNN really saw.
    grey_input = bool(np.array_equal(roi_rgb[..., 0], roi_rgb[..., 1]) and np.array_equal(roi_rgb[..., 1], roi_rgb[..., 2]))
    axes[1].set_title("grey ROI (CNN input)" if grey_input else "pseudocolour ROI (CNN input)")
    im = axes[2].imshow(heat, **kw)
    axes[2].set_title("Grad-CAM (signed)" if signed else f"Grad-CAM: {cbar_label.split(' (')[0]}")
    alpha = np.clip(np.abs(heat), 0, 1) * (0.7 if signed else 0.6)
    axes[3].imshow(_blend(roi_grey, heat, alpha, kw), interpolation="nearest")
    axes[3].set_title("overlay")
    for ax in axes:
        ax.set_axis_off()
    cb = fig.colorbar(im, ax=axes.tolist(), fraction=0.015, pad=0.01)
    cb.set_label(cbar_label, fontsize=8)
    head = f"{title}  " if title else ""
    fig.suptitle(f"{head}score {expl.score:+.3f} -> {_label(expl.score, threshold)} (threshold {threshold:g})")
    return fig


def mammogram_figure(
    expl: Explanation,
    image: np.ndarray,
    crop: tuple[float, float, float],
    title: str = "",
    threshold: float = 0.0,
    show: str = "decision",
) -> Figure:
    """The full mammogram with the heat-map placed back on the ROI square (outlined)."""
    image = np.asarray(image, np.float32)
    rows, cols = image.shape
    scale = min(1.0, MAMMOGRAM_DISPLAY_SIDE / max(rows, cols))
    if scale < 1.0:
        image = cv2.resize(image, (max(round(cols * scale), 1), max(round(rows * scale), 1)), interpolation=cv2.INTER_AREA)
    cx, cy, side = crop
    dcrop = (cx * scale, cy * scale, side * scale)
    heat, kw, cbar_label = _heat_args(expl, show, threshold)
    placed = place_on_image(heat, dcrop, image.shape, fill=np.nan)
    alpha = np.nan_to_num(np.clip(np.abs(placed), 0, 1)) * 0.6
    h, w = image.shape
    fig = Figure(figsize=(6.0, 6.0 * h / w + 0.6), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    ax.imshow(_blend(image, np.nan_to_num(placed), alpha, kw), interpolation="antialiased")
    x0, y0, n = crop_box(dcrop)
    ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), n, n, fill=False, edgecolor="yellow", linewidth=1.0))
    ax.set_axis_off()
    cb = fig.colorbar(ScalarMappable(Normalize(kw["vmin"], kw["vmax"]), kw["cmap"]), ax=ax, fraction=0.035, pad=0.01)
    cb.set_label(cbar_label, fontsize=8)
    head = f"{title}  " if title else ""
    ax.set_title(f"{head}score {expl.score:+.3f} -> {_label(expl.score, threshold)}", fontsize=9)
    return fig


def _blend(grey: np.ndarray, heat: np.ndarray, alpha: np.ndarray, kw: dict[str, Any]) -> np.ndarray:
    """Grey image with the colour-mapped heat-map laid over it, as one RGB array.

    The same picture as drawing the heat-map with a per-pixel ``alpha`` over the
    grey image, but composited once in numpy: matplotlib's per-pixel alpha
    compositing of a full mammogram took ~0.6 s a figure.
    """
    grey = np.clip(np.asarray(grey, np.float32), 0, 1)[..., None]
    colours = colormaps[kw["cmap"]](Normalize(kw["vmin"], kw["vmax"], clip=True)(heat))[..., :3]
    a = np.asarray(alpha, np.float32)[..., None]
    return (grey * (1.0 - a) + colours.astype(np.float32) * a).clip(0, 1)


def _save_atomic(write, path: Path) -> None:
    # A hidden temporary name in the same folder (opened by the writer with the
    # usual umask permissions, unlike mkstemp's 0600), then an atomic rename.
    tmp = path.with_name(f".tmp-{uuid.uuid4().hex}-{path.name}")
    try:
        write(str(tmp))
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def save_explanation(
    out_dir: str | os.PathLike[str],
    sample_id: str,
    expl: Explanation,
    roi_grey: np.ndarray,
    roi_rgb: np.ndarray,
    image: np.ndarray | None = None,
    crop: tuple[float, float, float] | None = None,
    threshold: float = 0.0,
    show: str = "decision",
    extra: dict[str, Any] | None = None,
) -> list[Path]:
    """Write the explanation's figures and a small JSON summary (``extra`` is added to the JSON).

    Files (``ID`` = :func:`safe_id` of ``sample_id``):

    - ``ID_gradcam.png``: original ROI, pseudocolour ROI, heat-map, overlay;
    - ``ID_gradcam_mammogram.png``: full-image overlay (when ``image`` and ``crop`` are given);
    - ``ID_gradcam.json``: score, decision, threshold, target layer, crop, sign convention.

    ``show`` picks the map (see :func:`panel_figure`).

    Returns
    -------
    list of Path
        The files written, in that order.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sid = safe_id(sample_id)
    written: list[Path] = []

    panel = panel_figure(expl, roi_grey, roi_rgb, title=str(sample_id), threshold=threshold, show=show)
    p = out / f"{sid}_gradcam.png"
    _save_atomic(lambda t: panel.savefig(t, format="png", bbox_inches="tight"), p)
    written.append(p)

    if image is not None and crop is not None:
        fig = mammogram_figure(expl, image, crop, title=str(sample_id), threshold=threshold, show=show)
        p = out / f"{sid}_gradcam_mammogram.png"
        _save_atomic(lambda t: fig.savefig(t, format="png", bbox_inches="tight"), p)
        written.append(p)

    summary = {
        "sample_id": str(sample_id),
        "score": expl.score,
        "decision": _label(expl.score, threshold),
        "threshold": threshold,
        "target_layer": expl.target_layer,
        "crop": list(map(float, crop)) if crop is not None else None,
        "show": show,
        "convention": "score = head decision_function; positive score and positive map values = towards malignant",
        "files": [q.name for q in written],
        **(extra or {}),
    }
    p = out / f"{sid}_gradcam.json"

    def _write_json(t: str) -> None:
        Path(t).write_text(json.dumps(summary, indent=2))

    _save_atomic(_write_json, p)
    written.append(p)
    log.debug("wrote explanation of %s to %s", sample_id, out)
    return written
