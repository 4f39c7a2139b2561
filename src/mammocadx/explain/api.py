"""One-call explanations of a fitted :class:`~mammocadx.model.cadx.CADx` (used by the CLI, the report and the web app)."""
from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mammocadx.records import LesionRecord, Roi
from mammocadx.errors import MammocadxError, ModelError
from mammocadx.explain.deletion import deletion_check
from mammocadx.explain.figures import save_explanation
from mammocadx.explain.gradcam import Explanation, explain_roi, explain_rois
from mammocadx.io.images import ImageData, read_image

log = logging.getLogger(__name__)

__all__ = ["deletion_for_records", "explain_lesion", "explain_prediction", "explain_records", "explained_parts",
           "model_backbone"]


def explained_parts(cadx: Any) -> tuple[Any, Any]:
    """``(backbone, head)`` whose score Grad-CAM explains for this CADx.

    Frozen-feature modes: the ImageNet backbone and the fitted head. A fine-tuned
    network (:class:`~mammocadx.model.finetune.FineTuneHead`): the network itself and
    its binary linear layer, so the map explains the fine-tuned malignancy logit
    (of the ROI as given; the prediction averages it over 8 flips/rotations).
    """
    head = cadx.head_
    if hasattr(head, "as_backbone") and hasattr(head, "linear_head"):
        return head.as_backbone("fine-tuned"), head.linear_head()
    return model_backbone(cadx), head


def model_backbone(cadx: Any) -> Any:
    """The backbone a CADx's features came from, loaded from local weights.

    Raises
    ------
    BackboneError
        From :func:`mammocadx.features.backbones.load_backbone`, naming the
        architecture, weights package or file that is missing or does not match.
    ModelError
        If the backbone's weights differ from the ones recorded in the model card.
    """
    from mammocadx.features.backbones import load_backbone

    backbone = load_backbone(cadx.config.backbone, cadx.config.weights)
    want = (getattr(cadx, "card", None) or {}).get("backbone", {}).get("weights_sha256")
    have = getattr(backbone, "weights_sha256", None)
    if want and have and want != have:
        raise ModelError(
            f"the model was trained with {cadx.config.backbone} weights {want[:12]}..., "
            f"but the loaded weights are {have[:12]}...: its explanation would not be of this model"
        )
    return backbone


def explain_lesion(
    cadx: Any, image: str | Path | ImageData, roi: Roi, view: str | None = None, laterality: str | None = None
) -> tuple[Explanation, Any, ImageData]:
    """Predict one lesion and explain the decision.

    Returns
    -------
    (Explanation, Prediction, ImageData)
        The Grad-CAM of the score (maps at ROI resolution), the model's
        prediction (``roi_grey``, ``roi_rgb``, ``crop`` ...) and the image read.
    """
    if getattr(cadx, "head_", None) is None:
        raise ModelError("this CADx is not fitted: nothing to explain")
    backbone, head = explained_parts(cadx)
    img = image if isinstance(image, ImageData) else read_image(image)
    pred = cadx.predict(img, roi, view, laterality)
    expl = explain_roi(backbone, head, pred.roi_rgb)
    expl.meta.update({"prediction_score": float(pred.score), "crop": tuple(pred.crop)})
    if abs(expl.score - pred.score) > 1e-3 * max(1.0, abs(pred.score)):
        log.info("explanation score %.5f (fp32 CNN) vs prediction %.5f (extractor precision)", expl.score, pred.score)
    return expl, pred, img


def explain_prediction(
    cadx: Any,
    image: str | Path | ImageData,
    roi: Roi,
    out_dir: str | Path,
    sample_id: str | None = None,
    show: str = "decision",
) -> list[Path]:
    """Explain one lesion and write its figures to ``out_dir`` (see :func:`save_explanation`).

    ``sample_id`` defaults to the image file's stem; file names use its sanitised form.
    """
    expl, pred, img = explain_lesion(cadx, image, roi)
    sid = sample_id if sample_id is not None else (Path(img.source).stem if img.source else "lesion")
    return save_explanation(
        out_dir, sid, expl, pred.roi_grey, pred.roi_rgb, image=img.pixels, crop=pred.crop,
        threshold=float(cadx.threshold), show=show,
        extra={"prediction_score": float(pred.score), "label": pred.label, "image": str(img.source)},
    )


def explain_records(
    cadx: Any, records: Sequence[LesionRecord], batch_size: int = 8
) -> tuple[list[Explanation], np.ndarray, list[LesionRecord], list[tuple[LesionRecord, str]]]:
    """Grad-CAM of the fitted CADx's score for several lesions.

    Returns
    -------
    (explanations, rois_grey, kept_records, skipped)
        One explanation and grey ROI ``(S, S)`` per readable lesion, in the order
        of ``kept_records``; ``skipped`` lists (record, reason) for the others.
    """
    if getattr(cadx, "head_", None) is None:
        raise ModelError("this CADx is not fitted: nothing to explain")
    greys, kept, skipped = [], [], []
    for r in records:
        try:
            img = read_image(r.image_path)
            grey, _crop = cadx.featurizer.roi_image(img, r.roi, r.view, r.laterality)
        except MammocadxError as exc:
            log.warning("skipped %s: %s", r.sample_id, exc)
            skipped.append((r, str(exc)))
            continue
        greys.append(grey)
        kept.append(r)
    if not greys:
        return [], np.zeros((0, 0, 0), np.float32), kept, skipped
    rois = np.stack(greys).astype(np.float32)
    return _explain_cached(cadx, cadx.featurizer.colorize(rois), batch_size), rois, kept, skipped


def _explain_cached(cadx: Any, rgb: np.ndarray, batch_size: int) -> list[Explanation]:
    """Grad-CAM of each RGB ROI, drawn from the explanation cache where possible (no CNN loaded for hits)."""
    extractor = cadx.extractor
    cache = getattr(extractor, "cache", None)
    want = (getattr(cadx, "card", None) or {}).get("backbone", {}).get("weights_sha256")
    if cache is None or (want and want != extractor.weights_sha256) or hasattr(cadx.head_, "as_backbone"):
        # Not cached: no cache, another backbone, or a fine-tuned network (one per fit; hashing it costs more
        # than explaining the few gallery lesions).
        return explain_rois(*explained_parts(cadx), rgb, batch_size=batch_size)
    from mammocadx.explain.cache import ExplanationCache, head_digest

    store = ExplanationCache(cache.root)
    ctx, head_key = extractor.context_key(), head_digest(cadx.head_)
    keys = [store.key(x, ctx, head_key) for x in rgb]
    out: list[Explanation | None] = [store.get(k) for k in keys]
    miss = [i for i, e in enumerate(out) if e is None]
    if miss:
        fresh = explain_rois(model_backbone(cadx), cadx.head_, rgb[miss], batch_size=batch_size)
        for i, e in zip(miss, fresh):
            store.put(keys[i], e)
            out[i] = e
    if len(miss) < len(out):
        log.debug("explanations: %d of %d from the cache", len(out) - len(miss), len(out))
    return [e for e in out if e is not None]


def deletion_for_records(
    cadx: Any,
    records: Sequence[LesionRecord],
    steps: int = 8,
    seeds: int = 3,
    fill: str = "blur",
    towards: str = "decision",
) -> dict[str, Any]:
    """Explain ``records`` with a fitted CADx and run :func:`~mammocadx.explain.deletion.deletion_check` on them.

    Use lesions the model was **not** fitted on (a test fold): on training
    points an RBF-SVM's score is dominated by the point's own support vector.
    The result adds ``skipped`` (sample id, reason) and the model's threshold.
    """
    ex, rois, kept, skipped = explain_records(cadx, records)
    if not ex:
        raise ModelError(f"no lesion could be explained ({len(skipped)} skipped)")
    res = deletion_check(
        *explained_parts(cadx), rois, ex, ids=[r.sample_id for r in kept],
        render=cadx.featurizer.colorize, steps=steps, seeds=seeds, fill=fill, towards=towards, threshold=float(cadx.threshold),
    )
    res["protocol"]["pseudocolor"] = cadx.config.pseudocolor
    for p, r in zip(res["per_image"], kept):
        p["label"] = r.label_name
    res["skipped"] = [(r.sample_id, why) for r, why in skipped]
    return res
