"""The work a Ray job does on its workers, as plain functions and classes (nothing here imports Ray).

One *item* is one image with its lesions (``{"image": path, "lesions": JSON}``);
:func:`decode_image` turns it into one *row* per lesion, and the actors
(:class:`FeatureActor`, :class:`ScoreActor`) fill in features or scores. Every
row carries its lesion's index into the driver's list, so results can arrive in
any order, from any worker, and be retried without being lost or counted twice.

Row columns (one schema for every row, so Ray Data can stack them in blocks):

``i`` (int64)
    Index of the lesion in the driver's list.
``status`` (str)
    ``"roi"`` (pixels cut, features to compute), ``"cached"`` (features found in the
    feature cache by the lesion's source: the image was not decoded),
    ``"computed"`` (features computed by an actor), ``"scored"`` or ``"error"``.
``roi`` (float32, S x S)
    The grey ROI (zeros unless ``status == "roi"``); dropped by the actors.
``feature`` (float32, D)
    The feature vector (zeros unless cached or computed; D = 1 for jobs without features).
``source`` (str)
    The lesion's source digest (:mod:`mammocadx.features.source_keys`), "" if none.
``reason`` (str)
    Why the lesion could not be read (``status == "error"``).
``area`` (float64)
    The lesion's area in image pixels (NaN: no lesion outline, the whole breast).
``facts`` (str)
    JSON of :meth:`mammocadx.model.cadx.CADx.image_facts` (scoring jobs of a model with an OOD guard).
"""
from __future__ import annotations

import json
import logging
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from mammocadx.errors import MammocadxError
from mammocadx.features.featurizer import LesionFeaturizer
from mammocadx.io.images import read_image
from mammocadx.preprocess.roi import extract_roi
from mammocadx.records import Roi

log = logging.getLogger(__name__)

#: What a job computes: features (frozen CNN), grey ROIs only (a fine-tuned network trains on pixels), or
#: ROIs for the scoring actors (with what the OOD guard checks of each image).
WANTS = ("features", "rois", "score")


def lesion_item(i: int, roi: Roi, view: str | None, laterality: str | None) -> dict[str, Any]:
    """One lesion of an item, JSON-friendly (the ROI as :meth:`Roi.to_dict` writes it)."""
    return {"i": int(i), "roi": roi.to_dict(), "view": view, "laterality": laterality}


def _roi_of(doc: dict[str, Any]) -> Roi:
    return Roi(circle=tuple(doc["circle"]) if doc.get("circle") else None,
               box=tuple(doc["box"]) if doc.get("box") else None,
               mask_path=Path(doc["mask_path"]) if doc.get("mask_path") else None)


@lru_cache(maxsize=4)
def _featurizer(settings_json: str) -> LesionFeaturizer:
    """One featurizer per worker process and settings (its extractor, and so its engine, built once).

    OpenCV's own thread pool (resizing, filtering in segmentation) is held to the
    worker's CPU share too, so that N one-CPU decode tasks use N cores, not N x all.
    """
    omp = os.environ.get("OMP_NUM_THREADS", "")
    if omp.isdigit() and int(omp) > 0:
        import cv2

        cv2.setNumThreads(int(omp))
    return LesionFeaturizer.from_settings(json.loads(settings_json))


def _row(i: int, status: str, size: int, dim: int, *, roi: np.ndarray | None = None,
         feature: np.ndarray | None = None, source: str = "", reason: str = "", facts: str = "",
         area: float | None = None) -> dict[str, Any]:
    return {"i": int(i), "status": status, "area": float("nan") if area is None else float(area),
            "roi": roi if roi is not None else np.zeros((size, size), np.float32),
            "feature": feature if feature is not None else np.zeros(dim, np.float32),
            "source": source, "reason": reason, "facts": facts}


def decode_image(item: dict[str, Any], settings_json: str, want: str, facts: bool = False) -> list[dict[str, Any]]:
    """One image -> one row per lesion (a Ray Data ``flat_map`` function; CPU-bound, one image in memory).

    For ``want == "features"`` the feature cache is asked first, by each lesion's
    source: when every lesion of the image is found, the image is not decoded.
    A file that cannot be read gives ``"error"`` rows with the reason, as the
    local engine reports it; the job goes on.

    Parameters
    ----------
    item : dict
        ``{"image": path, "lesions": JSON list of lesion_item(...)}``.
    settings_json : str
        :meth:`LesionFeaturizer.settings` as JSON.
    want : {"features", "rois", "score"}
    facts : bool
        Also compute the image facts the OOD guard checks (``want == "score"``).
    """
    f = _featurizer(settings_json)
    size = int(f.roi_size)
    dim = int(f.extractor.feature_dim) if want == "features" else 1
    path = Path(item["image"])
    lesions = json.loads(item["lesions"])
    rows: list[dict[str, Any]] = []
    sources = [""] * len(lesions)
    if want == "features" and f.extractor.cache is not None:
        from mammocadx.features.source_keys import source_digest

        params = f.pixel_params()
        for k, les in enumerate(lesions):
            try:
                sources[k] = source_digest(path, _roi_of(les["roi"]), les["view"], les["laterality"], params)
            except OSError:
                sources[k] = ""  # decoded below, where the error is reported the usual way
        keyed = [k for k, d in enumerate(sources) if d]
        for k, vec in zip(keyed, f.extractor.cached([sources[k] for k in keyed])):
            if vec is not None:
                rows.append(_row(lesions[k]["i"], "cached", size, dim, feature=vec, source=sources[k]))
    done = {r["i"] for r in rows}
    todo = [k for k, les in enumerate(lesions) if les["i"] not in done]
    if not todo:
        return rows
    first = lesions[todo[0]]
    try:
        image = read_image(path)
        pixels, mask = f.prepare_image(image, first["view"], first["laterality"])
    except MammocadxError as exc:
        log.warning("skipped %s: %s", path, exc)
        return rows + [_row(lesions[k]["i"], "error", size, dim, reason=str(exc)) for k in todo]
    image_facts = ""
    if facts:
        from mammocadx.model.answer_fit import image_facts as facts_of

        image_facts = json.dumps(facts_of(image), default=_plain)
    cfg = f.roi_config
    for k in todo:
        les = lesions[k]
        try:
            grey = extract_roi(pixels, _roi_of(les["roi"]), cfg, breast_mask=mask, source=path)
        except MammocadxError as exc:
            log.warning("skipped lesion %d of %s: %s", les["i"], path, exc)
            rows.append(_row(les["i"], "error", size, dim, reason=str(exc)))
            continue
        rows.append(_row(les["i"], "roi", size, dim, roi=np.asarray(grey, np.float32), source=sources[k],
                         facts=image_facts, area=_roi_of(les["roi"]).area))
    return rows


def _plain(value: Any) -> Any:
    """JSON for numpy scalars and tuples in the image facts."""
    if isinstance(value, np.generic):
        return value.item()
    return str(value)


class FeatureActor:
    """Computes the features of ``"roi"`` rows with the featurizer's engine, built once per actor.

    The engine's threads follow the actor's CPU share (``OMP_NUM_THREADS``, which
    Ray sets to it: see :func:`mammocadx.features.extract._num_threads`), so actors
    never oversubscribe a node. New vectors go to the feature cache under their
    pixel and source keys, exactly as the local engine stores them.
    """

    def __init__(self, settings_json: str):
        self.featurizer = _featurizer(settings_json)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        todo = np.flatnonzero(batch["status"] == "roi")
        out = {k: v for k, v in batch.items() if k != "roi"}
        if len(todo):
            feats = self.featurizer.transform_rois(np.asarray(batch["roi"][todo], np.float32))
            feature = np.array(out["feature"], copy=True)
            feature[todo] = feats
            status = np.array(out["status"], dtype=object)
            status[todo] = "computed"
            out["feature"], out["status"] = feature, status
            keyed = [(j, str(batch["source"][i])) for j, i in enumerate(todo) if batch["source"][i]]
            if keyed:
                self.featurizer.extractor.remember([d for _, d in keyed], feats[[j for j, _ in keyed]])
        return out


class ScoreActor:
    """Scores ``"roi"`` rows with a saved model, loaded once per actor (checksums checked as in ``predict``)."""

    def __init__(self, model_dir: str):
        from mammocadx.model.cadx import CADx

        self.cadx = CADx.load(model_dir)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = len(batch["i"])
        score = np.full(n, np.nan)
        probability = np.full(n, np.nan)
        label = np.array([""] * n, dtype=object)
        answer = np.array([""] * n, dtype=object)
        ood = np.array([""] * n, dtype=object)
        reasons = np.array([""] * n, dtype=object)
        status = np.array(batch["status"], dtype=object)
        todo = np.flatnonzero(status == "roi")
        if len(todo):
            facts = [json.loads(batch["facts"][i]) if batch["facts"][i] else None for i in todo]
            for fa in facts:
                if fa is not None:
                    fa["image_shape"] = tuple(fa["image_shape"])
            preds = self.cadx.predict_rois(np.asarray(batch["roi"][todo], np.float32), [None] * len(todo),
                                           [None if np.isnan(batch["area"][i]) else float(batch["area"][i])
                                            for i in todo], facts)
            for i, p in zip(todo, preds):
                score[i], label[i], status[i] = p.score, p.label, "scored"
                probability[i] = np.nan if p.probability is None else p.probability
                answer[i] = p.answer or ""
                if p.ood_reasons is not None:
                    ood[i], reasons[i] = ("yes" if p.ood_reasons else "no"), "; ".join(p.ood_reasons)
        return {"i": batch["i"], "status": status, "reason": batch["reason"], "score": score, "label": label,
                "probability": probability, "answer": answer, "ood": ood, "ood_reasons": reasons}
