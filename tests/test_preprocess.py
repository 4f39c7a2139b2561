"""Sine pseudocolour (paper eqs. 1-4) and ROI cutting."""
from __future__ import annotations

import numpy as np
import pytest

from mammocadx.datasets.records import Roi
from mammocadx.errors import RoiError
from mammocadx.preprocess.pseudocolor import pseudocolor, sine_pseudocolor
from mammocadx.preprocess.roi import RoiConfig, extract_roi, roi_square


def test_sine_matches_equations_1_to_4() -> None:
    levels = np.array([0, 1, 64, 127, 200, 255], dtype=np.uint8)
    rgb = sine_pseudocolor(levels)
    i = levels.astype(float) / 255
    expected = np.stack([np.abs(np.sin(2 * np.pi * (i + np.pi / 2))),
                         np.abs(np.sin(2 * np.pi * (i + np.pi / 4))),
                         np.abs(np.sin(2 * np.pi * (i + np.pi / 6)))], axis=-1)
    np.testing.assert_allclose(rgb, expected, atol=1e-6)
    assert rgb.dtype == np.float32 and rgb.shape == (6, 3)


def test_sine_folds_black_onto_white() -> None:
    """Each channel has period 127.5 grey levels: I=0 and I=255 get the same colour."""
    rgb = sine_pseudocolor(np.array([0, 255], dtype=np.uint8))
    np.testing.assert_allclose(rgb[0], rgb[1], atol=1e-6)
    grey = pseudocolor(np.array([0, 255], dtype=np.uint8), "grey")
    assert grey[0].tolist() == [0, 0, 0] and grey[1].tolist() == [1, 1, 1]


def test_pseudocolor_refuses_unwindowed_input_and_unknown_modes() -> None:
    with pytest.raises(TypeError, match="8-bit"):
        sine_pseudocolor(np.zeros((2, 2), np.float32))
    with pytest.raises(ValueError, match="unknown pseudocolour"):
        pseudocolor(np.zeros((2, 2), np.uint8), "jet")


def test_circle_roi_is_centred_with_context_and_resized() -> None:
    img = np.zeros((200, 300), np.float32)
    img[90:111, 140:161] = 1.0  # a 21x21 bright square centred at (150, 100)
    out = extract_roi(img, Roi(circle=(150, 100, 10)), RoiConfig(size=64, context=2.0, min_side=8))
    assert out.shape == (64, 64) and out.dtype == np.float32
    # crop side 40 px around the lesion: the bright square fills the middle ~half.
    assert out[32, 32] == pytest.approx(1.0, abs=1e-3)
    assert out[2, 2] == pytest.approx(0.0, abs=1e-3)
    assert 0.2 < out.mean() < 0.35


def test_roi_at_the_border_is_zero_padded() -> None:
    img = np.ones((100, 100), np.float32)
    out = extract_roi(img, Roi(box=(0, 0, 20, 20)), RoiConfig(size=40, context=2.0, min_side=8))
    # square of side 40 centred on (10, 10): columns and rows -10..-1 lie outside the image.
    assert out[:9, :].max() < 0.05 and out[:, :9].max() < 0.05 and out[11:, 11:].min() > 0.95


def test_roi_outside_the_image_names_the_file(tmp_path) -> None:
    with pytest.raises(RoiError, match="outside"):
        extract_roi(np.zeros((50, 50), np.float32), Roi(circle=(80, 10, 5)), source=tmp_path / "x.png")


def test_whole_breast_mode_uses_the_mask_bounding_box() -> None:
    img = np.zeros((100, 100), np.float32)
    mask = np.zeros((100, 100), bool)
    mask[20:60, 0:30] = True
    cx, cy, side = roi_square(Roi(), img.shape, RoiConfig(size=32), mask)
    assert (cx, cy, side) == (15.0, 40.0, 40.0)


def test_roi_rejects_malformed_shapes() -> None:
    with pytest.raises(ValueError):
        Roi(circle=(1, 2, 0))
    with pytest.raises(ValueError):
        Roi(circle=(1, 2, 3), box=(1, 2, 3, 4))
