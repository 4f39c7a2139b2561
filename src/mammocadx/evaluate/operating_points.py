"""Screening operating points, Brier score and expected calibration error, as weighted counts.

Every function here takes lesion weights ``w`` of shape (B, n) and returns one
value per row of ``w``: ``w = ones((1, n))`` gives the plain metric, and the
weights of :func:`~mammocadx.evaluate.bootstrap.patient_weights` give all
bootstrap replicates at once (the same vectorisation as the bootstrap's AUC).

Operating points read off the ROC curve of the scores given: sensitivity at a
specificity target is the highest sensitivity among thresholds whose
specificity on these scores is >= the target (and vice versa). Read off pooled
out-of-fold scores this is the curve's value at that point, slightly optimistic
as a threshold: the threshold itself is chosen on the same scores. The honest
counterpart, a threshold set on the inner out-of-fold scores of each fold's
training rows and applied to its test rows
(:func:`~mammocadx.model.operating_point.threshold_for`), is reported beside it
by :mod:`mammocadx.evaluate.calibration_report`.

Expected calibration error (ECE): lesions are put in ``n_bins`` bins of the
predicted probability, **equal-mass** by default (bin edges at quantiles of the
probabilities, so every bin holds about n / n_bins lesions; equal-width bins
leave most bins nearly empty on 100-lesion sets) or ``"uniform"`` (equal width
on [0, 1]); ECE = sum over bins of (bin weight / total) x |mean outcome - mean
probability| = sum_b |sum_{i in b} w_i (y_i - p_i)| / sum w. The edges are
fixed on the data given and kept for the bootstrap replicates.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: Specificity targets at which sensitivity is reported, and sensitivity targets for specificity.
SPEC_TARGETS: tuple[float, ...] = (0.80, 0.90, 0.95)
SENS_TARGETS: tuple[float, ...] = (0.90, 0.95)


def op_names(spec_targets: Sequence[float] = SPEC_TARGETS, sens_targets: Sequence[float] = SENS_TARGETS) -> list[str]:
    """Metric names: ``sensitivity_at_specificity_0.90`` ..., ``specificity_at_sensitivity_0.95`` ..."""
    return ([f"sensitivity_at_specificity_{t:.2f}" for t in spec_targets]
            + [f"specificity_at_sensitivity_{t:.2f}" for t in sens_targets])


def _as_w(w: np.ndarray | None, n: int) -> np.ndarray:
    return np.ones((1, n)) if w is None else np.atleast_2d(np.asarray(w, dtype=float))


def _ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(b > 0, a / np.where(b > 0, b, 1.0), np.nan)


def weighted_operating_points(y: np.ndarray, s: np.ndarray, w: np.ndarray | None = None,
                              spec_targets: Sequence[float] = SPEC_TARGETS,
                              sens_targets: Sequence[float] = SENS_TARGETS) -> np.ndarray:
    """Sensitivity at each specificity target then specificity at each sensitivity target, shape (B, k).

    Thresholds run over the distinct scores (calls: score > threshold) plus one below all.
    """
    y = np.asarray(y).astype(int)
    s = np.asarray(s, dtype=float)
    W = _as_w(w, len(y))
    u, tie = np.unique(s, return_inverse=True)
    onehot = np.zeros((len(s), len(u)))
    onehot[np.arange(len(s)), tie] = 1.0
    wpos, wneg = (W * (y == 1)) @ onehot, (W * (y == 0)) @ onehot  # (B, T) weight per distinct score
    P, N = wpos.sum(axis=1, keepdims=True), wneg.sum(axis=1, keepdims=True)
    # column 0: threshold below every score (sens 1, spec 0); column j+1: threshold at u[j]
    zeros = np.zeros((len(W), 1))
    sens = _ratio(P - np.concatenate([zeros, np.cumsum(wpos, axis=1)], axis=1), P)
    spec = _ratio(np.concatenate([zeros, np.cumsum(wneg, axis=1)], axis=1), N)
    eps = 1e-12
    out = []
    rows = np.arange(len(W))
    for t in spec_targets:  # spec non-decreasing in the column: the first column that meets it has the best sens
        ok = spec >= t - eps
        first = np.argmax(ok, axis=1)
        out.append(np.where(ok.any(axis=1), sens[rows, first], np.nan))
    for t in sens_targets:  # sens non-increasing: the last column that meets it has the best spec
        ok = sens >= t - eps
        last = ok.shape[1] - 1 - np.argmax(ok[:, ::-1], axis=1)
        out.append(np.where(ok.any(axis=1), spec[rows, last], np.nan))
    return np.stack(out, axis=1)


def weighted_brier(y: np.ndarray, p: np.ndarray, w: np.ndarray | None = None) -> np.ndarray:
    """Brier score per row of ``w`` (B,)."""
    y = np.asarray(y, dtype=float)
    W = _as_w(w, len(y))
    return _ratio(W @ (np.asarray(p, dtype=float) - y) ** 2, W.sum(axis=1))


def ece_edges(p: np.ndarray, n_bins: int = 10, strategy: str = "quantile") -> np.ndarray:
    """Inner bin edges (n_bins - 1 or fewer): quantiles of ``p`` (equal mass) or uniform on [0, 1]."""
    if strategy == "uniform":
        return np.linspace(0.0, 1.0, n_bins + 1)[1:-1]
    if strategy != "quantile":
        raise ValueError(f"unknown ECE binning {strategy!r} (quantile or uniform)")
    return np.unique(np.quantile(np.asarray(p, dtype=float), np.linspace(0.0, 1.0, n_bins + 1)[1:-1]))


def _bins(p: np.ndarray, edges: np.ndarray) -> np.ndarray:
    b = np.searchsorted(edges, p, side="right")  # bin k holds edges[k-1] <= p < edges[k]
    onehot = np.zeros((len(p), len(edges) + 1))
    onehot[np.arange(len(p)), b] = 1.0
    return onehot


def weighted_ece(y: np.ndarray, p: np.ndarray, w: np.ndarray | None = None, edges: np.ndarray | None = None,
                 n_bins: int = 10, strategy: str = "quantile") -> np.ndarray:
    """Expected calibration error per row of ``w`` (B,); ``edges`` from :func:`ece_edges` of ``p`` if not given."""
    y = np.asarray(y, dtype=float)
    p = np.asarray(p, dtype=float)
    W = _as_w(w, len(y))
    onehot = _bins(p, ece_edges(p, n_bins, strategy) if edges is None else edges)
    gap = (W * (y - p)) @ onehot  # (B, bins)
    return _ratio(np.abs(gap).sum(axis=1), W.sum(axis=1))


def reliability_curve(y: np.ndarray, p: np.ndarray, n_bins: int = 10,
                      strategy: str = "quantile") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per non-empty bin: mean predicted probability, observed fraction malignant, lesion count."""
    y = np.asarray(y, dtype=float)
    p = np.asarray(p, dtype=float)
    onehot = _bins(p, ece_edges(p, n_bins, strategy))
    cnt = onehot.sum(axis=0)
    keep = cnt > 0
    return (p @ onehot)[keep] / cnt[keep], (y @ onehot)[keep] / cnt[keep], cnt[keep]


def operating_points(scores: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Sensitivity at specificity 0.80/0.90/0.95 and specificity at sensitivity 0.90/0.95 of ``scores``."""
    vals = weighted_operating_points(y, scores)[0]
    return dict(zip(op_names(), (float(v) for v in vals)))


def brier_score(p: np.ndarray, y: np.ndarray) -> float:
    """Mean squared difference between probability and outcome (0 best; 0.25 for a constant 0.5)."""
    return float(weighted_brier(y, p)[0])


def expected_calibration_error(p: np.ndarray, y: np.ndarray, n_bins: int = 10, strategy: str = "quantile") -> float:
    """ECE with ``n_bins`` equal-mass (``quantile``) or equal-width (``uniform``) bins."""
    return float(weighted_ece(y, p, n_bins=n_bins, strategy=strategy)[0])
