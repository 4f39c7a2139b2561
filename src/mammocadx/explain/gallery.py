"""A Grad-CAM gallery of true/false positives/negatives for an evaluation report.

Explain lesions with the model that scored them **out of its training data**
(the fold's model for its test lesions): explaining a lesion the model was fitted
on shows the lesion's own support vector rather than what generalises.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mammocadx.records import LesionRecord
from mammocadx.explain.api import explain_records
from mammocadx.explain.figures import safe_id, save_explanation
from mammocadx.io.images import read_image

log = logging.getLogger(__name__)

__all__ = ["GROUPS", "select_gallery", "write_gallery"]

#: Gallery groups: true positive, false positive, false negative, true negative (positive = malignant).
GROUPS = ("TP", "FP", "FN", "TN")


def select_gallery(labels: Sequence[int], scores: Sequence[float], threshold: float = 0.0, per_group: int = 2) -> dict[str, list[int]]:
    """Indices of the ``per_group`` most confident lesions of each outcome group.

    Confidence is ``|score - threshold|``: the gallery shows the clearest hits and
    the most confidently wrong calls (ties by index). Lesions without a label are ignored.
    """
    y = np.array([-1 if v is None else int(v) for v in labels])
    s = np.asarray(scores, np.float64)
    pred = s > threshold
    masks = {"TP": (y == 1) & pred, "FP": (y == 0) & pred, "FN": (y == 1) & ~pred, "TN": (y == 0) & ~pred}
    out: dict[str, list[int]] = {}
    for g in GROUPS:
        idx = np.flatnonzero(masks[g])
        order = idx[np.lexsort((idx, -np.abs(s[idx] - threshold)))]
        out[g] = [int(i) for i in order[:per_group]]
    return out


def write_gallery(
    cadx: Any, records: Sequence[LesionRecord], out_dir: str | Path, per_group: int = 2, show: str = "decision"
) -> list[dict[str, Any]]:
    """Score ``records`` with ``cadx``, pick the gallery lesions, explain them and write their figures.

    Returns
    -------
    list of dict
        One entry per shown lesion: ``group``, ``sample_id``, ``label``, ``score``, ``files`` (paths).
    """
    out = Path(out_dir)
    fs = cadx.featurize(records)
    scores = cadx.decision_function(fs.X)
    chosen = select_gallery([r.label for r in fs.records], scores, cadx.threshold, per_group)
    picks = [(g, i) for g in GROUPS for i in chosen[g]]
    if not picks:
        return []
    ex, rois, kept, _skipped = explain_records(cadx, [fs.records[i] for _, i in picks])
    by_id = {r.sample_id: (e, k) for k, (e, r) in enumerate(zip(ex, kept))}
    entries = []
    for g, i in picks:
        r = fs.records[i]
        if r.sample_id not in by_id:
            continue
        e, k = by_id[r.sample_id]
        img = read_image(r.image_path)
        _, crop = cadx.featurizer.roi_image(img, r.roi, r.view, r.laterality)
        files = save_explanation(
            out, f"{g}_{safe_id(r.sample_id)}", e, rois[k], cadx.featurizer.colorize(rois[k]), image=img.pixels, crop=crop,
            threshold=float(cadx.threshold), show=show, extra={"group": g, "label": r.label_name},
        )
        entries.append({"group": g, "sample_id": r.sample_id, "label": r.label_name, "score": e.score, "files": files})
    log.info("gallery: %d lesions explained in %s", len(entries), out)
    return entries
