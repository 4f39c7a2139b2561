"""PCA component count chosen the paper's way, but inside the training folds only.

The paper (§3.4) reduces the z-scored deep features with PCA and picks the
number of components by "a variation of recursive feature elimination":
start from all components and remove them until the best number remains
(404 for their CBIS-DDSM training set). :class:`NestedPCASearch` does that
search on the data given to :meth:`~NestedPCASearch.fit` only: it starts from
the largest count the training rows allow, steps down a decreasing grid, and
scores each count by inner, patient-grouped, stratified cross-validated AUC of
the head (decision function). The best count (ties go to the smaller count) is
refitted on all training rows. Used inside an outer cross-validation, the outer
test fold is never seen by the search: it is not passed to ``fit``.

The decision threshold is the SVM's 0 by default; ``threshold="youden"`` picks
the threshold maximising Youden's J (sensitivity + specificity - 1) on the
inner out-of-fold scores at the chosen count, again training rows only.

Cap rule (fixed ``n_components``, e.g. the paper's 404): PCA after z-scoring
cannot have more than ``min(n_samples - 1, n_features)`` informative
components (centred data have rank at most ``n_samples - 1``); a larger request
is capped to that and ``capped_`` / ``cap_rule_`` record it.
"""
from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.decomposition import PCA
from sklearn.metrics import roc_auc_score, roc_curve
from sklearn.model_selection import StratifiedGroupKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC
from sklearn.utils.multiclass import unique_labels
from sklearn.utils.validation import check_is_fitted, check_X_y
from threadpoolctl import threadpool_limits

from mammocadx.errors import ModelError

log = logging.getLogger(__name__)

#: The paper's component count.
PAPER_N_COMPONENTS = 404

CAP_RULE = "n_components <= min(n_samples - 1, n_features)"


def cap_components(requested: int, n_samples: int, n_features: int) -> tuple[int, bool]:
    """Apply the cap rule; returns ``(k, capped)``.

    Parameters
    ----------
    requested : int
        Components asked for (>= 1).
    n_samples, n_features : int
        Shape of the training rows PCA is fitted on.

    Raises
    ------
    ModelError
        If ``requested < 1`` or there are fewer than 2 samples.
    """
    if requested < 1:
        raise ModelError(f"PCA needs at least 1 component, got {requested}")
    limit = min(n_samples - 1, n_features)
    if limit < 1:
        raise ModelError(f"cannot fit PCA on {n_samples} samples x {n_features} features")
    return (limit, True) if requested > limit else (int(requested), False)


def default_grid(k_max: int, n_steps: int = 8, k_min: int = 2) -> list[int]:
    """Decreasing component counts from ``k_max`` down to ``k_min``, roughly geometric.

    ``default_grid(75)`` -> ``[75, 51, 35, 24, 16, 11, 7, 5, 3, 2]``-like: dense where
    small counts differ most, always starting at the maximum (the "all components"
    start of recursive elimination).
    """
    k_max = int(k_max)
    if k_max <= k_min:
        return [max(k_max, 1)]
    ratio = (k_min / k_max) ** (1.0 / max(n_steps, 1))
    grid = {k_max}
    k = float(k_max)
    while k > k_min:
        k *= ratio
        grid.add(max(int(round(k)), k_min))
    return sorted(grid, reverse=True)


def paper_head(n_components: int | None, C: float = 1.0, gamma: str | float = "auto") -> Pipeline:
    """``StandardScaler -> PCA(k) -> SVC(rbf, C, gamma)``; ``n_components=None`` skips PCA."""
    steps: list[tuple[str, Any]] = [("scaler", StandardScaler())]
    if n_components is not None:
        steps.append(("pca", PCA(n_components=int(n_components), svd_solver="full")))
    steps.append(("svc", SVC(kernel="rbf", C=C, gamma=gamma)))
    return Pipeline(steps)


def youden_threshold(y: np.ndarray, score: np.ndarray) -> float:
    """Threshold maximising sensitivity + specificity - 1 (scores strictly above it are positive).

    Returns the midpoint between the chosen ROC point's score and the next lower
    score, so that the rule ``score > t`` reproduces the ROC point.
    """
    y = np.asarray(y).astype(int)
    s = np.asarray(score, dtype=float)
    if len(np.unique(y)) < 2:
        return 0.0
    fpr, tpr, thr = roc_curve(y, s)
    j = tpr - fpr
    best = int(np.argmax(j))
    t = thr[best]
    if not np.isfinite(t):
        return float(s.max())
    lower = s[s < t]
    return float((t + lower.max()) / 2.0) if lower.size else float(t - 1e-9)


def _fit_accepts_groups(est: Any) -> bool:
    try:
        return "groups" in inspect.signature(est.fit).parameters
    except (TypeError, ValueError):
        return False


class NestedPCASearch(ClassifierMixin, BaseEstimator):
    """z-score -> PCA -> head, with the component count searched inside ``fit``'s data.

    Parameters
    ----------
    n_components : "search" or int
        ``"search"``: recursive-elimination style search over a decreasing grid by inner
        CV AUC. An int (e.g. the paper's 404): fixed, capped by :data:`CAP_RULE`.
    grid : sequence of int, optional
        Counts to try (high to low); default :func:`default_grid` from the largest count
        the smallest inner training fold allows. Counts above that are capped.
    inner_folds : int
        Inner folds (patient-grouped and stratified when ``groups`` are given).
    head : estimator, optional
        Classifier after PCA (cloned); default the paper's ``SVC(rbf, C, gamma)``.
    C, gamma : float, str
        Settings of the default SVC head (paper: 1, ``"auto"`` = 1/#components).
    threshold : "zero" or "youden"
        Operating point: 0 on the decision function, or Youden's J on inner out-of-fold scores.
    random_state : int
        Seed of the inner folds.

    Attributes
    ----------
    chosen_n_components_ : int
        Components of the final model.
    search_scores_ : dict[int, float]
        Inner CV AUC (mean over inner folds) of each count tried (empty for a fixed count).
    capped_ : bool
        Whether a fixed request was reduced by the cap rule.
    threshold_ : float
        Decision threshold (scores above it are malignant).
    pipeline_ : sklearn.pipeline.Pipeline
        The fitted scaler -> PCA -> head.
    fit_n_samples_ : int
        Rows the final model was fitted on.
    """

    def __init__(
        self,
        n_components: str | int = "search",
        grid: Sequence[int] | None = None,
        inner_folds: int = 3,
        head: Any = None,
        C: float = 1.0,
        gamma: str | float = "auto",
        threshold: str = "zero",
        random_state: int = 0,
    ):
        self.n_components = n_components
        self.grid = grid
        self.inner_folds = inner_folds
        self.head = head
        self.C = C
        self.gamma = gamma
        self.threshold = threshold
        self.random_state = random_state

    # ------------------------------------------------------------------ helpers
    def _make(self, k: int | None) -> Pipeline:
        head = clone(self.head) if self.head is not None else SVC(kernel="rbf", C=self.C, gamma=self.gamma)
        steps: list[tuple[str, Any]] = [("scaler", StandardScaler())]
        if k is not None:
            steps.append(("pca", PCA(n_components=int(k), svd_solver="full")))
        steps.append(("head", head))
        return Pipeline(steps)

    def _inner_splits(self, y: np.ndarray, groups: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        n_pat_min = min(len(np.unique(groups[y == c])) for c in np.unique(y))
        k = min(self.inner_folds, n_pat_min)
        if k < 2:
            raise ModelError(f"inner cross-validation needs at least 2 patients per class, got {n_pat_min}")
        cv = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=self.random_state)
        return [(np.sort(tr), np.sort(te)) for tr, te in cv.split(np.zeros(len(y)), y, groups)]

    def _oof(self, X: np.ndarray, y: np.ndarray, splits: list[tuple[np.ndarray, np.ndarray]], k: int | None) -> tuple[float, np.ndarray]:
        """Mean inner-fold AUC and the inner out-of-fold scores of count ``k``."""
        oof = np.zeros(len(y))
        aucs = []
        for tr, te in splits:
            kk = None if k is None else min(k, len(tr) - 1, X.shape[1])
            est = self._make(kk).fit(X[tr], y[tr])
            s = est.decision_function(X[te])
            oof[te] = s
            if len(np.unique(y[te])) == 2:
                aucs.append(roc_auc_score(y[te], s))
        return (float(np.mean(aucs)) if aucs else float("nan")), oof

    # ------------------------------------------------------------------ API
    def fit(self, X: np.ndarray, y: np.ndarray, groups: np.ndarray | None = None) -> "NestedPCASearch":
        """Search (or cap) the component count on these rows only, then fit on all of them.

        Parameters
        ----------
        X : array (n, d)
        y : array (n,) of 0/1
        groups : array (n,), optional
            Patient ids; inner folds never split a patient. ``None``: one group per row.
        """
        X, y = check_X_y(X, y, dtype=np.float64)
        self.n_features_in_ = X.shape[1]
        self.classes_ = unique_labels(y)
        if len(self.classes_) != 2:
            raise ModelError(f"NestedPCASearch is a binary classifier; got classes {list(self.classes_)}")
        yb = (y == self.classes_[1]).astype(int)
        g = np.arange(len(y)) if groups is None else np.asarray(groups)
        if len(g) != len(y):
            raise ModelError(f"groups has {len(g)} entries for {len(y)} rows")
        n, d = X.shape
        self.fit_n_samples_ = n
        self.search_scores_: dict[int, float] = {}
        self.capped_ = False
        self.cap_rule_ = CAP_RULE
        need_inner = self.n_components == "search" or self.threshold == "youden"
        splits = self._inner_splits(yb, g) if need_inner else []
        self.inner_splits_ = splits
        if self.n_components == "search":
            k_max = min(min(len(tr) for tr, _ in splits) - 1, d)
            grid = list(self.grid) if self.grid is not None else default_grid(k_max)
            grid = sorted({min(int(k), k_max) for k in grid if int(k) >= 1}, reverse=True)
            best_k, best_auc, best_oof = grid[0], -np.inf, None
            for k in grid:  # high to low: eliminate components step by step
                # tiny matrices: BLAS threads only add spin-up cost (20x slower on a shared 2-core machine)
                with threadpool_limits(limits=1, user_api="blas"):
                    auc, oof = self._oof(X, yb, splits, k)
                self.search_scores_[k] = auc
                log.debug("component search: k=%d inner AUC %.4f", k, auc)
                if auc >= best_auc:  # ties -> the smaller count (visited later)
                    best_k, best_auc, best_oof = k, auc, oof
            k_final, capped = cap_components(best_k, n, d)
            self.chosen_n_components_ = k_final
            oof = best_oof
        elif isinstance(self.n_components, (int, np.integer)) and not isinstance(self.n_components, bool):
            k_final, capped = cap_components(int(self.n_components), n, d)
            if capped:
                log.info("PCA capped: %d components requested, %d used (%s, n=%d, d=%d)",
                         self.n_components, k_final, CAP_RULE, n, d)
            self.capped_ = capped
            self.chosen_n_components_ = k_final
            oof = self._oof(X, yb, splits, k_final)[1] if self.threshold == "youden" else None
        else:
            raise ModelError(f"n_components must be 'search' or a positive int, got {self.n_components!r}")
        if self.threshold == "youden":
            self.threshold_ = youden_threshold(yb, oof)
        elif self.threshold == "zero":
            self.threshold_ = 0.0
        else:
            raise ModelError(f"threshold must be 'zero' or 'youden', got {self.threshold!r}")
        self.pipeline_ = self._make(self.chosen_n_components_).fit(X, yb)
        return self

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """Decision score, positive side = ``classes_[1]`` (malignant)."""
        check_is_fitted(self, "pipeline_")
        return np.asarray(self.pipeline_.decision_function(np.asarray(X, dtype=np.float64)), dtype=float)

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Class labels: ``classes_[1]`` where the score is above ``threshold_``."""
        s = self.decision_function(X)
        return self.classes_[(s > self.threshold_).astype(int)]

    def selection_record(self) -> dict[str, Any]:
        """JSON-friendly record of what was chosen on the training rows."""
        check_is_fitted(self, "pipeline_")
        return {
            "n_components_requested": self.n_components if not isinstance(self.n_components, np.integer) else int(self.n_components),
            "chosen_n_components": int(self.chosen_n_components_),
            "capped": bool(self.capped_),
            "cap_rule": self.cap_rule_,
            "search_scores": {int(k): float(v) for k, v in self.search_scores_.items()},
            "threshold": float(self.threshold_),
            "threshold_rule": self.threshold,
            "n_train": int(self.fit_n_samples_),
            "inner_folds": len(self.inner_splits_),
        }


def nested_search_factory(**params: Any) -> Callable[[int, int], NestedPCASearch]:
    """``(n_train, n_features) -> NestedPCASearch(**params)``: a head factory for cross-validation."""
    return lambda n, d: NestedPCASearch(**params)
