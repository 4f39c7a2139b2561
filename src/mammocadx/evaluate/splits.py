"""Patient-grouped splits. Every split groups by patient: never by image or lesion.

Two images of one woman (mini-MIAS's left/right films; CBIS-DDSM's CC and MLO
views and several findings per image) in both train and test would leak.
:func:`check_disjoint` is run on every split and raises
:class:`~mammocadx.errors.LeakageError` if a patient sits on both sides.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold

from mammocadx.errors import EvaluationError, LeakageError


@dataclass(frozen=True)
class Split:
    """One train/test split of an evaluation protocol."""

    repeat: int
    fold: int
    train: np.ndarray
    test: np.ndarray


def check_disjoint(groups: np.ndarray, train: np.ndarray, test: np.ndarray) -> None:
    """Raise :class:`LeakageError` if a patient or a row is in both ``train`` and ``test``."""
    rows = np.intersect1d(train, test)
    if rows.size:
        raise LeakageError(f"{rows.size} rows are in both train and test (e.g. row {int(rows[0])})")
    shared = np.intersect1d(np.asarray(groups)[train], np.asarray(groups)[test])
    if shared.size:
        raise LeakageError(f"{shared.size} patients are in both train and test (e.g. {shared[0]!r})")


def grouped_kfold(
    labels: Sequence[int],
    groups: Sequence[str],
    folds: int = 5,
    repeats: int = 1,
    seed: int = 0,
) -> list[Split]:
    """Patient-grouped, label-stratified k-fold, repeated with different shuffles.

    Parameters
    ----------
    labels, groups : sequences
        Label (0/1) and patient id of each sample.
    folds : int
        Number of folds (>= 2).
    repeats : int
        Number of repeats; repeat ``r`` shuffles with seed ``seed + r``.
    seed : int
        Base seed.

    Raises
    ------
    EvaluationError
        If there are fewer patients of a class than folds.
    """
    y = np.asarray(labels).astype(int)
    g = np.asarray(groups)
    if folds < 2:
        raise EvaluationError(f"k-fold needs at least 2 folds, got {folds}")
    if repeats < 1:
        raise EvaluationError(f"repeats must be at least 1, got {repeats}")
    for cls in (0, 1):
        n_pat = len(np.unique(g[y == cls]))
        if n_pat < folds:
            raise EvaluationError(f"only {n_pat} patients have class {cls}: cannot make {folds} folds")
    out: list[Split] = []
    idx = np.arange(len(y))
    for r in range(repeats):
        cv = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed + r)
        for f, (tr, te) in enumerate(cv.split(idx, y, g)):
            check_disjoint(g, tr, te)
            out.append(Split(r, f, np.sort(tr), np.sort(te)))
    return out


def official_split(splits: Sequence[str | None], groups: Sequence[str]) -> list[Split]:
    """The dataset's own train/test split (e.g. CBIS-DDSM's), checked for shared patients.

    Raises
    ------
    EvaluationError
        If some samples have no split or one side is empty.
    LeakageError
        If a patient is in both the official train and test sets.
    """
    s = np.asarray([str(v).lower() if v is not None else "" for v in splits])
    bad = ~np.isin(s, ["train", "test"])
    if bad.any():
        raise EvaluationError(f"{int(bad.sum())} samples have no official split (train/test)")
    train, test = np.flatnonzero(s == "train"), np.flatnonzero(s == "test")
    if train.size == 0 or test.size == 0:
        raise EvaluationError("the official split needs both train and test samples")
    check_disjoint(np.asarray(groups), train, test)
    return [Split(0, 0, train, test)]
