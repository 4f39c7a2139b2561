"""Heads: what turns a lesion's feature vector into a malignancy score.

Every head implements :class:`Head`: ``fit(X, y, groups=None)`` (groups are
patient ids, used by heads that tune themselves by inner CV), ``decision_function``,
the operating point ``threshold_`` chosen or set at fit time, and
``selection_record()`` (what the fit chose, ``{}`` when nothing was chosen).
All heads here are :class:`InnerCVPipeline` objects: scikit-learn ``Pipeline``s
whose ``fit`` first picks their hyper-parameters by inner CV on the rows given
(nothing for the paper's head), so a model file saves as an ordinary pipeline.

:data:`HEADS` names each head with its builder, the :class:`~mammocadx.model.config.HeadConfig`
fields it takes and what its score is; :class:`HeadFactory` is the plain,
picklable ``(n_train, n_features) -> unfitted head`` that cross-validation sends
to worker processes (never a closure over a model holding a CNN session).
"""
from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np
from sklearn.base import clone
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedGroupKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC, LinearSVC
from threadpoolctl import threadpool_limits

from mammocadx.errors import ModelError
from mammocadx.model.selection import CAP_RULE, PAPER_N_COMPONENTS, cap_components, default_grid, youden_threshold

log = logging.getLogger(__name__)

#: C grid of the best mode's logistic regression, fixed a priori (decades around 1/#features).
BEST_C_GRID: tuple[float, ...] = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1)


@runtime_checkable
class Head(Protocol):
    """The interface every head implements (features in, one score per row out)."""

    threshold_: float

    def fit(self, X: Any, y: Any = None, groups: Any = None) -> "Head":
        """Fit on (X, y); ``groups`` (patient ids) group any inner folds."""

    def decision_function(self, X: Any) -> np.ndarray:
        """Scores, one per row; above ``threshold_`` = towards malignant."""

    def selection_record(self) -> dict[str, Any]:
        """JSON-friendly record of what ``fit`` chose (``{}`` when nothing was chosen)."""


class InnerCVPipeline(Pipeline):
    """A ``Pipeline`` that chooses its own hyper-parameters by inner CV AUC on the rows given to ``fit``.

    Parameters
    ----------
    steps : list of (name, estimator)
        As for ``Pipeline``; the last step needs ``decision_function``.
    param_grid : dict, optional
        ``{"step__param": [values]}``; every combination is scored by the mean AUC of
        the inner folds (ties: the first in grid order wins). ``pca__n_components``
        values are capped by :data:`~mammocadx.model.selection.CAP_RULE` on the
        smallest inner training fold; the string ``"search"`` as its value list
        means :func:`~mammocadx.model.selection.default_grid` from that maximum.
    inner_folds : int
        Inner folds, stratified and grouped by ``groups`` (patients) when given.
    threshold : float or "youden"
        Operating point: this number, or Youden's J on the inner out-of-fold scores
        of the chosen setting (``"zero"`` is accepted for 0).
    random_state : int
        Seed of the inner folds.

    Attributes
    ----------
    chosen_params_ : dict
    search_scores_ : dict[str, float]
        Inner AUC per setting (key ``"a=1; b=2"``).
    threshold_ : float
    chosen_n_components_ : int
        Present when the pipeline has a ``pca`` step.

    Notes
    -----
    With nothing to search the rows are used as given (the float32 features: the
    paper's head is exactly ``Pipeline(scaler, PCA(k capped), SVC)``); a search
    runs in float64.
    """

    def __init__(self, steps: list[tuple[str, Any]], *, param_grid: Mapping[str, Sequence[Any]] | None = None,
                 inner_folds: int = 3, threshold: str | float = 0.0, random_state: int = 0,
                 transform_input: Any = None, memory: Any = None, verbose: bool = False):
        super().__init__(steps, transform_input=transform_input, memory=memory, verbose=verbose)
        self.param_grid = param_grid
        self.inner_folds = inner_folds
        self.threshold = threshold
        self.random_state = random_state

    def __sklearn_tags__(self) -> Any:
        """Binary classifier tags (benign vs malignant): scikit-learn's checks then use two-class data."""
        tags = super().__sklearn_tags__()
        if tags.classifier_tags is not None:
            tags.classifier_tags.multi_class = False
        return tags

    def _rule(self) -> str | float:
        if self.threshold == "youden":
            return "youden"
        if self.threshold == "zero":
            return 0.0
        try:
            value = float(self.threshold)
        except (TypeError, ValueError):
            raise ModelError(f"threshold must be a number or 'youden', got {self.threshold!r}") from None
        if not np.isfinite(value):
            raise ModelError(f"threshold must be finite, got {self.threshold!r}")
        return value

    def _plain(self) -> Pipeline:
        return Pipeline([(n, clone(e)) for n, e in self.steps])

    def _splits(self, y: np.ndarray, groups: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        n_pat_min = min(len(np.unique(groups[y == c])) for c in (0, 1))
        k = min(self.inner_folds, n_pat_min)
        if k < 2:
            raise ModelError(f"inner cross-validation needs at least 2 patients per class, got {n_pat_min}")
        cv = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=self.random_state)
        return list(cv.split(np.zeros(len(y)), y, groups))

    def _score(self, X: np.ndarray, y: np.ndarray, splits: list[tuple[np.ndarray, np.ndarray]],
               combo: dict[str, Any]) -> tuple[np.ndarray, float]:
        """Inner out-of-fold scores and mean inner-fold AUC of one setting."""
        oof = np.zeros(len(y))
        aucs = []
        for tr, te in splits:
            est = self._plain().set_params(**combo).fit(X[tr], y[tr])
            oof[te] = est.decision_function(X[te])
            if len(np.unique(y[te])) == 2:
                aucs.append(roc_auc_score(y[te], oof[te]))
        return oof, (float(np.mean(aucs)) if aucs else float("nan"))

    def fit(self, X: Any, y: Any = None, groups: Any = None, **params: Any) -> "InnerCVPipeline":
        """Choose the parameters by inner CV on (X, y), set them, fit on all of (X, y)."""
        rule = self._rule()
        grid = {k: list(v) if not isinstance(v, str) else v for k, v in (self.param_grid or {}).items()}
        need_inner = bool(grid) or rule == "youden"
        X = np.asarray(X, dtype=np.float64) if need_inner else np.asarray(X)
        y = np.asarray(y).astype(int)
        if len(np.unique(y)) != 2:
            raise ModelError("training needs both benign and malignant lesions")
        g = np.arange(len(y)) if groups is None else np.asarray(groups)
        splits = self._splits(y, g) if need_inner else []
        n_inner_min = min((len(tr) for tr, _ in splits), default=len(y))
        k_max = min(n_inner_min - 1, X.shape[1])
        if "pca__n_components" in grid:
            vals = grid["pca__n_components"]
            vals = default_grid(k_max) if vals == "search" else vals
            grid["pca__n_components"] = sorted({min(int(v), k_max) for v in vals}, reverse=True)
        keys = list(grid)
        combos = [dict(zip(keys, vals)) for vals in itertools.product(*(grid[k] for k in keys))] or [{}]
        scores: dict[str, float] = {}
        best, best_auc, best_oof = combos[0], -np.inf, None
        for combo in combos:
            if len(combos) == 1 and rule != "youden":
                break
            # Inner fits are on ~60 x 1,280 matrices: BLAS threads only add spin-up cost
            # (measured 20x slower with default threads on a shared 2-core machine).
            with threadpool_limits(limits=1, user_api="blas"):
                oof, auc = self._score(X, y, splits, combo)
            scores["; ".join(f"{k}={v}" for k, v in combo.items()) or "default"] = auc
            if auc > best_auc:
                best, best_auc, best_oof = combo, auc, oof
        final = dict(best)
        if "pca" in self.named_steps:
            requested = final.get("pca__n_components", self.named_steps["pca"].n_components)
            if requested is not None:
                k, capped = cap_components(int(requested), len(y), X.shape[1])
                if capped:
                    log.debug("PCA capped: %d components requested, %d allowed (%s)", int(requested), k, CAP_RULE)
                final["pca__n_components"] = k
                self.capped_ = bool(capped)
        self.set_params(**final)
        super().fit(X, y, **params)
        self.chosen_params_ = {k: (float(v) if isinstance(v, float) else v) for k, v in final.items()}
        self.search_scores_ = scores
        if "pca" in self.named_steps:
            self.chosen_n_components_ = int(self.named_steps["pca"].n_components_)
        if rule == "youden":
            self.threshold_ = float(youden_threshold(y, best_oof)) if best_oof is not None else 0.0
        else:
            self.threshold_ = float(rule)
        self.searched_ = bool(grid) or rule == "youden"
        return self

    def selection_record(self) -> dict[str, Any]:
        """JSON-friendly record of the inner-CV choice (``{}`` for a head that searched nothing)."""
        if not getattr(self, "searched_", True):
            return {}
        rec: dict[str, Any] = {"chosen_params": dict(self.chosen_params_), "search_scores": dict(self.search_scores_),
                               "threshold": float(self.threshold_),
                               "threshold_rule": "youden" if self._rule() == "youden" else "fixed"}
        if hasattr(self, "chosen_n_components_"):
            rec["chosen_n_components"] = int(self.chosen_n_components_)
            rec["cap_rule"] = CAP_RULE
        return rec


# ----------------------------------------------------------------------------- builders
def paper_head(n_components: int | None = PAPER_N_COMPONENTS, C: float = 1.0, gamma: str | float = "auto",
               threshold: float = 0.0) -> InnerCVPipeline:
    """The paper's head: z-score -> PCA(k, capped at n_train - 1) -> RBF-SVC; nothing searched."""
    steps: list[tuple[str, Any]] = [("scaler", StandardScaler())]
    if n_components is not None:
        steps.append(("pca", PCA(n_components=int(n_components), svd_solver="full")))
    steps.append(("svc", SVC(kernel="rbf", C=C, gamma=gamma)))
    return InnerCVPipeline(steps, threshold=threshold)


def paper_search_head(C: float = 1.0, gamma: str | float = "auto", threshold: float = 0.0,
                      grid: Sequence[int] | str = "search") -> InnerCVPipeline:
    """The paper's head with the PCA component count searched (high to low) by inner CV AUC."""
    return InnerCVPipeline([("scaler", StandardScaler()), ("pca", PCA(n_components=2, svd_solver="full")),
                            ("svc", SVC(kernel="rbf", C=C, gamma=gamma))],
                           param_grid={"pca__n_components": grid}, threshold=threshold)


def best_head(C_grid: Sequence[float] = BEST_C_GRID, threshold: str | float = "youden") -> InnerCVPipeline:
    """z-score -> L2 logistic regression, C by inner patient-grouped CV, Youden threshold."""
    return InnerCVPipeline([("scaler", StandardScaler()),
                            ("logreg", LogisticRegression(C=1e-3, max_iter=5000))],
                           param_grid={"logreg__C": list(C_grid)}, threshold=threshold)


def linear_svm_head(C_grid: Sequence[float] = BEST_C_GRID, threshold: float = 0.0) -> InnerCVPipeline:
    """z-score -> linear SVM, C by inner patient-grouped CV."""
    return InnerCVPipeline([("scaler", StandardScaler()), ("linsvc", LinearSVC(C=1e-3, max_iter=20000))],
                           param_grid={"linsvc__C": list(C_grid)}, threshold=threshold)


def finetune_head(**options: Any) -> Any:
    """The ImageNet network fine-tuned on the ROI rows (:class:`mammocadx.model.finetune.FineTuneHead`)."""
    from mammocadx.model.finetune import FineTuneHead  # torch-heavy: imported when a fine-tuned model is built

    return FineTuneHead(**options)


@dataclass(frozen=True)
class HeadRecipe:
    """A registered head: its builder, the ``HeadConfig`` fields it takes, and what its score is."""

    build: Callable[..., InnerCVPipeline]
    takes: tuple[str, ...]
    score: str
    description: str


HEADS: dict[str, HeadRecipe] = {
    "paper-svc": HeadRecipe(paper_head, ("n_components", "C", "gamma", "threshold"), "uncalibrated SVM decision values",
                            "z-score -> PCA (capped at n_train - 1) -> RBF-SVM"),
    "paper-svc-search": HeadRecipe(paper_search_head, ("C", "gamma", "threshold"), "uncalibrated SVM decision values",
                                   "z-score -> PCA (components by inner CV AUC) -> RBF-SVM"),
    "logreg-cv": HeadRecipe(best_head, (), "logistic-regression log-odds (not calibrated probabilities)",
                            "z-score -> L2 logistic regression (C by inner patient-grouped CV), Youden threshold"),
    "linear-svm-cv": HeadRecipe(linear_svm_head, ("threshold",), "uncalibrated linear-SVM decision values",
                                "z-score -> linear SVM (C by inner patient-grouped CV)"),
    "finetune": HeadRecipe(finetune_head, (), "fine-tuned network logit (not a calibrated probability)",
                           "ImageNet CNN fine-tuned on the ROIs (later blocks + binary layer), inner-validation "
                           "early stopping and Youden threshold, 8-view test-time averaging"),
}


def recipe(name: str) -> HeadRecipe:
    """The registered head ``name``; raises ModelError when there is none."""
    try:
        return HEADS[name]
    except KeyError:
        raise ModelError(f"unknown head {name!r}; choose one of {sorted(HEADS)}") from None


@dataclass(frozen=True)
class HeadFactory:
    """``(n_train, n_features) -> unfitted head``: a plain, picklable description of a head.

    Parameters
    ----------
    name : str
        A key of :data:`HEADS`.
    options : tuple of (str, value)
        Keyword arguments of its builder (a tuple so the factory is hashable and frozen).
    """

    name: str
    options: tuple[tuple[str, Any], ...] = ()

    def __call__(self, n_train: int = 0, n_features: int = 0) -> InnerCVPipeline:
        """A fresh, unfitted head (its shape-dependent choices, e.g. the PCA cap, happen in ``fit``)."""
        return recipe(self.name).build(**dict(self.options))

    def describe(self) -> dict[str, Any]:
        """JSON-friendly: head name, what it is, what its score means, and its options."""
        r = recipe(self.name)
        return {"name": self.name, "description": r.description, "score": r.score,
                "options": {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.options}}
