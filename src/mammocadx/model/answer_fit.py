"""Fit a trained CADx's reader answers (issue 16): probability, operating point, "uncertain", out-of-distribution.

:func:`fit_answers` is what ``mammocadx train`` runs after fitting the model on all its training rows:

- **out-of-sample scores of the training rows** (:func:`training_oof`): for a frozen-feature
  head, inner patient-grouped out-of-fold scores (:func:`~mammocadx.model.calibrate.inner_oof_scores`,
  each row scored by a head fitted without its patient; a few fits of a small head); for a
  fine-tuned network, the held-out inner-validation scores it already has
  (``held_out_scores()``), as :func:`mammocadx.evaluate.crossval._fit_split` does: k more
  fine-tunings would cost minutes to hours;
- on those scores only, the :class:`~mammocadx.model.answers.AnswerLayer` (calibrator chosen by
  inner CV, an optional operating-point threshold, class-conditional conformal sets);
- on the training rows, the :class:`~mammocadx.model.ood.OODGuard` (feature distance on the
  features the model scores, the training images' sizes, bit depths, modalities and roughness,
  and the ROIs' sizes).

Everything is fitted on the rows given, which are the training rows; nothing here sees a test row.
"""
from __future__ import annotations

import logging
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from mammocadx.errors import MammocadxError
from mammocadx.features.featurizer import FeatureSet
from mammocadx.io.images import read_image
from mammocadx.model.answers import AnswerLayer
from mammocadx.model.calibrate import held_out_scores
from mammocadx.model.ood import OODGuard, image_roughness
from mammocadx.records import ImageData
from mammocadx.utils.progress import progress

log = logging.getLogger(__name__)

#: Conformal miscoverage of a trained model's "uncertain" answers: sets hold the true class for >= 90 % of each class.
DEFAULT_ALPHA = 0.1


def training_oof(head: Any, fs: FeatureSet, head_factory: Any, folds: int = 5,
                 seed: int = 0) -> tuple[np.ndarray, np.ndarray, str]:
    """Out-of-sample decision values of training rows: ``(row indices into fs, scores, how they were made)``.

    Parameters
    ----------
    head : fitted head
        The model's head fitted on all of ``fs``; a fine-tuned one brings its own held-out scores.
    fs : FeatureSet
        The training rows (and nothing else).
    head_factory : callable
        ``(n_train, n_features) -> unfitted head`` of the model's mode (frozen kinds: inner CV).
    """
    with threadpool_limits(limits=1, user_api="blas"):
        rows, oof = held_out_scores(head, fs.X, fs.y, fs.groups, head_factory, folds=folds, seed=seed)
    if callable(getattr(head, "held_out_scores", None)):
        return rows, oof, f"held-out inner-validation scores of the fine-tuned network ({len(rows)} training lesions)"
    return rows, oof, f"inner {folds}-fold patient-grouped out-of-fold scores of the training lesions"


def image_facts(image: ImageData) -> dict[str, Any]:
    """What the OOD guard checks of an image: ``image_shape``, ``bit_depth``, ``modality``, ``roughness``."""
    return {"image_shape": image.shape, "bit_depth": int(image.bit_depth),
            "modality": (image.meta or {}).get("modality"), "roughness": image_roughness(image.pixels)}


def fit_guard(features: np.ndarray, fs: FeatureSet, seed: int = 0) -> OODGuard:
    """An :class:`OODGuard` on the training rows' ``features`` and their images (each read once) and ROIs."""
    facts = []
    for path in progress(sorted({str(r.image_path) for r in fs.records}), desc="OOD guard", unit="image"):
        try:
            facts.append(image_facts(read_image(path)))
        except MammocadxError as exc:  # it was featurized, so this is rare (file changed since)
            log.warning("OOD guard: skipped %s: %s", path, exc)
    with threadpool_limits(limits=1, user_api="blas"):
        return OODGuard(seed=seed).fit(
            features, image_shapes=[f["image_shape"] for f in facts], bit_depths=[f["bit_depth"] for f in facts],
            roi_areas=[r.roi.area for r in fs.records], groups=fs.groups,
            modalities=[f["modality"] for f in facts], roughness=[f["roughness"] for f in facts])


def fit_answers(head: Any, fs: FeatureSet, head_factory: Any, features: np.ndarray,
                operating_point: str | None = None, alpha: float = DEFAULT_ALPHA, folds: int = 5,
                seed: int = 0) -> tuple[AnswerLayer, OODGuard, dict[str, Any]]:
    """The answer layer and OOD guard of a model fitted on ``fs`` (see the module docstring).

    Parameters
    ----------
    head : fitted head
        Fitted on all of ``fs``.
    fs : FeatureSet
        The training rows.
    head_factory : callable
        The mode's head factory (inner CV of frozen kinds).
    features : ndarray (n, d)
        The features the model scores of each training row (frozen kinds: ``fs.X``; fine-tuned: its pooled features).
    operating_point : str, optional
        ``"sensitivity=0.90"`` or ``"specificity=0.90"``: the threshold for it on the out-of-sample scores.

    Returns
    -------
    answers, guard, record
        ``record``: how the scores were made and on how many rows (for the model card).
    """
    from mammocadx.evaluate.calibration_report import breast_key

    rows, scores, how = training_oof(head, fs, head_factory, folds=folds, seed=seed)
    recs = [fs.records[i] for i in rows]
    answers = AnswerLayer.fit(scores, fs.y[rows], fs.groups[rows], operating_point=operating_point, alpha=alpha,
                              seed=seed, breast_keys=[breast_key(r) for r in recs])
    guard = fit_guard(features, fs, seed=seed)
    return answers, guard, {"scores": how, "n_rows": int(len(rows))}
