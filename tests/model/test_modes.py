"""The mode registry (model.modes): every registered mode fits, saves, loads, predicts and explains.

A stand-in extractor (pooled ROI intensities, no CNN) keeps this fast: what is tested is the plumbing
of each mode (config -> featurizer -> head -> model folder -> prediction -> head gradient), not the CNN.
"""
from __future__ import annotations

import numpy as np
import pytest

from mammocadx.model.modes import KINDS, MODES, ModeSpec, describe
from mammocadx.records import LesionRecord, Roi


class PooledExtractor:
    """Features = 4x4-pooled means of each colour channel of the ROI (48 numbers), no network."""

    input_size = 32
    cache = None
    weights_sha256 = None

    def transform(self, rgb: np.ndarray) -> np.ndarray:
        rgb = np.asarray(rgb, np.float32)
        n = rgb.shape[0]
        return rgb.reshape(n, 4, 8, 4, 8, 3).mean(axis=(2, 4)).reshape(n, -1)


def _with_stand_in(cadx):
    cadx.featurizer._extractor = PooledExtractor()
    return cadx


def test_registry_declares_every_mode_with_a_known_kind():
    assert {"paper", "best"} <= set(MODES)
    assert MODES["best"].features["pseudocolor"] == "grey"
    assert describe("paper")["head"] == "paper-svc" and describe("paper")["kind"] == "features+head"
    assert all(spec.kind in KINDS for spec in MODES.values())
    from mammocadx.errors import ConfigError

    with pytest.raises(ConfigError, match="model kind"):
        ModeSpec("x", "a mode of an unknown kind", kind="no-such-kind")


@pytest.mark.parametrize("mode", sorted(m for m, spec in MODES.items() if spec.kind == "features+head"))
def test_every_mode_fits_saves_loads_predicts_and_explains(mode, cohort, tmp_path):
    """Every frozen-feature mode (the fine-tuned kind: tests/model/test_finetune.py, same cohort)."""
    from mammocadx.explain.head_gradient import decision_and_gradient
    from mammocadx.model.cadx import CADx
    from mammocadx.model.heads import HEADS

    cadx = _with_stand_in(CADx.from_mode(mode)).fit(cohort, seed=0)
    assert cadx.kind == "features+head"
    card_head = cadx.card["config"]["head"]
    assert set(card_head) == set(HEADS[MODES[mode].head].takes)  # the card lists what the head takes
    assert HEADS[MODES[mode].head].score in cadx.card["limitations"]
    folder = cadx.save(tmp_path / "model")
    loaded = _with_stand_in(CADx.load(folder))
    assert loaded.config == cadx.config and loaded.threshold == cadx.threshold
    for r in cohort[:4]:
        a = cadx.predict(r.image_path, r.roi)
        b = loaded.predict(r.image_path, r.roi)
        assert a.score == pytest.approx(b.score, abs=1e-9) and a.label == b.label
        assert a.roi_grey.shape == (32, 32) and tuple(a.crop) == (32.0, 32.0, 32.0)  # 1.5 x 18 px, at least min_side
    fs = cadx.featurize(cohort)
    scores = cadx.decision_function(fs.X)
    assert np.mean((scores > cadx.threshold) == fs.y) >= 0.75  # the stand-in features separate the classes
    d, grad = decision_and_gradient(loaded.head_, fs.X[:3].astype(np.float64))
    np.testing.assert_allclose(d, loaded.decision_function(fs.X[:3]), rtol=1e-6, atol=1e-6)
    eps = 1e-3
    step = np.zeros_like(fs.X[:1], dtype=np.float64)
    step[0, 5] = eps
    fd = (loaded.head_.decision_function(fs.X[:1] + step) - loaded.head_.decision_function(fs.X[:1] - step)) / (2 * eps)
    assert grad[0, 5] == pytest.approx(float(fd[0]), rel=1e-3, abs=1e-5)


def test_featurizer_rois_are_the_grey_rois_the_features_come_from(cohort):
    from mammocadx.features.featurizer import LesionFeaturizer

    fz = LesionFeaturizer(pseudocolor="grey", roi_size=32)
    bad = LesionRecord(sample_id="bad", image_id="bad", image_path=cohort[0].image_path.parent / "missing.png",
                       patient_id="px", label=0, roi=Roi(circle=(1.0, 1.0, 1.0)))
    rs = fz.rois([*cohort[:3], bad])
    assert rs.X.shape == (3, 32, 32) and rs.X.dtype == np.float32
    assert [r.sample_id for r in rs.records] == ["s0", "s1", "s2"]
    assert [r.sample_id for r, _ in rs.skipped] == ["bad"]
    fz._extractor = PooledExtractor()
    np.testing.assert_array_equal(fz.featurize(cohort[:3]).X, fz.transform_rois(rs.X))


def test_roi_geometry_crops_and_places_back():
    from mammocadx.preprocess.roi import RoiGeometry

    img = np.random.default_rng(0).random((50, 60)).astype(np.float32)
    geo = RoiGeometry(20.0, 25.0, 16.0)
    roi = geo.crop(img, 16)  # side == size: a pure copy
    np.testing.assert_array_equal(roi, img[17:33, 12:28])
    back = geo.place(roi, img.shape, fill=np.nan)
    np.testing.assert_array_equal(back[17:33, 12:28], roi)
    assert np.isnan(back[0, 0]) and geo.box() == (12, 17, 16)
