"""Grad-CAM gallery and deletion (faithfulness) check of an evaluation, with out-of-fold models.

Every lesion is explained by the model of the fold in which it was a *test*
lesion (refitted here from the same split): explaining a lesion with a model
fitted on it would show its own support vector, not what generalises. Only
repeat 0 is used.
"""
from __future__ import annotations

import copy
import logging
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # run.write_run imports this module; the type alone flows back
    from mammocadx.evaluate.run import Evaluation

log = logging.getLogger(__name__)


def _fold_models(ev: Evaluation, folds: set[int]) -> dict[int, Any]:
    """A CADx per fold of repeat 0 with the head that scored that fold's test lesions.

    The cross-validation keeps repeat 0's fitted heads; a fold without one (an
    evaluation made elsewhere) is refitted here from the same split, which gives
    the same head (fits are seeded).
    """
    X, y = ev.features.X, ev.features.y
    preds = [p for p in ev.result.predictions if p.repeat == 0]
    kept = getattr(ev.result, "heads", {}) or {}
    out = {}
    for f in sorted(folds):
        head = kept.get((0, f))
        if head is None:
            test = np.array(sorted(p.index for p in preds if p.fold == f))
            train = np.setdiff1d(np.arange(len(y)), test)
            if ev.result.protocol.get("name", "").startswith("official"):
                train = np.array([i for i, r in enumerate(ev.features.records) if (r.split or "").lower() == "train"])
            head = ev.cadx.head_factory()(len(train), X.shape[1])
            head.fit(X[train], y[train], groups=ev.features.groups[train])
        fold_cadx = copy.copy(ev.cadx)
        fold_cadx.head_ = head
        out[f] = fold_cadx
    return out


def explain_evaluation(ev: Evaluation, out_dir: Path, per_group: int = 2, deletion_lesions: int = 12,
                       seed: int = 0) -> dict[str, Any]:
    """Write a TP/FP/FN/TN Grad-CAM gallery and run the deletion check on a sample of test lesions.

    Parameters
    ----------
    ev : Evaluation
        A finished evaluation.
    out_dir : Path
        Folder for the gallery figures (created).
    per_group : int
        Lesions shown per outcome group (the most confident of each).
    deletion_lesions : int
        Test lesions (random, seeded) whose deletion curves are measured; 0 skips the check.

    Returns
    -------
    dict
        ``gallery``: entries ``{group, sample_id, label, score, files}``;
        ``deletion``: per-image results and the aggregate, or ``None``.
    """
    from scipy.stats import wilcoxon

    from mammocadx.explain.api import deletion_for_records, explain_records
    from mammocadx.explain.figures import safe_id, save_explanation
    from mammocadx.explain.gallery import GROUPS, select_gallery
    from mammocadx.io.images import read_image

    recs = ev.features.records
    preds = [p for p in ev.result.predictions if p.repeat == 0]
    y = ev.features.y
    labels = [int(y[p.index]) for p in preds]
    # Each prediction carries its fold's call; the gallery groups by it.
    chosen = select_gallery(labels, [p.score for p in preds], 0.0, per_group) if not any(
        int(p.score > 0) != p.prediction for p in preds) else _select_by_prediction(preds, labels, per_group)
    picks = [(g, preds[k]) for g in GROUPS for k in chosen[g]]
    rng = np.random.default_rng(seed)
    del_sample = [preds[k] for k in rng.permutation(len(preds))[:deletion_lesions]] if deletion_lesions else []
    models = _fold_models(ev, {p.fold for _, p in picks} | {p.fold for p in del_sample})

    gallery = []
    out_dir.mkdir(parents=True, exist_ok=True)
    from mammocadx.utils.progress import progress

    for g, p in progress(picks, total=len(picks), desc="Grad-CAM gallery", unit="lesion"):
        cadx = models[p.fold]
        r = recs[p.index]
        ex, rois, kept, _ = explain_records(cadx, [r])
        if not ex:
            continue
        img = read_image(r.image_path)
        _, crop = cadx.featurizer.roi_image(img, r.roi, r.view, r.laterality)
        files = save_explanation(out_dir, f"{g}_{safe_id(r.sample_id)}", ex[0], rois[0], cadx.featurizer.colorize(rois[0]),
                                 image=img.pixels, crop=crop, threshold=float(cadx.threshold), show="decision",
                                 extra={"group": g, "label": r.label_name, "fold": p.fold, "out_of_fold_score": p.score})
        gallery.append({"group": g, "sample_id": r.sample_id, "label": r.label_name, "score": float(p.score),
                        "fold": p.fold, "files": [str(f) for f in files]})

    deletion = None
    if del_sample:
        by_fold: dict[int, list[Any]] = defaultdict(list)
        for p in del_sample:
            by_fold[p.fold].append(recs[p.index])
        per_image: list[dict[str, Any]] = []
        protocol: dict[str, Any] = {}
        for f, rs in sorted(by_fold.items()):
            res = deletion_for_records(models[f], rs)
            protocol = res["protocol"]
            for item in res["per_image"]:
                item["fold"] = f
                item.pop("curve_salient", None)
                item.pop("curve_random", None)
                per_image.append(item)
        sal = np.array([d["auc_drop_salient"] for d in per_image])
        rnd = np.array([d["auc_drop_random"] for d in per_image])
        diff = sal - rnd
        p_value = float(wilcoxon(diff, alternative="greater").pvalue) if len(diff) > 1 and np.any(diff != 0) else None
        deletion = {
            "protocol": {**protocol, "lesions": len(per_image), "models": "out-of-fold (repeat 0)", "seed": seed},
            "per_image": per_image,
            "aggregate": {"n": int(len(diff)), "mean_auc_drop_salient": float(sal.mean()),
                          "mean_auc_drop_random": float(rnd.mean()), "mean_difference": float(diff.mean()),
                          "fraction_salient_better": float(np.mean(diff > 0)), "wilcoxon_p_greater": p_value},
        }
    return {"gallery": gallery, "deletion": deletion}


def _select_by_prediction(preds: list[Any], labels: list[int], per_group: int) -> dict[str, list[int]]:
    """Gallery picks when folds chose their own thresholds: group by each fold's call, most confident first."""
    groups: dict[str, list[int]] = {"TP": [], "FP": [], "FN": [], "TN": []}
    for k, (p, y) in enumerate(zip(preds, labels)):
        g = ("T" if p.prediction == y else "F") + ("P" if p.prediction == 1 else "N")
        groups[g].append(k)
    return {g: sorted(ks, key=lambda k: -abs(preds[k].score))[:per_group] for g, ks in groups.items()}
