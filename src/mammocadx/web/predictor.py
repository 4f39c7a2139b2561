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

    The readers' lesions stay private: the extractor's feature cache is
    replaced by one that never stores or looks up a lesion's features
    (:func:`no_lesion_cache`), so nothing of an uploaded image outlives the
    server in the user's cache folder.

    Parameters
    ----------
    cadx : CADx
        A fitted model (``CADx.load(model_dir)``).
    """

    def __init__(self, cadx: Any, model_dir: str | PathLike[str] | None = None):
        self.cadx = cadx
        self.model_dir = model_dir
        no_lesion_cache(cadx)
        self._lock = threading.Lock()
        self._backbone: Any = None  # loaded on the first explanation, then reused

    @classmethod
    def load(cls, model_dir: str | PathLike[str]) -> "CADxPredictor":
        """Load a saved model folder (``CADx.load``); raises the library's ``ModelError`` on bad folders."""
        from mammocadx.model.cadx import CADx

        return cls(CADx.load(Path(model_dir)), model_dir=Path(model_dir))

    @property
    def card(self) -> dict[str, Any]:
        """The model's card (``CADx.card``)."""
        return dict(getattr(self.cadx, "card", None) or {})

    def predict(self, image: ImageData, roi: Roi) -> PredictionLike:
        """``CADx.predict(image, roi)`` with the image's own view and laterality when the file states them."""
        meta = image.meta or {}
        with self._lock:
            return self.cadx.predict(image, roi, view=meta.get("view"), laterality=meta.get("laterality"))

    def dicom_outputs(self, path: Path, roi: Roi, out_dir: Path) -> list[Path]:
        """The DICOM Structured Report and Grad-CAM Secondary Capture of one lesion on the DICOM file ``path``
        (:func:`mammocadx.dicom_out.write_for_prediction`), written to ``out_dir``: ``[SR, overlay]``."""
        from mammocadx.dicom_out import write_for_prediction

        with self._lock:
            return write_for_prediction(self.cadx, path, roi, out_dir, model_dir=self.model_dir)

    def warm_up(self) -> None:
        """Score and explain one blank ROI, so the first reader does not wait for the CNN to load.

        Failures are logged, not raised: the server still starts, and the same
        error is then reported for the request that meets it.
        """
        from mammocadx.errors import MammocadxError

        image = ImageData(pixels=np.full((256, 256), 0.5, dtype=np.float32), source=Path("warm-up"), format="png",
                          bit_depth=8)
        roi = Roi(circle=(128.0, 128.0, 32.0))
        try:
            self.explain(image, roi, self.predict(image, roi))
        except MammocadxError as exc:
            log.warning("warm-up failed: %s", exc)

    def explain(self, image: ImageData, roi: Roi, prediction: PredictionLike) -> Explanation:
        """Grad-CAM of the head's decision (:func:`mammocadx.explain.gradcam.explain_roi`) on the prediction's ROI.

        Raises
        ------
        BackboneError, ModelError
            When the backbone's weights are unavailable or differ from the model card's.
        """
        from mammocadx.explain.api import explained_parts
        from mammocadx.explain.gradcam import explain_roi

        with self._lock:
            if self._backbone is None:
                self._backbone = explained_parts(self.cadx)
            backbone, head = self._backbone
            expl = explain_roi(backbone, head, np.asarray(prediction.roi_rgb))
        heat = np.asarray(expl.cam, dtype=np.float32)
        grey = getattr(prediction, "roi_grey", None)
        if grey is None:
            grey = np.asarray(prediction.roi_rgb, dtype=np.float32).mean(axis=-1)
        return Explanation(heatmap=heat, overlay=heat_overlay(grey, heat))


def heat_overlay(grey: np.ndarray, heat: np.ndarray, alpha: float = 0.45, cmap: str = "jet") -> np.ndarray:
    """Blend a [0, 1] heat-map (colour map ``cmap``, as the explain figures use) over a grey ROI; uint8 RGB.

    The weight of the colour grows with the heat (``alpha * heat``), so regions
    with no evidence towards malignant show the ROI as it is.
    """
    from matplotlib import colormaps

    g = np.clip(np.asarray(grey, dtype=np.float32), 0.0, 1.0)
    h = np.clip(np.asarray(heat, dtype=np.float32), 0.0, 1.0)
    if h.shape != g.shape:
        raise ValueError(f"heat-map shape {h.shape} differs from the ROI's {g.shape}")
    colour = colormaps[cmap](h)[..., :3].astype(np.float32)
    w = (alpha * (0.35 + 0.65 * h))[..., None]
    out = (1.0 - w) * g[..., None] + w * colour
    return np.clip(np.rint(out * 255.0), 0, 255).astype(np.uint8)


def no_lesion_cache(cadx: Any) -> None:
    """Stop ``cadx``'s feature extractor from writing (or reading) lesion features in the on-disk cache.

    The cache folder itself stays known, so a backbone export kept there (a
    file about the model, not about any patient) is still reused.
    """
    extractor = getattr(cadx, "extractor", None)
    cache = getattr(extractor, "cache", None)
    if cache is None or isinstance(cache, _NoLesionCache):
        return
    extractor.cache = _NoLesionCache(cache)


class _NoLesionCache:
    """Wraps a feature cache: lesion entries are neither stored nor looked up; anything else is delegated."""

    def __init__(self, inner: Any):
        self._inner = inner

    def get(self, key: str, dim: int | None = None) -> None:
        """Never a cached lesion."""
        return None

    def put(self, key: str, vector: np.ndarray) -> None:
        """Store nothing."""

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)
