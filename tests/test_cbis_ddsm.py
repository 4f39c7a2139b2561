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


def test_registry_and_official_split_as_evaluate_uses_them(cbis: Path) -> None:
    from mammocadx.datasets import load_dataset
    from mammocadx.evaluate.splits import official_split

    records = load_dataset("cbis-ddsm", cbis, subset="mass")
    (sp,) = official_split([r.split for r in records], [r.patient_id for r in records])
    assert sorted(records[i].sample_id for i in sp.test) == ["Mass-Test_P_00003_LEFT_CC_1"]
    assert len(sp.train) == 4



def test_classic_tree_where_csv_paths_exist_and_mask_crop_names_are_swapped(tmp_path: Path) -> None:
    from conftest_dicom import write_dicom

    case, uid = "Mass-Test_P_00042_RIGHT_MLO", "1.3.6.1.4.1.9590.100.1.2"
    write_dicom(tmp_path / "CBIS-DDSM" / case / f"{uid}.1" / f"{uid}.2" / "000000.dcm", np.zeros((40, 30), np.uint16))
    mask = np.zeros((40, 30), np.uint8)
    mask[10:20, 5:15] = 255
    roi = tmp_path / "CBIS-DDSM" / f"{case}_1" / f"{uid}.3" / f"{uid}.4"
    write_dicom(roi / "000000.dcm", mask)                            # the CSV calls this the crop
    write_dicom(roi / "000001.dcm", np.full((12, 12), 9, np.uint8))  # and this the mask
    (tmp_path / "mass_case_description_test_set.csv").write_text(
        "patient_id,breast_density,left or right breast,image view,abnormality id,abnormality type,mass shape,"
        "mass margins,assessment,pathology,subtlety,image file path,cropped image file path,ROI mask file path\n"
        f"P_00042,2,RIGHT,MLO,1,mass,ROUND,SPICULATED,5,MALIGNANT,4,{case}/{uid}.1/{uid}.2/000000.dcm,"
        f"{case}_1/{uid}.3/{uid}.4/000000.dcm,{case}_1/{uid}.3/{uid}.4/000001.dcm\n")
    (rec,) = load_cbis_ddsm(tmp_path)
    assert rec.roi.mask_path == roi / "000000.dcm" and rec.extra["crop_path"] == str(roi / "000001.dcm")
    assert (rec.label, rec.split, rec.laterality, rec.view, rec.extra["breast_density"]) == (1, "test", "R", "MLO", "2")


@pytest.mark.slow
def test_evaluate_official_split_runs_on_a_synthetic_tree(tmp_path: Path) -> None:
    """``mammocadx evaluate --dataset cbis-ddsm --data DIR --split official`` end to end (needs the features stage)."""
    import json

    pytest.importorskip("mammocadx.features.extract")
    from mammocadx.cli import main

    cases = []
    for i in range(24):
        pathology = "MALIGNANT" if i % 2 else ("BENIGN" if i % 4 else "BENIGN_WITHOUT_CALLBACK")
        cases.append(("mass", "train" if i < 16 else "test", f"P_{i:05d}", "LEFT" if i % 3 else "RIGHT",
                      "CC" if i % 2 else "MLO", 1, pathology, ["same", "separate", "small"][i % 3], (20 + i, 30, 16, 12)))
    data = build_cbis_tree(tmp_path / "cbis", "new", cases=cases, shape=(128, 96))
    out = tmp_path / "run"
    assert main(["-q", "evaluate", "--dataset", "cbis-ddsm", "--data", str(data), "--split", "official",
                 "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["protocol"]["name"] == "official train/test split"
    assert (metrics["protocol"]["n_train"], metrics["protocol"]["n_test"]) == (16, 8)
    assert 0.0 <= metrics["auc"] <= 1.0
