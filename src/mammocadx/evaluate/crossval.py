"""Cross-validation of a head over precomputed features.

Deep features of a frozen ImageNet backbone do not depend on the labels or on
the other samples, so they are computed once per lesion; everything that is
fitted (scaler, PCA, component count, threshold, SVM) is fitted inside each
training fold by a fresh head from ``head_factory``.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from mammocadx.evaluate.leakage import FitGuard, forbidden_rows
from mammocadx.evaluate.metrics import METRICS, binary_metrics, prediction_metrics, summarize
from mammocadx.evaluate.splits import Split, check_disjoint
from mammocadx.utils.system import available_cpus

log = logging.getLogger(__name__)

#: ``head_factory(n_train, n_features) -> unfitted head`` (:class:`mammocadx.model.heads.Head`); sent to worker
#: processes, so it must pickle (:class:`mammocadx.model.heads.HeadFactory` does; a closure over a CADx does not).
HeadFactory = Callable[[int, int], Any]


@dataclass
class FoldPrediction:
    """One out-of-fold prediction."""

    index: int
    repeat: int
    fold: int
    score: float
    prediction: int


@dataclass
class CVResult:
    """Predictions and metrics of a cross-validation (or a fixed train/test split).

    ``per_repeat`` holds the metrics of each repeat's pooled out-of-fold
    predictions (every sample scored once per repeat); ``per_fold`` the metrics
    of each fold on its own. ``summary`` gives mean and spread over repeats.
    """

    protocol: dict[str, Any]
    predictions: list[FoldPrediction]
    per_repeat: list[dict[str, Any]]
    per_fold: list[dict[str, Any]]
    fold_info: list[dict[str, Any]] = field(default_factory=list)
    #: Fitted heads kept by ``run_splits(keep_heads_of_repeat=r)``, by (repeat, fold); not serialised.
    heads: dict[tuple[int, int], Any] = field(default_factory=dict, repr=False, compare=False)
    #: ``run_splits(inner_oof_folds=k)``: by (repeat, fold), the split's training rows and their inner
    #: out-of-fold scores (what calibration, operating points and conformal sets are fitted on).
    inner_oof: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = field(default_factory=dict, repr=False,
                                                                             compare=False)

    def summary(self) -> dict[str, dict[str, float]]:
        """Each metric's mean, sd, min and max over repeats (pooled out-of-fold per repeat)."""
        return {m: summarize([r[m] for r in self.per_repeat]) for m in METRICS}

    def fold_summary(self) -> dict[str, dict[str, float]]:
        """Each metric's mean and sd over all folds of all repeats."""
        return {m: summarize([r[m] for r in self.per_fold]) for m in METRICS}

    def text(self) -> str:
        """One line per metric: ``auc  0.612 ± 0.031 (repeats: 5)``."""
        lines = []
        for m, s in self.summary().items():
            if s["n"] == 0:  # NaN in every repeat: say why instead of printing "nan ± nan"
                why = {"precision": "no positive calls", "f1": "no positive calls",
                       "auc": "one class only"}.get(m, "no case to compute it on")
                lines.append(f"{m:<12} undefined ({why} in every repeat)")
                continue
            lines.append(f"{m:<12} {s['mean']:.3f} ± {s['sd']:.3f}  (min {s['min']:.3f}, max {s['max']:.3f}, n={s['n']})")
        return "\n".join(lines)


#: Serial head-fitting time (s) below which parallel folds are not worth starting worker processes.
PARALLEL_MIN_SERIAL_S = 8.0


def _cores() -> int:
    return available_cpus()


def _auto_jobs(first_fit_s: float, remaining: int) -> int:
    """Worker processes for the remaining splits: parallel only when the serial time would dwarf the start-up.

    Starting a worker costs seconds (it imports scikit-learn and this package), so
    fast heads (the paper's SVM: ~20 ms a fold) stay serial and slow ones (inner CV
    in every fold: ~1 s a fold) use every core.
    """
    cores = _cores()
    if cores < 2 or remaining < 2 or first_fit_s * remaining < PARALLEL_MIN_SERIAL_S:
        return 1
    return min(cores, remaining)


def inner_oof_scores(X: np.ndarray, y: np.ndarray, groups: np.ndarray, train: np.ndarray, head_factory: HeadFactory,
                     folds: int = 5, seed: int = 0, forbidden: np.ndarray | None = None) -> np.ndarray:
    """Inner out-of-fold decision values of the rows ``train`` (:func:`mammocadx.model.calibrate.inner_oof_scores`),
    every inner head behind a :class:`FitGuard` that refuses the ``forbidden`` rows (the outer test fold)."""
    return held_out_scores(None, X, y, groups, train, head_factory, folds, seed, forbidden)[1]


def held_out_scores(head: Any, X: np.ndarray, y: np.ndarray, groups: np.ndarray, train: np.ndarray,
                    head_factory: HeadFactory, folds: int = 5, seed: int = 0,
                    forbidden: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Out-of-sample scores of the rows ``train`` as ``(rows of X, scores)``: the fitted ``head``'s own held-out
    scores, else inner out-of-fold scores (:func:`mammocadx.model.calibrate.held_out_scores`), every inner head
    behind a :class:`FitGuard` that refuses the ``forbidden`` rows (the outer test fold)."""
    from mammocadx.model.calibrate import held_out_scores as _held_out

    rows, scores = _held_out(head, X[train], y[train], groups[train], head_factory, folds=folds, seed=seed,
                             wrap=lambda h: FitGuard(h, forbidden=forbidden))
    return train[rows], scores


def _fit_split(X: np.ndarray, y: np.ndarray, groups: np.ndarray, sp: Split, head_factory: HeadFactory,
               threshold: float, keep: bool = False, inner_folds: int = 0,
               ) -> tuple[np.ndarray, float, dict[str, Any], Any, tuple[np.ndarray, np.ndarray] | None]:
    """Fit one split's head on its training rows; its test scores, threshold, fold record, (if ``keep``) head,
    and (if ``inner_folds``) ``(rows, scores)``: out-of-sample scores of training rows (inner out-of-fold)."""
    check_disjoint(groups, sp.train, sp.test)
    # FitGuard refuses a fit that contains any row of this split's test fold
    # (mammocadx.evaluate.leakage); heads whose fit takes ``groups`` get the
    # training patients so their inner folds are patient-grouped too.
    forbidden = forbidden_rows(X, sp.train, sp.test)
    head = FitGuard(head_factory(len(sp.train), X.shape[1]), forbidden=forbidden)
    # Heads are small (n < a few thousand): one BLAS thread is fastest, and multi-threaded
    # OpenBLAS was measured 100x slower on a busy 2-core machine (PCA of 95 x 1280: 2.5 s vs 20 ms).
    with threadpool_limits(limits=1, user_api="blas"):
        head.fit(X[sp.train], y[sp.train], groups=groups[sp.train])
        scores = np.asarray(head.decision_function(X[sp.test]), dtype=float)
        oof = (held_out_scores(head.estimator_, X, y, groups, sp.train, head_factory, inner_folds,
                               seed=1000 * sp.repeat + sp.fold, forbidden=forbidden) if inner_folds else None)
    thr = float(getattr(head, "threshold_", threshold))
    info: dict[str, Any] = {"repeat": sp.repeat, "fold": sp.fold, "n_train": int(len(sp.train)),
                            "n_test": int(len(sp.test)), "threshold": thr}
    pca = getattr(head, "named_steps", {}).get("pca") if hasattr(head, "named_steps") else None
    if pca is not None:
        info["pca_components"] = int(pca.n_components_)
    if hasattr(head, "chosen_n_components_"):
        info["pca_components"] = int(head.chosen_n_components_)
    record = head.selection_record() if hasattr(head, "selection_record") else {}
    if record:
        info["selection"] = record
    return scores, thr, info, (head.estimator_ if keep else None), oof


def run_splits(
    X: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    splits: Sequence[Split],
    head_factory: HeadFactory,
    threshold: float = 0.0,
    protocol: dict[str, Any] | None = None,
    n_jobs: int | None = None,
    keep_heads_of_repeat: int | None = None,
    inner_oof_folds: int = 0,
) -> CVResult:
    """Fit a fresh head on each split's training rows and score its test rows.

    Parameters
    ----------
    X : array (n, d)
        Features, one row per lesion.
    y, groups : arrays (n,)
        Labels (1 malignant) and patient ids.
    splits : sequence of Split
        From :func:`~mammocadx.evaluate.splits.grouped_kfold` or ``official_split``.
    head_factory : callable
        ``(n_train, n_features) -> estimator``; called once per split.
    threshold : float
        Decision threshold, used unless the fitted head exposes ``threshold_``
        (chosen on its own training rows).
    n_jobs : int, optional
        Worker processes for the splits. ``None`` (default): the first split is
        fitted here and timed; the rest run on every core when doing them one by
        one would take more than :data:`PARALLEL_MIN_SERIAL_S` seconds, else
        here. Results do not depend on it: each split's head is seeded and
        independent.
    keep_heads_of_repeat : int, optional
        Keep the fitted heads of this repeat in ``CVResult.heads`` (the Grad-CAM
        gallery explains each lesion with the very head that scored it).
    inner_oof_folds : int
        When > 0, also score every split's training rows by inner patient-grouped
        CV on those rows only (:func:`inner_oof_scores`), kept in ``CVResult.inner_oof``:
        the honest data to fit calibration, operating points and conformal sets on.
    """
    X = np.asarray(X)
    y = np.asarray(y).astype(int)
    groups = np.asarray(groups)
    fitted: list[tuple[np.ndarray, float, dict[str, Any], Any, np.ndarray | None]] = []
    if splits:
        t0 = time.perf_counter()
        fitted.append(_fit_split(X, y, groups, splits[0], head_factory, threshold,
                                 splits[0].repeat == keep_heads_of_repeat, inner_oof_folds))
        jobs = _auto_jobs(time.perf_counter() - t0, len(splits) - 1) if n_jobs is None else max(1, int(n_jobs))
        rest = splits[1:]
        from mammocadx.utils.progress import progress

        if jobs > 1 and rest:
            from joblib import Parallel, delayed

            log.info("fitting %d folds on %d cores", len(rest), jobs)
            results = Parallel(n_jobs=jobs, backend="loky", return_as="generator")(
                delayed(_fit_split)(X, y, groups, sp, head_factory, threshold, sp.repeat == keep_heads_of_repeat,
                                    inner_oof_folds)
                for sp in rest)
        else:
            results = (_fit_split(X, y, groups, sp, head_factory, threshold, sp.repeat == keep_heads_of_repeat,
                                  inner_oof_folds) for sp in rest)
        fitted.extend(progress(results, total=len(rest), desc="fitting folds", unit="fold"))
    preds: list[FoldPrediction] = []
    per_fold: list[dict[str, Any]] = []
    fold_info: list[dict[str, Any]] = []
    by_repeat: dict[int, list[int]] = {}
    heads: dict[tuple[int, int], Any] = {}
    inner: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}
    for sp, (scores, thr, info, head, oof) in zip(splits, fitted):
        if head is not None:
            heads[(sp.repeat, sp.fold)] = head
        if oof is not None:
            inner[(sp.repeat, sp.fold)] = oof
        m = binary_metrics(y[sp.test], scores, thr)
        m.update(repeat=sp.repeat, fold=sp.fold, n_test=int(len(sp.test)))
        per_fold.append(m)
        fold_info.append(info)
        for i, s in zip(sp.test, scores):
            preds.append(FoldPrediction(int(i), sp.repeat, sp.fold, float(s), int(s > thr)))
            by_repeat.setdefault(sp.repeat, []).append(len(preds) - 1)
    per_repeat = []
    for r, idxs in sorted(by_repeat.items()):
        rows = [preds[k] for k in idxs]
        yy = y[[p.index for p in rows]]
        ss = np.array([p.score for p in rows])
        pp = np.array([p.prediction for p in rows])
        # Pooled metrics use each fold's own threshold through its predictions.
        m = binary_metrics(yy, ss, 0.0)
        m.update(prediction_metrics(yy, pp))
        m["repeat"] = r
        per_repeat.append(m)
    return CVResult(protocol=dict(protocol or {}), predictions=preds, per_repeat=per_repeat,
                    per_fold=per_fold, fold_info=fold_info, heads=heads, inner_oof=inner)

