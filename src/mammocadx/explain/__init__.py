"""Explanations of the classifier's own decision: Grad-CAM of the malignancy score.

Positive score and positive map values = towards malignant.

- :mod:`~mammocadx.explain.head_gradient`: exact gradient of the fitted head's score;
- :mod:`~mammocadx.explain.gradcam`: Grad-CAM at ROI resolution (hooked context manager);
- :mod:`~mammocadx.explain.placement`: the map back on the full mammogram;
- :mod:`~mammocadx.explain.figures`: figure-6 panel, mammogram overlay, :func:`save_explanation`;
- :mod:`~mammocadx.explain.deletion`: faithfulness (deletion curve vs random maps);
- :mod:`~mammocadx.explain.api`: one call for a fitted CADx;
- :mod:`~mammocadx.explain.gallery`: TP/FP/FN/TN gallery for reports.
"""
from mammocadx.explain.api import (
    deletion_for_records,
    explain_lesion,
    explain_prediction,
    explain_records,
    model_backbone,
)
from mammocadx.explain.deletion import deletion_check
from mammocadx.explain.figures import save_explanation
from mammocadx.explain.gallery import select_gallery, write_gallery
from mammocadx.explain.gradcam import Explanation, GradCAM, explain_roi, explain_rois
from mammocadx.explain.head_gradient import (
    HeadGradient,
    decision_and_gradient,
    head_gradient,
)
from mammocadx.explain.placement import map_to_roi, place_on_image

__all__ = [
    "Explanation",
    "GradCAM",
    "HeadGradient",
    "decision_and_gradient",
    "deletion_check",
    "deletion_for_records",
    "explain_lesion",
    "explain_prediction",
    "explain_records",
    "explain_roi",
    "explain_rois",
    "head_gradient",
    "map_to_roi",
    "model_backbone",
    "place_on_image",
    "save_explanation",
    "select_gallery",
    "write_gallery",
]
