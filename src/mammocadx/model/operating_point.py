"""Operating points: the decision threshold that reaches a target sensitivity or specificity.

The rule everywhere in mammocadx is "scores strictly above the threshold are
called malignant". :func:`threshold_for` returns, for a target sensitivity, the
**highest** threshold whose sensitivity on the given scores is at least the
target (so specificity is as high as it can be), and for a target specificity the
**lowest** threshold whose specificity is at least the target. The threshold is
placed midway between the two neighbouring distinct scores (as
:func:`~mammocadx.model.selection.youden_threshold` does), so it reproduces the
ROC point on these scores and sits in the gap for new ones.

Set a model's threshold from **inner out-of-fold scores of its training rows**
only; on the scores of the model's own training rows the point would be
optimistic, and on test rows it would leak.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from mammocadx.errors import ModelError


def _midpoint(u: np.ndarray, j: int) -> float:
    """Threshold between distinct sorted scores ``u[j]`` and ``u[j + 1]`` (j = -1: below all, j = last: above all)."""
    if j < 0:
        return float(u[0] - max(1.0, abs(u[0])) * 1e-6) if u.size else 0.0
    if j >= len(u) - 1:
        return float(u[-1])
    return float((u[j] + u[j + 1]) / 2.0)


def threshold_for(scores: Any, y: Any, sensitivity: float | None = None, specificity: float | None = None) -> float:
    """The threshold that meets a target sensitivity **or** specificity on ``(scores, y)``.

    Parameters
    ----------
    scores, y : arrays (n,)
        Decision values (higher = more malignant) and labels (1 = malignant).
    sensitivity, specificity : float in (0, 1]
        Exactly one target.

    Returns
    -------
    float
        ``t`` such that ``scores > t`` calls malignant; sensitivity target: the highest
        such ``t`` with sensitivity >= target; specificity target: the lowest with
        specificity >= target.

    Raises
    ------
    ModelError
        No or two targets, a target outside (0, 1], or one class missing.
    """
    if (sensitivity is None) == (specificity is None):
        raise ModelError("give exactly one of sensitivity= or specificity=")
    target = float(sensitivity if sensitivity is not None else specificity)  # type: ignore[arg-type]
    if not 0.0 < target <= 1.0:
        raise ModelError(f"an operating-point target must be in (0, 1], got {target}")
    s = np.asarray(scores, dtype=float).ravel()
    yy = np.asarray(y).astype(int).ravel()
    if s.shape != yy.shape or len(np.unique(yy)) != 2:
        raise ModelError("an operating point needs one label per score and both classes")
    u = np.unique(s)  # candidate thresholds: u[j] (calls score > u[j]); j = -1: below every score
    pos, neg = np.sort(s[yy == 1]), np.sort(s[yy == 0])
    # sens(j) = fraction of positives > u[j]; spec(j) = fraction of negatives <= u[j]
    sens = np.concatenate([[1.0], 1.0 - np.searchsorted(pos, u, side="right") / len(pos)])
    spec = np.concatenate([[0.0], np.searchsorted(neg, u, side="right") / len(neg)])
    eps = 1e-12
    if sensitivity is not None:
        j = int(np.flatnonzero(sens >= target - eps).max()) - 1  # sens non-increasing: the last one that meets it
    else:
        j = int(np.flatnonzero(spec >= target - eps).min()) - 1  # spec non-decreasing: the first one
    return _midpoint(u, j)


def parse_operating_point(text: str) -> dict[str, float]:
    """``"sensitivity=0.90"`` -> ``{"sensitivity": 0.9}`` (also ``sens=``, ``specificity=``, ``spec=``; 90 % forms).

    Raises
    ------
    ModelError
        Anything else.
    """
    key, sep, value = str(text).partition("=")
    names = {"sensitivity": "sensitivity", "sens": "sensitivity", "specificity": "specificity", "spec": "specificity"}
    k = names.get(key.strip().lower())
    try:
        v = float(value.strip().rstrip("%"))
    except ValueError:
        k = None
    if not sep or k is None:
        raise ModelError(f"operating point {text!r}: expected sensitivity=0.90 or specificity=0.90")
    if value.strip().endswith("%") or v > 1.0:
        v /= 100.0
    if not 0.0 < v <= 1.0:
        raise ModelError(f"operating point {text!r}: the target must be in (0, 1]")
    return {k: v}
