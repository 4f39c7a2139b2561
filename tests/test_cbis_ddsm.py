"""CBIS-DDSM reader on a synthetic TCIA tree in both CSV layouts."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from conftest_cbis import CASES, IMAGE_SHAPE, build_cbis_tree, case_name
from mammocadx.datasets.cbis_ddsm import load_cbis_ddsm, scan_cbis_ddsm
from mammocadx.errors import DatasetError
from mammocadx.io.images import read_image
from mammocadx.preprocess.roi import load_mask


@pytest.fixture(scope="module", params=["new", "old"])
def cbis(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_cbis_tree(tmp_path_factory.mktemp(f"cbis_{request.param}"), layout=request.param)


def _expected(subset: str | None = None, split: str | None = None) -> dict[str, tuple]:
    out = {}
    for sub, spl, patient, side, view, abn, pathology, _layout, box in CASES:
        if (subset in (None, "all") or sub == subset) and (split is None or spl == split):
            sid = f"{case_name(sub, spl, patient, side, view)}_{abn}"
            out[sid] = (patient, side[0], view, spl, 1 if pathology == "MALIGNANT" else 0, box)
    return out


def test_labels_patients_split_laterality_view(cbis: Path) -> None:
    records = load_cbis_ddsm(cbis, subset="all")
    expected = _expected("all")
    assert {r.sample_id for r in records} == set(expected)
    for r in records:
        patient, side, view, split, label, _box = expected[r.sample_id]
        assert (r.patient_id, r.laterality, r.view, r.split, r.label) == (patient, side, view, split, label)
        assert r.image_id == r.sample_id.rsplit("_", 1)[0]
        assert r.image_path.name == "1-1.dcm" and "full mammogram" in str(r.image_path)
        assert r.extra["breast_density"] == "3"  # from "breast_density" (mass) and "breast density" (calc)
        assert r.extra["subset"] == ("mass" if r.sample_id.startswith("Mass") else "calc")


def test_roi_is_the_mask_not_the_crop(cbis: Path) -> None:
    expected = _expected("all")
    for r in load_cbis_ddsm(cbis, subset="all"):
        assert r.roi.kind == "mask"
        assert r.extra["crop_path"] and Path(r.extra["crop_path"]) != r.roi.mask_path
        x, y, w, h = expected[r.sample_id][5]
        mask = load_mask(r.roi.mask_path, IMAGE_SHAPE)  # DICOM masks go through read_image; small ones are resized
        ys, xs = np.nonzero(mask)
        assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == (x, y, x + w, y + h)
        assert read_image(r.image_path).shape == IMAGE_SHAPE


def test_subset_and_split_filters(cbis: Path) -> None:
    assert {r.sample_id for r in load_cbis_ddsm(cbis)} == set(_expected("mass"))  # default: masses
    assert {r.sample_id for r in load_cbis_ddsm(cbis, subset="calc")} == set(_expected("calc"))
    test = load_cbis_ddsm(cbis, subset="mass", split="test")
    assert [r.sample_id for r in test] == ["Mass-Test_P_00003_LEFT_CC_1"] and test[0].split == "test"
    assert {r.split for r in load_cbis_ddsm(cbis, subset="all", split="train")} == {"train"}


def test_missing_images_are_skipped_and_listed(cbis: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        load = scan_cbis_ddsm(cbis, subset="mass", split="train")
    assert [sid for sid, _why in load.skipped] == ["Mass-Training_P_00009_LEFT_CC_1"]
    assert "not found" in load.skipped[0][1] and "line" in load.skipped[0][1]
    assert "P_00009" in caplog.text and len(load.records) == 4


def test_explicit_csv_argument(cbis: Path) -> None:
    records = load_cbis_ddsm(cbis, subset="all", csv=cbis / "calc_case_description_test_set.csv")
    assert [(r.sample_id, r.label, r.split) for r in records] == [("Calc-Test_P_00005_LEFT_MLO_1", 1, "test")]


def test_errors(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="not found"):
        load_cbis_ddsm(tmp_path / "nowhere")
    with pytest.raises(DatasetError, match="no case-description CSV"):
        load_cbis_ddsm(tmp_path)
    (tmp_path / "mass_case_description_train_set.csv").write_text("a,b\n1,2\n")
    with pytest.raises(DatasetError, match="missing column"):
        load_cbis_ddsm(tmp_path)
    (tmp_path / "mass_case_description_train_set.csv").write_text(
        "patient_id,left or right breast,image view,abnormality id,pathology\nP_1,LEFT,CC,1,MALIGNANT\n")
    with pytest.raises(DatasetError, match="no usable"):
        load_cbis_ddsm(tmp_path)
