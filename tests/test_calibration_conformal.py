"""Calibration, operating points, conformal abstention and their evaluation (issue 16), on synthetic data."""
from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.special import expit
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_curve
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from mammocadx.errors import LeakageError, ModelError
from mammocadx.evaluate.bootstrap import bootstrap_ci, patient_weights, weighted_auc, fast_auc
from mammocadx.evaluate.crossval import inner_oof_scores, run_splits
from mammocadx.evaluate.leakage import forbidden_rows
from mammocadx.evaluate.operating_points import (brier_score, expected_calibration_error, operating_points,
                                                 weighted_operating_points)
from mammocadx.evaluate.splits import grouped_kfold
from mammocadx.model.calibrate import (IsotonicCalibrator, PlattCalibrator, brier, calibrator_from_dict,
                                       choose_calibrator)
from mammocadx.model.conformal import SplitConformal, conformal_quantile
from mammocadx.model.operating_point import parse_operating_point, threshold_for


def _overconfident(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Decision values 4x too steep: true P(malignant | f) = sigmoid(f / 4 - 0.5)."""
    z = rng.normal(0, 2, n)
    y = (rng.random(n) < expit(z - 0.5)).astype(int)
    return 4 * z, y


# ----------------------------------------------------------------------------- calibrators
def test_platt_recovers_the_true_map_and_isotonic_is_monotone() -> None:
    rng = np.random.default_rng(0)
    f, y = _overconfident(20000, rng)
    platt = PlattCalibrator().fit(f, y)
    assert platt.a_ == pytest.approx(0.25, abs=0.02) and platt.b_ == pytest.approx(-0.5, abs=0.06)
    iso = IsotonicCalibrator().fit(f, y)
    grid = np.linspace(-30, 30, 200)
    assert np.all(np.diff(iso.predict_proba(grid)) >= 0)
    assert np.all((iso.predict_proba(grid) >= 0) & (iso.predict_proba(grid) <= 1))


def test_calibration_improves_held_out_brier_and_round_trips_as_json() -> None:
    rng = np.random.default_rng(1)
    f_tr, y_tr = _overconfident(300, rng)
    f_te, y_te = _overconfident(3000, rng)
    cal, rec = choose_calibrator(f_tr, y_tr, groups=np.arange(300) // 2, seed=0)
    raw = brier(expit(f_te), y_te)
    calibrated = brier(cal.predict_proba(f_te), y_te)
    assert rec["chosen"] in ("platt", "isotonic") and set(rec["scores"]) == {"platt", "isotonic"}
    assert calibrated < raw - 0.01  # raw sigmoid of a 4x too steep score is overconfident
    truth = brier(expit(f_te / 4 - 0.5), y_te)
    assert calibrated < truth + 0.01  # and close to the best possible
    for c in (cal, PlattCalibrator().fit(f_tr, y_tr), IsotonicCalibrator().fit(f_tr, y_tr)):
        back = calibrator_from_dict(json.loads(json.dumps(c.to_dict())))
        assert np.array_equal(back.predict_proba(f_te), c.predict_proba(f_te))
    with pytest.raises(ModelError):
        calibrator_from_dict({"kind": "pickle"})
    with pytest.raises(ModelError):
        PlattCalibrator().fit([1.0, 2.0], [1, 1])


# ----------------------------------------------------------------------------- operating points
def test_threshold_for_meets_the_target_at_the_best_other_rate() -> None:
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 400)
    s = y * 1.2 + rng.normal(size=400)
    for target in (0.8, 0.9, 0.95):
        t = threshold_for(s, y, sensitivity=target)
        assert np.mean(s[y == 1] > t) >= target
        nxt = s[s > t].min()  # one step higher misses the target
        assert np.mean(s[y == 1] > nxt) < target
        t = threshold_for(s, y, specificity=target)
        assert np.mean(s[y == 0] <= t) >= target
        assert np.mean(s[y == 0] <= s[s <= t].max() - 1e-12) < target if np.any(s <= t) else True
    # the ROC read-off agrees with scikit-learn's curve
    fpr, tpr, _ = roc_curve(y, s)
    op = operating_points(s, y)
    assert op["sensitivity_at_specificity_0.90"] == pytest.approx(tpr[fpr <= 0.1 + 1e-12].max())
    assert op["specificity_at_sensitivity_0.95"] == pytest.approx(1 - fpr[tpr >= 0.95 - 1e-12].min())
    assert parse_operating_point("sensitivity=0.90") == {"sensitivity": 0.9}
    assert parse_operating_point("spec=95%") == {"specificity": 0.95}
    for bad in ("sensitivity", "ppv=0.9", "sens=1.5x"):
        with pytest.raises(ModelError):
            parse_operating_point(bad)
    with pytest.raises(ModelError):
        threshold_for(s, y, sensitivity=0.9, specificity=0.9)


def test_weighted_metrics_equal_metrics_of_the_resampled_set() -> None:
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 60)
    s = y + rng.normal(size=60)
    s[5] = s[6]  # a tie
    groups = np.arange(60) // 2
    w = patient_weights(groups, n_boot=5, seed=4)
    for b in range(5):
        rows = np.repeat(np.arange(60), w[b].astype(int))
        assert weighted_operating_points(y, s, w[b:b + 1])[0] == pytest.approx(
            list(operating_points(s[rows], y[rows]).values()), nan_ok=True)
        assert weighted_auc(y, s, w[b:b + 1])[0] == pytest.approx(fast_auc(y[rows], s[rows]))


def test_brier_and_ece_on_known_cases() -> None:
    rng = np.random.default_rng(5)
    p = rng.random(20000)
    y = (rng.random(20000) < p).astype(int)
    assert expected_calibration_error(p, y) < 0.02  # calibrated by construction
    assert expected_calibration_error(p, y, strategy="uniform") < 0.02
    y3 = np.array([1] * 30 + [0] * 70)
    assert expected_calibration_error(np.full(100, 0.5), y3) == pytest.approx(0.2)
    assert brier_score(np.full(100, 0.5), y3) == pytest.approx(0.25)
    assert brier_score(y3.astype(float), y3) == 0.0


# ----------------------------------------------------------------------------- conformal
@pytest.mark.parametrize("mondrian", [True, False])
def test_conformal_coverage_holds_within_sampling_error(mondrian: bool) -> None:
    rng = np.random.default_rng(6)
    alpha, n_cal, n_test, trials = 0.1, 200, 400, 200
    cov, cov1 = [], []
    for _ in range(trials):
        z = rng.normal(0, 1.5, n_cal + n_test)
        y = (rng.random(len(z)) < expit(z)).astype(int)
        p = expit(z)
        c = SplitConformal(alpha, mondrian=mondrian).fit(p[:n_cal], y[:n_cal])
        sets = c.predict_set(p[n_cal:])
        hit = sets[np.arange(n_test), y[n_cal:]]
        cov.append(hit.mean())
        cov1.append(hit[y[n_cal:] == 1].mean())
    # E[coverage] is in [1 - alpha, 1 - alpha + 1/(n+1)] (per class for Mondrian); the mean of 200
    # trials has a standard error of about 0.002.
    assert 1 - alpha - 0.01 <= np.mean(cov) <= 1 - alpha + 2 / n_cal + 0.01
    if mondrian:
        assert 1 - alpha - 0.015 <= np.mean(cov1) <= 1 - alpha + 2 / (n_cal / 2) + 0.015
    back = SplitConformal.from_dict(json.loads(json.dumps(c.to_dict())))
    assert np.array_equal(back.predict(p[n_cal:]), c.predict(p[n_cal:]))


def test_conformal_quantile_and_calls() -> None:
    assert conformal_quantile(np.arange(1, 10), 0.1) == 9  # ceil(10 * 0.9) = 9th smallest
    assert conformal_quantile(np.arange(1, 5), 0.1) == np.inf  # too few: keep every label
    c = SplitConformal(0.2).fit(np.array([0.1, 0.2, 0.3, 0.6, 0.7, 0.9, 0.8, 0.4]), np.array([0, 0, 0, 0, 1, 1, 1, 1]))
    calls = c.predict(np.array([0.01, 0.99, 0.5]))
    assert calls[0] == 0 and calls[1] == 1 and calls[2] == -1


# ----------------------------------------------------------------------------- wired into CV
def _head(n: int, d: int):
    return make_pipeline(StandardScaler(), LogisticRegression(C=1e4, max_iter=2000))


def _cohort(seed: int = 0):
    from pathlib import Path

    from mammocadx.records import LesionRecord, Roi

    rng = np.random.default_rng(seed)
    recs, X, y = [], [], []
    for p in range(90):
        for side in "LR":
            if rng.random() < 0.5:
                continue
            lab = int(rng.random() < 0.4)
            centre = rng.normal(size=8) * 0.3 + lab * 0.6
            for view in ("CC", "MLO"):
                recs.append(LesionRecord(f"{p}{side}{view}", f"{p}{side}{view}", Path("x.png"), f"P{p}", lab,
                                         Roi(circle=(10.0, 10.0, float(rng.uniform(5, 50)))), side, view,
                                         extra={"tissue": "FGD"[p % 3]}))
                X.append(np.concatenate([centre + rng.normal(size=8), rng.normal(size=22)]))  # 22 noise features
                y.append(lab)
    return np.array(X), np.array(y), np.array([r.patient_id for r in recs]), recs


def test_operating_point_and_calibration_use_training_rows_only() -> None:
    X, y, g, _ = _cohort()
    sp = grouped_kfold(y, g, folds=5, repeats=1, seed=0)[0]
    oof = inner_oof_scores(X, y, g, sp.train, _head, folds=5, seed=0)
    assert oof.shape == (len(sp.train),) and np.all(np.isfinite(oof))
    # Anything done to the test rows leaves the training rows' scores, hence thresholds and calibrators, unchanged.
    X2 = X.copy()
    X2[sp.test] = np.random.default_rng(9).normal(size=(len(sp.test), X.shape[1])) * 50
    oof2 = inner_oof_scores(X2, y, g, sp.train, _head, folds=5, seed=0)
    assert np.array_equal(oof, oof2)
    assert threshold_for(oof, y[sp.train], sensitivity=0.9) == threshold_for(oof2, y[sp.train], sensitivity=0.9)
    # and an inner fit that is handed a test row is refused
    with pytest.raises(LeakageError):
        inner_oof_scores(X, y, g, np.concatenate([sp.train, sp.test[:1]]), _head, folds=5,
                         forbidden=forbidden_rows(X, sp.train, sp.test))


def test_posthoc_metrics_on_a_synthetic_cohort(tmp_path) -> None:
    from mammocadx.evaluate.calibration_report import (breast_key, posthoc_html, posthoc_metrics, posthoc_text,
                                                       write_posthoc_figures)

    X, y, g, recs = _cohort()
    splits = grouped_kfold(y, g, folds=5, repeats=2, seed=0)
    res = run_splits(X, y, g, splits, _head, 0.0, inner_oof_folds=5, n_jobs=1)
    assert len(res.inner_oof) == 10
    for (r, f), (train, _) in res.inner_oof.items():  # the training rows, never the fold's test rows
        test = next(sp.test for sp in splits if (sp.repeat, sp.fold) == (r, f))
        assert not set(train) & set(test)
    m, post = posthoc_metrics(res, y, g, recs, seed=0, n_boot=300)
    S = post.score
    raw_brier = np.mean([brier(expit(s), y) for s in S])
    assert m["calibration"]["brier"]["value"] < raw_brier  # overconfident raw logits, calibrated out of fold
    lo, hi = m["calibration"]["brier"]["ci95"]
    assert lo <= m["calibration"]["brier"]["value"] <= hi
    assert set(m["operating_points"]) == {"sensitivity_at_specificity_0.80", "sensitivity_at_specificity_0.90",
                                          "sensitivity_at_specificity_0.95", "specificity_at_sensitivity_0.90",
                                          "specificity_at_sensitivity_0.95"}
    fx = m["operating_points_fixed"]["target_sensitivity_0.90"]["sensitivity"]["value"]
    assert 0.75 < fx <= 1.0  # a threshold set in training for 0.90 lands near 0.90 on the test folds
    b = m["breast_level"]
    assert b["n_breasts"] == len({breast_key(r) for r in recs}) == len(recs) // 2
    assert b["chosen"]["auc"]["value"] > b["lesion"]["auc"]["value"]  # two noisy views of one breast average out
    a10 = m["abstention"]["alpha_0.10"]
    # at least the target (inner-fold models are a little worse than the fold's model: conservative)
    assert a10["coverage"]["value"] >= 0.9 - 0.05
    assert m["abstention"]["alpha_0.30"]["fraction_abstained"]["value"] < a10["fraction_abstained"]["value"]
    assert set(m["subgroups"]) >= {"tissue", "view", "size"}
    assert m["subgroups"]["view"]["CC"]["n"] == len(recs) // 2
    assert json.dumps(m, default=float)  # serialisable
    assert "Brier" in posthoc_html(m) and "brier" in posthoc_text(m)
    sel = m["abstention"]["selective_curve"]
    assert sel["accuracy_on_called"][-1] >= sel["accuracy_on_called"][0]  # confident lesions are called more accurately
    assert write_posthoc_figures(json.loads(json.dumps(m, default=float)), tmp_path) == ["reliability.png",
                                                                                        "abstention.png"]
    assert (tmp_path / "reliability.png").stat().st_size > 1000
    # the headline bootstrap and these intervals share replicates
    assert np.array_equal(patient_weights(g[post.index], 10, 0), patient_weights(g[post.index], 10, 0))
    assert bootstrap_ci(y, S, (S > 0).astype(int), g, n_boot=50)["auc"][0] <= m["breast_level"]["lesion"]["auc"]["value"]


def test_breast_key_uses_lesion_id_then_side_exam_and_abnormality(tmp_path) -> None:
    from pathlib import Path

    from mammocadx.datasets.manifest import load_manifest
    from mammocadx.records import LesionRecord
    from mammocadx.evaluate.calibration_report import breast_key

    r = LesionRecord("a", "a", Path("a"), "P1", 1, laterality="L", view="CC", extra={"abnormality_id": 2})
    assert breast_key(r) == "P1|L|abn 2"
    assert breast_key(LesionRecord("a", "a", Path("a"), "P1", 1, laterality="L")) == "P1|L"
    assert breast_key(LesionRecord("a", "img7", Path("a"), "P1", 1)) == "P1|image|img7"
    (tmp_path / "a.png").write_bytes(b"x")
    (tmp_path / "b.png").write_bytes(b"x")
    (tmp_path / "manifest.csv").write_text("path,label,patient_id,laterality,view,lesion_id,exam_id\n"
                                           "a.png,M,P1,L,CC,les1,e1\nb.png,M,P1,L,MLO,les1,e1\n")
    recs = load_manifest(tmp_path)
    assert {breast_key(x) for x in recs} == {"P1|lesion|les1"}


def test_answer_layer_fits_on_inner_oof_scores_and_round_trips() -> None:
    from mammocadx.model.answers import AnswerLayer
    from mammocadx.model.calibrate import inner_oof_scores as model_oof

    X, y, g, _ = _cohort(1)
    oof = model_oof(X, y, g, _head, folds=5, seed=0)
    layer = AnswerLayer.fit(oof, y, g, operating_point="sensitivity=0.90", alpha=0.1)
    assert layer.threshold == threshold_for(oof, y, sensitivity=0.9)
    assert layer.record["training_rates_at_threshold"]["sensitivity"] >= 0.9
    head = _head(len(y), X.shape[1]).fit(X, y)
    ans = layer.answer(head.decision_function(X[:5]))
    assert [a["label"] for a in ans] == ["malignant" if s > layer.threshold else "benign"
                                         for s in head.decision_function(X[:5])]
    assert all(0 <= a["probability"] <= 1 and a["uncertain"] == (len(a["conformal_set"]) != 1) for a in ans)
    back = AnswerLayer.from_dict(json.loads(json.dumps(layer.to_dict())))
    assert back.answer([0.3, -2.0]) == layer.answer([0.3, -2.0])
    assert AnswerLayer.fit(oof, y, g).threshold is None


def test_breast_fusion_rule_is_chosen_on_training_rows() -> None:
    from mammocadx.model.answers import choose_fusion, fuse

    assert fuse([0.2, 0.6]) == pytest.approx(0.4) and fuse([0.2, 0.6], "max") == 0.6
    # one view of each malignant breast is informative, the other is noise: max recovers them, mean dilutes
    rng = np.random.default_rng(0)
    keys = np.repeat(np.arange(100), 2)
    yb = rng.integers(0, 2, 100)
    p = rng.uniform(0.0, 0.5, 200)
    p[::2] += 0.45 * yb
    assert choose_fusion(p, np.repeat(yb, 2), keys) == "max"
    assert choose_fusion(np.repeat(yb * 0.5 + rng.uniform(0, 0.4, 100), 2), np.repeat(yb, 2), keys) == "mean"


def test_paper_head_factory_pickles_without_the_backbone() -> None:
    # CV workers receive the factory; a closure over the CADx would drag its ONNX session along (unpicklable)
    import pickle

    from mammocadx.model.cadx import CADx

    cadx = CADx.paper()
    cadx.__dict__["_extractor_sentinel"] = lambda: None  # an unpicklable attribute on the CADx itself
    factory = pickle.loads(pickle.dumps(cadx.head_factory()))
    assert hasattr(factory(50, 10), "fit")
