"""What a fitted model tells a reader beyond its decision value: probability, operating point, "uncertain".

:class:`AnswerLayer` bundles the three things fitted on the **inner out-of-fold
scores of the training rows** (:func:`~mammocadx.model.calibrate.inner_oof_scores`):

- a calibrator chosen by inner CV (:func:`~mammocadx.model.calibrate.choose_calibrator`);
- the threshold for an operating point such as ``sensitivity=0.90``
  (:func:`~mammocadx.model.operating_point.threshold_for`), or none (the head's own);
- class-conditional split-conformal sets at ``alpha``
  (:class:`~mammocadx.model.conformal.SplitConformal`).

Its state is a small JSON dict (``to_dict``/``from_dict``) for the model card.

Typical use in ``CADx.fit`` (X, y, groups of all training rows)::

    oof = inner_oof_scores(X, y, groups, head_factory, folds=5, seed=seed)
    answers = AnswerLayer.fit(oof, y, groups, operating_point="sensitivity=0.90", alpha=0.1, seed=seed)
    ...
    answers.answer(head.decision_function(x))   # per lesion: probability, label, set, uncertain
    fuse(answers.probability(scores_of_both_views), answers.fusion)   # one breast
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from mammocadx.model.calibrate import Calibrator, calibrator_from_dict, choose_calibrator
from mammocadx.model.conformal import SplitConformal
from mammocadx.model.operating_point import parse_operating_point, threshold_for


#: How one breast's lesion probabilities (both views) are fused into one answer.
FUSIONS: tuple[str, ...] = ("mean", "max")


def fuse(probabilities: Any, how: str = "mean") -> float:
    """One breast's probability from its lesions' (views') calibrated probabilities: their mean or max."""
    p = np.asarray(probabilities, dtype=float)
    if how not in FUSIONS or p.size == 0:
        raise ValueError(f"fuse needs probabilities and one of {FUSIONS}, got {how!r}")
    return float(p.max() if how == "max" else p.mean())


def choose_fusion(probabilities: Any, y: Any, breast_keys: Any) -> Literal["mean", "max"]:
    """Mean or max, whichever gives the higher breast-level AUC on these (training) rows; ties and one class: mean.

    A breast is malignant if any of its lesions is.
    """
    from sklearn.metrics import roc_auc_score

    p = np.asarray(probabilities, dtype=float)
    yy = np.asarray(y).astype(int)
    keys, inv = np.unique(np.asarray(breast_keys), return_inverse=True)
    yb = np.zeros(len(keys), dtype=int)
    np.maximum.at(yb, inv, yy)
    if len(np.unique(yb)) < 2:
        return "mean"
    members = [p[inv == k] for k in range(len(keys))]
    auc = {f: roc_auc_score(yb, [fuse(m, f) for m in members]) for f in FUSIONS}
    return "max" if auc["max"] > auc["mean"] else "mean"


@dataclass
class AnswerLayer:
    """Calibrator, operating-point threshold and conformal sets of one model (see the module docstring)."""

    calibrator: Calibrator
    conformal: SplitConformal
    threshold: float | None = None
    operating_point: dict[str, float] | None = None
    record: dict[str, Any] | None = None
    fusion: str = "mean"

    @classmethod
    def fit(cls, oof_scores: Any, y: Any, groups: Any = None, operating_point: str | dict[str, float] | None = None,
            alpha: float = 0.1, seed: int = 0, breast_keys: Any = None) -> "AnswerLayer":
        """Fit every part on inner out-of-fold scores of the training rows (never in-sample or test scores).

        Parameters
        ----------
        oof_scores, y, groups : arrays (n,)
            Inner out-of-fold decision values, labels and patient ids of the training rows.
        operating_point : str or dict, optional
            ``"sensitivity=0.90"`` / ``{"specificity": 0.9}``; None keeps the head's own threshold.
        alpha : float
            Conformal miscoverage (0.1: sets hold the true label for >= 90 % of each class).
        breast_keys : array (n,), optional
            The breast of each row (``mammocadx.evaluate.calibration_report.breast_key``): the
            fusion rule (mean or max) is chosen on them; None: mean.
        """
        s = np.asarray(oof_scores, dtype=float)
        yy = np.asarray(y).astype(int)
        cal, rec = choose_calibrator(s, yy, groups, seed=seed)
        op = parse_operating_point(operating_point) if isinstance(operating_point, str) else operating_point
        thr = threshold_for(s, yy, **op) if op else None
        conf = SplitConformal(alpha, mondrian=True).fit(cal.predict_proba(s), yy)
        rec = {"calibrator_choice": rec, "n": int(len(yy)), "fitted_on": "inner out-of-fold scores of the training rows"}
        if thr is not None:
            rec["training_rates_at_threshold"] = {"sensitivity": float(np.mean(s[yy == 1] > thr)),
                                                  "specificity": float(np.mean(s[yy == 0] <= thr))}
        fusion = choose_fusion(cal.predict_proba(s), yy, breast_keys) if breast_keys is not None else "mean"
        return cls(calibrator=cal, conformal=conf, threshold=thr, operating_point=op, record=rec, fusion=fusion)

    def probability(self, scores: Any) -> np.ndarray:
        """Calibrated probability of malignancy of each decision value."""
        return self.calibrator.predict_proba(scores)

    def answer(self, scores: Any, head_threshold: float = 0.0) -> list[dict[str, Any]]:
        """Per decision value: ``score``, ``probability``, ``label`` (at the operating point, or
        ``head_threshold`` when none was set), ``conformal_set`` and ``uncertain``."""
        s = np.atleast_1d(np.asarray(scores, dtype=float))
        p = self.probability(s)
        sets = self.conformal.predict_set(p)
        thr = self.threshold if self.threshold is not None else head_threshold
        names = ("benign", "malignant")
        return [{"score": float(si), "probability": float(pi), "threshold": float(thr),
                 "label": names[int(si > thr)], "conformal_set": [names[c] for c in (0, 1) if st[c]],
                 "uncertain": bool(st[0] == st[1]), "alpha": float(self.conformal.alpha)}
                for si, pi, st in zip(s, p, sets)]

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly state (for the model card)."""
        return {"calibrator": self.calibrator.to_dict(), "conformal": self.conformal.to_dict(),
                "threshold": self.threshold, "operating_point": self.operating_point, "record": self.record,
                "fusion": self.fusion}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "AnswerLayer":
        """Rebuild from :meth:`to_dict`."""
        return cls(calibrator=calibrator_from_dict(d["calibrator"]), conformal=SplitConformal.from_dict(d["conformal"]),
                   threshold=None if d.get("threshold") is None else float(d["threshold"]),
                   operating_point=d.get("operating_point"), record=d.get("record"), fusion=d.get("fusion", "mean"))
