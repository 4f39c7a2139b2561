"""Calibrated probability of malignancy from a head's decision value.

A head's ``decision_function`` orders lesions but is not a probability. A
calibrator maps the decision value ``f`` to ``P(malignant | f)``:

- :class:`PlattCalibrator`: logistic regression on ``f`` (Platt 1999), two
  numbers, with Platt's smoothed targets ``(N+ + 1) / (N+ + 2)`` and
  ``1 / (N- + 2)`` so a separable calibration set does not give infinite slopes;
- :class:`IsotonicCalibrator`: a monotone step function (pool-adjacent-violators,
  scikit-learn's ``IsotonicRegression``), stored as its knots and evaluated by
  linear interpolation between them, clipped at the ends.

Beta calibration (Kull et al. 2017) is not offered: it is defined on scores in
(0, 1), and decision values of an SVM or a logistic regression are unbounded;
Platt's sigmoid is its special case on logits.

Both must be fitted on scores the head did **not** see in training: the inner
out-of-fold scores of the training rows (the head refitted on inner folds of the
training patients). :func:`choose_calibrator` picks one of them by inner
patient-grouped cross-validation of the calibrator itself on those scores.

The fitted state is plain numbers (``to_dict``/``from_dict``: JSON, no pickle).
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np
from scipy.optimize import minimize
from scipy.special import expit

from mammocadx.errors import ModelError

log = logging.getLogger(__name__)

#: Probabilities are clipped to [EPS, 1 - EPS] where a logarithm is taken.
EPS = 1e-6


def _check_xy(scores: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=float).ravel()
    yy = np.asarray(y).astype(int).ravel()
    if s.shape != yy.shape:
        raise ModelError(f"calibration needs one label per score, got {s.size} scores and {yy.size} labels")
    if not np.all(np.isfinite(s)):
        raise ModelError("calibration scores must be finite")
    if len(np.unique(yy)) != 2:
        raise ModelError("calibration needs both benign and malignant lesions")
    return s, yy


class PlattCalibrator:
    """``p = 1 / (1 + exp(-(a * f + b)))`` fitted by maximum likelihood with Platt's smoothed targets.

    Attributes
    ----------
    a_, b_ : float
        Slope and intercept on the decision value.
    """

    kind = "platt"

    def fit(self, scores: Any, y: Any) -> "PlattCalibrator":
        """Fit on decision values ``scores`` and labels ``y`` (1 = malignant)."""
        s, yy = _check_xy(scores, y)
        n_pos, n_neg = int(yy.sum()), int((1 - yy).sum())
        t = np.where(yy == 1, (n_pos + 1.0) / (n_pos + 2.0), 1.0 / (n_neg + 2.0))
        scale = float(np.std(s)) or 1.0  # optimise on a unit-scale score: well conditioned for any head

        def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
            z = w[0] * s / scale + w[1]
            p = expit(z)
            # -sum t log p + (1-t) log(1-p), written with logaddexp for stability
            val = float(np.sum(np.logaddexp(0.0, z) - t * z))
            g = p - t
            return val, np.array([np.sum(g * s / scale), np.sum(g)])

        prior = np.log((n_pos + 1.0) / (n_neg + 1.0))
        res = minimize(loss, np.array([0.0, prior]), jac=True, method="L-BFGS-B")
        self.a_ = float(res.x[0] / scale)
        self.b_ = float(res.x[1])
        return self

    def predict_proba(self, scores: Any) -> np.ndarray:
        """``P(malignant)`` of each decision value, shape (n,)."""
        return expit(self.a_ * np.asarray(scores, dtype=float) + self.b_)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly fitted state."""
        return {"kind": self.kind, "a": self.a_, "b": self.b_}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "PlattCalibrator":
        """Rebuild from :meth:`to_dict`."""
        c = cls()
        c.a_, c.b_ = float(d["a"]), float(d["b"])
        return c


class IsotonicCalibrator:
    """Monotone (non-decreasing) calibration map; knots from scikit-learn's ``IsotonicRegression``.

    Attributes
    ----------
    x_, p_ : ndarray
        Knots: decision values and their probabilities; in between, linear
        interpolation; outside, the end values.
    """

    kind = "isotonic"

    def fit(self, scores: Any, y: Any) -> "IsotonicCalibrator":
        """Fit on decision values ``scores`` and labels ``y`` (1 = malignant)."""
        from sklearn.isotonic import IsotonicRegression

        s, yy = _check_xy(scores, y)
        iso = IsotonicRegression(y_min=0.0, y_max=1.0, increasing=True, out_of_bounds="clip").fit(s, yy)
        self.x_ = np.asarray(iso.X_thresholds_, dtype=float)
        self.p_ = np.asarray(iso.y_thresholds_, dtype=float)
        return self

    def predict_proba(self, scores: Any) -> np.ndarray:
        """``P(malignant)`` of each decision value, shape (n,)."""
        return np.interp(np.asarray(scores, dtype=float), self.x_, self.p_)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly fitted state."""
        return {"kind": self.kind, "x": [float(v) for v in self.x_], "p": [float(v) for v in self.p_]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "IsotonicCalibrator":
        """Rebuild from :meth:`to_dict`."""
        c = cls()
        c.x_ = np.asarray(d["x"], dtype=float)
        c.p_ = np.asarray(d["p"], dtype=float)
        if c.x_.shape != c.p_.shape or c.x_.ndim != 1 or c.x_.size == 0 or np.any(np.diff(c.x_) < 0):
            raise ModelError("isotonic calibrator: knots must be two equal-length 1-D lists, x non-decreasing")
        return c


CALIBRATORS: dict[str, type] = {"platt": PlattCalibrator, "isotonic": IsotonicCalibrator}
Calibrator = PlattCalibrator | IsotonicCalibrator


def calibrator_from_dict(d: dict[str, Any]) -> Calibrator:
    """Rebuild a fitted calibrator from its ``to_dict()`` (``kind`` says which)."""
    try:
        cls = CALIBRATORS[d["kind"]]
    except (KeyError, TypeError):
        raise ModelError(f"unknown calibrator {d.get('kind') if isinstance(d, dict) else d!r}; "
                         f"expected one of {sorted(CALIBRATORS)}") from None
    return cls.from_dict(d)


def brier(p: Any, y: Any) -> float:
    """Brier score: mean squared difference between probability and outcome (0 best)."""
    p, yy = np.asarray(p, dtype=float), np.asarray(y, dtype=float)
    return float(np.mean((p - yy) ** 2))


def log_loss(p: Any, y: Any) -> float:
    """Mean negative log-likelihood, probabilities clipped to [EPS, 1 - EPS]."""
    p = np.clip(np.asarray(p, dtype=float), EPS, 1 - EPS)
    yy = np.asarray(y, dtype=float)
    return float(-np.mean(yy * np.log(p) + (1 - yy) * np.log(1 - p)))


_LOSSES = {"brier": brier, "log_loss": log_loss}


def choose_calibrator(
    oof_scores: Any,
    y: Any,
    groups: Any = None,
    metric: str = "brier",
    folds: int = 5,
    seed: int = 0,
    candidates: tuple[str, ...] = ("platt", "isotonic"),
) -> tuple[Calibrator, dict[str, Any]]:
    """Pick and fit a calibrator on out-of-fold scores of the training rows.

    Each candidate is fitted on the inner-training part of a patient-grouped,
    label-stratified split of the given scores and scored (``metric``) on the
    held-out part; the candidate with the lowest mean wins (ties: the first in
    ``candidates``, Platt: the simpler) and is refitted on all the scores.

    Parameters
    ----------
    oof_scores, y : arrays (n,)
        Inner out-of-fold decision values of the training rows and their labels.
        Never pass scores of rows the head was fitted on, nor any test row.
    groups : array (n,), optional
        Patient ids (folds never split a patient); None: every row its own patient.
    metric : {"brier", "log_loss"}
    folds : int
        Inner folds (reduced to the number of patients of the rarer class when fewer).
    seed : int
        Seed of the folds.

    Returns
    -------
    calibrator, record
        The fitted calibrator and ``{"chosen", "metric", "scores": {kind: mean loss}, "folds"}``.
    """
    from sklearn.model_selection import StratifiedGroupKFold

    s, yy = _check_xy(oof_scores, y)
    if metric not in _LOSSES:
        raise ModelError(f"unknown calibration metric {metric!r} (brier or log_loss)")
    unknown = [c for c in candidates if c not in CALIBRATORS]
    if unknown or not candidates:
        raise ModelError(f"unknown calibrator(s) {unknown}; expected some of {sorted(CALIBRATORS)}")
    g = np.arange(len(yy)) if groups is None else np.asarray(groups)
    k = min(folds, *(len(np.unique(g[yy == c])) for c in (0, 1)))
    losses: dict[str, float] = {}
    if k >= 2 and len(candidates) > 1:
        cv = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
        splits = [(tr, te) for tr, te in cv.split(s, yy, g) if len(np.unique(yy[tr])) == 2]
        for name in candidates:
            vals = [_LOSSES[metric](CALIBRATORS[name]().fit(s[tr], yy[tr]).predict_proba(s[te]), yy[te])
                    for tr, te in splits]
            losses[name] = float(np.mean(vals)) if vals else float("nan")
    valid = {c: v for c, v in losses.items() if np.isfinite(v)}
    chosen = min(valid, key=lambda c: (valid[c], candidates.index(c))) if valid else candidates[0]
    cal = CALIBRATORS[chosen]().fit(s, yy)
    log.debug("calibrator %s chosen by inner %d-fold %s %s", chosen, k, metric, losses)
    return cal, {"chosen": chosen, "metric": metric, "scores": losses, "folds": int(k)}


def held_out_scores(head: Any, X: Any, y: Any, groups: Any, make_head: Callable[[int, int], Any], folds: int = 5,
                    seed: int = 0, wrap: Callable[[Any], Any] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Out-of-sample scores of training rows ``(row indices into X, scores)`` for a ``head`` fitted on them.

    A head that keeps held-out scores of its own (``head.held_out_scores()``: a fine-tuned
    network's inner-validation patients) gives those: inner CV would mean ``folds`` more
    fine-tunings. Any other head: :func:`inner_oof_scores` on every row.
    """
    own = getattr(head, "held_out_scores", None)
    if callable(own):
        rows, scores = own()
        return np.asarray(rows, dtype=int), np.asarray(scores, dtype=float)
    return np.arange(len(np.asarray(y))), inner_oof_scores(X, y, groups, make_head, folds=folds, seed=seed, wrap=wrap)


def inner_oof_scores(X: Any, y: Any, groups: Any, make_head: Callable[[int, int], Any], folds: int = 5,
                     seed: int = 0, wrap: Callable[[Any], Any] | None = None) -> np.ndarray:
    """Out-of-fold decision values of the rows of ``X``: each scored by a head fitted without its patient.

    What the calibrator, the operating-point threshold and the conformal sets of a model
    are fitted on (``CADx.fit`` on all its training rows; per outer fold in evaluation).
    Folds are patient-grouped and label-stratified (``folds`` reduced to the patients of
    the rarer class when fewer); every head is fresh from ``make_head(n_rows, n_features)``.

    Parameters
    ----------
    X, y, groups : arrays
        Training features, labels (1 = malignant) and patient ids (None: one patient per row).
    make_head : callable
        ``(n_train, n_features) -> unfitted head`` with ``fit(X, y[, groups])`` and ``decision_function``.
    wrap : callable, optional
        Applied to every head before fitting (evaluation wraps it in a leakage guard).
    """
    import inspect

    from sklearn.model_selection import StratifiedGroupKFold

    X = np.asarray(X)
    yy = np.asarray(y).astype(int)
    g = np.arange(len(yy)) if groups is None else np.asarray(groups)
    if len(np.unique(yy)) != 2:
        raise ModelError("inner out-of-fold scores need both benign and malignant lesions")
    k = min(folds, *(len(np.unique(g[yy == c])) for c in (0, 1)))
    if k < 2:
        raise ModelError("inner out-of-fold scores need at least 2 patients of each class")
    oof = np.full(len(yy), np.nan)
    cv = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    for tr, te in cv.split(np.zeros(len(yy)), yy, g):
        head = make_head(len(tr), X.shape[1])
        head = wrap(head) if wrap is not None else head
        if "groups" in inspect.signature(head.fit).parameters:
            head.fit(X[tr], yy[tr], groups=g[tr])
        else:
            head.fit(X[tr], yy[tr])
        oof[te] = np.asarray(head.decision_function(X[te]), dtype=float)
    return oof
