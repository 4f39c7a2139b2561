"""Figures beyond the basic run plots of :mod:`mammocadx.evaluate.plots`.

- :func:`fold_curves`: per-fold ``(y, score)`` pairs from CV predictions (input of
  :func:`~mammocadx.evaluate.plots.plot_roc`, the paper's figure 8 layout);
- :func:`plot_mean_rocs`: the mean ROC of several modes on one axis (paper vs best);
- :func:`plot_forest`: AUC with 95 % intervals per row (ablations, modes).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, never a window
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import roc_auc_score, roc_curve  # noqa: E402


def fold_curves(predictions: Sequence[Any], y: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Group CV ``FoldPrediction`` objects by (repeat, fold) -> list of ``(y_true, score)``."""
    y = np.asarray(y)
    by: dict[tuple[int, int], list[Any]] = {}
    for p in predictions:
        by.setdefault((p.repeat, p.fold), []).append(p)
    return [(y[[p.index for p in rows]], np.array([p.score for p in rows])) for _, rows in sorted(by.items())]


def _mean_roc(curves: Sequence[tuple[np.ndarray, np.ndarray]], grid: np.ndarray) -> tuple[np.ndarray, list[float]]:
    tprs, aucs = [], []
    for yy, s in curves:
        if len(np.unique(yy)) < 2:
            continue
        fpr, tpr, _ = roc_curve(yy, s)
        t = np.interp(grid, fpr, tpr)
        t[0] = 0.0
        tprs.append(t)
        aucs.append(roc_auc_score(yy, s))
    mean = np.mean(tprs, axis=0) if tprs else np.zeros_like(grid)
    if tprs:
        mean[-1] = 1.0
    return mean, aucs


def plot_mean_rocs(modes: Mapping[str, Sequence[tuple[np.ndarray, np.ndarray]]], path: str | Path,
                   title: str = "Mean ROC over folds", pooled_auc: Mapping[str, float] | None = None) -> Path:
    """One mean ROC curve (vertical averaging over folds) per mode, labelled with the AUCs it shows.

    The legend gives each mode's mean of per-fold AUCs (what the curve averages)
    and, from ``pooled_auc``, its headline AUC (mean over repeats of the pooled
    out-of-fold AUC, as in the tables): they differ when folds' scores sit on
    different scales, as the paper mode's do on the synthetic cohort (per-fold
    0.998, pooled 0.912), so both are named.
    """
    grid = np.linspace(0, 1, 201)
    fig, ax = plt.subplots(figsize=(5.2, 5.0), dpi=110)
    for name, curves in modes.items():
        mean, aucs = _mean_roc(curves, grid)
        pooled = (pooled_auc or {}).get(name)
        label = f"{name}: mean of fold AUCs {np.mean(aucs):.3f}"
        if pooled is not None and np.isfinite(pooled):
            label += f", pooled AUC {pooled:.3f} (as in the table)"
        ax.plot(grid, mean, lw=2, label=label)
    ax.plot([0, 1], [0, 1], ls="--", lw=1, color="grey", label="chance")
    ax.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="1 - specificity", ylabel="sensitivity", title=title)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)


def plot_forest(rows: Sequence[Mapping[str, Any]], path: str | Path, label_key: str = "label",
                value_key: str = "auc_mean", ci_key: str = "auc_ci", title: str = "AUC with 95 % CI") -> Path:
    """Horizontal forest plot: one point and interval per row (top row first)."""
    n = len(rows)
    fig, ax = plt.subplots(figsize=(6.5, 0.38 * n + 1.2), dpi=110)
    ys = np.arange(n)[::-1]
    for yv, r in zip(ys, rows):
        v = r.get(value_key)
        ci = r.get(ci_key)
        if v is None:
            continue
        if ci and ci[0] is not None:
            ax.plot([ci[0], ci[1]], [yv, yv], color="tab:blue", lw=1.5)
        ax.plot([v], [yv], "o", color="tab:blue")
    ax.axvline(0.5, ls="--", color="grey", lw=1)
    ax.set_yticks(ys)
    ax.set_yticklabels([str(r.get(label_key, "")) for r in rows], fontsize=8)
    ax.set(xlim=(0.3, 1.0), xlabel="AUC", title=title)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)
