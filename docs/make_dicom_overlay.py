"""Make ``docs/img/dicom_overlay.png``: the Grad-CAM Secondary Capture that ``predict --dicom-out`` writes, as a PNG.

Left: the stored overlay's pixel data, whole; right: the same pixels around the analysed square, enlarged.

Everything is synthetic (a generated cohort and a generated 16-bit RLE DICOM); no shared data is read.
Run from the repository root::

    PYTHONPATH=src:tests python docs/make_dicom_overlay.py
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import pydicom
from PIL import Image

from conftest_dicom_out import full_field_dicom  # tests/: the synthetic full-field DICOM the tests use
from mammocadx.cli import main
from mammocadx.datasets.synthetic import make_synthetic_cohort

SIZE = 512
OUT = Path(__file__).parent / "img" / "dicom_overlay.png"


def run() -> Path:
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        make_synthetic_cohort(tmp_path / "cohort", n_patients=15, seed=3, size=SIZE)
        model = tmp_path / "model"
        assert main(["-q", "train", "--dataset", "synthetic", "--data", str(tmp_path / "cohort"),
                     "--mode", "best", "--model-out", str(model)]) == 0
        dcm, case = full_field_dicom(tmp_path / "case.dcm", seed=11, size=SIZE)
        cx, cy = case.centre
        out = tmp_path / "dicom"
        assert main(["predict", str(model), str(dcm), "--roi", f"{cx:.0f},{cy:.0f},{case.radius:.0f}",
                     "--dicom-out", str(out)]) == 0
        (overlay,) = out.glob("*_gradcam.dcm")
        whole = Image.fromarray(pydicom.dcmread(overlay).pixel_array)
        half = 2.5 * case.radius * 1.5
        zoom = whole.crop((round(cx - half), round(cy - half), round(cx + half), round(cy + half)))
        zoom = zoom.resize((SIZE, SIZE), Image.Resampling.NEAREST)
        figure = Image.new("RGB", (2 * SIZE + 8, SIZE), "white")
        figure.paste(whole, (0, 0))
        figure.paste(zoom, (SIZE + 8, 0))
        figure.save(OUT, optimize=True)
    return OUT


if __name__ == "__main__":
    print(run())
