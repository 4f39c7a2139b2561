"""pydicom's own bundled test files through the reader: each is read or refused with a typed error.

The files are found on disk next to pydicom (``pydicom/data/test_files``), not through
``pydicom.data.get_testdata_files()``, which would try to download more from the network.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pydicom.data
import pytest

from mammocadx.errors import ImageReadError
from mammocadx.io.images import read_image

ROOT = Path(pydicom.data.__file__).parent / "test_files"
FILES = sorted(p for p in ROOT.rglob("*") if p.is_file() and p.suffix != ".py")


def test_every_bundled_file_is_read_or_refused_with_a_typed_error() -> None:
    assert len(FILES) > 100, f"pydicom test files not found under {ROOT}"
    read, refused, crashed = [], [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for f in FILES:
            try:
                im = read_image(f, force=True)
            except ImageReadError as exc:  # DicomError is one
                assert str(f) in str(exc) and exc.reason
                refused.append(f.name)
            except Exception as exc:  # noqa: BLE001 - the point of the test is that none escape
                crashed.append(f"{f.name}: {type(exc).__name__}: {exc}")
            else:
                assert im.pixels.ndim == 2 and im.pixels.dtype == np.float32
                assert np.isfinite(im.pixels).all() and 0.0 <= im.pixels.min() and im.pixels.max() <= 1.0
                read.append(f.name)
    assert not crashed, crashed
    assert len(read) >= 40  # 53 greyscale single-frame images with pydicom 3.0


@pytest.mark.parametrize("name", ["MR_small_RLE.dcm", "MR_small_jp2klossless.dcm", "MR_small_jpeg_ls_lossless.dcm",
                                  "MR_small_bigendian.dcm", "MR_small_implicit.dcm"])
def test_lossless_variants_equal_the_uncompressed_original(name: str) -> None:
    ref = read_image(ROOT / "MR_small.dcm", force=True)
    other = read_image(ROOT / name, force=True)
    np.testing.assert_array_equal(other.pixels, ref.pixels)
    assert ref.meta["window"]["kind"] in {"window", "minmax"}


def test_non_mammogram_refused_without_force() -> None:
    with pytest.raises(ImageReadError, match="modality MR is not a mammogram"):
        read_image(ROOT / "MR_small.dcm")
