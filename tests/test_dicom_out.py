"""DICOM outputs: a TID 1500 SR and a Grad-CAM Secondary Capture in the source's study, valid and read back."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pydicom.data
import pytest

from conftest_dicom_out import full_field_dicom
from mammocadx.datasets.records import Roi
from mammocadx.dicom_out import (
    MARKER, Algorithm, Finding, finding_from_prediction, prepare_output_dir, read_source_header, read_sr,
    write_outputs,
)
from mammocadx.errors import DicomOutputError
from mammocadx.io.images import read_image

PYDICOM_FILES = Path(pydicom.data.__file__).parent / "test_files"
ALGO = Algorithm("mammocadx-paper", "0.1.0", "ab" * 32, ("backbone=tf_efficientnet_lite0",))


def dciodvfy_errors(path: Path) -> list[str]:
    """``Error`` lines of dicom3tools' validator (warnings allowed); skips where it is not installed."""
    exe = shutil.which("dciodvfy")
    if exe is None:
        pytest.skip("dciodvfy (Debian package dicom3tools) not installed")
    run = subprocess.run([exe, str(path)], capture_output=True, text=True, timeout=120)
    return [line for line in (run.stdout + run.stderr).splitlines() if line.startswith("Error")]


def dsrdump(path: Path) -> str:
    """DCMTK's SR dump; fails the test on a non-zero exit or an error message, skips where it is absent."""
    exe = shutil.which("dsrdump")
    if exe is None:
        pytest.skip("dsrdump (Debian package dcmtk) not installed")
    run = subprocess.run([exe, str(path)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "E: " not in run.stderr and "F: " not in run.stderr, run.stderr
    return run.stdout


def _heat(size: int = 224) -> np.ndarray:
    return np.outer(np.hanning(size), np.hanning(size)).astype(np.float32)


@pytest.fixture()
def source(tmp_path: Path):
    path, case = full_field_dicom(tmp_path / "case" / "1-1.dcm", seed=3)
    return path, case


def test_full_field_rle_dicom_gives_a_valid_sr_and_overlay_that_round_trip(source, tmp_path: Path) -> None:
    path, case = source
    header, img = read_source_header(path), read_image(path)
    cx, cy = case.centre
    finding = finding_from_prediction(0.731234567, -0.125, "malignant", Roi(circle=(cx, cy, case.radius)),
                                      (cx, cy, 3 * case.radius))
    sr_path, sc_path = write_outputs(header, [finding], img.pixels, _heat(), ALGO, tmp_path / "out")

    back = read_sr(sr_path)
    assert len(back) == 1 and back[0].score == pytest.approx(0.731234567, abs=1e-9)
    assert back[0].threshold == pytest.approx(-0.125) and back[0].label == "malignant"
    assert back[0].roi_kind == "circle" and np.allclose(back[0].roi, (cx, cy, case.radius), atol=1e-3)
    src = pydicom.dcmread(path, stop_before_pixels=True)
    assert back[0].source_sop_instance_uid == src.SOPInstanceUID
    assert back[0].extra["algorithm_name"] == "mammocadx-paper"
    assert "model_fingerprint=" + "ab" * 32 in back[0].extra["algorithm_parameters"]
    assert back[0].extra["analysed_side"] == pytest.approx(3 * case.radius)

    sr, sc = pydicom.dcmread(sr_path), pydicom.dcmread(sc_path)
    for out in (sr, sc):  # same study and patient, a new series of our own
        assert out.StudyInstanceUID == src.StudyInstanceUID and out.PatientID == src.PatientID
        assert out.PatientName == src.PatientName and out.SeriesInstanceUID != src.SeriesInstanceUID
        assert out.Manufacturer == "mammocadx" and out.ManufacturerModelName == "mammocadx-paper"
    assert sc.SourceImageSequence[0].ReferencedSOPInstanceUID == src.SOPInstanceUID
    assert sc.SOPClassUID == "1.2.840.10008.5.1.4.1.1.7" and list(sc.PatientOrientation) == ["A", "FR"]
    assert "RESEARCH USE ONLY" in sc.ImageComments
    rgb = sc.pixel_array
    assert rgb.shape == (*img.shape, 3) and rgb.dtype == np.uint8
    grey = np.rint(img.pixels * 255)
    # Outside the analysed square the overlay is the grey image; at the lesion centre the heat-map colours it.
    assert np.abs(rgb[5, -5].astype(int) - grey[5, -5]).max() <= 1
    centre = rgb[int(cy), int(cx)].astype(int)
    assert centre.max() - centre.min() > 60

    assert dciodvfy_errors(sr_path) == [] and dciodvfy_errors(sc_path) == []
    dump = dsrdump(sr_path)
    for text in ("Imaging Measurement Report", "Malignancy decision score", "Malignant", "RESEARCH USE ONLY",
                 "Image Region"):
        assert text in dump, text


def test_box_roi_probability_and_several_findings_round_trip(source, tmp_path: Path) -> None:
    path, _case = source
    header, img = read_source_header(path), read_image(path)
    findings = [
        Finding(score=-1.5, threshold=0.0, label="benign", roi_kind="box", roi=(10.0, 20.0, 30.5, 40.0),
                crop=(25.0, 40.0, 60.0), probability=0.125),
        Finding(score=0.25, threshold=0.0, label="malignant", roi_kind="circle", roi=(200.0, 210.0, 12.0)),
    ]
    sr_path, sc_path = write_outputs(header, findings, img.pixels, _heat(), ALGO, tmp_path / "out",
                                     notes=["Input warning: test"])
    back = read_sr(sr_path)
    assert [f.label for f in back] == ["benign", "malignant"]
    assert back[0].roi_kind == "box" and np.allclose(back[0].roi, (10.0, 20.0, 30.5, 40.0), atol=1e-3)
    assert back[0].probability == pytest.approx(0.125) and back[1].probability is None
    assert back[1].score == pytest.approx(0.25) and np.allclose(back[1].roi, (200.0, 210.0, 12.0), atol=1e-3)
    assert len({f.tracking_uid for f in back}) == 2
    assert dciodvfy_errors(sr_path) == []
    assert "Input warning: test" in dsrdump(sr_path)


@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small_RLE.dcm"])
def test_pydicom_test_files_as_sources(name: str, tmp_path: Path) -> None:
    path = PYDICOM_FILES / name
    if not path.is_file():
        pytest.skip(f"{name} not bundled with this pydicom")
    header, img = read_source_header(path), read_image(path, force=True)
    rows, cols = img.shape
    finding = Finding(score=0.5, threshold=0.0, label="malignant", roi_kind="circle",
                      roi=(cols / 2, rows / 2, cols / 8), crop=(cols / 2, rows / 2, cols / 4))
    sr_path, sc_path = write_outputs(header, [finding], img.pixels, _heat(32), ALGO, tmp_path / "out")
    assert read_sr(sr_path)[0].roi == pytest.approx((cols / 2, rows / 2, cols / 8), abs=1e-3)
    assert pydicom.dcmread(sc_path).StudyInstanceUID == header.StudyInstanceUID
    assert dciodvfy_errors(sr_path) == [] and dciodvfy_errors(sc_path) == []
    dsrdump(sr_path)


def test_output_folder_policy(source, tmp_path: Path) -> None:
    path, _case = source
    header, img = read_source_header(path), read_image(path)
    finding = Finding(score=0.1, threshold=0.0, label="malignant", roi_kind="circle", roi=(100.0, 100.0, 10.0),
                      crop=(100.0, 100.0, 30.0))
    new = tmp_path / "a" / "b"
    written = write_outputs(header, [finding], img.pixels, _heat(), ALGO, new)  # created, marked
    assert (new / MARKER).is_file() and all(p.parent == new for p in written)
    again = write_outputs(header, [finding], img.pixels, _heat(), ALGO, new)  # our own files: replaced
    assert [p.name for p in again] == [p.name for p in written]
    assert read_sr(again[0])[0].score == pytest.approx(0.1)

    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(DicomOutputError, match="not written by mammocadx"):
        prepare_output_dir(foreign)
    assert sorted(p.name for p in foreign.iterdir()) == ["notes.txt"]
    # Even in our folder, a file someone else put there under our name is never overwritten.
    victim = new / written[0].name
    victim.unlink()
    victim.write_bytes(b"precious")
    (new / MARKER).write_text('{"written_by": "mammocadx", "files": []}')
    with pytest.raises(DicomOutputError, match="not overwritten"):
        write_outputs(header, [finding], img.pixels, _heat(), ALGO, new)
    assert victim.read_bytes() == b"precious"
    with pytest.raises(DicomOutputError, match="not a folder"):
        prepare_output_dir(foreign / "notes.txt")


def test_non_dicom_and_uid_less_sources_are_refused_with_a_clear_message(tmp_path: Path) -> None:
    from PIL import Image

    png = tmp_path / "case.png"
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(png)
    with pytest.raises(DicomOutputError, match="DICOM outputs need a DICOM source image; this is a PNG file"):
        read_source_header(png)
    path, _ = full_field_dicom(tmp_path / "nostudy.dcm", size=256, StudyInstanceUID="")
    with pytest.raises(DicomOutputError, match="no StudyInstanceUID"):
        read_source_header(path)


def test_finding_checks_its_values() -> None:
    with pytest.raises(ValueError, match="label"):
        Finding(score=0.0, threshold=0.0, label="maybe", roi_kind="circle", roi=(1.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="4 numbers"):
        Finding(score=0.0, threshold=0.0, label="benign", roi_kind="box", roi=(1.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="probability"):
        Finding(score=0.0, threshold=0.0, label="benign", roi_kind="circle", roi=(1.0, 1.0, 1.0), probability=2.0)
