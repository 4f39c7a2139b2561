"""What the CADx answers for one lesion."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from mammocadx.preprocess.roi import RoiGeometry


@dataclass
class Prediction:
    """The CADx's answer for one lesion.

    Attributes
    ----------
    score : float
        Decision score; above ``threshold`` = towards malignant.
    label : str
        ``"benign"`` or ``"malignant"``.
    threshold : float
        The model's operating point.
    roi_grey : ndarray (S, S)
        The ROI as cut (float32 in [0, 1]).
    roi_rgb : ndarray (S, S, 3)
        The pseudocolour ROI given to the CNN.
    crop : RoiGeometry
        ``(cx, cy, side)`` of the square ROI in image pixels (a tuple; ``crop.place(map, shape)`` inverts the cut).
    features : ndarray (D,)
        The pooled CNN features.
    probability : float or None
        Calibrated probability of malignancy (None: the model was saved without a calibrator).
    answer : str or None
        ``"benign"``, ``"malignant"`` or ``"uncertain"`` (the conformal set holds both classes, or neither).
    conformal_set : list of str or None
        The classes the conformal set at the model's ``alpha`` keeps.
    ood_reasons : list of str or None
        Why the input is unlike the training data (empty: nothing unusual; None: the model has no guard).
    """

    score: float
    label: str
    threshold: float
    roi_grey: np.ndarray
    roi_rgb: np.ndarray
    crop: RoiGeometry
    features: np.ndarray
    probability: float | None = None
    answer: str | None = None
    conformal_set: list[str] | None = None
    ood_reasons: list[str] | None = None

    @property
    def ood(self) -> bool | None:
        """Whether the input is out of distribution (None: the model has no guard)."""
        return None if self.ood_reasons is None else bool(self.ood_reasons)

    def to_dict(self) -> dict[str, Any]:
        """Score, label, threshold, crop, probability, answer, conformal set and OOD flag (no arrays)."""
        return {"score": self.score, "label": self.label, "threshold": self.threshold, "crop": list(self.crop),
                "probability": self.probability, "answer": self.answer, "conformal_set": self.conformal_set,
                "ood": self.ood, "ood_reasons": self.ood_reasons}
