"""Leakage guards that fail loudly (:class:`~mammocadx.errors.LeakageError`).

Three ways test information reaches a model, and the guard for each:

1. **A patient in two folds** (train and test of one split):
   :func:`check_folds` on every split of a protocol (rows and patients).
2. **Test rows used in a fit**: :class:`FitGuard` wraps a head and refuses a
   ``fit`` whose rows include any row of the outer test fold (compared by a
   fingerprint of the feature row, so it also catches features fitted or
   stacked on the whole set before the split); :func:`check_fit_indices` does the
   same with indices when the caller has them.
3. **Augmentation before the split**: augmentation is only accepted as a
   callable applied to a :class:`TrainingFold`, an object that only the fold
   loop (:func:`training_folds`) creates. :func:`augment` refuses anything else
   (a raw array, a whole dataset, a list of records).
"""
from __future__ import annotations

import hashlib
import inspect
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, clone

from mammocadx.errors import LeakageError

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------- 1. folds
def check_fold(groups: Sequence[Any], train: np.ndarray, test: np.ndarray, where: str = "") -> None:
    """Raise :class:`LeakageError` if a row or a patient is in both ``train`` and ``test``."""
    g = np.asarray(groups)
    rows = np.intersect1d(np.asarray(train), np.asarray(test))
    tag = f"{where}: " if where else ""
    if rows.size:
        raise LeakageError(f"{tag}{rows.size} rows are in both train and test (e.g. row {int(rows[0])})")
    shared = np.intersect1d(g[np.asarray(train, dtype=int)], g[np.asarray(test, dtype=int)])
    if shared.size:
        raise LeakageError(f"{tag}patient {shared[0]!r} is in both train and test ({shared.size} patients shared)")


def check_folds(groups: Sequence[Any], splits: Sequence[Any]) -> None:
    """Check every split (objects with ``train``/``test``, or ``(repeat, fold, train, test)`` tuples).

    Also checks that, within one repeat, no patient is in the test side of two folds
    (k-fold test folds must partition the patients).
    """
    seen: dict[tuple[int, Any], int] = {}
    for sp in splits:
        if isinstance(sp, tuple):
            repeat, fold, train, test = sp
        else:
            repeat, fold, train, test = sp.repeat, sp.fold, sp.train, sp.test
        check_fold(groups, train, test, where=f"repeat {repeat} fold {fold}")
        for p in np.unique(np.asarray(groups)[np.asarray(test, dtype=int)]):
            key = (repeat, p)
            if key in seen and seen[key] != fold:
                raise LeakageError(f"repeat {repeat}: patient {p!r} is in the test side of folds {seen[key]} and {fold}")
            seen[key] = fold


def check_fit_indices(fit_idx: np.ndarray, test_idx: np.ndarray, groups: Sequence[Any] | None = None) -> None:
    """Raise :class:`LeakageError` if rows (or patients) passed to a fit belong to the test fold."""
    if groups is None:
        rows = np.intersect1d(fit_idx, test_idx)
        if rows.size:
            raise LeakageError(f"a fit received {rows.size} rows of the test fold (e.g. row {int(rows[0])})")
    else:
        check_fold(groups, fit_idx, test_idx, where="fit")


# ---------------------------------------------------------------------- 2. fits
def row_fingerprints(X: np.ndarray) -> np.ndarray:
    """One short hash per feature row (bytes of the float32 row): identical rows share it."""
    X = np.ascontiguousarray(np.asarray(X, dtype=np.float32))
    return np.array([hashlib.blake2b(row.tobytes(), digest_size=8).hexdigest() for row in X])


def forbidden_rows(X: np.ndarray, train: np.ndarray, test: np.ndarray) -> np.ndarray:
    """Fingerprints a fit on ``train`` must not contain: the test rows' fingerprints, minus any that
    a training row legitimately shares (identical feature vectors of different lesions, e.g. ROIs
    blanked out by a segmentation mask); those duplicates are logged, not refused."""
    fp_test = row_fingerprints(np.asarray(X)[test])
    fp_train = row_fingerprints(np.asarray(X)[train])
    dup = np.intersect1d(fp_test, fp_train)
    if dup.size:
        log.warning("%d test rows have feature vectors identical to training rows (different lesions, same "
                    "features: e.g. blank ROIs); the fit guard cannot tell them apart and ignores them", dup.size)
    return np.setdiff1d(fp_test, fp_train)


class FitGuard(ClassifierMixin, BaseEstimator):
    """Wrap a head; ``fit`` raises :class:`LeakageError` if it is given a row of the test fold.

    Parameters
    ----------
    estimator : estimator
        The head (cloned at fit).
    forbidden : array of str
        :func:`row_fingerprints` of the outer test fold's rows.

    Attributes
    ----------
    estimator_ : the fitted head; ``threshold_`` and ``chosen_n_components_`` are passed through.
    n_fit_rows_ : int
    """

    def __init__(self, estimator: Any = None, forbidden: np.ndarray | None = None):
        self.estimator = estimator
        self.forbidden = forbidden

    def fit(self, X: np.ndarray, y: np.ndarray, groups: np.ndarray | None = None) -> "FitGuard":
        """Check the rows, then fit the wrapped head (with ``groups`` if it takes them)."""
        if self.forbidden is not None and len(self.forbidden):
            hit = np.isin(row_fingerprints(X), np.asarray(self.forbidden))
            if hit.any():
                raise LeakageError(f"a fit received {int(hit.sum())} rows of the outer test fold "
                                   f"(first at position {int(np.flatnonzero(hit)[0])})")
        self.estimator_ = clone(self.estimator)
        takes_groups = "groups" in inspect.signature(self.estimator_.fit).parameters
        if takes_groups:
            self.estimator_.fit(X, y, groups=groups)
        else:
            self.estimator_.fit(X, y)
        self.classes_ = getattr(self.estimator_, "classes_", np.unique(y))
        self.n_fit_rows_ = int(len(X))
        for name in ("threshold_", "chosen_n_components_", "search_scores_", "capped_"):
            if hasattr(self.estimator_, name):
                setattr(self, name, getattr(self.estimator_, name))
        return self

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """The wrapped head's decision function."""
        return self.estimator_.decision_function(X)

    def predict(self, X: np.ndarray) -> np.ndarray:
        """The wrapped head's predictions."""
        return self.estimator_.predict(X)

    def __getattr__(self, name: str) -> Any:
        # Pass fitted attributes of the wrapped head through (selection_record, named_steps ...).
        if name.startswith("__") or name in ("estimator_", "estimator", "forbidden"):
            raise AttributeError(name)
        est = self.__dict__.get("estimator_")
        if est is None:
            raise AttributeError(name)
        return getattr(est, name)


# ---------------------------------------------------------------------- 3. augmentation
_FOLD_TOKEN = object()


@dataclass(frozen=True)
class TrainingFold:
    """The training side of one split, the only thing augmentation may touch.

    Created by :func:`training_folds` (the fold loop) only; constructing one by hand
    raises :class:`LeakageError`.
    """

    X: np.ndarray
    y: np.ndarray
    groups: np.ndarray
    indices: np.ndarray
    repeat: int
    fold: int
    token: Any = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.token is not _FOLD_TOKEN:
            raise LeakageError("a TrainingFold is made by the fold loop (training_folds), after splitting")


def training_folds(X: np.ndarray, y: np.ndarray, groups: np.ndarray, splits: Sequence[Any]) -> Iterator[tuple[TrainingFold, np.ndarray]]:
    """Yield ``(TrainingFold, test_idx)`` per split, checking each split for shared patients."""
    X, y, groups = np.asarray(X), np.asarray(y), np.asarray(groups)
    for sp in splits:
        repeat, fold, train, test = sp if isinstance(sp, tuple) else (sp.repeat, sp.fold, sp.train, sp.test)
        check_fold(groups, train, test, where=f"repeat {repeat} fold {fold}")
        yield TrainingFold(X[train], y[train], groups[train], np.asarray(train), repeat, fold, _FOLD_TOKEN), np.asarray(test)


Augmentation = Callable[[np.ndarray, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]]


def augment(data: Any, fn: Augmentation) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Apply ``fn(X, y, groups) -> (X', y', groups')`` to a training fold.

    Raises
    ------
    LeakageError
        If ``data`` is not a :class:`TrainingFold` (augmentation before the split),
        or ``fn`` returns rows whose patients are not in the fold.
    """
    if not isinstance(data, TrainingFold):
        raise LeakageError(
            f"augmentation refused on {type(data).__name__}: augment only a TrainingFold inside the fold loop "
            "(after the patient-grouped split), never the whole dataset")
    Xa, ya, ga = fn(data.X, data.y, data.groups)
    if len(Xa) != len(ya) or len(ya) != len(ga):
        raise LeakageError("augmentation returned X, y and groups of different lengths")
    outside = np.setdiff1d(np.asarray(ga), data.groups)
    if outside.size:
        raise LeakageError(f"augmentation created rows of patients outside the training fold (e.g. {outside[0]!r})")
    return np.asarray(Xa), np.asarray(ya), np.asarray(ga)
