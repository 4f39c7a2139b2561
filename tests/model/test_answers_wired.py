"""A trained model's answers (issue 16): train -> fit_answers -> save -> load -> predict on tiny synthetic data.

The stand-in extractor of test_modes (pooled ROI intensities, no CNN) keeps it fast; the images are smooth
(blurred backgrounds, like mammograms at the pixel scale) so that a random-noise image is out of distribution.
"""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from mammocadx.records import LesionRecord, Roi
from tests.model.conftest import write_cohort
from tests.model.test_modes import _with_stand_in


@pytest.fixture(scope="module")
def smooth_cohort(tmp_path_factory) -> list[LesionRecord]:
    """40 smooth 64 px images, one lesion each (20 patients per class); malignant lesions brighter, overlapping."""
    return write_cohort(tmp_path_factory.mktemp("smooth"), n=40, seed=1, smooth=True)


@pytest.fixture(scope="module")
def trained(smooth_cohort, tmp_path_factory):
    from mammocadx.model.cadx import CADx

    cadx = _with_stand_in(CADx.from_mode("paper"))
    fs = cadx.featurize(smooth_cohort)
    cadx.fit_features(fs, seed=0).fit_answers(fs, operating_point="sensitivity=0.90", seed=0)
    folder = cadx.save(tmp_path_factory.mktemp("m") / "model")
    return cadx, fs, _with_stand_in(CADx.load(folder))


def test_probability_survives_save_and_load_and_is_monotone(trained, smooth_cohort):
    cadx, fs, loaded = trained
    assert loaded.answers_ is not None and loaded.ood_ is not None
    preds = [loaded.predict(r.image_path, r.roi) for r in smooth_cohort]
    for r, p in zip(smooth_cohort[:5], preds):
        a = cadx.predict(r.image_path, r.roi)
        assert p.probability == pytest.approx(a.probability, abs=1e-12) and p.answer == a.answer
    probs = np.array([p.probability for p in preds])
    scores = np.array([p.score for p in preds])
    assert np.all((probs >= 0) & (probs <= 1))
    order = np.argsort(scores)
    assert np.all(np.diff(probs[order]) >= -1e-12)  # calibrated probability is monotone in the score
    grid = np.linspace(scores.min() - 1, scores.max() + 1, 200)
    assert np.all(np.diff(loaded.answers_.probability(grid)) >= -1e-12)
    assert all(p.answer in ("benign", "malignant", "uncertain") for p in preds)
    assert all(p.answer == "uncertain" or p.answer == p.label for p in preds)
    d = preds[0].to_dict()
    assert {"probability", "answer", "ood", "ood_reasons", "conformal_set"} <= set(d)


def test_operating_point_threshold_comes_from_inner_oof_scores_of_training_rows(trained, smooth_cohort):
    from mammocadx.model.calibrate import inner_oof_scores
    from mammocadx.model.operating_point import threshold_for

    cadx, fs, loaded = trained
    oof = inner_oof_scores(fs.X, fs.y, fs.groups, cadx.head_factory(), folds=5, seed=0)
    expected = threshold_for(oof, fs.y, sensitivity=0.90)
    assert cadx.threshold == pytest.approx(expected) and loaded.threshold == pytest.approx(expected)
    op = loaded.card["operating_point"]
    assert op["target"] == {"sensitivity": 0.9} and op["threshold"] == pytest.approx(expected)
    assert op["sensitivity"] >= 0.9 and "training" in op["set_on"]
    assert loaded.card["answers"]["n_rows"] == len(smooth_cohort)
    # By construction only the rows given are used: training on a subset gives that subset's threshold.
    from mammocadx.model.cadx import CADx

    sub = _with_stand_in(CADx.from_mode("paper"))
    fs_sub = sub.featurize(smooth_cohort[:30])
    sub.fit_features(fs_sub).fit_answers(fs_sub, operating_point="specificity=0.90")
    oof_sub = inner_oof_scores(fs_sub.X, fs_sub.y, fs_sub.groups, sub.head_factory(), folds=5, seed=0)
    assert sub.threshold == pytest.approx(threshold_for(oof_sub, fs_sub.y, specificity=0.90))
    with pytest.raises(Exception, match="rows the model was fitted on"):
        sub.fit_answers(fs)


def test_noise_image_is_out_of_distribution(trained, smooth_cohort, tmp_path):
    _, _, loaded = trained
    noise = tmp_path / "noise.png"
    cv2.imwrite(str(noise), (np.random.default_rng(0).random((64, 64)) * 255).astype(np.uint8))
    p = loaded.predict(noise, Roi(circle=(32.0, 32.0, 9.0)))
    assert p.ood is True and any("noise-like" in r for r in p.ood_reasons)
    inside = [loaded.predict(r.image_path, r.roi) for r in smooth_cohort[:6]]
    assert not any("noise-like" in r for q in inside for r in q.ood_reasons)
    big = loaded.predict(smooth_cohort[0].image_path, Roi(circle=(32.0, 32.0, 30.0)))
    assert any("ROI side" in r for r in big.ood_reasons)


def test_model_saved_without_answers_still_loads_and_predicts(smooth_cohort, tmp_path):
    from mammocadx.model.cadx import CADx

    cadx = _with_stand_in(CADx.from_mode("paper")).fit(smooth_cohort[:20], seed=0)
    loaded = _with_stand_in(CADx.load(cadx.save(tmp_path / "old")))
    p = loaded.predict(smooth_cohort[0].image_path, smooth_cohort[0].roi)
    assert p.probability is None and p.answer is None and p.ood is None and p.label in ("benign", "malignant")
    assert "answers" not in loaded.card


@pytest.mark.slow  # one fine-tuning (~40 s on 2 busy cores); the frozen kind above covers the rest
def test_finetuned_model_uses_its_held_out_inner_validation_scores(smooth_cohort, tmp_path):
    """No inner CV for a fine-tuned network (each fit fine-tunes): its inner-validation rows' scores are used."""
    pytest.importorskip("torch")
    from mammocadx.model.cadx import CADx
    from mammocadx.model.operating_point import threshold_for

    cadx = CADx.from_mode("finetune", input_size=64, epochs=1)
    fs = cadx.featurize(smooth_cohort)
    cadx.fit_features(fs, seed=0).fit_answers(fs, operating_point="sensitivity=0.90")
    head = cadx.head_
    rows = head.inner_split_[1]
    assert cadx.card["answers"]["n_rows"] == len(rows) < len(smooth_cohort)
    assert "inner-validation" in cadx.card["answers"]["scores"]
    assert cadx.threshold == pytest.approx(threshold_for(head.val_scores_, fs.y[rows], sensitivity=0.90))
    loaded = CADx.load(cadx.save(tmp_path / "ft"))
    assert loaded.threshold == pytest.approx(cadx.threshold) and loaded.ood_ is not None
    r = smooth_cohort[0]
    a, b = cadx.predict(r.image_path, r.roi), loaded.predict(r.image_path, r.roi)
    assert 0.0 <= b.probability <= 1.0 and b.probability == pytest.approx(a.probability, abs=1e-4)
    assert b.ood_reasons == a.ood_reasons or b.ood == a.ood
