"""Nested PCA component search: the outer test fold is never seen; the 404 cap rule; thresholds."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.decomposition import PCA
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from mammocadx.errors import LeakageError, ModelError
from mammocadx.evaluate.crossval import run_splits
from mammocadx.evaluate.leakage import FitGuard, row_fingerprints
from mammocadx.evaluate.splits import grouped_kfold
from mammocadx.model.selection import (
    PAPER_N_COMPONENTS, NestedPCASearch, cap_components, default_grid, youden_threshold,
)

FIT_LOG: list[np.ndarray] = []


class RowRecorder(TransformerMixin, BaseEstimator):
    """Identity transformer that logs the fingerprints of every row it is fitted on."""

    def fit(self, X, y=None):
        FIT_LOG.append(row_fingerprints(X))
        return self

    def transform(self, X):
        return X


class RecordingSearch(NestedPCASearch):
    """NestedPCASearch whose every internal pipeline starts with a RowRecorder."""

    def _make(self, k):
        pipe = super()._make(k)
        return Pipeline([("rec", RowRecorder())] + pipe.steps)


def _data(n_pat: int = 60, d: int = 40, seed: int = 0):
    rng = np.random.default_rng(seed)
    groups = np.repeat(np.arange(n_pat), 2)[: 2 * n_pat]
    y = (rng.random(n_pat) < 0.45).astype(int)[groups]
    X = rng.normal(size=(len(y), d))
    X[:, :3] += 2.0 * y[:, None]  # a weak signal in 3 directions
    return X, y, groups.astype(str)


def test_nested_search_never_sees_outer_test_fold():
    X, y, g = _data()
    splits = grouped_kfold(y, g, folds=3, repeats=1, seed=3)
    prints = row_fingerprints(X)
    heads = []

    def factory(n, d):
        FIT_LOG.clear()
        h = RecordingSearch(n_components="search", grid=[40, 20, 10, 5, 2], inner_folds=3)
        heads.append(h)
        return h

    # run the outer loop by hand so the log of each split can be checked
    for sp in splits:
        FIT_LOG.clear()
        guard = FitGuard(factory(len(sp.train), X.shape[1]), forbidden=prints[sp.test])
        guard.fit(X[sp.train], y[sp.train], groups=g[sp.train])
        n_fits = len(FIT_LOG)
        assert n_fits == 3 * 5 + 1  # inner folds x grid counts + the final refit
        seen = np.unique(np.concatenate(FIT_LOG))
        assert not np.isin(seen, prints[sp.test]).any(), "a fit saw an outer test row"
        assert np.isin(seen, prints[sp.train]).all()
        # inner folds are patient-grouped: no patient on both sides of an inner split
        search = guard.estimator_
        gt = g[sp.train]
        for tr, te in search.inner_splits_:
            assert not set(gt[tr]) & set(gt[te])
        assert search.chosen_n_components_ in search.search_scores_
        assert search.search_scores_[search.chosen_n_components_] == max(search.search_scores_.values())


def test_run_splits_records_chosen_counts_and_passes_groups():
    X, y, g = _data()
    splits = grouped_kfold(y, g, folds=3, repeats=1, seed=0)
    res = run_splits(X, y, g, splits, lambda n, d: NestedPCASearch(grid=[20, 8, 3], inner_folds=3))
    assert len(res.fold_info) == 3
    for info in res.fold_info:
        sel = info["selection"]
        assert sel["chosen_n_components"] in (20, 8, 3)
        assert info["pca_components"] == sel["chosen_n_components"]
        assert set(sel["search_scores"]) == {20, 8, 3}
    # a real signal: the search finds it (AUC well above chance)
    assert res.summary()["auc"]["mean"] > 0.75


def test_parallel_folds_give_exactly_the_serial_result():
    """Folds fitted in worker processes: same scores, thresholds and fold records as one by one."""
    from mammocadx.evaluate import crossval

    X, y, g = _data()
    splits = grouped_kfold(y, g, folds=3, repeats=2, seed=1)

    def factory(n, d):
        return NestedPCASearch(grid=[20, 8, 3], inner_folds=3)

    serial = run_splits(X, y, g, splits, factory, n_jobs=1)
    parallel = run_splits(X, y, g, splits, factory, n_jobs=2)
    assert [(p.index, p.repeat, p.fold, p.score, p.prediction) for p in parallel.predictions] == \
        [(p.index, p.repeat, p.fold, p.score, p.prediction) for p in serial.predictions]
    assert parallel.fold_info == serial.fold_info and parallel.per_repeat == serial.per_repeat
    # automatic choice: fast heads stay serial, slow ones go parallel where there are cores
    assert crossval._auto_jobs(0.02, 24) == 1
    cores = crossval._cores()
    assert crossval._auto_jobs(1.0, 24) == (min(cores, 24) if cores >= 2 else 1)


def test_fixed_404_is_capped_on_small_training_sets():
    X, y, _ = _data(n_pat=30, d=50)  # 60 rows
    m = NestedPCASearch(n_components=PAPER_N_COMPONENTS).fit(X, y)
    assert m.capped_ is True
    assert m.chosen_n_components_ == min(len(y) - 1, X.shape[1]) == 50
    m2 = NestedPCASearch(n_components=PAPER_N_COMPONENTS).fit(X[:, :45][:40], y[:40])
    assert m2.chosen_n_components_ == 39  # n_samples - 1 < n_features
    assert m2.pipeline_.named_steps["pca"].n_components_ == 39
    assert m2.selection_record()["cap_rule"] == "n_components <= min(n_samples - 1, n_features)"


def test_404_not_capped_when_data_allow_it():
    assert cap_components(404, 1000, 1280) == (404, False)
    assert cap_components(404, 95, 1280) == (94, True)
    assert cap_components(404, 500, 300) == (300, True)
    with pytest.raises(ModelError):
        cap_components(0, 100, 10)


def test_default_grid_starts_at_max_and_decreases():
    g = default_grid(75)
    assert g[0] == 75 and g[-1] == 2
    assert all(a > b for a, b in zip(g, g[1:]))


def test_youden_threshold_reproduces_best_operating_point():
    y = np.array([0, 0, 0, 1, 1, 1])
    s = np.array([-2.0, -1.0, 0.5, 0.2, 1.0, 2.0])
    t = youden_threshold(y, s)
    pred = (s > t).astype(int)
    sens = pred[y == 1].mean()
    spec = 1 - pred[y == 0].mean()
    assert sens + spec - 1 == pytest.approx(2 / 3)  # best J here is 2/3


def test_youden_threshold_chosen_inside_fit():
    X, y, g = _data()
    m = NestedPCASearch(n_components=10, threshold="youden", inner_folds=3).fit(X, y, groups=g)
    assert np.isfinite(m.threshold_)
    s = m.decision_function(X)
    assert np.array_equal(m.predict(X), (s > m.threshold_).astype(int))


def test_fit_guard_refuses_test_rows():
    X, y, g = _data()
    head = FitGuard(Pipeline([("s", StandardScaler()), ("p", PCA(5)), ("svc", SVC())]), forbidden=row_fingerprints(X[:10]))
    with pytest.raises(LeakageError):
        head.fit(X, y)
    head.fit(X[10:], y[10:])
    assert head.n_fit_rows_ == len(y) - 10


def test_run_splits_refuses_a_split_with_shared_rows():
    from mammocadx.evaluate.splits import Split

    X, y, g = _data()
    bad = [Split(0, 0, np.arange(0, 80), np.arange(70, 120))]
    with pytest.raises(LeakageError):
        run_splits(X, y, g, bad, lambda n, d: NestedPCASearch(n_components=5))
