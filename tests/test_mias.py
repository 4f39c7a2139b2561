"""mini-MIAS reader: every quirk of Info.txt handled, coordinates in image pixels."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mammocadx.datasets.mias import load_mias, mias_patient, parse_info
from mammocadx.errors import DatasetError

INFO_SNIPPET = """Some README text mentioning mdb001 in prose
mdb001 G CIRC B 535 425 197
mdb002 G CIRC B 522 280 69
mdb003 D NORM 
mdb005 F CIRC B 477 133 30
mdb005 F CIRC B 500 168 26
mdb059 F CIRC B
mdb144 F MISC B 233 994 29
mdb144 F MISC M 313 540 27
mdb216 D CALC M *NOTE 3* 

=====
"""


def _write_cohort(tmp_path: Path, text: str = INFO_SNIPPET) -> Path:
    from PIL import Image

    (tmp_path / "images").mkdir()
    (tmp_path / "Info.txt").write_text(text)
    for ref in ("mdb001", "mdb002", "mdb003", "mdb005", "mdb059", "mdb144", "mdb216"):
        Image.fromarray(np.zeros((1024, 1024), np.uint8)).save(tmp_path / "images" / f"{ref}.png")
    return tmp_path


def test_parse_info_rows_and_missing_coordinates() -> None:
    rows = parse_info(INFO_SNIPPET)
    assert [r.refnum for r in rows] == ["mdb001", "mdb002", "mdb003", "mdb005", "mdb005", "mdb059",
                                        "mdb144", "mdb144", "mdb216"]
    norm = rows[2]
    assert norm.abnormality == "NORM" and norm.severity is None and norm.x is None
    assert rows[5].severity == "B" and rows[5].x is None  # mdb059: mass without coordinates
    assert rows[8].severity == "M" and rows[8].x is None  # *NOTE 3*


def test_y_origin_is_converted_to_rows_from_the_top(tmp_path: Path) -> None:
    recs = load_mias(_write_cohort(tmp_path))
    first = recs[0]
    assert first.sample_id == "mdb001_1"
    assert first.roi.circle == (535.0, 1024 - 425.0, 197.0)


def test_several_rows_per_image_and_mixed_labels(tmp_path: Path) -> None:
    recs = load_mias(_write_cohort(tmp_path))
    ids = [r.sample_id for r in recs]
    # NORM, mdb059 and the NOTE-3 row have no coordinates and are left out by default.
    assert ids == ["mdb001_1", "mdb002_1", "mdb005_1", "mdb005_2", "mdb144_1", "mdb144_2"]
    by_id = {r.sample_id: r for r in recs}
    assert by_id["mdb144_1"].label == 0 and by_id["mdb144_2"].label == 1
    assert by_id["mdb144_1"].image_id == by_id["mdb144_2"].image_id == "mdb144"
    everything = load_mias(tmp_path, with_coordinates=False)
    assert len(everything) == 8 and sum(r.roi.kind == "none" for r in everything) == 2


def test_left_right_films_are_one_patient(tmp_path: Path) -> None:
    recs = load_mias(_write_cohort(tmp_path))
    by_img = {r.image_id: r for r in recs}
    assert by_img["mdb001"].patient_id == by_img["mdb002"].patient_id
    assert by_img["mdb001"].laterality == "R" and by_img["mdb002"].laterality == "L"
    assert mias_patient("mdb143") == mias_patient("mdb144") != mias_patient("mdb145")


def test_malformed_rows_name_the_file_and_line(tmp_path: Path) -> None:
    bad = "mdb001 G CIRC X 535 425 197\n"
    (tmp_path / "Info.txt").write_text(bad)
    with pytest.raises(DatasetError, match=r"Info.txt: line 1"):
        load_mias(tmp_path)
    with pytest.raises(DatasetError, match="Info.txt not found"):
        load_mias(tmp_path / "nowhere")


@pytest.mark.shared_data
def test_real_mini_mias_counts(mias_dir: Path) -> None:
    recs = load_mias(mias_dir)
    assert len(recs) == 119
    assert sum(r.label for r in recs) == 51  # 54 malignant rows minus 3 NOTE-3 rows
    assert len({r.patient_id for r in recs}) == 104
    assert all(r.image_path.is_file() for r in recs)
    masses = load_mias(mias_dir, classes={"CIRC", "SPIC", "MISC"})
    assert len(masses) == 58  # 59 mass rows, mdb059 has no coordinates
