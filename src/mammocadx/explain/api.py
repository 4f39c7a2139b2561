"""One-call explanations of a fitted :class:`~mammocadx.model.cadx.CADx` (used by the CLI, the report and the web app)."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from mammocadx.datasets.records import Roi
from mammocadx.errors import ModelError
from mammocadx.explain.figures import save_explanation
from mammocadx.explain.gradcam import Explanation, explain_roi
from mammocadx.io.images import ImageData, read_image

log = logging.getLogger(__name__)

__all__ = ["model_backbone", "explain_lesion", "explain_prediction"]


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
    backbone = model_backbone(cadx)
    img = image if isinstance(image, ImageData) else read_image(image)
    pred = cadx.predict(img, roi, view, laterality)
    expl = explain_roi(backbone, cadx.head_, pred.roi_rgb)
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
