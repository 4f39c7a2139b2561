"""Breast segmentation on a phantom with known masks: Dice, labels, pectoral, bad input, orientation."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest_segmentation import dice, make_phantom
from mammocadx.datasets.records import Roi
from mammocadx.errors import SegmentationError
from mammocadx.preprocess.breast import BreastSegmentation, segment_breast
from mammocadx.preprocess.enhance import enhance_clahe
from mammocadx.preprocess.orientation import (
    CANONICAL_SIDE,
    canonical_flip,
    chest_wall_side,
    flip_point,
    flip_roi,
)
from mammocadx.preprocess.roi import RoiConfig, extract_roi, roi_square


@pytest.mark.parametrize("side", ["left", "right"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_phantom_mlo_breast_and_pectoral_match_truth(side: str, seed: int) -> None:
    img, truth = make_phantom(size=512, side=side, view="MLO", seed=seed)
    seg = segment_breast(img, view="MLO")
    assert isinstance(seg, BreastSegmentation)
    assert seg.chest_wall_side == side
    assert dice(seg.breast, truth["breast"]) >= 0.97
    assert dice(seg.pectoral, truth["pectoral"]) >= 0.90
    assert seg.has_pectoral and seg.pectoral_line is not None
    # The burned-in label is removed, not part of the breast, and counted.
    assert not (seg.breast & truth["label"]).any()
    assert seg.removed_labels == 1 and seg.removed[truth["label"]].mean() > 0.9
    assert seg.breast.dtype == bool and seg.breast.shape == img.shape


@pytest.mark.parametrize("side", ["left", "right"])
def test_phantom_cc_has_no_pectoral_whether_view_is_given_or_not(side: str) -> None:
    img, truth = make_phantom(size=512, side=side, view="CC", seed=3)
    for view in ("CC", None):
        seg = segment_breast(img, view=view)
        assert not seg.pectoral.any() and seg.pectoral_line is None
        assert dice(seg.breast, truth["breast"]) >= 0.97


def test_view_unknown_still_finds_the_muscle_on_mlo() -> None:
    img, truth = make_phantom(size=512, side="right", view="MLO", seed=4)
    seg = segment_breast(img, view=None)
    assert dice(seg.pectoral, truth["pectoral"]) >= 0.90


def test_border_strip_touching_the_edge_is_removed_and_counted() -> None:
    img, truth = make_phantom(size=512, side="left", view="CC", label=False, seed=5)
    img[:, 490:500] = 0.97  # a scanner/film strip along the far edge
    img[0:6, 300:512] = 0.9  # and a bright band at the top joining it
    seg = segment_breast(img, view="CC")
    assert not seg.breast[:, 480:].any()
    assert seg.removed_borders >= 1
    assert dice(seg.breast, truth["breast"]) >= 0.97


def test_breast_mask_is_one_component_with_holes_filled() -> None:
    img, truth = make_phantom(size=512, side="left", view="CC", seed=6)
    img[240:260, 100:120] = 0.02  # a dark hole inside the breast (e.g. a fatty lobule far below threshold)
    seg = segment_breast(img, view="CC")
    n, _ = cv2.connectedComponents(seg.breast.astype(np.uint8), connectivity=8)
    assert n == 2  # background + one breast
    assert seg.breast[240:260, 100:120].all()


def test_threshold_is_reported_in_input_grey_units() -> None:
    img, _ = make_phantom(size=256, view="CC", seed=7)
    seg = segment_breast(img)
    assert 0.03 < seg.threshold < 0.3  # between the film background (0.03) and the tissue (>= 0.18)


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "pixels, words",
    [
        (np.zeros((256, 256), np.float32), "all black"),
        (np.ones((256, 256), np.float32), "all white"),
        (np.full((256, 256), 0.5, np.float32), "constant"),
        (np.random.default_rng(0).random((40, 300)).astype(np.float32), "too small"),
        (np.zeros((256, 256, 3), np.float32), "2-D"),
    ],
)
def test_bad_images_raise_a_segmentation_error_naming_the_file(pixels: np.ndarray, words: str) -> None:
    src = Path("/data/patient7/LEFT_MLO.png")
    with pytest.raises(SegmentationError) as info:
        segment_breast(pixels, source=src)
    assert words in str(info.value)
    assert "LEFT_MLO.png" in str(info.value) and info.value.stage == "segmentation"


def test_nan_and_bright_everywhere_images_are_refused() -> None:
    img, _ = make_phantom(size=128, view="CC")
    img[5, 5] = np.nan
    with pytest.raises(SegmentationError, match="NaN"):
        segment_breast(img)
    crop = np.clip(0.6 + 0.05 * np.random.default_rng(1).normal(size=(256, 256)), 0, 1).astype(np.float32)
    crop[:2, :2] = 0.0  # a lesion crop: bright nearly everywhere, no background
    with pytest.raises(SegmentationError, match="no background|no breast"):
        segment_breast(crop)


def test_speck_only_image_is_no_breast_not_an_empty_mask() -> None:
    img = np.zeros((256, 256), np.float32)
    img[100:103, 100:103] = 1.0
    with pytest.raises(SegmentationError, match="no breast"):
        segment_breast(img)


# ---------------------------------------------------------------- orientation


@pytest.mark.parametrize("side", ["left", "right"])
def test_chest_wall_side_and_canonical_flip(side: str) -> None:
    img, _ = make_phantom(size=256, side=side, view="MLO", seed=8)
    assert chest_wall_side(img) == side
    out, flipped = canonical_flip(img)
    assert flipped == (side != CANONICAL_SIDE) and CANONICAL_SIDE == "left"
    assert chest_wall_side(out) == "left"
    np.testing.assert_array_equal(out, img[:, ::-1] if flipped else img)


def test_laterality_breaks_ties_only() -> None:
    img = np.zeros((128, 128), np.float32)
    img[32:96, 32:96] = 0.6  # a symmetric square: no cue in the pixels
    assert chest_wall_side(img, laterality="R") == "right"
    assert chest_wall_side(img, laterality="L") == "left"
    clear, _ = make_phantom(size=256, side="left", view="CC")
    assert chest_wall_side(clear, laterality="R") == "left"  # pixels win over a wrong tag


def test_flip_point_and_circle_box_follow_the_pixels() -> None:
    width = 200
    img = np.zeros((100, width), np.float32)
    img[30:41, 50:71] = 1.0  # box x=50, y=30, w=21, h=11
    img[70, 20] = 0.5  # a point
    flipped = img[:, ::-1]
    fx, fy = flip_point(20, 70, width)
    assert flipped[int(fy), int(fx)] == 0.5
    box = flip_roi(Roi(box=(50, 30, 21, 11)), width).box
    x, y, w, h = (int(v) for v in box)
    assert flipped[y : y + h, x : x + w].all() and flipped.sum() - 0.5 == w * h
    circle = flip_roi(Roi(circle=(20, 70, 5)), width).circle
    assert circle == (fx, fy, 5)


@pytest.mark.parametrize("roi", [Roi(circle=(12.5, 40, 7)), Roi(box=(3, 4, 50, 9)), Roi()])
def test_flip_roi_round_trips(roi: Roi) -> None:
    assert flip_roi(flip_roi(roi, 321), 321) == roi


def test_flip_mask_roi_round_trips(tmp_path: Path) -> None:
    mask = np.zeros((64, 96), np.uint8)
    mask[10:20, 5:30] = 255
    src = tmp_path / "lesion_mask.png"
    cv2.imwrite(str(src), mask)
    once = flip_roi(Roi(mask_path=src), 96, mask_dir=tmp_path / "flipped")
    back = flip_roi(once, 96, mask_dir=tmp_path / "back")
    once_px = cv2.imread(str(once.mask_path), cv2.IMREAD_GRAYSCALE)
    back_px = cv2.imread(str(back.mask_path), cv2.IMREAD_GRAYSCALE)
    np.testing.assert_array_equal(once_px, mask[:, ::-1])
    np.testing.assert_array_equal(back_px, mask)
    assert back.mask_path.name == "lesion_mask.png"


def test_flip_mask_roi_needs_a_folder(tmp_path: Path) -> None:
    from mammocadx.errors import RoiError

    with pytest.raises(RoiError, match="mask_dir"):
        flip_roi(Roi(mask_path=tmp_path / "m.png"), 10)


def test_segmentation_agrees_with_flipped_image() -> None:
    img, _ = make_phantom(size=256, side="left", view="MLO", seed=9)
    a = segment_breast(img)
    b = segment_breast(np.ascontiguousarray(img[:, ::-1]))
    assert a.chest_wall_side == "left" and b.chest_wall_side == "right"
    assert dice(a.breast, b.breast[:, ::-1]) > 0.99
    assert dice(a.pectoral, b.pectoral[:, ::-1]) > 0.95


# ---------------------------------------------------------------- whole-breast ROI and CLAHE


def test_unannotated_image_is_cropped_to_the_breast() -> None:
    img, truth = make_phantom(size=512, side="right", view="CC", label=True, seed=10)
    seg = segment_breast(img, view="CC")
    cfg = RoiConfig(size=64)
    cx, cy, side = roi_square(Roi(), img.shape, cfg, seg.breast)
    ys, xs = np.nonzero(truth["breast"])
    assert abs(cx - (xs.min() + xs.max() + 1) / 2) < 4 and abs(cy - (ys.min() + ys.max() + 1) / 2) < 4
    assert abs(side - max(np.ptp(xs) + 1, np.ptp(ys) + 1)) < 6
    out = extract_roi(img, Roi(), cfg, breast_mask=seg.breast)
    # The crop is the breast (label and background outside the mask are zeroed), not the whole image.
    whole = extract_roi(img, Roi(), cfg)
    assert out.shape == (64, 64)
    assert (out > 0.1).mean() > 0.5 > (whole > 0.1).mean()
    assert out.max() < 0.9  # the 0.95 label did not survive


def test_clahe_raises_local_contrast_and_keeps_the_background() -> None:
    img, truth = make_phantom(size=256, view="CC", seed=11)
    mask = truth["breast"]
    out = enhance_clahe(img, clip_limit=0.02, breast_mask=mask)
    assert out.dtype == np.float32 and out.shape == img.shape
    assert 0.0 <= out.min() and out.max() <= 1.0
    assert out[mask].std() > 1.5 * img[mask].std()
    np.testing.assert_array_equal(out[~mask], img[~mask])
    with pytest.raises(ValueError):
        enhance_clahe(img, clip_limit=0.0)


# ---------------------------------------------------------------- CLI


def test_segment_command_writes_masks_and_lists_bad_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from mammocadx.cli import main

    img, truth = make_phantom(size=256, side="left", view="MLO", seed=12)
    good = tmp_path / "case1.png"
    cv2.imwrite(str(good), np.rint(img * 255).astype(np.uint8))
    black = tmp_path / "black.png"
    cv2.imwrite(str(black), np.zeros((128, 128), np.uint8))
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    out = tmp_path / "out"
    code = main(["segment", str(good), str(black), str(text), "--out", str(out), "--view", "mlo"])
    assert code == 1
    err = capsys.readouterr().err
    assert "black.png" in err and "all black" in err and "notes.png" in err
    breast = cv2.imread(str(out / "case1_breast.png"), cv2.IMREAD_GRAYSCALE) > 0
    pectoral = cv2.imread(str(out / "case1_pectoral.png"), cv2.IMREAD_GRAYSCALE) > 0
    overlay = cv2.imread(str(out / "case1_overlay.png"))
    assert dice(breast, truth["breast"]) >= 0.97 and dice(pectoral, truth["pectoral"]) >= 0.9
    assert overlay.shape == (256, 256, 3)
    facts = json.loads((out / "segment.json").read_text())
    assert len(facts["segmented"]) == 1 and len(facts["failed"]) == 2
    assert facts["segmented"][0]["pectoral_found"] is True
    assert main(["segment", str(good), "--out", str(out)]) == 0


def test_integer_pixels_are_scaled_and_out_of_range_floats_refused() -> None:
    img, truth = make_phantom(size=256, view="CC", seed=13)
    as_u8 = segment_breast(np.rint(img * 255).astype(np.uint8))
    as_u16 = segment_breast(np.rint(img * 65535).astype(np.uint16))
    assert dice(as_u8.breast, truth["breast"]) >= 0.97 and dice(as_u16.breast, truth["breast"]) >= 0.97
    with pytest.raises(SegmentationError, match=r"\[0, 1\]"):
        segment_breast(img * 255.0)


@pytest.mark.parametrize(
    "value, side",
    [("A\\R", "left"), (["P", "FL"], "right"), (["A", "FR"], "left"), ("P\\L", "right"), ("", None), (None, None), (["F", "L"], None)],
)
def test_side_from_patient_orientation(value: object, side: str | None) -> None:
    from mammocadx.preprocess.orientation import side_from_patient_orientation

    assert side_from_patient_orientation(value) == side


def test_segment_command_reads_the_view_from_the_file_name(tmp_path: Path) -> None:
    from mammocadx.cli import main

    img, _ = make_phantom(size=256, side="right", view="MLO", seed=14)
    path = tmp_path / "P_001_RIGHT_CC.png"  # named CC: the muscle must not be looked for
    cv2.imwrite(str(path), np.rint(img * 255).astype(np.uint8))
    assert main(["segment", str(path), "--out", str(tmp_path / "o")]) == 0
    facts = json.loads((tmp_path / "o" / "segment.json").read_text())["segmented"][0]
    assert facts["view"] == "CC" and facts["pectoral_found"] is False
