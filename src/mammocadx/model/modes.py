"""Registry of CADx modes: feature configuration + head factory.

``MODES[name]`` is a :class:`ModeSpec`: which ROI/pseudocolour/backbone settings
the features use, and how the head is built. Two modes are what users pick:

- ``paper``: Almaraz-Damian et al. 2021 as published: sine pseudocolour, ROI
  context 1.5, z-score -> PCA(404, capped at n_train - 1) -> RBF-SVM (C=1,
  gamma=1/#components), threshold 0.
- ``best``: the better-regularised mode found for mini-MIAS: **grey** ROI
  (no sine folding of dark and bright tissue), same Lite0 features, z-score ->
  L2 logistic regression whose C is chosen by inner, patient-grouped 3-fold CV
  AUC inside the training rows (grid fixed a priori: 1e-4 ... 1e-1), threshold
  from Youden's J on the inner out-of-fold scores. No PCA: the L2 penalty does
  the shrinkage.

and research modes for ablations (``paper-search``: the paper's head with the
component count searched by inner CV; ``paper-grey``; ``linear-svm``).

Heads are :class:`InnerCVPipeline` objects: plain scikit-learn ``Pipeline``s
whose ``fit`` first picks its hyper-parameters by inner CV on the rows it is
given (so a model file saves as an ordinary pipeline, with the choice recorded
in ``chosen_params_`` / ``search_scores_`` / ``threshold_``).
"""
from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

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
    threshold : {"zero", "youden"}
        Operating point: 0, or Youden's J on the inner out-of-fold scores of the chosen setting.
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
    """

    def __init__(self, steps: list[tuple[str, Any]], *, param_grid: Mapping[str, Sequence[Any]] | None = None,
                 inner_folds: int = 3, threshold: str = "zero", random_state: int = 0,
                 transform_input: Any = None, memory: Any = None, verbose: bool = False):
        super().__init__(steps, transform_input=transform_input, memory=memory, verbose=verbose)
        self.param_grid = param_grid
        self.inner_folds = inner_folds
        self.threshold = threshold
        self.random_state = random_state

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
        X = np.asarray(X, dtype=np.float64)
        y = np.asarray(y).astype(int)
        if len(np.unique(y)) != 2:
            raise ModelError("training needs both benign and malignant lesions")
        g = np.arange(len(y)) if groups is None else np.asarray(groups)
        grid = {k: list(v) if not isinstance(v, str) else v for k, v in (self.param_grid or {}).items()}
        need_inner = bool(grid) or self.threshold == "youden"
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
            if len(combos) == 1 and self.threshold != "youden":
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
                final["pca__n_components"] = k
                self.capped_ = bool(capped)
        self.set_params(**final)
        super().fit(X, y, **params)
        self.chosen_params_ = {k: (float(v) if isinstance(v, float) else v) for k, v in final.items()}
        self.search_scores_ = scores
        if "pca" in self.named_steps:
            self.chosen_n_components_ = int(self.named_steps["pca"].n_components_)
        self.threshold_ = float(youden_threshold(y, best_oof)) if (self.threshold == "youden" and best_oof is not None) else 0.0
        return self

    def selection_record(self) -> dict[str, Any]:
        """JSON-friendly record of the inner-CV choice."""
        rec: dict[str, Any] = {"chosen_params": dict(self.chosen_params_), "search_scores": dict(self.search_scores_),
                               "threshold": float(self.threshold_), "threshold_rule": self.threshold}
        if hasattr(self, "chosen_n_components_"):
            rec["chosen_n_components"] = int(self.chosen_n_components_)
            rec["cap_rule"] = CAP_RULE
        return rec


# ----------------------------------------------------------------------------- heads
def paper_head(n_components: int | None = PAPER_N_COMPONENTS, C: float = 1.0, gamma: str | float = "auto") -> InnerCVPipeline:
    """The paper's head: z-score -> PCA(k, capped) -> RBF-SVC; nothing searched."""
    steps: list[tuple[str, Any]] = [("scaler", StandardScaler())]
    if n_components is not None:
        steps.append(("pca", PCA(n_components=int(n_components), svd_solver="full")))
    steps.append(("svc", SVC(kernel="rbf", C=C, gamma=gamma)))
    return InnerCVPipeline(steps)


def paper_search_head(C: float = 1.0, gamma: str | float = "auto", grid: Sequence[int] | str = "search") -> InnerCVPipeline:
    """The paper's head with the PCA component count searched (high to low) by inner CV AUC."""
    return InnerCVPipeline([("scaler", StandardScaler()), ("pca", PCA(n_components=2, svd_solver="full")),
                            ("svc", SVC(kernel="rbf", C=C, gamma=gamma))],
                           param_grid={"pca__n_components": grid})


def best_head(C_grid: Sequence[float] = BEST_C_GRID, threshold: str = "youden") -> InnerCVPipeline:
    """z-score -> L2 logistic regression, C by inner patient-grouped CV, Youden threshold."""
    return InnerCVPipeline([("scaler", StandardScaler()),
                            ("logreg", LogisticRegression(C=1e-3, max_iter=5000))],
                           param_grid={"logreg__C": list(C_grid)}, threshold=threshold)


def linear_svm_head(C_grid: Sequence[float] = BEST_C_GRID) -> InnerCVPipeline:
    """z-score -> linear SVM, C by inner patient-grouped CV."""
    return InnerCVPipeline([("scaler", StandardScaler()), ("linsvc", LinearSVC(C=1e-3, max_iter=20000))],
                           param_grid={"linsvc__C": list(C_grid)})


HEADS: dict[str, Callable[..., InnerCVPipeline]] = {
    "paper-svc": paper_head,
    "paper-svc-search": paper_search_head,
    "logreg-cv": best_head,
    "linear-svm-cv": linear_svm_head,
}


@dataclass(frozen=True)
class ModeSpec:
    """A mode: feature settings (fields of ``CADxConfig``) and a head."""

    name: str
    description: str
    features: dict[str, Any] = field(default_factory=dict)
    head: str = "paper-svc"
    head_options: dict[str, Any] = field(default_factory=dict)


MODES: dict[str, ModeSpec] = {
    "paper": ModeSpec("paper", "Almaraz-Damian et al. 2021: sine pseudocolour, z-score, PCA 404 (capped at n_train-1), "
                      "RBF-SVM C=1 gamma=1/#components", {"pseudocolor": "sine", "context": 1.5}, "paper-svc"),
    "paper-search": ModeSpec("paper-search", "paper mode with the PCA component count searched by inner CV AUC "
                             "(recursive-elimination style, high to low) inside the training folds",
                             {"pseudocolor": "sine", "context": 1.5}, "paper-svc-search"),
    "paper-grey": ModeSpec("paper-grey", "paper head on grey ROIs", {"pseudocolor": "grey", "context": 1.5}, "paper-svc"),
    "best": ModeSpec("best", "grey ROI (context 1.5), Lite0 features, z-score, L2 logistic regression with C by inner "
                     "patient-grouped CV, Youden threshold from inner out-of-fold scores",
                     {"pseudocolor": "grey", "context": 1.5}, "logreg-cv"),
    "linear-svm": ModeSpec("linear-svm", "grey ROI, z-score, linear SVM with C by inner CV",
                           {"pseudocolor": "grey", "context": 1.5}, "linear-svm-cv"),
}


def make_head(spec: ModeSpec, config: Any = None) -> InnerCVPipeline:
    """The unfitted head of ``spec`` (paper heads take n_components/C/gamma from ``config.head``)."""
    opts = dict(spec.head_options)
    if spec.head in ("paper-svc", "paper-svc-search") and config is not None:
        opts.setdefault("C", config.head.C)
        opts.setdefault("gamma", config.head.gamma)
        if spec.head == "paper-svc":
            opts.setdefault("n_components", config.head.n_components)
    return HEADS[spec.head](**opts)


def head_factory(config: Any) -> Callable[[int, int], InnerCVPipeline]:
    """``(n_train, n_features) -> unfitted head`` for ``config.mode`` (used by ``CADx.head_factory``)."""
    try:
        spec = MODES[config.mode]
    except KeyError:
        raise ModelError(f"unknown mode {config.mode!r}; choose one of {sorted(MODES)}") from None
    return lambda n, d: make_head(spec, config)


#: CLI defaults that a mode's own feature settings replace (an explicitly given other value wins).
_CLI_DEFAULTS = {"pseudocolor": "sine", "context": 1.5}


def build(mode: str, **overrides: Any) -> Any:
    """A :class:`~mammocadx.model.cadx.CADx` in ``mode``.

    ``overrides`` are ``CADxConfig`` fields (and ``n_components``/``C``/``gamma``/``threshold``
    of the head). The mode's feature settings apply unless an override sets a value other
    than the CLI default (so ``--mode best`` alone gives grey ROIs, ``--mode best
    --pseudocolor sine`` gives sine).
    """
    from mammocadx.model.cadx import CADx

    try:
        spec = MODES[mode]
    except KeyError:
        raise ModelError(f"unknown mode {mode!r}; choose one of {sorted(MODES)}") from None
    over = dict(overrides)
    for k, v in spec.features.items():
        if k not in over or over[k] is None or over[k] == _CLI_DEFAULTS.get(k):
            over[k] = v
    cadx = CADx.paper(**over)
    cadx.config = replace(cadx.config, mode=mode)
    return cadx


def describe(mode: str) -> dict[str, Any]:
    """JSON-friendly description of a mode (for reports and model cards)."""
    spec = MODES[mode]
    return {"name": spec.name, "description": spec.description, "features": dict(spec.features), "head": spec.head,
            "head_options": dict(spec.head_options)}
