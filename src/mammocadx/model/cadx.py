"""The whole CADx in one object: lesion records in, malignancy scores out.

:class:`CADx` composes three parts, each in its own module:

- the settings, resolved once (:func:`mammocadx.model.config.resolve` -> :class:`CADxConfig`);
- the lesion featurizer (:class:`mammocadx.features.featurizer.LesionFeaturizer`:
  image -> prepared image -> grey ROI -> colour -> CNN features, cached);
- the model of the mode's kind (:mod:`mammocadx.model.modes`); for kind
  ``"features+head"`` a head from :mod:`mammocadx.model.heads`, fitted on
  training features only; for kind ``"finetune"`` the network itself
  (:class:`mammocadx.model.finetune.FineTuneHead`), fitted on the grey ROI rows.

Where the model kind matters, :meth:`CADx.featurize`, :meth:`CADx._score_rois`,
:meth:`CADx.save` and :meth:`CADx.load` are the only places that look at it.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from mammocadx.errors import ConfigError, ModelError
from mammocadx.features.featurizer import FeatureSet, LesionFeaturizer
from mammocadx.io.images import read_image
from mammocadx.model.answers import AnswerLayer
from mammocadx.model.card import model_card
from mammocadx.model.config import CADxConfig, resolve
from mammocadx.model.heads import HeadFactory
from mammocadx.model.modes import FEATURES_HEAD, FINETUNE, get_mode
from mammocadx.model.ood import OODGuard
from mammocadx.model.prediction import Prediction
from mammocadx.preprocess.roi import RoiConfig
from mammocadx.records import LABEL_NAMES, ImageData, LesionRecord, Roi

log = logging.getLogger(__name__)

__all__ = ["CADx", "CADxConfig", "FeatureSet", "Prediction", "resolve"]

class CADx:
    """A benign-vs-malignant lesion classifier.

    Parameters
    ----------
    config : CADxConfig, optional
        The model's definition (from :func:`resolve`); default the paper's settings.

    Examples
    --------
    >>> cadx = CADx.from_mode("best")                         # doctest: +SKIP
    >>> from mammocadx.evaluate.run import evaluate                # doctest: +SKIP
    >>> print(evaluate(cadx, records, folds=5, repeats=5, seed=0).result.text())   # doctest: +SKIP
    >>> cadx.fit(records).save("model/")                      # doctest: +SKIP
    """

    def __init__(self, config: CADxConfig | None = None):
        self.config = config or CADxConfig()
        self.head_: Any = None
        self.card: dict[str, Any] = {}
        self.answers_: AnswerLayer | None = None
        self.ood_: OODGuard | None = None
        self.featurizer = LesionFeaturizer(**self.config.feature_settings())

    # ----------------------------------------------------------------- construction
    @classmethod
    def from_mode(cls, mode: str | None = None, **overrides: Any) -> "CADx":
        """A CADx in a registered mode; ``overrides`` as for :func:`resolve` (``None`` = not given)."""
        return cls(resolve(mode, overrides))

    @classmethod
    def paper(cls, **overrides: Any) -> "CADx":
        """The paper's method: sine pseudocolour, z-score, PCA (404, capped), RBF-SVC C=1 gamma=1/#features."""
        return cls.from_mode("paper", **overrides)

    # ----------------------------------------------------------------- parts
    @property
    def kind(self) -> str:
        """The model kind of this CADx's mode (:data:`mammocadx.model.modes.KINDS`)."""
        return get_mode(self.config.mode).kind

    @property
    def extractor(self) -> Any:
        """The CNN feature extractor (loaded on first use)."""
        return self.featurizer.extractor

    @property
    def roi_config(self) -> RoiConfig:
        """How ROIs are cut for this model."""
        return self.featurizer.roi_config

    def featurize(self, records: Sequence[LesionRecord]) -> FeatureSet:
        """The rows the model is fitted on: CNN features (:meth:`LesionFeaturizer.featurize`), or, for a
        fine-tuned network, the grey ROIs themselves, flattened (:meth:`LesionFeaturizer.rois`)."""
        if self.kind == FINETUNE:
            rs = self.featurizer.rois(records)
            return FeatureSet(X=rs.X.reshape(len(rs.X), -1), records=rs.records, skipped=rs.skipped)
        return self.featurizer.featurize(records)

    def head_factory(self) -> HeadFactory:
        """The picklable ``(n_train, n_features) -> unfitted head`` of this model's mode."""
        return self.config.head_factory()

    @property
    def threshold(self) -> float:
        """The operating point: the fitted head's ``threshold_`` (models saved before heads had one: the config's)."""
        return float(getattr(self.head_, "threshold_", self.config.head.threshold))

    # ----------------------------------------------------------------- fit
    def _fit_kind(self, records: Sequence[LesionRecord] | None, fs: FeatureSet | None, seed: int | None) -> "CADx":
        """Fit the model of this mode's kind: the one place a new model kind plugs in (see ``model.modes``)."""
        if self.kind not in (FEATURES_HEAD, FINETUNE):
            raise ModelError(f"model kind {self.kind!r} has no fit here yet")
        fs = fs if fs is not None else self.featurize(records or [])
        y = fs.y
        if len(np.unique(y)) < 2:
            raise ModelError("training needs both benign and malignant lesions")
        head = self.head_factory()(len(y), fs.X.shape[1])
        with threadpool_limits(limits=1, user_api="blas"):  # small problem: see evaluate.crossval
            head.fit(fs.X, y, groups=fs.groups)
        self.head_ = head
        self.answers_, self.ood_ = None, None
        self.card = self._card(fs, seed)
        return self

    def fit_features(self, fs: FeatureSet, seed: int | None = None) -> "CADx":
        """Fit the head on precomputed features (all of ``fs``); ``seed`` is recorded in the model card."""
        return self._fit_kind(None, fs, seed)

    def fit(self, records: Sequence[LesionRecord], seed: int | None = None) -> "CADx":
        """Fit on all of ``records``."""
        return self._fit_kind(records, None, seed)

    def fit_answers(self, fs: FeatureSet, operating_point: str | None = None, alpha: float | None = None,
                    seed: int = 0) -> "CADx":
        """After fitting on ``fs``: calibrated probability, operating point, conformal "uncertain" and OOD guard.

        All fitted on the training rows ``fs`` only (:func:`mammocadx.model.answer_fit.fit_answers`: inner
        out-of-fold scores for frozen kinds, the network's held-out inner-validation scores when fine-tuned).

        Parameters
        ----------
        fs : FeatureSet
            The rows the model was fitted on (``featurize`` of the training records).
        operating_point : str, optional
            ``"sensitivity=0.90"`` or ``"specificity=0.90"``: the model's threshold becomes the one that
            reaches it on those scores (recorded in the card); None keeps the head's own threshold.
        alpha : float, optional
            Conformal miscoverage (default :data:`~mammocadx.model.answer_fit.DEFAULT_ALPHA`).
        """
        from mammocadx.model.answer_fit import DEFAULT_ALPHA, fit_answers

        self._check_fitted()
        if self.card.get("training_data", {}).get("n_lesions") != len(fs.records):
            raise ModelError("fit_answers needs the rows the model was fitted on")
        features = fs.X
        if self.kind == FINETUNE:
            features = self.head_.pooled_features(fs.X)
        head_threshold = self.threshold
        answers, guard, how = fit_answers(self.head_, fs, self.head_factory(), features,
                                          operating_point=operating_point,
                                          alpha=DEFAULT_ALPHA if alpha is None else alpha, seed=seed)
        if answers.threshold is not None:
            self.head_.threshold_ = float(answers.threshold)
            self.card["threshold"] = self.threshold
            self.card["operating_point"] = {
                "target": answers.operating_point, "threshold": self.threshold, "head_threshold": head_threshold,
                "set_on": how["scores"], **(answers.record or {}).get("training_rates_at_threshold", {})}
        self.answers_, self.ood_ = answers, guard
        ood = {k: v for k, v in guard.to_dict().items() if not isinstance(v, np.ndarray)}
        self.card["answers"] = {**answers.to_dict(), "scores": how["scores"], "n_rows": how["n_rows"]}
        self.card["ood"] = ood
        return self

    # ----------------------------------------------------------------- predict
    def _check_fitted(self) -> None:
        if self.head_ is None:
            raise ModelError("this CADx is not fitted: call fit() or load() first")

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """Decision scores of feature rows (above :attr:`threshold` = towards malignant)."""
        self._check_fitted()
        with threadpool_limits(limits=1, user_api="blas"):
            return np.asarray(self.head_.decision_function(np.asarray(X, dtype=np.float32)), dtype=float)

    def _score_rois(self, grey: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Scores of grey ROIs ``(N, S, S)``, with the coloured ROIs and features (kind dispatch, as :meth:`_fit_kind`)."""
        rgb = self.featurizer.colorize(grey)
        if self.kind == FINETUNE:
            self._check_fitted()
            feats = self.head_.pooled_features(np.asarray(grey, np.float32).reshape(len(grey), -1))
            return np.asarray(self.head_.linear_head().decision_function(feats), float), rgb, feats
        if self.kind != FEATURES_HEAD:
            raise ModelError(f"model kind {self.kind!r} has no scoring here yet")
        feats = self.extractor.transform(rgb)
        return self.decision_function(feats), rgb, feats

    def predict(self, image: str | Path | ImageData, roi: Roi, view: str | None = None,
                laterality: str | None = None) -> Prediction:
        """Score one lesion on one image.

        Parameters
        ----------
        image : path or ImageData
            The mammogram.
        roi : Roi
            Lesion location in image pixels (x from the left, y from the top).
        view, laterality : str, optional
            Used by breast segmentation when it is on.
        """
        self._check_fitted()
        img = image if isinstance(image, ImageData) else read_image(image)
        grey, crop = self.featurizer.roi_image(img, roi, view, laterality)
        facts = self.image_facts(img) if self.ood_ is not None else None
        return self.predict_rois(grey[None], [crop], [roi.area], [facts])[0]

    def image_facts(self, image: ImageData) -> dict[str, Any]:
        """What the out-of-distribution guard checks of a whole image (:func:`mammocadx.model.answer_fit.image_facts`)."""
        from mammocadx.model.answer_fit import image_facts

        return image_facts(image)

    def predict_rois(self, grey: np.ndarray, crops: Sequence[Any], roi_areas: Sequence[float | None],
                     facts: Sequence[dict[str, Any] | None]) -> list[Prediction]:
        """Score ROIs already cut (:meth:`LesionFeaturizer.roi_image`), in one batch: the part of :meth:`predict`
        after the image is read, so the reading can run elsewhere (:mod:`mammocadx.scale`).

        Parameters
        ----------
        grey : ndarray (N, S, S)
            Grey ROIs in [0, 1].
        crops : sequence of RoiGeometry or None
            Where each ROI was cut.
        roi_areas : sequence of float or None
            Each lesion's area in image pixels (:attr:`Roi.area`).
        facts : sequence of dict or None
            :meth:`image_facts` of each ROI's image; needed when the model has an OOD guard.
        """
        self._check_fitted()
        scores, rgb, feats = self._score_rois(np.asarray(grey, np.float32))
        thr = self.threshold
        preds = []
        for k in range(len(scores)):
            score = float(scores[k])
            label = LABEL_NAMES[int(score > thr)]
            pred = Prediction(score=score, label=label, threshold=thr, roi_grey=grey[k], roi_rgb=rgb[k],
                              crop=crops[k], features=feats[k])
            if self.answers_ is not None:
                a = self.answers_.answer([score], head_threshold=thr)[0]
                pred.probability, pred.conformal_set = a["probability"], a["conformal_set"]
                pred.answer = "uncertain" if a["uncertain"] else label
            if self.ood_ is not None and facts[k] is not None:
                pred.ood_reasons = self.ood_.check(features=feats[k], roi_area=roi_areas[k], **facts[k])
            preds.append(pred)
        return preds

    # ----------------------------------------------------------------- card & files
    def _card(self, fs: FeatureSet, seed: int | None) -> dict[str, Any]:
        return model_card(self, fs, seed)

    def save(self, path: str | Path) -> Path:
        """Write the model folder (arrays + JSON model card, no pickle); see :mod:`mammocadx.model.persist`."""
        self._check_fitted()
        from mammocadx.model.persist import save_model

        if self.kind == FINETUNE:
            # The network's weights go to network.safetensors; its binary layer is saved as the ordinary
            # linear head (so head.json/arrays.npz and their probe check describe it like any other head).
            from sklearn.pipeline import Pipeline

            linear = Pipeline([("linear", self.head_.linear_head())])
            linear.threshold_ = float(self.head_.threshold_)
            if self.ood_ is not None:
                linear.ood_guard_ = self.ood_.to_dict()
            return save_model(Path(path), linear, self.card, network=self.head_.state_arrays())
        if self.ood_ is None:
            return save_model(Path(path), self.head_, self.card)
        # The guard's arrays travel as a fitted attribute of the pipeline (arrays.npz), only while saving.
        self.head_.ood_guard_ = self.ood_.to_dict()
        try:
            return save_model(Path(path), self.head_, self.card)
        finally:
            del self.head_.ood_guard_

    @staticmethod
    def _network_from(path: str | Path, linear: Any, card: dict[str, Any]) -> Any:
        """The fine-tuned network of a model folder: its weights file plus the saved linear layer."""
        from mammocadx.model.finetune import FineTuneHead
        from mammocadx.model.persist import load_network

        try:
            return FineTuneHead.from_saved(load_network(path), linear, card)
        except (TypeError, ModelError) as exc:
            raise ModelError(f"cannot rebuild the fine-tuned network: {exc}", path) from None

    @classmethod
    def load(cls, path: str | Path) -> "CADx":
        """Load a model folder written by :meth:`save` (hashes verified, no code executed)."""
        from mammocadx.model.persist import load_model

        head, card = load_model(Path(path))
        try:
            config = CADxConfig.from_dict(card["config"])
        except ConfigError as exc:
            raise ModelError(f"model card: {exc.reason}", path) from None
        cadx = cls(config)
        guard = head.__dict__.pop("ood_guard_", None)
        if cadx.kind == FINETUNE:
            head = cadx._network_from(path, head, card)
        cadx.head_ = head
        cadx.card = card
        try:  # models saved before issue 16 have neither: they score without probability or guard
            cadx.answers_ = AnswerLayer.from_dict(card["answers"]) if card.get("answers") else None
            cadx.ood_ = OODGuard.from_dict(guard) if guard else None
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"model card: malformed answers or OOD guard ({exc})", path) from None
        except ModelError as exc:
            raise ModelError(f"model card: {exc.reason}", path) from None
        sha = card.get("backbone", {}).get("weights_sha256")
        if sha and getattr(cadx.extractor, "weights_sha256", sha) != sha:
            raise ModelError(
                f"the model was trained with backbone weights {sha[:12]}..., but {cadx.config.backbone} "
                f"here has {cadx.extractor.weights_sha256[:12]}...", path)
        return cadx
