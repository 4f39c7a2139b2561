"""Run an evaluation protocol on a CADx and write the run folder.

A run folder holds ``metrics.json`` (each metric's mean and spread over repeats,
the protocol), ``predictions.csv`` (``image_id, patient_id, label, score,
prediction, fold`` plus ``repeat`` and ``sample_id``), ``roc.png``,
``confusion.png``, ``skipped.csv`` when inputs could not be read, and
``report.html``. The folder is built under a temporary name and renamed when
complete, so an interrupted run never leaves a half folder.
"""
from __future__ import annotations

import logging
import platform
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mammocadx import __version__
from mammocadx.records import LesionRecord
from mammocadx.errors import EvaluationError
from mammocadx.evaluate.crossval import CVResult, run_splits
from mammocadx.evaluate.metrics import METRICS
from mammocadx.evaluate.plots import plot_confusion, plot_roc
from mammocadx.io.atomic import atomic_directory, atomic_write_csv, atomic_write_json, json_data
from mammocadx.evaluate.splits import grouped_kfold, official_split
from mammocadx.features.featurizer import FeatureSet
from mammocadx.model.cadx import CADx

log = logging.getLogger(__name__)


@dataclass
class Evaluation:
    """A finished evaluation: the CV result and the features it used."""

    result: CVResult
    features: FeatureSet
    cadx: CADx
    dataset: str


def evaluate(
    cadx: CADx,
    records: Sequence[LesionRecord],
    protocol: str = "kfold",
    folds: int = 5,
    repeats: int = 5,
    seed: int = 0,
    dataset: str = "",
    features: FeatureSet | None = None,
    inner_oof_folds: int = 5,
) -> Evaluation:
    """Evaluate ``cadx`` on ``records`` with patient-grouped k-fold or the official split.

    Parameters
    ----------
    protocol : {"kfold", "official", "external"}
        ``kfold``: stratified, patient-grouped, repeated with seeds ``seed..seed+repeats-1``.
        ``official``: train on the records whose ``split`` is ``train``, test on ``test``.
        ``external``: the same, with training and test records from two datasets
        (:func:`mammocadx.evaluate.external.combine_external`).
    features : FeatureSet, optional
        Precomputed features of ``records`` (e.g. shared by several modes).
    inner_oof_folds : int
        Inner folds scoring each split's training rows (calibration, operating points and
        conformal sets are fitted on them: :mod:`mammocadx.evaluate.calibration_report`); 0 = off.
    """
    fs = features if features is not None else cadx.featurize(records)
    if protocol == "kfold":
        splits = grouped_kfold(fs.y, fs.groups, folds=folds, repeats=repeats, seed=seed)
        proto = {"name": "patient-grouped stratified k-fold", "folds": folds, "repeats": repeats, "seed": seed}
    elif protocol in ("official", "external"):
        splits = official_split([r.split for r in fs.records], fs.groups)
        name = "official train/test split" if protocol == "official" else "external validation (train on one dataset, test on another)"
        proto = {"name": name, "folds": 1, "repeats": 1, "seed": seed,
                 "n_train": int(len(splits[0].train)), "n_test": int(len(splits[0].test))}
    else:
        raise EvaluationError(f"unknown protocol {protocol!r} (kfold, official or external)")
    proto.update(grouping="patient", auc_from="decision_function",
                 n_lesions=len(fs.records), n_malignant=int(fs.y.sum()), n_patients=len(set(fs.groups)),
                 n_skipped=len(fs.skipped))
    # Repeat 0's heads are kept: the Grad-CAM gallery explains each lesion with the head that scored it.
    result = run_splits(fs.X, fs.y, fs.groups, splits, cadx.head_factory(), cadx.config.head.threshold, proto,
                        keep_heads_of_repeat=0, inner_oof_folds=inner_oof_folds)
    return Evaluation(result=result, features=fs, cadx=cadx, dataset=dataset)


def card_metrics(ev: Evaluation) -> dict[str, Any]:
    """The validated performance a model card carries: protocol, each headline metric's mean and 95 % CI.

    The intervals are the patient-bootstrap ones of ``metrics.json``; the web page
    and ``predict`` show them next to a score.
    """
    from mammocadx.evaluate.bootstrap import bootstrap_ci, cv_arrays

    r = ev.result
    y, g = ev.features.y, ev.features.groups
    S, P, idx = cv_arrays(r.predictions, len(y))
    ci = bootstrap_ci(y[idx], S, P, g[idx], n_boot=2000, seed=int(r.protocol.get("seed", 0)))
    summary = r.summary()
    proto = r.protocol
    text = f"{proto['name']}, {proto.get('folds', 1)} fold(s) x {proto.get('repeats', 1)}, {ev.dataset}"
    out: dict[str, Any] = {"protocol": text, "n_lesions": int(proto["n_lesions"]),
                           "n_patients": int(proto["n_patients"])}
    for m in ("auc", "accuracy", "sensitivity", "specificity"):
        out[m] = summary[m]["mean"]
        if m in ci:
            out[f"{m}_ci95"] = [float(v) for v in ci[m]]
    return json_data(out)


def metrics_dict(ev: Evaluation, command: str | None = None) -> dict[str, Any]:
    """The content of ``metrics.json``."""
    from mammocadx.evaluate.bootstrap import bootstrap_ci, cv_arrays

    r = ev.result
    summary = r.summary()
    y, g = ev.features.y, ev.features.groups
    S, P, idx = cv_arrays(r.predictions, len(y))
    seed = int(r.protocol.get("seed", 0))
    ci = bootstrap_ci(y[idx], S, P, g[idx], n_boot=2000, seed=seed)
    conf = {k: float(np.mean([rep["confusion"][k] for rep in r.per_repeat])) for k in ("tn", "fp", "fn", "tp")}
    import sklearn

    from mammocadx.utils.versions import dist_version

    out: dict[str, Any] = {
        "dataset": ev.dataset,
        "mode": ev.cadx.config.mode,
        "config": ev.cadx.config.to_dict(),
        "protocol": r.protocol,
        # Headline numbers: mean over repeats of the pooled out-of-fold metric.
        **{m: summary[m]["mean"] for m in METRICS},
        "summary": summary,
        # 95 % percentile bootstrap intervals resampling patients (2,000 replicates).
        "ci95": {k: list(v) for k, v in ci.items()},
        "ci_method": "percentile bootstrap over patients, 2000 replicates, out-of-fold scores of every repeat",
        "fold_summary": r.fold_summary(),
        "confusion_mean_over_repeats": conf,
        "per_repeat": r.per_repeat,
        "folds": r.fold_info,
        "skipped": [{"sample_id": rec.sample_id, "image": str(rec.image_path), "reason": why} for rec, why in ev.features.skipped],
        "command": command or " ".join(sys.argv),
        "versions": {"mammocadx": __version__, "python": platform.python_version(), "numpy": np.__version__,
                     "scikit-learn": sklearn.__version__, "torch": dist_version("torch")},  # torch may be unloaded (cache)
        "backbone": {"name": ev.cadx.config.backbone,
                     "weights_sha256": getattr(ev.cadx.extractor, "weights_sha256", None)},
    }
    # Calibration, operating points, breast level, abstention, subgroups (issue 16): one call, same replicates.
    from mammocadx.evaluate.calibration_report import posthoc_metrics

    out.update(posthoc_metrics(r, y, g, ev.features.records, seed=seed, n_boot=2000)[0])
    return json_data(out)


def write_run(ev: Evaluation, out_dir: str | Path, command: str | None = None, title: str | None = None,
              gallery_per_group: int = 0, deletion_lesions: int = 0) -> Path:
    """Write the run folder for ``ev`` at ``out_dir`` (built under a temporary name, then moved into place).

    Parameters
    ----------
    gallery_per_group : int
        Grad-CAM gallery lesions per outcome group (TP/FP/FN/TN), explained by
        their out-of-fold model; 0 = no gallery.
    deletion_lesions : int
        Test lesions whose deletion curves check the heat-maps' faithfulness; 0 = no check.
    """
    out_dir = Path(out_dir)
    with atomic_directory(out_dir) as tmp:
        metrics = metrics_dict(ev, command)
        if gallery_per_group or deletion_lesions:
            from mammocadx.evaluate.explain_run import explain_evaluation

            expl = explain_evaluation(ev, tmp / "gradcam", per_group=gallery_per_group,
                                      deletion_lesions=deletion_lesions, seed=int(ev.result.protocol.get("seed", 0)))
            for entry in expl["gallery"]:
                entry["files"] = [str(Path(f).relative_to(tmp)) for f in entry["files"]]
            metrics["gradcam"] = json_data(expl)
        atomic_write_json(tmp / "metrics.json", metrics)
        _write_predictions(ev, tmp / "predictions.csv")
        if ev.features.skipped:
            atomic_write_csv(tmp / "skipped.csv",
                             ({"sample_id": rec.sample_id, "image": str(rec.image_path), "reason": why}
                              for rec, why in ev.features.skipped),
                             ["sample_id", "image", "reason"])
        y = ev.features.y
        by_fold: dict[tuple[int, int], list[Any]] = {}
        for p in ev.result.predictions:
            by_fold.setdefault((p.repeat, p.fold), []).append(p)
        curves = [(y[[p.index for p in rows]], np.array([p.score for p in rows])) for rows in by_fold.values()]
        name = title or f"{ev.dataset} — {ev.cadx.config.mode} mode"
        plot_roc(curves, tmp / "roc.png", title=f"ROC per fold and mean: {name}",
                 pooled_auc=metrics["summary"]["auc"]["mean"])
        plot_confusion(metrics["confusion_mean_over_repeats"], tmp / "confusion.png",
                       title="Confusion matrix (mean over repeats)")
        from mammocadx.evaluate.calibration_report import write_posthoc_figures

        write_posthoc_figures(metrics, tmp)
        from mammocadx.evaluate.report import write_report

        write_report(tmp, metrics, title=name)
    log.info("run written to %s", out_dir)
    return out_dir


PREDICTION_COLUMNS = ("image_id", "patient_id", "label", "score", "prediction", "fold", "repeat", "sample_id")


def _write_predictions(ev: Evaluation, path: Path) -> None:
    recs = ev.features.records
    rows = (
        {"image_id": recs[p.index].image_id, "patient_id": recs[p.index].patient_id, "label": recs[p.index].label,
         "score": f"{p.score:.6f}", "prediction": p.prediction, "fold": p.fold, "repeat": p.repeat,
         "sample_id": recs[p.index].sample_id}
        for p in sorted(ev.result.predictions, key=lambda p: (p.repeat, p.index))
    )
    atomic_write_csv(path, rows, PREDICTION_COLUMNS)
