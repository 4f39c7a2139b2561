"""Answers a reader can act on, measured out of fold: probability, operating points, breasts, abstention, subgroups.

:func:`posthoc_metrics` takes a finished cross-validation whose splits carry the
inner out-of-fold scores of their training rows (``run_splits(...,
inner_oof_folds=k)``) and, **per outer fold, from those training-row scores only**:

- chooses and fits a calibrator (:func:`~mammocadx.model.calibrate.choose_calibrator`)
  and turns the fold's test scores into probabilities of malignancy;
- sets thresholds for sensitivity 0.90/0.95 and specificity 0.80/0.90/0.95
  (:func:`~mammocadx.model.operating_point.threshold_for`) and applies them to the
  test rows (the "fixed" operating points: what a reader gets from a model whose
  threshold was set in training);
- fits class-conditional split-conformal sets (:class:`~mammocadx.model.conformal.SplitConformal`)
  at each ``alpha`` and reports coverage and abstention on the test rows;
- chooses breast-level fusion (mean or max of the calibrated probabilities of one
  breast's lesions) by the breast-level AUC of the training rows.

Then, over the pooled out-of-fold results of every repeat (mean over repeats,
as the headline metrics), it reports with patient-bootstrap 95 % intervals (the
same replicates as :func:`~mammocadx.evaluate.bootstrap.bootstrap_ci`: same
patients, ``n_boot`` and seed): Brier score and ECE, operating points read off
the ROC curve and fixed in training, lesion-level and breast-level metrics side by
side, the abstention trade-off, and metrics per subgroup.

Breasts: lesions are grouped by :func:`breast_key`: a manifest's ``lesion_id``
column when given; else patient + laterality (+ the manifest's ``exam_id``, +
CBIS-DDSM's abnormality id). A breast is malignant if any of its lesions is.
"""
from __future__ import annotations

import html
import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mammocadx.records import LesionRecord
from mammocadx.evaluate.bootstrap import (bootstrap_ci, cv_arrays, patient_weights, percentile_interval,
                                          point_estimates, weighted_auc)
from mammocadx.evaluate.crossval import CVResult
from mammocadx.evaluate.operating_points import (SENS_TARGETS, SPEC_TARGETS, ece_edges, op_names, reliability_curve,
                                                 weighted_brier, weighted_ece, weighted_operating_points)
from mammocadx.model.answers import FUSIONS, choose_fusion
from mammocadx.model.calibrate import choose_calibrator
from mammocadx.model.conformal import SplitConformal
from mammocadx.model.operating_point import threshold_for

log = logging.getLogger(__name__)

#: The ``metrics.json`` entries :func:`posthoc_metrics` adds.
POSTHOC_KEYS: tuple[str, ...] = ("calibration", "operating_points", "operating_points_method", "operating_points_fixed",
                                 "breast_level", "abstention", "subgroups")
#: Figures :func:`write_posthoc_figures` may write.
POSTHOC_FIGURES: tuple[str, ...] = ("reliability.png", "abstention.png")
#: Miscoverage levels of the conformal sets reported.
ALPHAS: tuple[float, ...] = (0.05, 0.10, 0.20, 0.30)
#: Subgroups need at least this many lesions to be reported.
MIN_SUBGROUP = 8


def breast_key(rec: LesionRecord) -> str:
    """The breast (exam-level unit) a lesion belongs to; lesions of both views of one breast share it."""
    extra = rec.extra or {}
    if extra.get("lesion_id"):
        return f"{rec.patient_id}|lesion|{extra['lesion_id']}"
    if rec.laterality is None:
        return f"{rec.patient_id}|image|{rec.image_id}"  # side unknown: the image is the best we can do
    parts = [rec.patient_id, rec.laterality]
    if extra.get("exam_id"):
        parts.append(f"exam {extra['exam_id']}")
    if extra.get("abnormality_id") is not None:
        parts.append(f"abn {extra['abnormality_id']}")
    return "|".join(str(p) for p in parts)


def roi_area(rec: LesionRecord) -> float | None:
    """The lesion ROI's area in image pixels (circle or box; None for a mask or no ROI): ``rec.roi.area``."""
    return rec.roi.area


def subgroup_labels(records: Sequence[LesionRecord]) -> dict[str, list[str | None]]:
    """Subgroup name -> one label per record (None: not known), for the subgroups the records carry.

    ``abnormality`` (mini-MIAS class, CBIS-DDSM abnormality type), ``tissue`` (mini-MIAS
    background tissue F/G/D), ``density`` (CBIS-DDSM breast density or a manifest column
    ``density``/``breast_density``), ``view`` and ``size`` (tertiles of ROI area).
    """
    out: dict[str, list[str | None]] = {}

    def add(name: str, values: list[Any]) -> None:
        vals = [None if v is None or str(v).strip() == "" else str(v).strip() for v in values]
        if len({v for v in vals if v is not None}) >= 2:
            out[name] = vals

    ex = [r.extra or {} for r in records]
    add("abnormality", [e.get("class", e.get("abnormality_type")) for e in ex])
    add("tissue", [e.get("tissue") for e in ex])
    add("density", [e.get("breast_density", e.get("density")) for e in ex])
    add("view", [r.view for r in records])
    areas = np.array([a if a is not None else np.nan for a in map(roi_area, records)], dtype=float)
    if np.isfinite(areas).sum() >= 3 * MIN_SUBGROUP:
        t1, t2 = np.nanquantile(areas, [1 / 3, 2 / 3])
        names = [f"small (side < {np.sqrt(t1):.0f} px)", f"medium ({np.sqrt(t1):.0f}-{np.sqrt(t2):.0f} px)",
                 f"large (side > {np.sqrt(t2):.0f} px)"]
        add("size", [None if not np.isfinite(a) else names[int(a > t1) + int(a > t2)] for a in areas])
    return out


@dataclass
class Posthoc:
    """Per-repeat out-of-fold arrays behind :func:`posthoc_metrics` (for plots).

    All arrays are (repeats, m) over the lesions ``index`` (scored in every repeat).
    """

    index: np.ndarray
    y: np.ndarray
    score: np.ndarray
    proba: np.ndarray | None = None
    #: alpha -> (repeats, m) conformal sets: 0 {benign}, 1 {malignant}, 2 both (uncertain), 3 empty (uncertain)
    conformal: dict[float, np.ndarray] = field(default_factory=dict)


def _group_reduce(values: np.ndarray, inverse: np.ndarray, n_groups: int, how: str) -> np.ndarray:
    """Mean or max of ``values`` (..., m) over groups given by ``inverse`` (m,) -> (..., n_groups)."""
    v2 = np.atleast_2d(values)
    out = np.full((len(v2), n_groups), -np.inf if how == "max" else 0.0)
    for r in range(len(v2)):
        if how == "max":
            np.maximum.at(out[r], inverse, v2[r])
        else:
            np.add.at(out[r], inverse, v2[r])
    if how == "mean":
        out /= np.bincount(inverse, minlength=n_groups)
    return out if values.ndim == 2 else out[0]


def _per_fold(result: CVResult, y: np.ndarray, groups: np.ndarray, keys: np.ndarray, n: int,
              alphas: Sequence[float], seed: int) -> dict[str, Any]:
    """Everything fitted per outer fold on its training rows' inner out-of-fold scores, applied to its test rows."""
    repeats = sorted({p.repeat for p in result.predictions})
    rix = {r: k for k, r in enumerate(repeats)}
    R = len(repeats)
    proba = np.full((R, n), np.nan)
    n_op = len(SPEC_TARGETS) + len(SENS_TARGETS)
    fixed = np.full((n_op, R, n), -1, dtype=int)
    conf = {a: np.full((R, n), 3, dtype=int) for a in alphas}
    fusion = np.full((R, n), "", dtype=object)
    records: list[dict[str, Any]] = []
    test_of: dict[tuple[int, int], list[Any]] = {}
    for p in result.predictions:
        test_of.setdefault((p.repeat, p.fold), []).append(p)
    for (rep, fold), (train, oof) in sorted(result.inner_oof.items()):
        rows = test_of.get((rep, fold), [])
        if not rows or not np.all(np.isfinite(oof)):
            continue
        te = np.array([p.index for p in rows])
        st = np.array([p.score for p in rows])
        yt, gt = y[train], groups[train]
        cal, rec = choose_calibrator(oof, yt, gt, seed=seed + 1000 * rep + fold)
        r = rix[rep]
        proba[r, te] = cal.predict_proba(st)
        p_train = cal.predict_proba(oof)
        thr = ([threshold_for(oof, yt, specificity=t) for t in SPEC_TARGETS]
               + [threshold_for(oof, yt, sensitivity=t) for t in SENS_TARGETS])
        for k, t in enumerate(thr):
            fixed[k, r, te] = (st > t).astype(int)
        for a in alphas:
            sets = SplitConformal(a, mondrian=True).fit(p_train, yt).predict_set(proba[r, te])
            conf[a][r, te] = np.select([sets[:, 0] & sets[:, 1], sets[:, 0], sets[:, 1]], [2, 0, 1], 3)
        f = choose_fusion(p_train, yt, keys[train])
        fusion[r, te] = f
        records.append({"repeat": rep, "fold": fold, "n_train": int(len(train)), "calibrator": rec,
                        "calibrator_state": cal.to_dict(), "fusion": f,
                        "thresholds": dict(zip(op_names(), thr))})
    return {"proba": proba, "fixed": fixed, "conformal": conf, "fusion": fusion, "folds": records}


class _Boot:
    """Point value (mean over repeats) and patient-bootstrap interval of weighted-count metrics."""

    def __init__(self, w: np.ndarray, level: float = 0.95):
        self.w = w
        self.level = level

    def __call__(self, fn: Any, *per_repeat: np.ndarray) -> dict[str, Any]:
        """``fn(w, *arrays_of_one_repeat) -> (B,) or (B, k)``, applied to each repeat and averaged."""
        ones = np.ones((1, self.w.shape[1]))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            pts = np.stack([np.atleast_1d(np.asarray(fn(ones, *arrs), dtype=float)[0]) for arrs in zip(*per_repeat)])
            reps = np.stack([np.asarray(fn(self.w, *arrs), dtype=float).reshape(len(self.w), -1)
                             for arrs in zip(*per_repeat)])
            point = np.nanmean(pts, axis=0)
            boot = np.nanmean(reps, axis=0)  # (B, k)
        return {"point": point, "ci": [percentile_interval(boot[:, j], self.level) for j in range(boot.shape[1])]}


def _named(names: Sequence[str], res: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {n: {"value": float(res["point"][j]), "ci95": list(res["ci"][j])} for j, n in enumerate(names)}


def _level_metrics(boot: _Boot, y: np.ndarray, S: np.ndarray, P: np.ndarray | None) -> dict[str, Any]:
    """AUC, operating points (read off the ROC curve) and, with probabilities, Brier and ECE."""
    out = _named(["auc"], boot(lambda w, s: weighted_auc(y, s, w), S))
    out.update(_named(op_names(), boot(lambda w, s: weighted_operating_points(y, s, w), S)))
    if P is not None:
        out.update(_named(["brier"], boot(lambda w, p: weighted_brier(y, p, w), P)))
        out.update(_named(["ece"], boot(lambda w, p: weighted_ece(y, p, w, edges=ece_edges(p)), P)))
    return out


def posthoc_metrics(
    result: CVResult,
    y: np.ndarray,
    groups: np.ndarray,
    records: Sequence[LesionRecord],
    seed: int = 0,
    n_boot: int = 2000,
    alphas: Sequence[float] = ALPHAS,
) -> tuple[dict[str, Any], Posthoc]:
    """Calibration, operating points, breast-level metrics, abstention and subgroups of a CV run.

    Parameters
    ----------
    result : CVResult
        With ``inner_oof`` filled (``run_splits(..., inner_oof_folds=5)``); without it
        only the ROC operating points, breast-level AUC and subgroups are reported.
    y, groups : arrays (n,)
        Labels and patient ids of the rows ``result`` indexes.
    records : sequence of LesionRecord
        The rows' records (breast grouping, subgroups).
    seed, n_boot : int
        Bootstrap seed and replicates (the headline intervals' own, so the replicates match).

    Returns
    -------
    dict, Posthoc
        The ``metrics.json`` entries (``calibration``, ``operating_points``,
        ``operating_points_fixed``, ``breast_level``, ``abstention``, ``subgroups``)
        and the arrays the figures are drawn from.
    """
    y = np.asarray(y).astype(int)
    groups = np.asarray(groups)
    n = len(y)
    keys = np.array([breast_key(r) for r in records])
    S, _, idx = cv_arrays(result.predictions, n)
    yi, gi, ki = y[idx], groups[idx], keys[idx]
    boot = _Boot(patient_weights(gi, n_boot, seed))
    have_cal = bool(result.inner_oof)
    fold = _per_fold(result, y, groups, keys, n, alphas, seed) if have_cal else None
    P = fold["proba"][:, idx] if fold is not None else None
    if P is not None and np.isnan(P).any():
        log.warning("some lesions lack a calibrated probability (a fold without inner scores); calibration skipped")
        P, fold = None, None
    out: dict[str, Any] = {}
    lesion = _level_metrics(boot, yi, S, P)
    out["operating_points"] = {k: lesion[k] for k in op_names()}
    out["operating_points_method"] = ("read off the ROC curve of the pooled out-of-fold scores of each repeat "
                                      "(threshold chosen on those scores), mean over repeats")
    post = Posthoc(index=idx, y=yi, score=S, proba=P)
    if fold is not None:
        out["calibration"] = {
            "brier": lesion["brier"], "ece": lesion["ece"],
            "brier_prevalence_only": float(np.mean((yi - yi.mean()) ** 2)),
            "ece_bins": "10 equal-mass bins (quantiles of the probabilities). ECE is biased upwards in small "
                        "samples and more so in bootstrap replicates (duplicated patients make bins noisier): its "
                        "percentile interval is that of the resampled ECE and may lie above the point value",
            "method": "per outer fold: Platt or isotonic, chosen by inner patient-grouped 5-fold CV Brier score on "
                      "the inner out-of-fold decision values of the training rows, fitted on all of them",
            "chosen": {c: int(sum(f["calibrator"]["chosen"] == c for f in fold["folds"])) for c in ("platt", "isotonic")},
            "folds": fold["folds"],
        }
        out["operating_points_fixed"] = _fixed_points(boot, yi, fold["fixed"][:, :, idx])
        out["abstention"] = _abstention(boot, yi, P, {a: c[:, idx] for a, c in fold["conformal"].items()})
        post.conformal = {a: c[:, idx] for a, c in fold["conformal"].items()}
    out["breast_level"] = _breast_level(boot, yi, ki, S, P, fold["fusion"][:, idx] if fold is not None else None,
                                        lesion)
    if fold is not None:
        out["breast_level"]["chosen_rule"] = {f: int(sum(r["fusion"] == f for r in fold["folds"])) for f in FUSIONS}
        rel = {"lesion level": reliability_curve(np.tile(yi, len(P)), P.ravel())}
        fused = out["breast_level"].pop("_chosen_values", None)
        if fused is not None:
            rel["breast level (chosen fusion)"] = reliability_curve(np.tile(fused[0], len(fused[1])), fused[1].ravel())
        out["calibration"]["reliability"] = {
            "bins": "10 equal-mass bins, pooled over repeats",
            **{k: {"mean_predicted": c[0].tolist(), "fraction_malignant": c[1].tolist(), "count": c[2].tolist()}
               for k, c in rel.items()}}
    out["subgroups"] = _subgroups(records, idx, yi, gi, S, result, n, seed, n_boot)
    return out, post


def _fixed_points(boot: _Boot, y: np.ndarray, calls: np.ndarray) -> dict[str, Any]:
    """Sensitivity and specificity on the test rows at thresholds set on the training rows."""
    pos, neg = (y == 1).astype(float), (y == 0).astype(float)

    def sens_spec(w: np.ndarray, c: np.ndarray) -> np.ndarray:
        return np.stack([(w @ (c * pos)) / (w @ pos), (w @ ((1 - c) * neg)) / (w @ neg)], axis=1)

    out: dict[str, Any] = {"method": "threshold per outer fold by threshold_for() on the inner out-of-fold scores "
                                     "of its training rows, applied to its test rows"}
    for k, name in enumerate(op_names()):
        target = name.replace("sensitivity_at_", "").replace("specificity_at_", "")
        out[f"target_{target}"] = _named(["sensitivity", "specificity"], boot(sens_spec, calls[k]))
    return out


def _abstention(boot: _Boot, y: np.ndarray, P: np.ndarray, conf: dict[float, np.ndarray]) -> dict[str, Any]:
    pos, neg = (y == 1).astype(float), (y == 0).astype(float)

    def stats(w: np.ndarray, c: np.ndarray) -> np.ndarray:
        called = (c <= 1).astype(float)
        right = (c == y).astype(float)
        covered = ((c == y) | (c == 2)).astype(float)
        tot = w.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.stack([w @ covered / tot, (w @ (covered * pos)) / (w @ pos), (w @ (covered * neg)) / (w @ neg),
                             1 - w @ called / tot, (w @ right) / (w @ called)], axis=1)

    names = ["coverage", "coverage_malignant", "coverage_benign", "fraction_abstained", "accuracy_on_called"]
    out: dict[str, Any] = {"method": "class-conditional (Mondrian) split-conformal LAC sets on the calibrated "
                                     "probability, fitted per outer fold on the inner out-of-fold scores of its "
                                     "training rows; uncertain = both labels (or none) in the set",
                           "guarantee": "P(true label in set | class) >= 1 - alpha for exchangeable lesions "
                                        "(approximate here: calibration scores come from inner-fold models)"}
    for a, c in conf.items():
        res = _named(names, boot(stats, c))
        res["target_coverage"] = 1 - a
        res["fraction_empty_sets"] = float(np.mean(c == 3))
        out[f"alpha_{a:.2f}"] = res
    # the selective-prediction curve: abstain on the lesions whose probability is closest to 0.5
    grid = np.round(np.arange(0.0, 0.91, 0.05), 2)
    accs = []
    for p in P:
        order = np.argsort(-np.abs(p - 0.5), kind="stable")
        right = ((p[order] > 0.5).astype(int) == y[order]).astype(float)
        keep = np.maximum(1, np.round((1 - grid) * len(p)).astype(int))
        accs.append(np.cumsum(right)[keep - 1] / keep)
    out["selective_curve"] = {"fraction_abstained": grid.tolist(), "accuracy_on_called": np.mean(accs, axis=0).tolist(),
                              "rule": "abstain on the lesions whose calibrated probability is closest to 0.5, "
                                      "call the rest at 0.5 (no guarantee; mean over repeats)"}
    # the reference: accuracy when every lesion is called at 0.5
    out["accuracy_all_called_at_0.5"] = _named(["accuracy"], boot(
        lambda w, p: (w @ ((p > 0.5).astype(int) == y).astype(float)) / w.sum(axis=1), P))["accuracy"]
    return out


def _breast_level(boot: _Boot, y: np.ndarray, keys: np.ndarray, S: np.ndarray, P: np.ndarray | None,
                  fusion: np.ndarray | None, lesion: dict[str, Any]) -> dict[str, Any]:
    """Breast-level metrics (fused by mean, max and the training-chosen rule) beside the lesion-level ones."""
    uk, inv = np.unique(keys, return_inverse=True)
    nb = len(uk)
    yb = _group_reduce(y.astype(float), inv, nb, "max").astype(int)
    first = np.zeros(nb, dtype=int)
    first[inv[::-1]] = np.arange(len(inv))[::-1]  # a member row of each breast: its patient's weight
    bboot = _Boot(boot.w[:, first], boot.level)
    out: dict[str, Any] = {"grouping": "lesion_id, else patient + laterality (+ exam_id, + abnormality id)",
                           "n_lesions": int(len(y)), "n_breasts": int(nb), "n_malignant_breasts": int(yb.sum()),
                           "n_breasts_with_several_lesions": int(np.sum(np.bincount(inv) > 1)),
                           "lesion": _level_metrics(boot, y, P, P) if P is not None else lesion}
    values = P if P is not None else S
    for f in FUSIONS:
        fused = _group_reduce(values, inv, nb, f)
        out[f] = _level_metrics(bboot, yb, fused, fused if P is not None else None)
    if P is not None and fusion is not None:
        fm, fx = _group_reduce(P, inv, nb, "mean"), _group_reduce(P, inv, nb, "max")
        chosen_max = np.zeros((len(P), nb), dtype=bool)
        for r in range(len(P)):
            chosen_max[r, inv] = fusion[r] == "max"
        fused = np.where(chosen_max, fx, fm)
        out["chosen"] = _level_metrics(bboot, yb, fused, fused)
        out["_chosen_values"] = (yb, fused)  # for the reliability diagram; removed by the caller
        out["fused_on"] = "calibrated probabilities"
    else:
        out["fused_on"] = "decision values (no calibration in this run)"
    return out


def _subgroups(records: Sequence[LesionRecord], idx: np.ndarray, y: np.ndarray, g: np.ndarray, S: np.ndarray,
               result: CVResult, n: int, seed: int, n_boot: int) -> dict[str, Any]:
    """Headline metrics with intervals per subgroup level (levels of fewer than MIN_SUBGROUP lesions left out)."""
    _, Pred, _ = cv_arrays(result.predictions, n)
    labels = subgroup_labels([records[i] for i in idx])
    out: dict[str, Any] = {}
    for name, vals in labels.items():
        arr = np.array([v if v is not None else "" for v in vals], dtype=object)
        levels: dict[str, Any] = {}
        for lev in sorted({v for v in vals if v is not None}):
            m = arr == lev
            if m.sum() < MIN_SUBGROUP:
                continue
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                pt = point_estimates(y[m], S[:, m], Pred[:, m])
                ci = bootstrap_ci(y[m], S[:, m], Pred[:, m], g[m], n_boot=n_boot, seed=seed)
            levels[lev] = {"n": int(m.sum()), "n_malignant": int(y[m].sum()), "n_patients": int(len(set(g[m]))),
                           **{k: {"value": pt[k], "ci95": list(ci[k])}
                              for k in ("auc", "accuracy", "sensitivity", "specificity")}}
        if levels:
            out[name] = levels
    return out


def write_posthoc_figures(metrics: dict[str, Any], out_dir: Path) -> list[str]:
    """``reliability.png`` and ``abstention.png`` in ``out_dir`` from the ``metrics.json`` entries; their names."""
    from mammocadx.evaluate.plots import plot_abstention, plot_reliability

    names: list[str] = []
    rel = (metrics.get("calibration") or {}).get("reliability")
    if rel:
        curves = {k: (v["mean_predicted"], v["fraction_malignant"], v["count"]) for k, v in rel.items()
                  if isinstance(v, dict)}
        plot_reliability(curves, Path(out_dir) / "reliability.png",
                         title="Reliability of the calibrated probability (out of fold)")
        names.append("reliability.png")
    ab = metrics.get("abstention")
    if ab:
        pts = [(v["target_coverage"], v["fraction_abstained"]["value"], v["accuracy_on_called"]["value"],
                v["coverage"]["value"]) for k, v in ab.items() if k.startswith("alpha_")]
        pts = [(round(1 - t, 4), fa, acc, cov) for t, fa, acc, cov in pts
               if fa is not None and acc is not None and np.isfinite(acc)]
        if pts:
            sel = ab.get("selective_curve") or {}
            curve = (sel["fraction_abstained"], sel["accuracy_on_called"]) if sel else None
            plot_abstention(pts, Path(out_dir) / "abstention.png", curve=curve)
            names.append("abstention.png")
    return names


# ----------------------------------------------------------------------------- text and HTML
def _v(d: dict[str, Any] | None) -> str:
    if not d or d.get("value") is None or not np.isfinite(d["value"]):
        return "n/a"
    lo, hi = d.get("ci95", (None, None))
    ci = "" if lo is None or hi is None else f" [{lo:.3f}-{hi:.3f}]"
    return f"{d['value']:.3f}{ci}"


def posthoc_text(m: dict[str, Any]) -> str:
    """A few lines for the terminal: Brier, ECE, screening operating points, breast level, abstention."""
    lines = []
    cal = m.get("calibration")
    if cal:
        lines.append(f"brier        {_v(cal['brier'])}  (prevalence only: {cal['brier_prevalence_only']:.3f})")
        lines.append(f"ece          {_v(cal['ece'])}")
    for k, v in (m.get("operating_points") or {}).items():
        if isinstance(v, dict):
            lines.append(f"{k:<35} {_v(v)}")
    b = m.get("breast_level")
    if b:
        key = "chosen" if "chosen" in b else "mean"
        lines.append(f"breast-level AUC ({key}, {b['n_breasts']} breasts) {_v(b[key]['auc'])}  "
                     f"vs lesion-level {_v(b['lesion']['auc'])}")
    ab = m.get("abstention")
    if ab:
        for k, v in ab.items():
            if k.startswith("alpha_"):
                lines.append(f"conformal {k}: coverage {_v(v['coverage'])}, abstained {_v(v['fraction_abstained'])}, "
                             f"accuracy on called {_v(v['accuracy_on_called'])}")
    return "\n".join(lines)


def _row(name: str, cells: Sequence[str]) -> str:
    return f"<tr><th>{html.escape(name)}</th>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>"


def posthoc_html(m: dict[str, Any], figures: Sequence[str] = ()) -> str:
    """HTML sections for ``report.html`` (empty when the run has none of these entries)."""
    parts: list[str] = []
    cal = m.get("calibration")
    if cal:
        parts.append("<h2>Probability of malignancy (calibration)</h2>"
                     f"<p>{html.escape(cal['method'])}. Chosen: {html.escape(str(cal['chosen']))}. "
                     f"ECE with {html.escape(cal['ece_bins'])}.</p><table>"
                     + _row("Brier score", [_v(cal["brier"])])
                     + _row("Brier score, prevalence only (reference)", [f"{cal['brier_prevalence_only']:.3f}"])
                     + _row("expected calibration error", [_v(cal["ece"])]) + "</table>")
    ops = m.get("operating_points")
    if ops:
        fixed = m.get("operating_points_fixed") or {}
        rows = []
        for k in op_names():
            target = k.replace("sensitivity_at_", "").replace("specificity_at_", "")
            fx = fixed.get(f"target_{target}")
            rows.append(_row(k.replace("_", " "), [_v(ops[k])] + ([_v(fx["sensitivity"]), _v(fx["specificity"])]
                                                                 if fx else ["", ""])))
        parts.append("<h2>Screening operating points</h2><p>ROC read-off: "
                     f"{html.escape(m.get('operating_points_method', ''))}. Fixed in training: "
                     f"{html.escape(fixed.get('method', 'not computed'))}.</p>"
                     "<table><tr><th>operating point</th><th>ROC read-off (95 % CI)</th>"
                     "<th>threshold from training: sensitivity</th><th>specificity</th></tr>" + "".join(rows) + "</table>")
    b = m.get("breast_level")
    if b:
        cols = ["lesion"] + [c for c in ("mean", "max", "chosen") if c in b]
        keys = ["auc", "brier", "ece"] + op_names()
        head = "".join(f"<th>{'lesion level' if c == 'lesion' else f'breast, {c}'}</th>" for c in cols)
        rows = "".join(_row(k.replace("_", " "), [_v(b[c].get(k)) for c in cols]) for k in keys
                       if any(k in b[c] for c in cols))
        parts.append(f"<h2>Lesion level and breast level</h2><p>{b['n_lesions']} lesions in {b['n_breasts']} breasts "
                     f"({b['n_breasts_with_several_lesions']} with several lesions or views; grouping: "
                     f"{html.escape(b['grouping'])}); fusion of {html.escape(b['fused_on'])} by mean or max, "
                     f"'chosen' = the rule with the higher breast-level AUC on each fold's training rows "
                     f"({html.escape(str(b.get('chosen_rule', '')))}). Every column is computed on the same "
                     f"{html.escape(b['fused_on'])}, pooled over folds (the headline AUC is from the decision "
                     "values).</p>"
                     f"<table><tr><th>metric</th>{head}</tr>{rows}</table>")
    ab = m.get("abstention")
    if ab:
        rows = "".join(_row(f"alpha {k[6:]}", [f"{v['target_coverage']:.2f}", _v(v["coverage"]),
                                                _v(v["coverage_malignant"]), _v(v["coverage_benign"]),
                                                _v(v["fraction_abstained"]), _v(v["accuracy_on_called"])])
                       for k, v in ab.items() if k.startswith("alpha_"))
        parts.append("<h2>Abstention (\"uncertain\")</h2>"
                     f"<p>{html.escape(ab['method'])}. Guarantee: {html.escape(ab['guarantee'])}. Accuracy when every "
                     f"lesion is called at probability 0.5: {_v(ab['accuracy_all_called_at_0.5'])}.</p>"
                     "<table><tr><th>level</th><th>target coverage</th><th>coverage (test folds)</th>"
                     "<th>malignant</th><th>benign</th><th>fraction abstained</th><th>accuracy on called</th></tr>"
                     + rows + "</table>")
    sg = m.get("subgroups")
    if sg:
        rows = "".join(_row(f"{name}: {lev}", [str(v["n"]), str(v["n_malignant"]), _v(v["auc"]), _v(v["accuracy"]),
                                                 _v(v["sensitivity"]), _v(v["specificity"])])
                       for name, levels in sg.items() for lev, v in levels.items())
        parts.append("<h2>Subgroups</h2><p>Out-of-fold metrics of each subgroup's lesions with patient-bootstrap "
                     f"95 % intervals (levels with fewer than {MIN_SUBGROUP} lesions left out).</p>"
                     "<table><tr><th>subgroup</th><th>n</th><th>malignant</th><th>AUC</th><th>accuracy</th>"
                     "<th>sensitivity</th><th>specificity</th></tr>" + rows + "</table>")
    if figures:
        parts.append("".join(f'<img src="{html.escape(f)}" alt="{html.escape(f)}">' for f in figures))
    return "\n".join(parts)
