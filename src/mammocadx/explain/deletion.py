"""Faithfulness of a heat-map: the deletion curve (Petsiuk et al. 2018, RISE).

Pixels of the grey ROI are deleted in order, most salient first, in ``steps``
equal steps from 0 % to 100 %; after each step the ROI is pseudocoloured again
exactly as the pipeline does (``to_uint8`` then ``pseudocolor``) and re-scored
through backbone + head. The map evaluated is, by default, the evidence for the
class the model decided (``towards="decision"``: Grad-CAM of the predicted
class, as usual for deletion metrics), and the **score drop** is measured in
that class's direction: ``d(t) = sign * (s(0) - s(t))`` with ``sign = +1`` for
a malignant decision (deleting malignant evidence should lower the score) and
``-1`` for a benign one (deleting benign evidence should raise it). ``d`` is
integrated over the deleted fraction ``t`` in [0, 1] (trapezoid): the larger
the area, the faster the map's evidence removes the decision, i.e. the more
faithful the map.

A "deleted" pixel takes the value of a replacement image (``fill``):

- ``"blur"`` (default): the ROI blurred with a Gaussian of sigma = S/8: removes
  the local structure (margins, spicules, texture) while keeping the gross
  intensity, so deletion does not paint sharp artificial edges;
- ``"mean"``: the ROI's mean grey level;
- ``"zero"``: black, the value ``crop_square`` pads the ROI with outside the image.

Baseline: random maps with the heat-map's own smoothness -- uniform noise on
the target layer's grid (e.g. 7 x 7) upsampled the same way -- so that both
orders delete blobs of the same size and only the information differs. Several
seeds; their mean curve is the random reference. Ties in a map are broken at
random (fixed seed).
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

if TYPE_CHECKING:  # torch is imported where it runs (cached explanations need none)
    import torch

from mammocadx.explain.gradcam import BackboneLike, Explanation, upsample_map

log = logging.getLogger(__name__)

__all__ = ["FILLS", "deletion_check", "deletion_order", "fill_image"]

FILLS = ("blur", "mean", "zero")


def fill_image(grey: np.ndarray, fill: str = "blur") -> np.ndarray:
    """The replacement image whose pixels stand in for deleted ones (see module docstring)."""
    grey = np.asarray(grey, np.float32)
    if fill == "blur":
        sigma = grey.shape[0] / 8.0
        return cv2.GaussianBlur(grey, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT)
    if fill == "mean":
        return np.full_like(grey, float(grey.mean()))
    if fill == "zero":
        return np.zeros_like(grey)
    raise ValueError(f"unknown deletion fill {fill!r}; choose one of {FILLS}")


def deletion_order(saliency: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Flat pixel indices, most salient first, ties broken at random."""
    s = np.asarray(saliency, np.float64).ravel()
    return np.lexsort((rng.random(s.size), -s))


def _default_render(mode: str) -> Callable[[np.ndarray], np.ndarray]:
    from mammocadx.io.images import to_uint8
    from mammocadx.preprocess.pseudocolor import pseudocolor

    return lambda grey: pseudocolor(to_uint8(grey), mode)


def _scores(backbone: BackboneLike, head: Any, rgb: np.ndarray, batch_size: int) -> np.ndarray:
    import torch

    out = []
    with torch.no_grad(), torch.autocast("cpu", enabled=False):
        for i in range(0, len(rgb), batch_size):
            x = backbone.preprocess(rgb[i : i + batch_size]).float()
            feats = backbone.pool(backbone.feature_map(x)).double().cpu().numpy()
            out.append(np.asarray(head.decision_function(feats), np.float64).ravel())
    return np.concatenate(out)


def _curve(grey, replacement, order, fractions, render, score_fn) -> np.ndarray:
    npx = grey.size
    imgs = []
    flat, rep = grey.ravel(), replacement.ravel()
    for t in fractions:
        k = round(t * npx)
        g = flat.copy()
        g[order[:k]] = rep[order[:k]]
        imgs.append(render(g.reshape(grey.shape)))
    return score_fn(np.stack(imgs).astype(np.float32))


def deletion_check(
    backbone: BackboneLike,
    head: Any,
    rois_grey: np.ndarray | Sequence[np.ndarray],
    maps: Sequence[Explanation | np.ndarray],
    ids: Sequence[str] | None = None,
    pseudocolor: str = "sine",
    render: Callable[[np.ndarray], np.ndarray] | None = None,
    steps: int = 16,
    seeds: int = 3,
    fill: str = "blur",
    grid: tuple[int, int] | None = None,
    towards: str = "decision",
    threshold: float = 0.0,
    batch_size: int = 17,
) -> dict[str, Any]:
    """Deletion curves of heat-maps vs random maps, per image and in aggregate.

    Parameters
    ----------
    backbone : Backbone
        The CNN the head was fitted on.
    head : sklearn estimator or Pipeline
        Fitted binary head; its ``decision_function`` is the score.
    rois_grey : array-like
        ``(N, S, S)`` grey ROIs in [0, 1] (``CADx.roi_image`` / ``Prediction.roi_grey``).
    maps : sequence of Explanation or numpy.ndarray
        Saliency per ROI at ``S x S``: for an Explanation, ``cam_for(class)``
        with the class given by ``towards``; an array is taken as the evidence
        for that class.
    ids : sequence of str, optional
        Names reported per image.
    pseudocolor : str
        ``"sine"`` or ``"grey"``, as the model was fitted (ignored if ``render`` is given).
    render : callable, optional
        grey ``(S, S)`` -> RGB ``(S, S, 3)`` float32, overriding ``pseudocolor``.
    steps : int
        Number of deletion steps (``steps + 1`` points from 0 to 1).
    seeds : int
        Number of random maps per image.
    fill : str
        ``"blur"``, ``"mean"`` or ``"zero"`` (see module docstring).
    grid : tuple of int, optional
        Grid of the random maps; default the explanation's ``cam_lowres`` shape
        (``S // 32`` squared for plain arrays).
    towards : str
        ``"decision"`` (default: the class with ``score > threshold``),
        ``"malignant"`` or ``"benign"``: whose evidence is deleted and in which
        direction the drop is measured.
    threshold : float
        Decision threshold for ``towards="decision"``.

    Returns
    -------
    dict
        ``{"protocol": {...}, "fractions": [...], "per_image": [{"id", "score",
        "auc_drop_salient", "auc_drop_random", "auc_drop_random_sd",
        "towards", "curve_salient", "curve_random"}...], "aggregate": {"n",
        "mean_auc_drop_salient", "mean_auc_drop_random", "mean_difference",
        "sd_difference", "fraction_salient_better", "wilcoxon_p_greater"}}``;
        curves are score drops ``sign * (s(0) - s(t))`` in score units.
    """
    if steps < 1 or seeds < 1:
        raise ValueError("deletion_check needs steps >= 1 and seeds >= 1")
    if towards not in ("decision", "malignant", "benign"):
        raise ValueError(f"towards must be 'decision', 'malignant' or 'benign', got {towards!r}")
    if fill not in FILLS:
        raise ValueError(f"unknown deletion fill {fill!r}; choose one of {FILLS}")
    rois = [np.asarray(r, np.float32) for r in rois_grey]
    if len(rois) != len(maps):
        raise ValueError(f"{len(rois)} ROIs but {len(maps)} maps")
    custom_render = render is not None
    render = render or _default_render(pseudocolor)
    score_fn = lambda rgb: _scores(backbone, head, rgb, batch_size)
    fractions = np.linspace(0.0, 1.0, steps + 1)
    per_image = []
    for i, (grey, m) in enumerate(zip(rois, maps)):
        if towards == "decision":
            s_first = m.score if isinstance(m, Explanation) else float(score_fn(render(grey)[None].astype(np.float32))[0])
            cls = "malignant" if s_first > threshold else "benign"
        else:
            cls = towards
        sign = 1.0 if cls == "malignant" else -1.0
        cam = m.cam_for(cls) if isinstance(m, Explanation) else np.asarray(m, np.float32)
        if cam.shape != grey.shape:
            raise ValueError(f"map {i} is {cam.shape} but its ROI is {grey.shape}")
        g_shape = grid or (m.cam_lowres.shape if isinstance(m, Explanation) else (max(grey.shape[0] // 32, 1),) * 2)
        rng = np.random.default_rng(i)
        replacement = fill_image(grey, fill)
        s_curve = _curve(grey, replacement, deletion_order(cam, rng), fractions, render, score_fn)
        r_curves = []
        for seed in range(seeds):
            r_rng = np.random.default_rng(10_000 + 97 * i + seed)
            rand_map = upsample_map(r_rng.random(g_shape).astype(np.float32), grey.shape)
            r_curves.append(_curve(grey, replacement, deletion_order(rand_map, r_rng), fractions, render, score_fn))
        s0 = s_curve[0]
        drop_s = sign * (s0 - s_curve)
        drops_r = np.array([sign * (s0 - c) for c in r_curves])
        auc_s = float(np.trapezoid(drop_s, fractions))
        aucs_r = np.array([np.trapezoid(d, fractions) for d in drops_r])
        per_image.append(
            {
                "id": str(ids[i]) if ids is not None else str(i),
                "score": float(s0),
                "towards": cls,
                "auc_drop_salient": auc_s,
                "auc_drop_random": float(aucs_r.mean()),
                "auc_drop_random_sd": float(aucs_r.std(ddof=1)) if seeds > 1 else 0.0,
                "curve_salient": drop_s.tolist(),
                "curve_random": drops_r.mean(0).tolist(),
            }
        )
        log.info("deletion %s: AUC drop salient %.4f vs random %.4f", per_image[-1]["id"], auc_s, aucs_r.mean())
    a_s = np.array([p["auc_drop_salient"] for p in per_image])
    a_r = np.array([p["auc_drop_random"] for p in per_image])
    diff = a_s - a_r
    p_value = None
    if len(diff) >= 5 and np.any(diff != 0):
        from scipy.stats import wilcoxon

        p_value = float(wilcoxon(diff, alternative="greater").pvalue)
    return {
        "protocol": {
            "steps": steps,
            "seeds": seeds,
            "fill": fill,
            "pseudocolor": "custom render" if custom_render else pseudocolor,
            "score": "head decision_function (positive = towards malignant), float32 CNN",
            "towards": towards,
            "threshold": threshold,
            "curve": "score drop sign*(s(0) - s(t)) (sign +1 for malignant evidence, -1 for benign) vs deleted "
                     "fraction t, most salient first; AUC by trapezoid over t in [0, 1]",
            "random_baseline": "uniform noise on the heat-map's grid, upsampled bilinearly (same blob size), ties broken at random",
        },
        "fractions": fractions.tolist(),
        "per_image": per_image,
        "aggregate": {
            "n": len(per_image),
            "mean_auc_drop_salient": float(a_s.mean()) if len(a_s) else None,
            "mean_auc_drop_random": float(a_r.mean()) if len(a_r) else None,
            "mean_difference": float(diff.mean()) if len(diff) else None,
            "sd_difference": float(diff.std(ddof=1)) if len(diff) > 1 else None,
            "fraction_salient_better": float((diff > 0).mean()) if len(diff) else None,
            "wilcoxon_p_greater": p_value,
        },
    }
