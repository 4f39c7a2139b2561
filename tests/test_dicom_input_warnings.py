"""Input checks a PACS user expects: warn (not refuse) on FOR PROCESSING and on self-contradicting laterality/view."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from conftest_dicom import write_dicom
from mammocadx.errors import DicomError
from mammocadx.io.dicom import MG_FOR_PROCESSING, read_dicom

ARR = (np.arange(64 * 48, dtype=np.uint16).reshape(64, 48) * 7) % 4096


def test_consistent_header_reads_without_warnings(tmp_path: Path) -> None:
    f = write_dicom(tmp_path / "L_CC.dcm", ARR, bits_stored=12, ImageLaterality="L", ViewPosition="CC",
                    PatientOrientation=["A", "R"], SeriesDescription="L CC", PresentationIntentType="FOR PRESENTATION")
    assert read_dicom(f).meta["warnings"] == []


def test_for_processing_is_read_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    f = write_dicom(tmp_path / "raw.dcm", ARR, bits_stored=12, PresentationIntentType="FOR PROCESSING",
                    sop_class=MG_FOR_PROCESSING)
    with caplog.at_level(logging.WARNING, logger="mammocadx.io.dicom"):
        im = read_dicom(f)
    assert len(im.meta["warnings"]) == 1 and im.meta["warnings"][0].startswith("FOR PROCESSING image")
    assert "FOR PROCESSING image (raw detector data" in caplog.text


@pytest.mark.parametrize(("intent", "sop", "expect"), [
    ("FOR PROCESSING", None, "contradicts the SOP class (Digital Mammography For Presentation)"),
    ("FOR PRESENTATION", MG_FOR_PROCESSING, "contradicts the SOP class (Digital Mammography For Processing)"),
])
def test_intent_contradicting_the_sop_class_warns(tmp_path: Path, intent: str, sop: str | None, expect: str) -> None:
    f = write_dicom(tmp_path / "x.dcm", ARR, bits_stored=12, PresentationIntentType=intent, sop_class=sop)
    assert any(expect in w for w in read_dicom(f).meta["warnings"])


def test_laterality_and_view_contradicting_the_names_warn(tmp_path: Path) -> None:
    f = write_dicom(tmp_path / "Mass-Training_P_00001_LEFT_CC" / "1-1.dcm", ARR, bits_stored=12,
                    ImageLaterality="R", ViewPosition="MLO")
    im = read_dicom(f)
    assert im.meta["laterality"] == "R" and im.meta["view"] == "MLO"  # the header wins, as before
    lat, view = im.meta["warnings"]
    assert lat.startswith("laterality contradicts itself (ImageLaterality R, path L)")
    assert view.startswith("view contradicts itself (ViewPosition MLO, path CC)")


def test_laterality_tags_contradicting_each_other_warn(tmp_path: Path) -> None:
    f = write_dicom(tmp_path / "a.dcm", ARR, bits_stored=12, ImageLaterality="L", Laterality="R",
                    PatientOrientation=["A", "R"])
    (w,) = read_dicom(f).meta["warnings"]
    assert "ImageLaterality L, Laterality R, PatientOrientation L" in w


def test_exaggerated_cc_agrees_with_a_cc_name(tmp_path: Path) -> None:
    f = write_dicom(tmp_path / "LEFT_CC.dcm", ARR, bits_stored=12, ImageLaterality="L", ViewPosition="XCCL")
    assert read_dicom(f).meta["warnings"] == []


def test_colour_and_multi_frame_are_still_refused(tmp_path: Path) -> None:
    with pytest.raises(DicomError, match="multi-frame"):
        read_dicom(write_dicom(tmp_path / "mf.dcm", np.stack([ARR, ARR])))
    rgb = np.zeros((8, 8, 3), np.uint8)
    with pytest.raises(DicomError, match="only greyscale"):
        read_dicom(write_dicom(tmp_path / "rgb.dcm", rgb[..., 0], photometric="RGB", SamplesPerPixel=3))


def test_inspect_shows_the_warnings(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from mammocadx.cli import main

    f = write_dicom(tmp_path / "raw.dcm", ARR, bits_stored=12, PresentationIntentType="FOR PROCESSING")
    assert main(["-q", "inspect", str(f)]) == 0
    assert "WARNING: FOR PROCESSING image" in capsys.readouterr().out
    assert main(["-q", "inspect", "--json", str(f)]) == 0
    facts = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert any(w.startswith("FOR PROCESSING image") for w in facts["warnings"])
