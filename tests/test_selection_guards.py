"""Leakage guards raise loudly; bootstrap intervals behave."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from mammocadx.errors import LeakageError
from mammocadx.evaluate.bootstrap import bootstrap_ci, fast_auc, point_estimates
from mammocadx.evaluate.leakage import (
    TrainingFold, augment, check_fit_indices, check_fold, check_folds, training_folds,
)
from mammocadx.evaluate.splits import Split, grouped_kfold


def test_patient_in_train_and_test_raises():
    groups = np.array(["p1", "p1", "p2", "p3"])
    with pytest.raises(LeakageError, match="p1"):
        check_fold(groups, np.array([0, 2]), np.array([1, 3]))  # p1's two films split
    check_fold(groups, np.array([0, 1]), np.array([2, 3]))


def test_patient_in_two_test_folds_of_one_repeat_raises():
    groups = np.array(["a", "a", "b", "c"])
    bad = [Split(0, 0, np.array([1, 2]), np.array([0, 3])), Split(0, 1, np.array([0, 3]), np.array([1, 2]))]
    with pytest.raises(LeakageError):
        check_folds(groups, bad)


def test_real_folds_pass_the_guard():
    rng = np.random.default_rng(1)
    g = np.repeat(np.arange(50), 2).astype(str)
    y = np.repeat(rng.integers(0, 2, 50), 2)
    check_folds(g, grouped_kfold(y, g, folds=5, repeats=3, seed=0))


def test_fit_indices_from_test_fold_raise():
    with pytest.raises(LeakageError):
        check_fit_indices(np.array([0, 1, 5]), np.array([5, 6]))
    with pytest.raises(LeakageError):  # different rows, same patient
        check_fit_indices(np.array([0, 1]), np.array([2]), groups=np.array(["a", "b", "b"]))
    check_fit_indices(np.array([0, 1]), np.array([2]))


def test_augmentation_before_split_is_refused():
    X = np.zeros((6, 3))
    y = np.array([0, 1, 0, 1, 0, 1])
    g = np.array(["a", "a", "b", "b", "c", "c"])
    flip = lambda X_, y_, g_: (np.vstack([X_, X_ + 1]), np.concatenate([y_, y_]), np.concatenate([g_, g_]))
    with pytest.raises(LeakageError, match="augmentation refused"):
        augment((X, y, g), flip)
    with pytest.raises(LeakageError):
        TrainingFold(X, y, g, np.arange(6), 0, 0)  # hand-made fold: refused
    splits = [Split(0, 0, np.array([0, 1, 2, 3]), np.array([4, 5]))]
    for fold, test in training_folds(X, y, g, splits):
        Xa, ya, ga = augment(fold, flip)
        assert len(Xa) == 8 and set(ga) == {"a", "b"}
        assert not set(ga) & set(g[test])
    # an augmentation that invents rows of a test patient is refused
    leak = lambda X_, y_, g_: (np.vstack([X_, X[4:]]), np.concatenate([y_, y[4:]]), np.concatenate([g_, g[4:]]))
    fold, _ = next(training_folds(X, y, g, splits))
    with pytest.raises(LeakageError):
        augment(fold, leak)


def test_fast_auc_equals_sklearn():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    s = np.round(rng.normal(size=200) + y, 1)  # with ties
    assert fast_auc(y, s) == pytest.approx(roc_auc_score(y, s))


def _cohort(n_pat, seed=0):
    rng = np.random.default_rng(seed)
    groups = np.repeat(np.arange(n_pat), 2)
    y = np.repeat((rng.random(n_pat) < 0.4).astype(int), 2)
    score = rng.normal(size=len(y)) + 1.0 * y
    return y, score, (score > 0.5).astype(int), groups


def test_bootstrap_ci_contains_point_and_narrows_with_more_patients():
    y, s, p, g = _cohort(60)
    ci = bootstrap_ci(y, s, p, g, n_boot=600, seed=0)
    pt = point_estimates(y, s, p)
    for m, (lo, hi) in ci.items():
        assert lo <= pt[m] <= hi, m
        assert 0.0 <= lo < hi <= 1.0
    y2, s2, p2, g2 = _cohort(600)
    ci2 = bootstrap_ci(y2, s2, p2, g2, n_boot=600, seed=0)
    for m in ci:
        assert (ci2[m][1] - ci2[m][0]) < 0.6 * (ci[m][1] - ci[m][0]), m
    # AUC of this design is ~0.75: the large cohort's interval brackets it tightly (seeded values)
    assert ci2["auc"] == pytest.approx((0.7195, 0.7738), abs=2e-3)


def test_bootstrap_resamples_patients_not_lesions():
    """Duplicating every lesion within its patient must not narrow the interval."""
    y, s, p, g = _cohort(80, seed=3)
    ci1 = bootstrap_ci(y, s, p, g, n_boot=500, seed=1)
    ci2 = bootstrap_ci(np.repeat(y, 3), np.repeat(s, 3), np.repeat(p, 3), np.repeat(g, 3), n_boot=500, seed=1)
    w1, w2 = ci1["auc"][1] - ci1["auc"][0], ci2["auc"][1] - ci2["auc"][0]
    assert w2 == pytest.approx(w1, rel=0.15)


def test_bootstrap_accepts_repeats():
    y, s, p, g = _cohort(40)
    S = np.stack([s, s + 0.01])
    P = np.stack([p, p])
    ci = bootstrap_ci(y, S, P, g, n_boot=200, seed=0)
    assert set(ci) == {"auc", "accuracy", "sensitivity", "specificity", "precision", "f1"}


def test_vectorised_bootstrap_equals_resampling_patients_by_concatenation():
    """The weighted-count bootstrap gives exactly what drawing patients and concatenating their lesions gives."""
    from mammocadx.evaluate.bootstrap import BOOT_METRICS, _intervals, _point

    rng = np.random.default_rng(5)
    n = 70
    y, g = rng.integers(0, 2, n), rng.integers(0, 45, n)  # uneven lesions per patient
    S = np.round(rng.normal(size=(3, n)) + y, 1)  # rounded: many tied scores
    P = (S > 0.4).astype(int)
    P[1] = 0  # a repeat with no positive call: precision undefined there
    n_boot, seed = 150, 9
    patients, inverse = np.unique(g, return_inverse=True)
    members = [np.flatnonzero(inverse == k) for k in range(len(patients))]
    draws = np.random.default_rng(seed).integers(0, len(members), (n_boot, len(members)))
    ref = np.empty((n_boot, len(BOOT_METRICS)))
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for b, pick in enumerate(draws):
            idx = np.concatenate([members[k] for k in pick])
            ref[b] = np.nanmean([_point(y[idx], s[idx], p[idx]) for s, p in zip(S, P)], axis=0)
    expected = _intervals(ref, 0.95)
    got = bootstrap_ci(y, S, P, g, n_boot=n_boot, seed=seed)
    for m in BOOT_METRICS:
        np.testing.assert_allclose(got[m], expected[m], rtol=1e-12, atol=1e-12, err_msg=m)


def test_identical_feature_rows_of_different_lesions_are_not_called_leakage():
    from mammocadx.evaluate.leakage import FitGuard, forbidden_rows
    from sklearn.linear_model import LogisticRegression

    X = np.random.default_rng(0).normal(size=(10, 4))
    X[8] = X[1]  # two lesions with the same features (e.g. both ROIs blanked): row 8 in test, row 1 in train
    y = np.array([0, 1] * 5)
    train, test = np.arange(0, 7), np.arange(7, 10)
    forb = forbidden_rows(X, train, test)
    assert len(forb) == 2
    FitGuard(LogisticRegression(), forbidden=forb).fit(X[train], y[train])
    with pytest.raises(LeakageError):
        FitGuard(LogisticRegression(), forbidden=forb).fit(X, y)
