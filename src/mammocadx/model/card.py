"""The model card of a fitted CADx: what it is, how it was trained, what it is for (data, not code)."""
from __future__ import annotations

from typing import Any

from mammocadx.features.featurizer import FeatureSet
from mammocadx.model.heads import HEADS
from mammocadx.model.modes import FINETUNE
from mammocadx.utils.determinism import fingerprint_records

INTENDED_USE = (
    "Research and second reading of mammographic lesions marked by a reader. Not a medical device: "
    "not cleared or approved for clinical diagnosis; every output must be reviewed by a qualified radiologist."
)


def limitations(score: str) -> str:
    """The card's limitations, naming what the model's score is (``HEADS[name].score``)."""
    return ("Trained and evaluated on the data named in this card only; performance on other scanners, populations "
            f"and lesion types is unknown. The lesion must be located by the user (or a mask); scores are {score}, "
            "not probabilities.")


def model_card(cadx: Any, fs: FeatureSet, seed: int | None) -> dict[str, Any]:
    """The card of ``cadx`` just fitted on ``fs`` (``metrics`` is filled by whoever validated it, e.g. ``train --cv``)."""
    c, ext = cadx.config, cadx.extractor
    factory = cadx.head_factory()
    head_info: dict[str, Any] = {"recipe": factory.describe()}
    steps = getattr(cadx.head_, "named_steps", {})
    if "pca" in steps:
        head_info["pca_components"] = int(steps["pca"].n_components_)
    if "svc" in steps:
        head_info["svc_gamma"] = float(steps["svc"]._gamma)
    if hasattr(cadx.head_, "selection_record") and cadx.head_.selection_record():
        head_info["selection"] = cadx.head_.selection_record()
    feature_dim = int(fs.X.shape[1])
    if cadx.kind == FINETUNE:
        feature_dim = int(cadx.head_.coef_.shape[1])
        head_info["network"] = {"params": cadx.head_.get_params(), "file": "network.safetensors"}
    return {
        "name": f"mammocadx-{c.mode}",
        "mode": c.mode,
        "kind": cadx.kind,
        "config": c.card_dict(),
        "backbone": {"name": c.backbone, "weights_sha256": getattr(ext, "weights_sha256", None),
                     "input_size": int(cadx.roi_config.size), "feature_dim": feature_dim,
                     "precision": c.precision},
        "preprocessing": {"pseudocolor": c.pseudocolor, "roi_context": c.context,
                          "roi_size": int(cadx.roi_config.size), "segmentation": c.segment,
                          "clahe": c.clahe, "window": "8-bit, before pseudocolour"},
        "head": head_info,
        "threshold": cadx.threshold,
        "training_data": {"n_lesions": len(fs.records), "n_malignant": int(fs.y.sum()),
                          "n_patients": len(set(fs.groups)), "seed": seed,
                          "fingerprint": fingerprint_records(fs.records),
                          "fingerprint_method": "sha256 of image and mask bytes, ids, labels, ROIs"},
        "intended_use": INTENDED_USE,
        "limitations": limitations(HEADS[factory.name].score),
        "metrics": None,
    }
