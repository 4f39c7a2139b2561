"""PCA component counts and operating points chosen the paper's way, but inside the training folds only.

The paper (§3.4) reduces the z-scored deep features with PCA and picks the
number of components by "a variation of recursive feature elimination". The
heads that search (:class:`mammocadx.model.heads.InnerCVPipeline`) use the grid
and rules here, on their training rows only.

Cap rule (fixed ``n_components``, e.g. the paper's 404): PCA after z-scoring
cannot have more than ``min(n_samples - 1, n_features)`` informative
components (centred data have rank at most ``n_samples - 1``); a larger request
is capped to that.
"""
from __future__ import annotations

import logging

import numpy as np
from sklearn.metrics import roc_curve

from mammocadx.errors import ModelError

log = logging.getLogger(__name__)

#: The paper's component count.
PAPER_N_COMPONENTS = 404

CAP_RULE = "n_components <= min(n_samples - 1, n_features)"


def cap_components(requested: int, n_samples: int, n_features: int) -> tuple[int, bool]:
    """Apply the cap rule; returns ``(k, capped)``.

    Parameters
    ----------
    requested : int
        Components asked for (>= 1).
    n_samples, n_features : int
        Shape of the training rows PCA is fitted on.

    Raises
    ------
    ModelError
        If ``requested < 1`` or there are fewer than 2 samples.
    """
    if requested < 1:
        raise ModelError(f"PCA needs at least 1 component, got {requested}")
    limit = min(n_samples - 1, n_features)
    if limit < 1:
        raise ModelError(f"cannot fit PCA on {n_samples} samples x {n_features} features")
    return (limit, True) if requested > limit else (int(requested), False)


def default_grid(k_max: int, n_steps: int = 8, k_min: int = 2) -> list[int]:
    """Decreasing component counts from ``k_max`` down to ``k_min``, roughly geometric.

    ``default_grid(75)`` -> ``[75, 51, 35, 24, 16, 11, 7, 5, 3, 2]``-like: dense where
    small counts differ most, always starting at the maximum (the "all components"
    start of recursive elimination).
    """
    k_max = int(k_max)
    if k_max <= k_min:
        return [max(k_max, 1)]
    ratio = (k_min / k_max) ** (1.0 / max(n_steps, 1))
    grid = {k_max}
    k = float(k_max)
    while k > k_min:
        k *= ratio
        grid.add(max(int(round(k)), k_min))
    return sorted(grid, reverse=True)


def youden_threshold(y: np.ndarray, score: np.ndarray) -> float:
    """Threshold maximising sensitivity + specificity - 1 (scores strictly above it are positive).

    Returns the midpoint between the chosen ROC point's score and the next lower
    score, so that the rule ``score > t`` reproduces the ROC point.
    """
    y = np.asarray(y).astype(int)
    s = np.asarray(score, dtype=float)
    if len(np.unique(y)) < 2:
        return 0.0
    fpr, tpr, thr = roc_curve(y, s)
    j = tpr - fpr
    best = int(np.argmax(j))
    t = thr[best]
    if not np.isfinite(t):
        return float(s.max())
    lower = s[s < t]
    return float((t + lower.max()) / 2.0) if lower.size else float(t - 1e-9)
