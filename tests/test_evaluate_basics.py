"""Metrics, patient-grouped splits and the cross-validation engine."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from mammocadx.errors import EvaluationError, LeakageError
from mammocadx.evaluate.crossval import run_splits
from mammocadx.evaluate.metrics import binary_metrics
from mammocadx.evaluate.splits import Split, check_disjoint, grouped_kfold, official_split


def test_binary_metrics_match_the_paper_equations() -> None:
    y = np.array([1, 1, 1, 0, 0, 0, 0, 1])
    s = np.array([2.0, 0.5, -0.2, -1.0, 0.3, -2.0, -0.1, 1.0])
    m = binary_metrics(y, s, threshold=0.0)
    # predicted positive: 2.0, 0.5, 0.3, 1.0 -> tp=3 (2.0,0.5,1.0), fp=1 (0.3); fn=1 (-0.2); tn=3
    assert m["confusion"] == {"tn": 3, "fp": 1, "fn": 1, "tp": 3}
    assert m["accuracy"] == pytest.approx(6 / 8)
    assert m["sensitivity"] == pytest.approx(3 / 4)
    assert m["specificity"] == pytest.approx(3 / 4)
    assert m["precision"] == pytest.approx(3 / 4)
    assert m["f1"] == pytest.approx(6 / 8)
    # AUC from the scores: 14 of 16 positive-negative pairs are ordered right (-0.2 < 0.3, -0.2 < -0.1).
    assert m["auc"] == pytest.approx(14 / 16)


def test_metrics_undefined_cases_are_nan_not_errors() -> None:
    m = binary_metrics(np.array([0, 0, 0]), np.array([-1.0, -2.0, -3.0]))
    assert np.isnan(m["auc"]) and np.isnan(m["sensitivity"]) and np.isnan(m["precision"])
    assert m["specificity"] == 1.0


def _toy(n_patients: int = 40, seed: int = 0):
    rng = np.random.default_rng(seed)
    groups = np.repeat([f"p{i}" for i in range(n_patients)], 2)
    y = np.repeat(rng.integers(0, 2, n_patients), 2)
    X = rng.normal(size=(len(y), 5)) + y[:, None] * 1.5
    return X, y, groups


def test_no_patient_is_in_train_and_test_of_any_fold() -> None:
    X, y, groups = _toy()
    splits = grouped_kfold(y, groups, folds=5, repeats=3, seed=1)
    assert len(splits) == 15
    for sp in splits:
        assert not set(groups[sp.train]) & set(groups[sp.test])
    for r in range(3):
        tests = np.concatenate([sp.test for sp in splits if sp.repeat == r])
        assert sorted(tests.tolist()) == list(range(len(y)))  # every sample tested exactly once per repeat
    # Repeats differ, the same seed reproduces.
    again = grouped_kfold(y, groups, folds=5, repeats=3, seed=1)
    assert all(np.array_equal(a.test, b.test) for a, b in zip(splits, again))
    assert not np.array_equal(splits[0].test, splits[5].test)


def test_leakage_and_impossible_folds_fail_loudly() -> None:
    groups = np.array(["a", "a", "b", "c"])
    with pytest.raises(LeakageError, match="patients"):
        check_disjoint(groups, np.array([0, 2]), np.array([1, 3]))
    with pytest.raises(EvaluationError, match="patients have class 1"):
        grouped_kfold([0, 0, 0, 1, 1], ["a", "b", "c", "d", "e"], folds=3)
    with pytest.raises(LeakageError):
        official_split(["train", "test"], ["p1", "p1"])


def test_cross_validation_engine_scores_every_sample_out_of_fold() -> None:
    X, y, groups = _toy(60)
    splits = grouped_kfold(y, groups, folds=5, repeats=2, seed=0)
    res = run_splits(X, y, groups, splits, lambda n, d: LogisticRegression(), protocol={"name": "t"})
    assert len(res.predictions) == 2 * len(y)
    summary = res.summary()
    assert summary["auc"]["n"] == 2 and summary["auc"]["mean"] == pytest.approx(0.9901, abs=2e-3)  # seeded
    assert len(res.per_fold) == 10


def test_official_split_keeps_the_dataset_split() -> None:
    sp = official_split(["train", "test", "TRAIN", "test"], ["a", "b", "c", "d"])
    assert isinstance(sp[0], Split)
    assert sp[0].train.tolist() == [0, 2] and sp[0].test.tolist() == [1, 3]


def test_gallery_explains_with_the_head_that_scored_the_lesion(tmp_path, monkeypatch) -> None:
    """Repeat 0's fitted heads are kept by the CV and reused by the gallery: they reproduce the out-of-fold scores."""
    from mammocadx.datasets.synthetic import load_synthetic
    from mammocadx.evaluate.explain_run import _fold_models
    from mammocadx.evaluate.run import evaluate
    from mammocadx.model.cadx import CADx

    monkeypatch.setenv("MAMMOCADX_CACHE_DIR", str(tmp_path / "cache"))
    records = load_synthetic(tmp_path / "syn", n_patients=10, seed=5, size=256)
    ev = evaluate(CADx.paper(n_components=6), records, protocol="kfold", folds=3, repeats=2, seed=0)
    assert sorted(ev.result.heads) == [(0, 0), (0, 1), (0, 2)]  # repeat 0 only
    models = _fold_models(ev, {0, 1, 2})
    for f, cadx in models.items():
        assert cadx.head_ is ev.result.heads[(0, f)]
        rows = [p for p in ev.result.predictions if p.repeat == 0 and p.fold == f]
        scores = cadx.head_.decision_function(ev.features.X[[p.index for p in rows]])
        np.testing.assert_allclose(scores, [p.score for p in rows], rtol=1e-12, atol=1e-12)
    # an evaluation without kept heads (made elsewhere) is refitted to the same scores
    ev.result.heads.clear()
    refit = _fold_models(ev, {1})[1]
    rows = [p for p in ev.result.predictions if p.repeat == 0 and p.fold == 1]
    np.testing.assert_allclose(refit.head_.decision_function(ev.features.X[[p.index for p in rows]]),
                               [p.score for p in rows], rtol=1e-9, atol=1e-9)
