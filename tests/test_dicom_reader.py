"""DICOM reading: the display pipeline's values, metadata and typed refusals, on files built in code."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from pydicom.uid import JPEG2000Lossless, JPEGLSLossless, RLELossless

from conftest_dicom import make_dataset, write_dicom
from mammocadx.errors import DicomError, ImageReadError
from mammocadx.io.dicom import laterality_from_text, read_dicom, read_dicom_header, view_from_text
from mammocadx.io.images import read_image

RAMP = np.array([[0, 1000], [2000, 4095]], dtype=np.uint16)


def test_monochrome1_is_inverted_so_bright_is_dense(tmp_path: Path) -> None:
    f = write_dicom(tmp_path / "m1.dcm", RAMP, photometric="MONOCHROME1", bits_stored=12)
    im = read_image(f)
    # No VOI in the file: min-max of the stored 0..4095, then inverted (0 = white in MONOCHROME1).
    np.testing.assert_allclose(im.pixels, 1.0 - RAMP / 4095.0, atol=1e-6)
    assert im.format == "dicom" and im.bit_depth == 12 and im.pixels.dtype == np.float32
    assert im.meta["inverted"] and im.meta["inversion"] == "MONOCHROME1"
    assert im.meta["window"]["kind"] == "minmax"


def test_monochrome1_window_is_applied_before_inversion(tmp_path: Path) -> None:
    f = write_dicom(tmp_path / "m1w.dcm", RAMP, photometric="MONOCHROME1", bits_stored=12,
                    window=(1500, 1001), function="LINEAR_EXACT")
    px = read_image(f).pixels
    # LINEAR_EXACT: (x - c) / w + 0.5 clipped; 1000 -> 0.00450, 2000 -> 0.9995 before inversion.
    expected = 1.0 - np.clip((RAMP - 1500.0) / 1001.0 + 0.5, 0, 1)
    np.testing.assert_allclose(px, expected, atol=1e-6)
    assert px[0, 0] == 1.0 and px[1, 1] == 0.0


def test_presentation_lut_shape_inverse_inverts_monochrome2(tmp_path: Path) -> None:
    f = write_dicom(tmp_path / "inv.dcm", RAMP, bits_stored=12, PresentationLUTShape="INVERSE")
    im = read_image(f)
    assert im.pixels[0, 0] == pytest.approx(1.0) and im.pixels[1, 1] == pytest.approx(0.0)
    assert im.meta["inversion"] == "Presentation LUT Shape INVERSE"


@pytest.mark.parametrize("function", ["LINEAR", "LINEAR_EXACT", "SIGMOID"])
def test_16bit_window_matches_pydicom_apply_windowing(tmp_path: Path, function: str) -> None:
    from pydicom.pixels import apply_windowing

    rng = np.random.default_rng(3)
    arr = rng.integers(0, 65536, (40, 30), dtype=np.uint16)
    arr[0, :4] = [0, 65535, 30000, 30001]
    f = write_dicom(tmp_path / f"w_{function}.dcm", arr, window=(30000.5, 20000), function=function)
    px = read_image(f).pixels
    ds = make_dataset(arr, window=(30000.5, 20000), function=function)
    ref = apply_windowing(arr, ds) / 65535.0  # pydicom scales to the stored 16-bit range
    np.testing.assert_allclose(px, ref, atol=1e-6)
    assert 0.0 <= px.min() and px.max() <= 1.0
    if function == "SIGMOID":
        assert px[0, 2] == pytest.approx(1 / (1 + np.exp(-4 * (30000 - 30000.5) / 20000)), abs=1e-6)


def test_window_in_modality_units_after_rescale(tmp_path: Path) -> None:
    # Stored 0..4095, slope 2 intercept -1000 -> modality -1000..7190; window over [0, 4000].
    f = write_dicom(tmp_path / "resc.dcm", RAMP, bits_stored=12, rescale=(2.0, -1000.0),
                    window=(2000, 4000), function="LINEAR_EXACT")
    im = read_image(f)
    modality = RAMP * 2.0 - 1000.0
    np.testing.assert_allclose(im.pixels, np.clip((modality - 2000) / 4000 + 0.5, 0, 1), atol=1e-6)
    assert im.meta["rescale"] == {"slope": 2.0, "intercept": -1000.0}
    assert im.meta["window"] == {"kind": "window", "center": 2000.0, "width": 4000.0,
                                 "function": "LINEAR_EXACT", "alternatives": 1}


def test_voi_lut_sequence_is_preferred_to_window(tmp_path: Path) -> None:
    # A non-linear LUT (square curve) over 0..4095, 16-bit entries; a window is also present and ignored.
    table = [int(round((i / 4095) ** 2 * 65535)) for i in range(4096)]
    f = write_dicom(tmp_path / "lut.dcm", RAMP, bits_stored=12, voi_lut=([4096, 0, 16], table), window=(10, 20))
    im = read_image(f)
    np.testing.assert_allclose(im.pixels, (RAMP / 4095.0) ** 2, atol=1e-4)
    assert im.meta["window"]["kind"] == "voi_lut" and im.meta["window"]["explanation"] == "test LUT"


def test_voi_not_applied_gives_minmax(tmp_path: Path) -> None:
    f = write_dicom(tmp_path / "w.dcm", RAMP, bits_stored=12, window=(100, 10))
    im = read_dicom(f, apply_voi=False)
    np.testing.assert_allclose(im.pixels, RAMP / 4095.0, atol=1e-6)
    assert im.meta["window"]["reason"] == "apply_voi=False"


def test_for_processing_without_window_gets_percentile_window(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    arr = np.arange(1000, dtype=np.uint16).reshape(25, 40)
    f = write_dicom(tmp_path / "proc.dcm", arr, PresentationIntentType="FOR PROCESSING")
    with caplog.at_level(logging.WARNING):
        im = read_image(f)
    assert im.meta["presentation_intent"] == "FOR PROCESSING"
    assert im.meta["window"]["kind"] == "percentile"
    assert im.meta["window"]["low"] == pytest.approx(np.percentile(arr, 0.5))
    assert (im.pixels == 0).sum() == 5 and (im.pixels == 1).sum() == 5  # the 0.5 % tails are clipped
    assert "FOR PROCESSING" in caplog.text


@pytest.mark.parametrize("ts", [RLELossless, JPEG2000Lossless, JPEGLSLossless])
def test_compressed_syntaxes_decode_losslessly(tmp_path: Path, ts: str) -> None:
    rng = np.random.default_rng(1)
    arr = rng.integers(0, 4096, (64, 48)).astype(np.uint16)
    plain = read_image(write_dicom(tmp_path / "plain.dcm", arr, bits_stored=12, window=(2000, 3000)))
    packed = read_image(write_dicom(tmp_path / "packed.dcm", arr, bits_stored=12, window=(2000, 3000), compress=ts))
    assert packed.meta["transfer_syntax"] != plain.meta["transfer_syntax"]
    np.testing.assert_array_equal(packed.pixels, plain.pixels)


def test_wrong_modality_refused_unless_forced(tmp_path: Path) -> None:
    f = write_dicom(tmp_path / "ct.dcm", RAMP, modality="CT", bits_stored=12)
    with pytest.raises(DicomError, match="modality CT is not a mammogram"):
        read_image(f)
    assert read_image(f, force=True).meta["modality"] == "CT"


def test_cbis_mask_series_is_accepted_whatever_its_modality(tmp_path: Path) -> None:
    mask = np.zeros((8, 8), dtype=np.uint8)
    mask[2:5, 3:6] = 255
    f = write_dicom(tmp_path / "mask.dcm", mask, modality="OT", SeriesDescription="ROI mask images")
    assert (read_image(f).pixels > 0.5).sum() == 9


def test_truncated_pixel_data_refused(tmp_path: Path) -> None:
    f = write_dicom(tmp_path / "t.dcm", np.zeros((64, 64), np.uint16), bits_stored=12)
    data = f.read_bytes()
    f.write_bytes(data[: len(data) - 1000])
    with pytest.raises(DicomError, match="truncated pixel data"):
        read_image(f)


def test_unknown_transfer_syntax_uid_refused(tmp_path: Path) -> None:
    """A Transfer Syntax UID that names no transfer syntax (found by the long fuzz run) is a DicomError."""
    f = write_dicom(tmp_path / "ts.dcm", np.zeros((8, 8), np.uint16), bits_stored=12)
    data = f.read_bytes()
    f.write_bytes(data.replace(b"1.2.840.10008.1.2.1\x00", b"0.2.840.10008.1.2.1\x00", 1))
    with pytest.raises(DicomError, match="transfer syntax"):
        read_image(f)


def test_truncated_compressed_data_refused(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    f = write_dicom(tmp_path / "t.dcm", rng.integers(0, 4096, (64, 64)).astype(np.uint16), bits_stored=12,
                    compress=JPEG2000Lossless)
    data = f.read_bytes()
    f.write_bytes(data[: len(data) // 2])
    with pytest.raises(DicomError):
        read_image(f)


def test_empty_and_non_dicom_files(tmp_path: Path) -> None:
    empty = tmp_path / "empty.dcm"
    empty.write_bytes(b"")
    with pytest.raises(ImageReadError, match="empty"):
        read_image(empty)
    with pytest.raises(DicomError, match="empty"):
        read_dicom(empty)
    text = tmp_path / "notes.dcm"
    text.write_text("patient notes, not an image\n" * 20)
    with pytest.raises(DicomError):
        read_image(text)


def test_multiframe_refused(tmp_path: Path) -> None:
    f = write_dicom(tmp_path / "mf.dcm", np.zeros((3, 8, 8), np.uint16), bits_stored=12)
    with pytest.raises(DicomError, match="multi-frame"):
        read_image(f)


def test_colour_refused(tmp_path: Path) -> None:
    ds = make_dataset(np.zeros((4, 4, 3), np.uint8).reshape(4, 12))
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.Columns, ds.PlanarConfiguration = 3, "RGB", 4, 0
    ds.save_as(tmp_path / "rgb.dcm", enforce_file_format=True)
    with pytest.raises(DicomError, match="MONOCHROME"):
        read_image(tmp_path / "rgb.dcm")


def test_size_guard_before_decoding(tmp_path: Path) -> None:
    # The header claims 60000 x 60000 pixels but holds a few bytes: refused on the header alone.
    ds = make_dataset(np.zeros((4, 4), np.uint16))
    ds.Rows = ds.Columns = 60000
    ds.save_as(tmp_path / "bomb.dcm", enforce_file_format=True)
    with pytest.raises(DicomError, match="too large"):
        read_image(tmp_path / "bomb.dcm")
    small = write_dicom(tmp_path / "ok.dcm", np.zeros((64, 64), np.uint16))
    with pytest.raises(DicomError, match="too large"):
        read_dicom(small, max_pixels=1000)
    assert read_dicom_header(small).Rows == 64


def test_laterality_and_view_sources(tmp_path: Path) -> None:
    a = read_image(write_dicom(tmp_path / "a.dcm", RAMP, ImageLaterality="R", ViewPosition="MLO"))
    assert (a.meta["laterality"], a.meta["laterality_source"], a.meta["view"]) == ("R", "ImageLaterality", "MLO")
    b = read_image(write_dicom(tmp_path / "b.dcm", RAMP, PatientOrientation=["A", "R"]))
    assert (b.meta["laterality"], b.meta["laterality_source"]) == ("L", "PatientOrientation")
    from mammocadx.preprocess.orientation import side_from_patient_orientation

    assert b.meta["patient_orientation"] == ["A", "R"] and a.meta["patient_orientation"] is None
    assert side_from_patient_orientation(b.meta["patient_orientation"]) == "left"  # rows point anterior
    c = read_image(write_dicom(tmp_path / "c.dcm", RAMP, PatientID="Mass-Training_P_00001_LEFT_CC"))
    assert (c.meta["laterality"], c.meta["laterality_source"], c.meta["view"]) == ("L", "PatientID", "CC")
    d = read_image(write_dicom(tmp_path / "Calc-Test_P_00038_RIGHT_MLO" / "1-1.dcm", RAMP))
    assert (d.meta["laterality"], d.meta["view"], d.meta["view_source"]) == ("R", "MLO", "path")
    assert d.meta["flipped"] is False


@pytest.mark.parametrize(
    ("text", "side", "view"),
    [("Mass-Training_P_00001_LEFT_CC", "L", "CC"), ("R_MLO", "R", "MLO"), ("lcc", "L", "CC"),
     ("RIGHT-mlo", "R", "MLO"), ("cleft palate", None, None), ("LEFT and RIGHT CC", None, "CC"), ("", None, None)],
)
def test_names(text: str, side: str | None, view: str | None) -> None:
    assert laterality_from_text(text) == side
    assert view_from_text(text) == view


def test_signed_pixels_with_rescale(tmp_path: Path) -> None:
    arr = np.array([[-2048, 0], [1000, 2047]], dtype=np.int16)
    im = read_image(write_dicom(tmp_path / "s.dcm", arr, bits_stored=12, rescale=(1.0, 2048.0)))
    np.testing.assert_allclose(im.pixels, (arr + 2048.0) / 4095.0, atol=1e-6)
    assert im.meta["signed"] is True


def test_decoders_for_archive_syntaxes_are_installed() -> None:
    from pydicom import uid
    from pydicom.pixels import get_decoder

    for ts in (uid.RLELossless, uid.JPEGLossless, uid.JPEGLosslessSV1, uid.JPEG2000Lossless, uid.JPEG2000,
               uid.JPEGLSLossless, uid.JPEGLSNearLossless, uid.JPEGBaseline8Bit, uid.JPEGExtended12Bit):
        assert get_decoder(ts).is_available, f"no decoder plugin for {ts.name}"


def test_monochrome1_with_inverse_shape_is_inverted_once(tmp_path: Path) -> None:
    # PS3.3 C.8.11.6: MONOCHROME1 images carry Presentation LUT Shape INVERSE; both say the same thing.
    f = write_dicom(tmp_path / "m1i.dcm", RAMP, photometric="MONOCHROME1", bits_stored=12, PresentationLUTShape="INVERSE")
    np.testing.assert_allclose(read_image(f).pixels, 1.0 - RAMP / 4095.0, atol=1e-6)
