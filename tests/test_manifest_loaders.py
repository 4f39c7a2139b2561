"""CSV manifest and class-folder readers."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mammocadx.datasets.folder import load_folder
from mammocadx.datasets.manifest import load_manifest
from mammocadx.datasets.records import Roi
from mammocadx.errors import DatasetError

SHARED = Path(os.environ.get("MAMMOCADX_SHARED_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))
CBIS800 = SHARED / "cbis-ddsm-mass-800-train"


def _png(path: Path, value: int = 128) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((20, 30), value, np.uint8)).save(path)
    return path


def _manifest(folder: Path, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "manifest.csv").write_text(text)
    return folder


def test_manifest_rows_to_records(tmp_path: Path) -> None:
    _png(tmp_path / "img" / "a.png")
    _png(tmp_path / "img" / "b.png")
    _png(tmp_path / "masks" / "b_mask.png", 255)
    _manifest(tmp_path, (
        "Path,Label,patient_id,split,laterality,view,box_x,box_y,box_w,box_h,cx,cy,r,mask_path,note\n"
        "img/a.png,malignant,P1,train,LEFT,cc,1,2,3,4,,,,,first\n"
        "img/a.png,0,P1,Training,L,CC,,,,,5,6,2.5,,\n"
        "img/b.png,B,P2,test,R,MLO,,,,,,,,masks/b_mask.png,\n"
        "img/b.png,M,P2,,,,,,,,,,,,\n"
    ))
    recs = load_manifest(tmp_path)
    assert [r.sample_id for r in recs] == ["a_1", "a_2", "b_3", "b_4"]
    assert [r.label for r in recs] == [1, 0, 0, 1]
    assert [r.patient_id for r in recs] == ["P1", "P1", "P2", "P2"]
    assert [r.split for r in recs] == ["train", "train", "test", None]
    assert [(r.laterality, r.view) for r in recs] == [("L", "CC"), ("L", "CC"), ("R", "MLO"), (None, None)]
    assert recs[0].roi == Roi(box=(1.0, 2.0, 3.0, 4.0))
    assert recs[1].roi == Roi(circle=(5.0, 6.0, 2.5))
    assert recs[2].roi.mask_path == (tmp_path / "masks" / "b_mask.png").absolute()
    assert recs[3].roi.kind == "none"
    assert recs[0].image_path == (tmp_path / "img" / "a.png").absolute() and recs[0].image_id == "a"
    assert recs[0].extra == {"note": "first"}
    assert load_manifest(tmp_path / "manifest.csv")[0].sample_id == "a_1"  # the CSV itself works too


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("img/a.png,maybe,P1,,,,", r"row 1 \(line 2\): column 'label'"),
        ("img/a.png,1,,,,,", "column 'patient_id' is empty"),
        ("img/a.png,1,P1,1,2,3,", "box is incomplete, column.s. box_h empty"),
        ("img/a.png,1,P1,x,2,3,4", "column 'box_x' must be a number, got 'x'"),
        ("img/a.png,1,P1,1,2,3,-4", "'box_w'/'box_h' must be positive"),
        ("../a.png,1,P1,,,,", "outside the manifest's folder"),
        ("/etc/passwd,1,P1,,,,", "absolute path"),
        ("img/a.png,1,P1,,,,,extra", "more values than columns"),
    ],
)
def test_manifest_bad_rows_name_file_row_and_column(tmp_path: Path, row: str, message: str) -> None:
    _png(tmp_path / "img" / "a.png")
    _manifest(tmp_path, "path,label,patient_id,box_x,box_y,box_w,box_h\n" + row + "\n")
    with pytest.raises(DatasetError, match=message) as info:
        load_manifest(tmp_path)
    assert info.value.path == tmp_path / "manifest.csv"


def test_manifest_missing_columns_images_and_outside_opt_in(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="no manifest.csv"):
        load_manifest(tmp_path)
    _manifest(tmp_path, "path,label\nx.png,1\n")
    with pytest.raises(DatasetError, match="lacks required column.s. patient_id"):
        load_manifest(tmp_path)
    _manifest(tmp_path, "path,label,patient_id\nx.png,1,P\n")
    with pytest.raises(DatasetError, match="every image is missing"):
        load_manifest(tmp_path)
    with pytest.raises(DatasetError, match="not found"):
        load_manifest(tmp_path, skip_missing=False)
    outside = _png(tmp_path / "elsewhere.png")
    sub = _manifest(tmp_path / "m", "path,label,patient_id\n../elsewhere.png,1,P\nmissing.png,0,Q\n")
    recs = load_manifest(sub, allow_outside=True)
    # The row whose image is missing is kept, for the feature stage to report in skipped.csv (issue 14, item 6).
    assert [r.image_path for r in recs] == [outside.absolute(), (sub / "missing.png").absolute()]


def test_manifest_colliding_stems_get_distinct_image_ids(tmp_path: Path) -> None:
    _png(tmp_path / "a" / "x.png")
    _png(tmp_path / "b" / "x.png")
    _manifest(tmp_path, "path,label,patient_id\na/x.png,1,P\nb/x.png,0,Q\n")
    assert [r.image_id for r in load_manifest(tmp_path)] == ["a/x", "b/x"]


@pytest.mark.shared_data
def test_shared_cbis800_manifest() -> None:
    if not (CBIS800 / "manifest.csv").is_file():
        pytest.skip(f"{CBIS800} not present")
    recs = load_manifest(CBIS800)
    assert len(recs) == 1304
    assert len({r.patient_id for r in recs}) == 690
    assert sum(r.label for r in recs) == 629 and sum(1 - r.label for r in recs) == 675
    assert {r.split for r in recs} == {"train"} and {r.laterality for r in recs} == {"L", "R"}
    assert {r.view for r in recs} == {"CC", "MLO"} and all(r.roi.kind == "box" for r in recs)
    assert len({r.sample_id for r in recs}) == 1304 and len({r.image_id for r in recs}) == 1225  # 1,231 minus 6 mixed-pathology images


def test_folder_dataset(tmp_path: Path) -> None:
    _png(tmp_path / "Benign" / "p1_a.png")
    _png(tmp_path / "Benign" / "sub" / "p2_a.png")
    _png(tmp_path / "MALIGNANT" / "p1_b.png")
    (tmp_path / "MALIGNANT" / "README.txt").write_text("not an image")
    (tmp_path / "other").mkdir()
    recs = load_folder(tmp_path)
    assert [(r.sample_id, r.label, r.patient_id) for r in recs] == [
        ("Benign/p1_a", 0, "p1_a"), ("Benign/sub/p2_a", 0, "p2_a"), ("MALIGNANT/p1_b", 1, "p1_b")]
    assert all(r.roi.kind == "none" for r in recs)
    (tmp_path / "patients.csv").write_text("file,patient_id\nBenign/p1_a.png,P1\np1_b.png,P1\nsub/p2_a.png,P2\n")
    assert [r.patient_id for r in load_folder(tmp_path)] == ["P1", "P2", "P1"]


def test_folder_dataset_errors(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="no class sub-folder"):
        load_folder(tmp_path)
    _png(tmp_path / "0" / "a.png")
    _png(tmp_path / "benign" / "b.png")
    with pytest.raises(DatasetError, match="class given twice"):
        load_folder(tmp_path)
    with pytest.raises(DatasetError, match="not found"):
        load_folder(tmp_path / "nope")


def test_mask_wins_over_its_bounding_box_but_box_and_circle_conflict(tmp_path):
    from PIL import Image

    from mammocadx.datasets.manifest import load_manifest
    from mammocadx.errors import DatasetError

    Image.fromarray(np.zeros((20, 20), np.uint8)).save(tmp_path / "a.png")
    Image.fromarray(np.zeros((20, 20), np.uint8)).save(tmp_path / "a_mask.png")
    (tmp_path / "manifest.csv").write_text(
        "path,label,patient_id,box_x,box_y,box_w,box_h,mask_path\na.png,benign,p1,1,2,3,4,a_mask.png\n")
    (rec,) = load_manifest(tmp_path)
    assert rec.roi.kind == "mask" and rec.roi.mask_path == tmp_path / "a_mask.png"
    (tmp_path / "manifest.csv").write_text("path,label,patient_id,box_x,box_y,box_w,box_h,cx,cy,r\na.png,benign,p1,1,2,3,4,5,5,2\n")
    with pytest.raises(DatasetError, match="not box and circle"):
        load_manifest(tmp_path)
