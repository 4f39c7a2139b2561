"""Image reading: formats, bit depths, and clear errors on bad files."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mammocadx.errors import ImageReadError
from mammocadx.io.images import read_image, to_uint8

GRADIENT8 = np.tile(np.arange(256, dtype=np.uint8), (4, 1))
GRADIENT16 = np.tile(np.array([0, 1000, 32768, 65535], dtype=np.uint16), (3, 1))


@pytest.mark.parametrize("ext,fmt", [(".png", "png"), (".pgm", "pgm"), (".tif", "tiff"), (".bmp", "bmp")])
def test_8bit_formats_read_losslessly(tmp_path: Path, ext: str, fmt: str) -> None:
    p = tmp_path / f"g{ext}"
    Image.fromarray(GRADIENT8).save(p)
    img = read_image(p)
    assert img.format == fmt and img.bit_depth == 8 and img.shape == (4, 256)
    assert img.pixels.dtype == np.float32
    np.testing.assert_array_equal(to_uint8(img.pixels), GRADIENT8)


def test_16bit_png_and_tiff_keep_full_precision(tmp_path: Path) -> None:
    import tifffile

    png = tmp_path / "g16.png"
    Image.fromarray(GRADIENT16).save(png)
    tif = tmp_path / "g16.tif"
    tifffile.imwrite(tif, GRADIENT16)
    for p in (png, tif):
        img = read_image(p)
        assert img.bit_depth == 16
        np.testing.assert_allclose(img.pixels[0], GRADIENT16[0] / 65535.0, atol=1e-7)


def test_jpeg_is_read_approximately(tmp_path: Path) -> None:
    p = tmp_path / "g.jpg"
    Image.fromarray(np.full((32, 32), 128, np.uint8)).save(p, quality=95)
    img = read_image(p)
    assert img.format == "jpeg" and abs(float(img.pixels.mean()) - 128 / 255) < 0.01


def test_format_is_told_by_content_not_extension(tmp_path: Path) -> None:
    p = tmp_path / "really_a_png.jpg"
    Image.fromarray(GRADIENT8).save(p, format="PNG")
    assert read_image(p).format == "png"


@pytest.mark.parametrize(
    "content,match",
    [(b"", "empty file"), (b"hello, I am text", "not a supported image"), (b"\x89PNG\r\n\x1a\n\x00\x00", "cannot decode")],
)
def test_bad_files_raise_typed_errors_naming_the_file(tmp_path: Path, content: bytes, match: str) -> None:
    p = tmp_path / "bad.png"
    p.write_bytes(content)
    with pytest.raises(ImageReadError, match=match) as info:
        read_image(p)
    assert info.value.path == p and "bad.png" in str(info.value)


def test_truncated_png_and_missing_file(tmp_path: Path) -> None:
    p = tmp_path / "t.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8)).save(p)
    p.write_bytes(p.read_bytes()[:200])
    with pytest.raises(ImageReadError, match="cannot decode"):
        read_image(p)
    with pytest.raises(ImageReadError, match="file not found"):
        read_image(tmp_path / "missing.png")
    with pytest.raises(ImageReadError, match="folder"):
        read_image(tmp_path)
