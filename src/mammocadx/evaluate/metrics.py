"""The paper's quality criteria (eqs. 5-9) plus AUC and the confusion matrix.

AUC is computed from the continuous decision score (``decision_function``), never
from ``predict_proba`` (whose Platt scaling is fitted by an internal CV and can
disagree with the decision; scikit-learn issues #31222, #25631).
"""
from __future__ import annotations

import math

import numpy as np

#: Metric names in report order.
METRICS: tuple[str, ...] = ("auc", "accuracy", "sensitivity", "specificity", "precision", "f1")


def _ratio(num: float, den: float) -> float:
    return float(num / den) if den > 0 else float("nan")


def binary_metrics(y_true: np.ndarray, score: np.ndarray, threshold: float = 0.0) -> dict[str, float | dict[str, int]]:
    """Accuracy, sensitivity, specificity, precision, F1, AUC and the confusion matrix.

    Parameters
    ----------
    y_true : array of int
        1 = malignant (positive), 0 = benign.
    score : array of float
        Decision score, higher = more malignant.
    threshold : float
        Scores strictly above it are called malignant.

    Returns
    -------
    dict
        Each metric as a float (``nan`` where undefined, e.g. AUC with one class,
        precision with no positive call) and ``confusion`` = ``{"tn", "fp", "fn", "tp"}``.
    """
    from sklearn.metrics import roc_auc_score

    y = np.asarray(y_true).astype(int)
    s = np.asarray(score, dtype=float)
    if y.shape != s.shape or y.ndim != 1:
        raise ValueError(f"y_true and score must be 1-D of the same length, got {y.shape} and {s.shape}")
    auc = float(roc_auc_score(y, s)) if len(np.unique(y)) == 2 else float("nan")
    return {"auc": auc, **prediction_metrics(y, (s > threshold).astype(int))}


def prediction_metrics(y_true: np.ndarray, pred: np.ndarray) -> dict[str, float | dict[str, int]]:
    """Accuracy, sensitivity, specificity, precision, F1 and the confusion matrix from hard calls (1 = malignant).

    Used directly when folds call lesions at their own thresholds, so pooled calls
    cannot be re-derived from the pooled scores.
    """
    from sklearn.metrics import confusion_matrix

    tn, fp, fn, tp = (int(v) for v in confusion_matrix(np.asarray(y_true).astype(int), np.asarray(pred).astype(int),
                                                       labels=[0, 1]).ravel())
    return {
        "accuracy": _ratio(tp + tn, tp + tn + fp + fn),
        "sensitivity": _ratio(tp, tp + fn),
        "specificity": _ratio(tn, tn + fp),
        "precision": _ratio(tp, tp + fp),
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
        "confusion": {"tn": tn, "fp": fp, "fn": fn, "tp": tp},
    }


def summarize(values: list[float]) -> dict[str, float]:
    """Mean, sample standard deviation, min and max of a list (NaNs ignored)."""
    v = np.asarray([x for x in values if x is not None and not math.isnan(x)], dtype=float)
    if v.size == 0:
        return {"mean": float("nan"), "sd": float("nan"), "min": float("nan"), "max": float("nan"), "n": 0}
    return {
        "mean": float(v.mean()),
        "sd": float(v.std(ddof=1)) if v.size > 1 else 0.0,
        "min": float(v.min()),
        "max": float(v.max()),
        "n": int(v.size),
    }
