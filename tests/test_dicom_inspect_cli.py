"""``mammocadx inspect``: facts printed, previews written safely, exit code says whether all were read."""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest_dicom import write_dicom
from mammocadx.cli import inspect as inspect_cli
from mammocadx.io.inspect import clean_text, inspect_file, safe_name


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    inspect_cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["inspect", *argv])
    return args.func(args)


def test_inspect_prints_facts_and_writes_previews(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    arr = np.tile(np.linspace(0, 4095, 300).astype(np.uint16), (200, 1))
    dcm = write_dicom(tmp_path / "in" / "case 1;rm -rf.dcm", arr, bits_stored=12, photometric="MONOCHROME1",
                      window=(2048, 4096), ImageLaterality="L", ViewPosition="MLO",
                      SeriesDescription="evil\x1b[31m../../x")
    png = tmp_path / "in" / "plain.png"
    Image.fromarray(np.full((10, 20), 200, np.uint8)).save(png)
    out = tmp_path / "previews"
    assert _run([str(dcm), str(png), "--out", str(out), "--preview-size", "100"]) == 0
    text = capsys.readouterr().out
    assert "dicom, 300x200 px, 12 bit, MONOCHROME1 (inverted: MONOCHROME1)" in text
    assert "laterality L (from ImageLaterality), view MLO (from ViewPosition)" in text
    assert "windowing: LINEAR centre 2048 width 4096" in text
    assert "png, 20x10 px, 8 bit" in text and "2 of 2 file(s) read" in text
    written = sorted(p.name for p in out.iterdir())
    # the previews, and the marker that says mammocadx wrote them (issue 14: output folders)
    assert written == [".mammocadx-output.json", "001_case_1_rm_-rf.png", "002_plain.png"]
    preview = np.asarray(Image.open(out / written[1]))
    assert preview.shape == (67, 100)
    assert preview[0, 0] > 250 and preview[0, -1] < 5  # MONOCHROME1: low stored values shown bright


def test_inspect_batch_goes_on_and_exit_code_is_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = write_dicom(tmp_path / "good.dcm", np.zeros((8, 8), np.uint16))
    bad = tmp_path / "bad.dcm"
    bad.write_bytes(b"")
    ct = write_dicom(tmp_path / "ct.dcm", np.zeros((8, 8), np.uint16), modality="CT")
    assert _run([str(bad), str(good), str(ct), str(tmp_path / "missing.png")]) == 1
    text = capsys.readouterr().out
    assert f"{bad}: FAILED: empty file" in text and "modality CT is not a mammogram" in text
    assert "file not found" in text and "1 of 4 file(s) read, 3 failed" in text
    assert _run([str(ct), "--force", "--json"]) == 0
    assert '"modality": "CT"' in capsys.readouterr().out


def test_folder_argument_and_helpers(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_dicom(tmp_path / "a" / "x.dcm", np.zeros((8, 8), np.uint16))
    (tmp_path / "a" / "README").write_text("notes")
    assert _run([str(tmp_path / "a")]) == 0
    assert "1 of 1 file(s) read" in capsys.readouterr().out
    assert safe_name(Path("../../etc/passwd"), 3) == "003_passwd.png"
    assert safe_name(Path("..."), 1) == "001_image.png"
    assert clean_text("a\x1b[2Jb\nc") == "a?[2Jb?c"
    assert inspect_file(tmp_path / "nope.dcm").error == "file not found"
