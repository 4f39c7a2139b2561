"""Abstention by split-conformal prediction sets ("I don't know" with a stated guarantee).

For each lesion the model returns the set of labels it cannot rule out at level
``alpha``: ``{benign}``, ``{malignant}`` (the lesion is *called*) or both
(*uncertain*; an empty set, possible with marginal LAC, also counts as uncertain).

Method (split conformal, LAC score ``1 - p(true label)``; Sadinle et al. 2019):
on a calibration set of probabilities ``p`` (of malignancy) with labels, the
threshold ``q`` is the ``ceil((n + 1)(1 - alpha)) / n`` empirical quantile of
the calibration scores; a label enters a lesion's set when its score is <= q.
``mondrian=True`` (the default) takes one quantile per class (class-conditional
or "Mondrian" conformal, Vovk 2005), which guarantees coverage for malignant and
for benign lesions separately: ``P(true label in set | label = c) >= 1 - alpha``.
A per-class quantile depends only on the order of the scores within the class,
so any monotone calibrator, even one fitted on the same calibration scores,
leaves the guarantee unchanged.

The guarantee assumes the calibration and test lesions are exchangeable. Here
the calibration set is the inner out-of-fold scores of the training rows (models
fitted on part of the training patients) while test lesions are scored by the
model fitted on all training patients, so the guarantee is approximate (as for
CV+ / jackknife+); the evaluation reports the coverage achieved on test folds.

APS (adaptive prediction sets) is not offered: with two classes its
non-randomised score is ``p(true)`` when the true label is the top class and 1
otherwise, so every set is either the top class alone or both classes; it adds
nothing over LAC. Written by hand (a quantile per class) rather than with
``mapie``/``crepes``: the few lines are easier to audit than a dependency whose
estimator wrappers would refit the head.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from mammocadx.errors import ModelError


def conformal_quantile(scores: np.ndarray, alpha: float) -> float:
    """The ``ceil((n+1)(1-alpha))``-th smallest score (``inf`` when that exceeds n: every label kept)."""
    s = np.sort(np.asarray(scores, dtype=float))
    n = len(s)
    k = math.ceil((n + 1) * (1.0 - alpha))
    return float(s[k - 1]) if 1 <= k <= n else (float("inf") if k > n else float("-inf"))


class SplitConformal:
    """Split-conformal prediction sets for benign vs malignant from a probability of malignancy.

    Parameters
    ----------
    alpha : float
        Miscoverage allowed (0.1 = sets contain the true label >= 90 % of the time).
    mondrian : bool
        One quantile per class (class-conditional guarantee); else one for all lesions.

    Attributes
    ----------
    q_ : list of float
        ``[q_benign, q_malignant]`` (equal when not Mondrian).
    n_ : list of int
        Calibration lesions per class.
    """

    def __init__(self, alpha: float = 0.1, mondrian: bool = True):
        self.alpha = alpha
        self.mondrian = mondrian

    def fit(self, p: Any, y: Any) -> "SplitConformal":
        """Fit on calibration probabilities of malignancy ``p`` and labels ``y``."""
        if not 0.0 < self.alpha < 1.0:
            raise ModelError(f"conformal alpha must be in (0, 1), got {self.alpha}")
        pp = np.asarray(p, dtype=float).ravel()
        yy = np.asarray(y).astype(int).ravel()
        if pp.shape != yy.shape or len(np.unique(yy)) != 2:
            raise ModelError("conformal calibration needs one label per probability and both classes")
        score = np.where(yy == 1, 1.0 - pp, pp)  # LAC: 1 - p(true label)
        if self.mondrian:
            self.q_ = [conformal_quantile(score[yy == c], self.alpha) for c in (0, 1)]
        else:
            self.q_ = [conformal_quantile(score, self.alpha)] * 2
        self.n_ = [int(np.sum(yy == 0)), int(np.sum(yy == 1))]
        return self

    def predict_set(self, p: Any) -> np.ndarray:
        """Boolean (n, 2): column 0 = benign in the set, column 1 = malignant in the set."""
        pp = np.asarray(p, dtype=float).ravel()
        return np.stack([pp <= self.q_[0], 1.0 - pp <= self.q_[1]], axis=1)

    def predict(self, p: Any) -> np.ndarray:
        """0 benign, 1 malignant, -1 uncertain (both labels or none in the set)."""
        sets = self.predict_set(p)
        out = np.full(len(sets), -1, dtype=int)
        out[sets[:, 0] & ~sets[:, 1]] = 0
        out[sets[:, 1] & ~sets[:, 0]] = 1
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly fitted state (infinite quantiles as strings)."""
        return {"kind": "split-conformal-lac", "alpha": float(self.alpha), "mondrian": bool(self.mondrian),
                "q": [q if math.isfinite(q) else repr(q) for q in self.q_], "n": list(self.n_)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "SplitConformal":
        """Rebuild from :meth:`to_dict`."""
        c = cls(alpha=float(d["alpha"]), mondrian=bool(d["mondrian"]))
        c.q_ = [float(q) for q in d["q"]]
        c.n_ = [int(v) for v in d["n"]]
        return c
