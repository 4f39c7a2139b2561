"""Out-of-distribution guard (issue 16): feature distance, image size, bit depth and ROI size, on synthetic data."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.covariance import LedoitWolf

from mammocadx.errors import ModelError
from mammocadx.model.ood import OODGuard, image_roughness


def _features(n: int, mix: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return np.maximum(rng.normal(size=(n, mix.shape[0])) @ mix, 0.0) + 0.1  # ReLU-like pooled features


@pytest.fixture(scope="module")
def fitted() -> tuple[OODGuard, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    d = 64
    mix = rng.normal(size=(d, d)) * rng.uniform(0.05, 1.0, d)[:, None]
    X = _features(600, mix, rng)
    guard = OODGuard(quantile=0.99).fit(X, image_shapes=[(1024, 1024)] * 600, bit_depths=[8] * 600,
                                        roi_areas=rng.uniform(20, 200, 600) ** 2, groups=np.arange(600) // 2,
                                        roughness=rng.uniform(0.008, 0.035, 600))
    return guard, mix, X


def test_in_distribution_rows_are_rarely_flagged_and_shifted_ones_always(fitted) -> None:
    guard, mix, X = fitted
    rng = np.random.default_rng(1)
    fresh = _features(2000, mix, rng)
    false_alarm = np.mean(guard.distance(fresh) > guard.threshold_)
    assert false_alarm < 0.03  # threshold at the 99th percentile of out-of-fold training distances
    shifted = fresh[:200] + 3 * X.std(axis=0)
    assert np.all(guard.distance(shifted) > guard.threshold_)
    noise = rng.random((200, X.shape[1])) * X.max()  # "features of a noise image": unstructured
    assert np.mean(guard.distance(noise) > guard.threshold_) > 0.95
    assert guard.check(fresh[0], image_shape=(1024, 1024), bit_depth=8, roi_area=100.0 ** 2) == [] or \
        guard.distance(fresh[:1])[0] > guard.threshold_


def test_distance_is_ledoit_wolf_mahalanobis(fitted) -> None:
    guard, _, X = fitted
    lw = LedoitWolf().fit(X)
    probe = X[:20] * 1.3
    assert np.allclose(guard.distance(probe), np.sqrt(lw.mahalanobis(probe)))


def test_image_bit_depth_and_roi_checks_name_the_reason(fitted) -> None:
    guard, _, X = fitted
    reasons = guard.check(image_shape=(1, 1), bit_depth=16, roi_area=1.0)
    assert len(reasons) == 3
    assert "image long side 1 px" in reasons[0] and "16-bit" in reasons[1] and "ROI side 1 px" in reasons[2]
    assert any("4500 px" in r for r in guard.check(image_shape=(4500, 3500)))
    assert guard.check(image_shape=(800, 800), bit_depth=8, roi_area=150.0 ** 2) == []
    assert any("non-finite" in r for r in guard.check(np.full(X.shape[1], np.nan)))
    with pytest.raises(ModelError):
        guard.check(np.zeros(3))


def test_a_noise_or_blank_image_is_flagged_by_its_texture(fitted) -> None:
    guard, _, _ = fitted
    rng = np.random.default_rng(2)
    yy, xx = np.mgrid[0:512, 0:512]
    breast = np.clip(255 * np.exp(-((xx - 100) ** 2 + (yy - 256) ** 2) / 2e4), 0, 255)  # smooth, like a film
    breast += rng.normal(0, 2, breast.shape)  # a little grain
    assert 0.005 < image_roughness(breast) < 0.05
    assert image_roughness(rng.integers(0, 256, (512, 512))) == pytest.approx(1.15, abs=0.05)
    assert image_roughness(np.zeros((8, 8))) == 0.0 and image_roughness(np.ones(5)) == 0.0
    assert guard.check(roughness=image_roughness(breast)) == []
    assert "noise-like" in guard.check(roughness=image_roughness(rng.integers(0, 256, (512, 512, 3))))[0]
    assert "blank" in guard.check(roughness=0.0)[0]


def test_state_round_trips_through_plain_values_and_arrays(fitted) -> None:
    guard, _, X = fitted
    state = guard.to_dict()
    assert all(isinstance(v, (int, float, str, list, type(None), np.ndarray)) for v in state.values())
    back = OODGuard.from_dict(state)
    assert np.array_equal(back.distance(X[:50] * 2), guard.distance(X[:50] * 2))
    assert back.check(image_shape=(1, 1), roughness=1.0) == guard.check(image_shape=(1, 1), roughness=1.0)
    lists = {k: v.tolist() if isinstance(v, np.ndarray) else v for k, v in state.items()}
    assert np.allclose(OODGuard.from_dict(lists).distance(X[:5]), guard.distance(X[:5]))
    with pytest.raises(ModelError):
        OODGuard.from_dict({**state, "w": np.ones(3)})
