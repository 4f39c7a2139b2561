"""Bad-input corpus: every file gets an image or a typed error, never a crash or a hang.

Covers pydicom's bundled test files, zero-byte and truncated files of every
format, headers announcing huge images, non-images with image extensions,
special files, and path names with ``..`` and odd characters.
"""
from __future__ import annotations

import io
import os
import resource
import struct
import sys
import time
from pathlib import Path

import numpy as np
import pydicom.data
import pytest
from conftest_persist import guarded, png_with_header, sample_image, valid_files

from mammocadx.errors import DicomError, ImageReadError
from mammocadx.io.images import MAX_PIXELS, read_image

# On disk next to pydicom; pydicom.data.get_testdata_files() would also try to download more.
PYDICOM_FILES = sorted(p for p in (Path(pydicom.data.__file__).parent / "test_files").rglob("*")
                       if p.is_file() and p.suffix != ".py")


def _check_image(im, path):
    assert im.pixels.ndim == 2 and im.pixels.dtype == np.float32 and min(im.pixels.shape) >= 1
    assert np.isfinite(im.pixels).all(), path
    assert 0.0 <= float(im.pixels.min()) and float(im.pixels.max()) <= 1.0, path


def _check_refusal(exc, path):
    assert isinstance(exc, ImageReadError)
    assert exc.reason and str(Path(path).name) in str(exc), exc  # the message names the file


@pytest.mark.parametrize("force", [False, True], ids=["mammograms-only", "force"])
def test_every_pydicom_test_file(force):
    assert len(PYDICOM_FILES) > 100
    outcomes = {"ok": 0, "refused": 0}
    for f in PYDICOM_FILES:
        kind, value = guarded(read_image, f, force=force, expected=ImageReadError)
        outcomes[kind] += 1
        if kind == "ok":
            _check_image(value, f)
        else:
            _check_refusal(value, f)
    if force:
        assert outcomes["ok"] >= 40  # the single-frame greyscale ones (53 with pydicom 3.0)
    else:
        assert outcomes["ok"] == 0  # none of them is a mammogram (MG): refused without --force


@pytest.fixture(scope="module")
def valid(tmp_path_factory):
    return valid_files(tmp_path_factory.mktemp("dicom"))


def test_the_valid_corpus_reads(valid, tmp_path):
    for name, data in valid.items():
        p = tmp_path / name
        p.write_bytes(data)
        kind, im = guarded(read_image, p)
        assert kind == "ok", (name, im)
        _check_image(im, p)
        assert im.shape == (48, 40)


@pytest.mark.parametrize("ext", [".png", ".jpg", ".jpeg", ".tif", ".tiff", ".pgm", ".bmp", ".dcm", ".dicom", ""])
def test_zero_byte_files(ext, tmp_path):
    p = tmp_path / f"empty{ext}"
    p.write_bytes(b"")
    kind, exc = guarded(read_image, p)
    assert kind == "refused"
    _check_refusal(exc, p)
    assert "empty" in exc.reason


def test_truncated_files_of_every_format(valid, tmp_path):
    """Cut every valid file at many points: a typed error or (rarely) a smaller readable image."""
    refused = 0
    for name, data in valid.items():
        cuts = sorted({1, 2, 4, 8, 16, 64, 128, 132, 200, *(int(len(data) * f) for f in (0.25, 0.5, 0.75, 0.9)),
                       len(data) - 1})
        for cut in cuts:
            if not 0 < cut < len(data):
                continue
            p = tmp_path / f"cut{cut}_{name}"
            p.write_bytes(data[:cut])
            kind, value = guarded(read_image, p)
            if kind == "refused":
                _check_refusal(value, p)
                refused += 1
            else:
                _check_image(value, p)
    assert refused > 50


def _jpeg_with_size(width, height):
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(sample_image()).save(buf, "JPEG")
    data = bytearray(buf.getvalue())
    i = data.index(b"\xff\xc0")  # baseline start-of-frame: length(2) precision(1) height(2) width(2)
    struct.pack_into(">HH", data, i + 5, height, width)
    return bytes(data)


def _tiff_with_size(width, height):
    header = b"II*\x00" + struct.pack("<I", 8)
    tags = [(256, 4, 1, width), (257, 4, 1, height), (258, 3, 1, 8), (259, 3, 1, 1), (262, 3, 1, 1),
            (273, 4, 1, 200), (277, 3, 1, 1), (278, 4, 1, height), (279, 4, 1, width * height & 0xFFFFFFFF)]
    ifd = struct.pack("<H", len(tags)) + b"".join(struct.pack("<HHII", *t) for t in tags) + b"\0\0\0\0"
    return header + ifd + b"\0" * 100


def _bmp_with_size(width, height):
    return (b"BM" + struct.pack("<IHHI", 0, 0, 0, 54)
            + struct.pack("<IiiHHIIiiII", 40, width, height, 1, 8, 0, 0, 0, 0, 0, 0) + b"\0" * 64)


HUGE = {
    "png_100000x100000.png": lambda: png_with_header(100_000, 100_000),
    "png16_100000x100000.png": lambda: png_with_header(100_000, 100_000, bit_depth=16),
    "png_2^31.png": lambda: png_with_header(2**31 - 1, 2**31 - 1),
    "jpeg_60000x60000.jpg": lambda: _jpeg_with_size(60_000, 60_000),
    "tiff_100000x100000.tif": lambda: _tiff_with_size(100_000, 100_000),
    "pgm_100000x100000.pgm": lambda: b"P5 100000 100000 255\n" + b"\0" * 100,
    "pgm16_50000x50000.pgm": lambda: b"P5 50000 50000 65535\n" + b"\0" * 100,
    "bmp_100000x100000.bmp": lambda: _bmp_with_size(100_000, 100_000),
}


@pytest.mark.parametrize("name", sorted(HUGE))
def test_huge_dimensions_are_refused_fast_without_allocating(name, tmp_path):
    p = tmp_path / name
    p.write_bytes(HUGE[name]())
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    kind, exc = guarded(read_image, p)
    elapsed = time.perf_counter() - t0
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / (1024 if sys.platform != "darwin" else 2**20)
    assert kind == "refused", f"{name} was read"
    _check_refusal(exc, p)
    assert "too large" in exc.reason or "cannot decode" in exc.reason
    assert elapsed < 2.0 and grown_mb < 100


def test_huge_dicom_header_is_refused_before_decoding(tmp_path):
    from conftest_dicom import make_dataset

    ds = make_dataset(sample_image().astype(np.uint16))
    ds.Rows, ds.Columns = 65535, 65535  # 4.3 Gpx announced, 4 kB of pixel data present
    p = tmp_path / "huge.dcm"
    ds.save_as(p, enforce_file_format=True)
    t0 = time.perf_counter()
    kind, exc = guarded(read_image, p)
    assert kind == "refused" and isinstance(exc, DicomError) and "too large" in exc.reason
    assert time.perf_counter() - t0 < 2.0
    assert 65535 * 65535 > MAX_PIXELS


NOT_IMAGES = {
    "text.png": b"hello, I am a text file pretending to be a PNG\n",
    "html.jpg": b"<!DOCTYPE html><html><body>404 Not Found</body></html>",
    "zip.dcm": b"PK\x03\x04" + b"\0" * 200,
    "pdf.tif": b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n" + b"\0" * 200,
    "elf.png": b"\x7fELF\x02\x01\x01" + b"\0" * 300,
    "gif.png": b"GIF89a\x01\x00\x01\x00\x00\x00\x00;",
    "csv.dcm": b"path,label,patient_id\nimg.png,benign,p1\n" * 10,
    "magic_only.png": b"\x89PNG\r\n\x1a\n",
    "magic_only.jpg": b"\xff\xd8\xff",
    "magic_only.tif": b"II*\x00",
    "magic_only.pgm": b"P5",
    "magic_only.bmp": b"BM",
    "dicm_only.dcm": b"\0" * 128 + b"DICM",
    "dicm_garbage.dcm": b"\0" * 128 + b"DICM" + bytes(range(256)) * 4,
    "preamble_less_garbage.dcm": bytes(range(256)) * 8,
    "utf16_bom.png": "\ufeffnot an image".encode("utf-16"),
    "png_zero_size.png": png_with_header(0, 0),
    "png_bad_depth.png": png_with_header(10, 10, bit_depth=7),
    "png_bad_colour.png": png_with_header(10, 10, colour=5),
    "pgm_text_pixels.pgm": b"P2 2 2 255\n1 2 3 x\n",
    "pgm_negative.pgm": b"P5 -2 2 255\n\0\0\0\0",
    "pgm_maxval_too_big.pgm": b"P5 2 2 70000\n" + b"\0" * 8,
    "tiff_loop.tif": b"II*\x00" + struct.pack("<I", 4),  # IFD offset points back into the header
    "tiff_bad_offset.tif": b"MM\x00*" + struct.pack(">I", 0x7FFFFFFF),
}


@pytest.mark.parametrize("name", sorted(NOT_IMAGES))
def test_non_images_and_malformed_headers_are_refused(name, tmp_path):
    p = tmp_path / name
    p.write_bytes(NOT_IMAGES[name])
    kind, value = guarded(read_image, p)
    assert kind == "refused", f"{name} was read as an image of shape {value.shape}"
    _check_refusal(value, p)


def test_special_files_and_folders_are_refused(tmp_path):
    folder = tmp_path / "folder.png"
    folder.mkdir()
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)  # open() on a FIFO would wait forever for a writer
    link = tmp_path / "loop.png"
    os.symlink(link, link)
    dangling = tmp_path / "dangling.dcm"
    os.symlink(tmp_path / "nowhere", dangling)
    for p in (folder, fifo, link, dangling, tmp_path / "missing.png", Path("/dev/null")):
        kind, exc = guarded(read_image, p, timeout=5)
        assert kind == "refused", p
        assert exc.reason


ODD_NAMES = ["with space.png", "ünïcødé_乳腺.png", "quote'and\"double.png", "..png", "...png", "a..b.png",
             "-leading-dash.png", "semi;colon&amp$HOME.png", "new\nline.png", "tab\tname.png", "#hash%20.png",
             "x" * 200 + ".png"]


@pytest.mark.parametrize("name", ODD_NAMES, ids=range(len(ODD_NAMES)))
def test_odd_file_names_are_read(name, valid, tmp_path):
    p = tmp_path / name
    p.write_bytes(valid["png8.png"])
    kind, im = guarded(read_image, p)
    assert kind == "ok" and im.shape == (48, 40) and im.source == p
    kind, im = guarded(read_image, str(p))
    assert kind == "ok"


def test_paths_with_dotdot_components(valid, tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "img.png").write_bytes(valid["png8.png"])
    kind, im = guarded(read_image, tmp_path / "a" / "b" / ".." / ".." / "img.png")
    assert kind == "ok" and im.shape == (48, 40)
    kind, exc = guarded(read_image, tmp_path / "a" / ".." / "nothing" / ".." / "missing.png")
    assert kind == "refused" and "not found" in exc.reason


def test_dicom_renamed_png_is_read_by_content(valid, tmp_path):
    p = tmp_path / "really_dicom.png"
    p.write_bytes(valid["mg.dcm"])
    kind, im = guarded(read_image, p)
    assert kind == "ok" and im.format == "dicom"
    p = tmp_path / "really_png.dcm"
    p.write_bytes(valid["png8.png"])
    kind, im = guarded(read_image, p)
    assert kind == "ok" and im.format == "png"


HOSTILE_INFO_ROWS = [
    "mdb001 G CIRC B 535 425 nan",
    "mdb001 G CIRC B 535 425 inf",
    "mdb001 G CIRC B nan 425 10",
    "mdb001 G CIRC B 535 -inf 10",
    "mdb001 G CIRC B 535 425 -3",
    "mdb001 G CIRC B 535 425 0",
    "mdb001 G CIRC B 5000 425 10",
    "mdb001 G CIRC B 535 425",
    "mdb001 G CIRC B x y z",
    "mdb001 G BOGUS B 535 425 10",
    "mdb001 G CIRC Q 535 425 10",
    "mdb001 G",
]


@pytest.mark.parametrize("row", HOSTILE_INFO_ROWS)
def test_mias_info_rows_that_must_be_refused(row):
    mias = pytest.importorskip("mammocadx.datasets.mias")
    from mammocadx.errors import DatasetError

    text = "mini-MIAS header text\n" + row + "\nmdb002 G CIRC B 522 280 69\n"
    kind, exc = guarded(mias.parse_info, text, expected=DatasetError, timeout=10)
    assert kind == "refused", f"{row!r} was accepted"
    assert "line 2" in exc.reason


def test_dicom_with_empty_pixel_data_is_refused(tmp_path):
    """Found by fuzzing: an empty Pixel Data element reads back as None."""
    from conftest_dicom import make_dataset

    ds = make_dataset(np.zeros((4, 4), np.uint8))
    ds.PixelData = b""
    p = tmp_path / "empty_pixels.dcm"
    ds.save_as(p, enforce_file_format=True)
    kind, exc = guarded(read_image, p)
    assert kind == "refused" and isinstance(exc, DicomError)
    assert "pixel data" in exc.reason.lower()


@pytest.mark.parametrize("shape", [(1, 1), (3, 2)])
def test_dicom_with_multi_valued_rescale_is_refused(shape, tmp_path):
    """Found by fuzzing: a slope of "1\\2" broadcast into the pixels (1x1 -> 1x2) or crashed."""
    from conftest_dicom import make_dataset

    ds = make_dataset(np.arange(shape[0] * shape[1], dtype=np.uint16).reshape(shape), rescale=(1.0, 0.0))
    ds.RescaleSlope = [1, 2]
    p = tmp_path / "multi_slope.dcm"
    ds.save_as(p, enforce_file_format=True)
    kind, exc = guarded(read_image, p)
    assert kind == "refused" and isinstance(exc, DicomError) and "RescaleSlope" in exc.reason
