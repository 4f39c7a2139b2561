"""``mammocadx predict ... --dicom-out DIR`` end to end: a trained model, 16-bit RLE DICOMs, SR + overlay read back."""
from __future__ import annotations

import csv
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest

from conftest_dicom_out import full_field_dicom
from mammocadx.cli import main
from mammocadx.datasets.synthetic import make_synthetic_cohort
from mammocadx.dicom_out import MARKER, read_sr


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("cohort")
    make_synthetic_cohort(d, n_patients=15, seed=3, size=384)
    out = d / "model"
    assert main(["-q", "train", "--mode", "paper", "--cv", "0", "--dataset", "synthetic", "--data", str(d), "--n-components", "10",
                 "--model-out", str(out)]) == 0
    return out


def test_predict_dicom_out_writes_sr_and_overlay_that_round_trip(model: Path, tmp_path: Path) -> None:
    # Two CBIS-style 16-bit RLE files with the same file name in different folders (a folder batch).
    a, case = full_field_dicom(tmp_path / "in" / "P_00001_LEFT_MLO" / "1-1.dcm", seed=5, size=384)
    full_field_dicom(tmp_path / "in" / "P_00002_LEFT_MLO" / "1-1.dcm", seed=6, size=384)
    cx, cy = case.centre
    roi = f"{cx:.1f},{cy:.1f},{case.radius:.1f}"
    out = tmp_path / "dicom"
    assert main(["-q", "predict", str(model), str(tmp_path / "in"), "--roi", roi, "--dicom-out", str(out),
                 "--out", str(tmp_path / "p.csv")]) == 0
    rows = {r["path"]: r for r in csv.DictReader((tmp_path / "p.csv").open())}
    assert all(r["status"] == "ok" and "DICOM:" in r["reason"] for r in rows.values())
    written = sorted(p.name for p in out.iterdir())
    assert len(written) == 5 and MARKER in written  # 2 SRs, 2 overlays, the marker

    src = pydicom.dcmread(a, stop_before_pixels=True)
    sr_path = out / f"{src.SOPInstanceUID}_sr.dcm"
    (finding,) = read_sr(sr_path)
    assert finding.score == pytest.approx(float(rows[str(a)]["score"]), abs=5e-5)
    assert finding.label == rows[str(a)]["label"] and finding.source_sop_instance_uid == src.SOPInstanceUID
    assert finding.roi_kind == "circle"
    assert np.allclose(finding.roi, [float(v) for v in roi.split(",")], atol=1e-3)
    assert len(finding.extra["algorithm_parameters"][-1]) == len("model_fingerprint=") + 64
    sc = pydicom.dcmread(out / f"{src.SOPInstanceUID}_gradcam.dcm")
    assert sc.SourceImageSequence[0].ReferencedSOPInstanceUID == src.SOPInstanceUID
    assert sc.StudyInstanceUID == src.StudyInstanceUID and sc.pixel_array.shape == (384, 384, 3)
    if shutil.which("dciodvfy"):
        for p in (sr_path, out / f"{src.SOPInstanceUID}_gradcam.dcm"):
            run = subprocess.run(["dciodvfy", str(p)], capture_output=True, text=True, timeout=120)
            assert not [x for x in (run.stdout + run.stderr).splitlines() if x.startswith("Error")], p

    # Run again into the same folder: our own files are replaced, nothing else appears.
    assert main(["-q", "predict", str(model), str(a), "--roi", roi, "--dicom-out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == written


def test_predict_dicom_out_refuses_png_and_foreign_folders(model: Path, tmp_path: Path, capsys) -> None:
    from PIL import Image

    png = tmp_path / "case.png"
    Image.fromarray(np.full((384, 384), 90, np.uint8)).save(png)
    rc = main(["-q", "predict", str(model), str(png), "--roi", "190,190,20", "--dicom-out", str(tmp_path / "d")])
    err = capsys.readouterr().err
    assert rc == 1 and "DICOM outputs need a DICOM source image; this is a PNG file" in err
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == [MARKER]

    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "report.pdf").write_bytes(b"%PDF")
    rc = main(["-q", "predict", str(model), str(png), "--roi", "190,190,20", "--dicom-out", str(foreign)])
    err = capsys.readouterr().err
    assert rc == 2 and "not written by mammocadx" in err and "Traceback" not in err
    assert [p.name for p in foreign.iterdir()] == ["report.pdf"]
