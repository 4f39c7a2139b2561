"""Bootstrap 95 % confidence intervals that resample patients, not lesions.

Lesions of one woman are correlated (two breasts, several findings), so the
unit of resampling is the patient: each replicate draws patients with
replacement and takes all their lesions. Percentile intervals.

With repeated cross-validation every lesion has one out-of-fold score per
repeat; pass ``score``/``pred`` as ``(n_repeats, n)`` arrays and each replicate's
metric is the mean over repeats of the per-repeat metric (the same quantity the
headline number is), so the interval is for that mean.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import warnings

import numpy as np
from scipy.stats import rankdata

from mammocadx.errors import EvaluationError
from mammocadx.evaluate.metrics import METRICS

#: Metrics given an interval, in report order.
BOOT_METRICS: tuple[str, ...] = METRICS


def fast_auc(y: np.ndarray, s: np.ndarray) -> float:
    """ROC AUC by the Mann-Whitney rank formula (ties get average ranks); nan with one class.

    Equal to ``sklearn.metrics.roc_auc_score``; hand-written to stay consistent with the
    weighted form the bootstrap uses (:func:`_weighted_metrics`), without sklearn's validation overhead.
    """
    pos = y == 1
    n1 = int(pos.sum())
    n0 = len(y) - n1
    if n1 == 0 or n0 == 0:
        return np.nan
    ranks = rankdata(s)
    return float((ranks[pos].sum() - n1 * (n1 + 1) / 2.0) / (n1 * n0))


def _point(y: np.ndarray, s: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Metrics of one (y, score, prediction) set, in BOOT_METRICS order (nan where undefined)."""
    tp = float(np.sum((p == 1) & (y == 1)))
    tn = float(np.sum((p == 0) & (y == 0)))
    fp = float(np.sum((p == 1) & (y == 0)))
    fn = float(np.sum((p == 0) & (y == 1)))

    def r(a: float, b: float) -> float:
        return a / b if b > 0 else np.nan

    auc = fast_auc(y, s)
    return np.array([auc, r(tp + tn, tp + tn + fp + fn), r(tp, tp + fn), r(tn, tn + fp), r(tp, tp + fp),
                     r(2 * tp, 2 * tp + fp + fn)], dtype=float)


def _as_2d(a: Any, n: int, name: str) -> np.ndarray:
    a = np.asarray(a, dtype=float)
    if a.ndim == 1:
        a = a[None, :]
    if a.ndim != 2 or a.shape[1] != n:
        raise EvaluationError(f"{name} must have shape (n,) or (repeats, n) with n={n}, got {a.shape}")
    return a


def point_estimates(y: Sequence[int], score: Any, pred: Any) -> dict[str, float]:
    """The metrics the intervals are for (mean over repeats when 2-D)."""
    yy = np.asarray(y).astype(int)
    s2, p2 = _as_2d(score, len(yy), "score"), _as_2d(pred, len(yy), "pred")
    vals = np.nanmean(np.stack([_point(yy, s, p.astype(int)) for s, p in zip(s2, p2)]), axis=0)
    return dict(zip(BOOT_METRICS, (float(v) for v in vals)))


def bootstrap_ci(
    y: Sequence[int],
    score: Any,
    pred: Any,
    groups: Sequence[Any],
    n_boot: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap interval of every metric, resampling patients.

    Parameters
    ----------
    y : array (n,)
        Labels, 1 = malignant.
    score, pred : array (n,) or (repeats, n)
        Decision scores and hard predictions (0/1); 2-D for repeated CV.
    groups : array (n,)
        Patient id of each lesion.
    n_boot : int
        Replicates (2000 by default).
    seed : int
        Seed of the resampling.
    level : float
        Coverage (0.95).

    Returns
    -------
    dict
        ``{metric: (lo, hi)}`` for auc, accuracy, sensitivity, specificity, precision, f1
        (``(nan, nan)`` if a metric is undefined in every replicate).
    """
    yy = np.asarray(y).astype(int)
    n = len(yy)
    g = np.asarray(groups)
    if len(g) != n:
        raise EvaluationError(f"groups has {len(g)} entries for {n} lesions")
    s2, p2 = _as_2d(score, n, "score"), _as_2d(pred, n, "pred").astype(int)
    out = np.full((n_boot, len(BOOT_METRICS)), np.nan)
    with warnings.catch_warnings():  # a metric undefined in every repeat of a replicate (e.g. no positive call)
        warnings.simplefilter("ignore", RuntimeWarning)
        _fill(out, yy, s2, p2, g, seed, n_boot)
    return _intervals(out, level)


def patient_weights(groups: Sequence[Any], n_boot: int = 2000, seed: int = 0) -> np.ndarray:
    """Lesion weights of every bootstrap replicate that resamples patients, shape (n_boot, n).

    A replicate that draws a patient k times is the original lesions weighted by k,
    so any metric that is a weighted count (accuracy, sensitivity at a fixed
    specificity, AUC as weighted pairs, Brier score, coverage ...) is computed for
    all replicates at once from these weights. The draws depend only on
    ``groups``, ``n_boot`` and ``seed``: every metric of a run sees the same replicates.
    """
    _, patient_of = np.unique(np.asarray(groups), return_inverse=True)
    n_pat = int(patient_of.max()) + 1 if len(patient_of) else 0
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, n_pat, (n_boot, n_pat))
    counts = np.zeros((n_boot, n_pat))
    np.add.at(counts, (np.arange(n_boot)[:, None], pick), 1.0)
    return counts[:, patient_of]


def percentile_interval(values: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of replicate values, NaNs (metric undefined in a replicate) left out."""
    col = np.asarray(values, dtype=float)
    col = col[~np.isnan(col)]
    alpha = (1.0 - level) / 2.0
    return (float(np.quantile(col, alpha)), float(np.quantile(col, 1 - alpha))) if col.size else (np.nan, np.nan)


def _fill(out: np.ndarray, yy: np.ndarray, s2: np.ndarray, p2: np.ndarray, groups: np.ndarray,
          seed: int, n_boot: int) -> None:
    # Vectorised over replicates through patient_weights: same draws, same numbers as
    # concatenating the drawn patients, ~50x faster.
    w = patient_weights(groups, n_boot, seed)  # (n_boot, n) lesion weights
    per_repeat = np.stack([_weighted_metrics(yy, s, p, w) for s, p in zip(s2, p2)])  # (repeats, n_boot, m)
    out[:] = per_repeat[0] if len(s2) == 1 else np.nanmean(per_repeat, axis=0)


def _ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(b > 0, a / np.where(b > 0, b, 1.0), np.nan)


def weighted_auc(y: np.ndarray, s: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Mann-Whitney AUC for every row of lesion weights ``w`` (B, n): weighted (pos, neg) pairs, ties half."""
    pos, neg = y == 1, y == 0
    order = np.argsort(s, kind="stable")
    _, tie = np.unique(s[order], return_inverse=True)
    onehot = np.zeros((len(s), tie.max() + 1 if len(s) else 0))
    onehot[np.arange(len(s)), tie] = 1.0
    wo = w[:, order]
    wpos, wneg = (wo * pos[order]) @ onehot, (wo * neg[order]) @ onehot  # (B, tie groups)
    below = np.cumsum(wneg, axis=1) - wneg
    return _ratio((wpos * (below + 0.5 * wneg)).sum(axis=1), wpos.sum(axis=1) * wneg.sum(axis=1))


def _weighted_metrics(y: np.ndarray, s: np.ndarray, p: np.ndarray, w: np.ndarray) -> np.ndarray:
    """BOOT_METRICS of every replicate: ``w`` (B, n) lesion weights; returns (B, len(BOOT_METRICS))."""
    pos, neg = y == 1, y == 0
    tp, fn = w @ ((p == 1) & pos), w @ ((p == 0) & pos)
    fp, tn = w @ ((p == 1) & neg), w @ ((p == 0) & neg)
    auc = weighted_auc(y, s, w)
    return np.stack([auc, _ratio(tp + tn, tp + tn + fp + fn), _ratio(tp, tp + fn), _ratio(tn, tn + fp),
                     _ratio(tp, tp + fp), _ratio(2 * tp, 2 * tp + fp + fn)], axis=1)


def _intervals(out: np.ndarray, level: float) -> dict[str, tuple[float, float]]:
    return {m: percentile_interval(out[:, j], level) for j, m in enumerate(BOOT_METRICS)}


def cv_arrays(predictions: Sequence[Any], n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(scores, preds, index)`` from CV ``FoldPrediction`` objects.

    ``scores``/``preds`` have shape (repeats, m) over the ``m`` lesions in ``index``
    that were scored in every repeat (all lesions for k-fold, the test side for a
    hold-out split).
    """
    repeats = sorted({p.repeat for p in predictions})
    rix = {r: k for k, r in enumerate(repeats)}
    S = np.full((len(repeats), n), np.nan)
    P = np.zeros((len(repeats), n), dtype=int)
    for p in predictions:
        S[rix[p.repeat], p.index] = p.score
        P[rix[p.repeat], p.index] = p.prediction
    index = np.flatnonzero(~np.isnan(S).any(axis=0))
    if index.size == 0:
        raise EvaluationError("no lesion has an out-of-fold score in every repeat")
    return S[:, index], P[:, index], index
