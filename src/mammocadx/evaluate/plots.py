"""Figures of a run: ROC curves (per fold and mean, as the paper's figure 8) and the confusion matrix (figure 7)."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, never a window
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import roc_auc_score, roc_curve  # noqa: E402


def _save(fig: "plt.Figure", path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_roc(curves: Sequence[tuple[np.ndarray, np.ndarray]], path: Path, title: str = "ROC",
             pooled_auc: float | None = None) -> Path:
    """Plot one ROC curve per (y, score) pair, their mean (vertical averaging) and write ``path``.

    Parameters
    ----------
    curves : sequence of (y_true, score)
        One per fold (or repeat); AUC from the decision score.
    pooled_auc : float, optional
        The headline AUC (mean over repeats of the pooled out-of-fold AUC, as in
        the tables), shown in the legend beside the mean of the per-fold AUCs.
        The two differ when folds' scores sit on different scales (a head whose
        scores cluster at its intercept ranks well within a fold, badly pooled).
    """
    grid = np.linspace(0.0, 1.0, 201)
    tprs, aucs = [], []
    fig, ax = plt.subplots(figsize=(5.2, 5.0), dpi=110)
    for k, (y, s) in enumerate(curves):
        if len(np.unique(y)) < 2:
            continue
        fpr, tpr, _ = roc_curve(y, s)
        auc = roc_auc_score(y, s)
        aucs.append(auc)
        t = np.interp(grid, fpr, tpr)
        t[0] = 0.0
        tprs.append(t)
        ax.plot(fpr, tpr, lw=0.8, alpha=0.35, color="tab:blue", label="folds" if k == 0 else None)
    if tprs:
        mean = np.mean(tprs, axis=0)
        mean[-1] = 1.0
        sd = np.std(tprs, axis=0)
        ax.fill_between(grid, np.clip(mean - sd, 0, 1), np.clip(mean + sd, 0, 1), color="tab:blue", alpha=0.12, label="± 1 sd")
        ax.plot(grid, mean, lw=2.2, color="tab:blue",
                label=f"mean curve; mean of fold AUCs {np.mean(aucs):.3f} ± "
                      f"{np.std(aucs, ddof=1) if len(aucs) > 1 else 0:.3f}")
    if pooled_auc is not None and np.isfinite(pooled_auc):
        ax.plot([], [], ls="none", label=f"pooled out-of-fold AUC (as in the tables) {pooled_auc:.3f}")
    ax.plot([0, 1], [0, 1], ls="--", lw=1, color="grey", label="chance")
    ax.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="1 - specificity (false-positive rate)",
           ylabel="sensitivity (true-positive rate)", title=title)
    ax.legend(loc="lower right", fontsize=8)
    return _save(fig, path)


def plot_confusion(confusion: dict[str, float], path: Path, title: str = "Confusion matrix") -> Path:
    """Draw the 2x2 confusion matrix (rows: truth, columns: prediction) and write ``path``."""
    m = np.array([[confusion["tn"], confusion["fp"]], [confusion["fn"], confusion["tp"]]], dtype=float)
    fig, ax = plt.subplots(figsize=(4.2, 3.8), dpi=110)
    ax.imshow(m, cmap="Blues")
    names = ["benign", "malignant"]
    ax.set(xticks=[0, 1], yticks=[0, 1], xticklabels=names, yticklabels=names,
           xlabel="predicted", ylabel="true", title=title)
    fmt = "{:.0f}" if np.allclose(m, np.round(m)) else "{:.1f}"
    for i in range(2):
        for j in range(2):
            ax.text(j, i, fmt.format(m[i, j]), ha="center", va="center",
                    color="white" if m[i, j] > m.max() / 2 else "black", fontsize=13)
    return _save(fig, path)


def plot_reliability(curves: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]], path: Path,
                     title: str = "Reliability diagram") -> Path:
    """Observed fraction malignant against mean predicted probability per bin, one line per curve.

    Parameters
    ----------
    curves : dict
        ``label -> (mean predicted probability, fraction malignant, lesions)`` per bin
        (:func:`~mammocadx.evaluate.operating_points.reliability_curve`); marker area follows the count.
    """
    fig, ax = plt.subplots(figsize=(5.2, 5.0), dpi=110)
    ax.plot([0, 1], [0, 1], ls="--", lw=1, color="grey", label="perfect calibration")
    for k, (label, (mp, fr, cnt)) in enumerate(curves.items()):
        mp, fr, cnt = (np.asarray(v, dtype=float) for v in (mp, fr, cnt))
        color = f"C{k}"
        ax.plot(mp, fr, "-", lw=1.6, color=color, label=label)
        ax.scatter(mp, fr, s=12 + 60 * cnt / max(cnt.max(), 1.0), color=color, alpha=0.7)
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="predicted probability of malignancy (bin mean)",
           ylabel="observed fraction malignant", title=title)
    ax.legend(loc="upper left", fontsize=8)
    return _save(fig, path)


def plot_abstention(points: Sequence[tuple[float, float, float, float]], path: Path,
                    curve: tuple[Sequence[float], Sequence[float]] | None = None,
                    title: str = "Accuracy on called lesions vs fraction abstained") -> Path:
    """Selective-prediction trade-off.

    Parameters
    ----------
    points : sequence of (alpha, fraction abstained, accuracy on called, coverage)
        Conformal sets at each level, labelled with alpha and the coverage achieved.
    curve : (fractions abstained, accuracies), optional
        Abstaining on the least confident lesions first (no guarantee), drawn as a line.
    """
    fig, ax = plt.subplots(figsize=(5.6, 4.6), dpi=110)
    if curve is not None:
        ax.plot(curve[0], curve[1], "-", color="grey", lw=1.4, label="abstain on probabilities nearest 0.5")
    pts = sorted(points, key=lambda p: p[1])
    ax.plot([p[1] for p in pts], [p[2] for p in pts], "o", color="tab:blue", label="conformal sets (α: coverage)")
    for k, (a, fa, acc, cov) in enumerate(pts):
        ax.annotate(f"α={a:g}: {cov:.2f}", (fa, acc), textcoords="offset points", xytext=(5, -12 if k % 2 else 6),
                    fontsize=7)
    ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="fraction of lesions abstained (\"uncertain\")",
           ylabel="accuracy on called lesions", title=title)
    ax.legend(loc="lower right", fontsize=8)
    return _save(fig, path)
