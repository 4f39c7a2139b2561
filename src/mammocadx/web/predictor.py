"""What the web page needs from a model, and the adapter that wraps :class:`~mammocadx.model.cadx.CADx`.

The web app is a thin shell: it never touches scikit-learn or torch itself. It
talks to a :class:`Predictor`, an object with three members:

- :meth:`Predictor.predict` scores one lesion (the library's ``Prediction``:
  score, label, threshold, the pseudocolour ROI and where it was cut);
- :meth:`Predictor.explain` gives the Grad-CAM heat-map of that decision at ROI
  resolution and an RGB overlay of it on the ROI;
- :attr:`Predictor.card` is the model card (a JSON-friendly dict).

:class:`CADxPredictor` implements it over a fitted ``CADx`` (``CADx.load(dir)``)
and the Grad-CAM module; tests inject small fakes with the same shape.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from mammocadx.datasets.records import Roi
from mammocadx.io.images import ImageData

log = logging.getLogger(__name__)


@runtime_checkable
class PredictionLike(Protocol):
    """The fields of :class:`mammocadx.model.cadx.Prediction` the page shows."""

    score: float
    label: str
    threshold: float
    roi_rgb: np.ndarray
    crop: tuple[float, float, float]


@dataclass
class Explanation:
    """A Grad-CAM explanation of one decision.

    Attributes
    ----------
    heatmap : numpy.ndarray
        ``(S, S)`` float32 in [0, 1] at ROI resolution; high = pushes the score
        towards malignant.
    overlay : numpy.ndarray
        ``(S, S, 3)`` RGB (uint8, or float in [0, 1]) of the heat-map blended on the ROI.
    """

    heatmap: np.ndarray
    overlay: np.ndarray


@runtime_checkable
class Predictor(Protocol):
    """Exactly what :func:`mammocadx.web.app.create_app` needs from a model."""

    @property
    def card(self) -> dict[str, Any]:
        """The model card (JSON-friendly): id, version, intended use, limitations ..."""
        ...

    def predict(self, image: ImageData, roi: Roi) -> PredictionLike:
        """Score the lesion at ``roi`` on ``image`` (image pixels, x from the left, y from the top)."""
        ...

    def explain(self, image: ImageData, roi: Roi, prediction: PredictionLike) -> Explanation:
        """Grad-CAM of the decision ``prediction`` (same image and ROI)."""
        ...


class CADxPredictor:
    """:class:`Predictor` over a fitted :class:`~mammocadx.model.cadx.CADx`.

    The torch model, its hooks (Grad-CAM) and its lazily built feature extractor
    are not safe to use from several threads at once, so every call holds one
    lock; the web app runs calls in a worker thread.

    Parameters
    ----------
    cadx : CADx
        A fitted model (``CADx.load(model_dir)``).
    """

    def __init__(self, cadx: Any):
        self.cadx = cadx
        self._lock = threading.Lock()

    @classmethod
    def load(cls, model_dir: str | PathLike[str]) -> "CADxPredictor":
        """Load a saved model folder (``CADx.load``); raises the library's ``ModelError`` on bad folders."""
        from mammocadx.model.cadx import CADx

        return cls(CADx.load(Path(model_dir)))

    @property
    def card(self) -> dict[str, Any]:
        """The model's card (``CADx.card``)."""
        return dict(getattr(self.cadx, "card", None) or {})

    def predict(self, image: ImageData, roi: Roi) -> PredictionLike:
        """``CADx.predict(image, roi)``."""
        with self._lock:
            return self.cadx.predict(image, roi)

    def explain(self, image: ImageData, roi: Roi, prediction: PredictionLike) -> Explanation:
        """Grad-CAM of the SVM's decision (:mod:`mammocadx.explain.gradcam`) at ROI resolution."""
        from mammocadx.explain import gradcam

        with self._lock:
            result = gradcam.explain(self.cadx, image, roi)
        heat = np.asarray(result.heatmap, dtype=np.float32)
        overlay = getattr(result, "overlay", None)
        if overlay is None:
            overlay = gradcam.overlay(prediction.roi_rgb, heat)
        return Explanation(heatmap=heat, overlay=np.asarray(overlay))
