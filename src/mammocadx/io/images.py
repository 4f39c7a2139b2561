"""Read mammograms (PNG, PGM, JPEG, TIFF, DICOM) into float32 arrays in [0, 1].

The format is told from the file's content, not its extension: a DICOM file
renamed ``.png`` is still read as DICOM, and a text file named ``.png`` is
refused with an :class:`~mammocadx.errors.ImageReadError` that names it.
"""
from __future__ import annotations

import logging
import warnings
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np

from mammocadx.errors import ImageReadError
from mammocadx.io.limits import MAX_PIXELS
from mammocadx.records import ImageData, to_uint8  # noqa: F401  (to_uint8 re-exported: io.images.to_uint8)

log = logging.getLogger(__name__)


_MAGIC = {
    b"\x89PNG\r\n\x1a\n": "png",
    b"\xff\xd8\xff": "jpeg",
    b"II*\x00": "tiff",
    b"MM\x00*": "tiff",
    b"II+\x00": "tiff",
    b"MM\x00+": "tiff",
    b"P2": "pgm",
    b"P5": "pgm",
    b"BM": "bmp",
}




def sniff_format(path: Path) -> str:
    """Tell an image's format from its first bytes.

    Raises
    ------
    ImageReadError
        If the file is missing, empty, a folder, or not a known image format.
    """
    if not path.exists():
        raise ImageReadError("file not found", path)
    if path.is_dir():
        raise ImageReadError("is a folder, not an image file", path)
    if not path.is_file():  # a FIFO would block open() forever; devices never end
        raise ImageReadError("not a regular file (a pipe, socket or device)", path)
    try:
        with path.open("rb") as fh:
            head = fh.read(132)
    except OSError as exc:
        raise ImageReadError(f"cannot open ({exc.strerror or exc})", path) from exc
    if not head:
        raise ImageReadError("empty file (0 bytes)", path)
    if len(head) >= 132 and head[128:132] == b"DICM":
        return "dicom"
    for magic, fmt in _MAGIC.items():
        if head.startswith(magic):
            return fmt
    if path.suffix.lower() in {".dcm", ".dicom"}:
        # DICOM without the 128-byte preamble (old ACR-NEMA style); pydicom decides.
        return "dicom"
    raise ImageReadError("not a supported image (PNG, PGM, JPEG, TIFF, BMP or DICOM expected)", path)


def read_image(path: str | PathLike[str], **dicom_options: Any) -> ImageData:
    """Read one mammogram as float32 greyscale in [0, 1].

    Parameters
    ----------
    path : str or PathLike
        The file. Its format is told from its content.
    **dicom_options
        Passed to :func:`mammocadx.io.dicom.read_dicom` for DICOM files
        (for example ``apply_voi=False``).

    Returns
    -------
    ImageData
        Pixels scaled by the file's bit depth (8-bit: /255, 16-bit: /65535;
        DICOM: windowed, see :mod:`mammocadx.io.dicom`).

    Raises
    ------
    ImageReadError
        Missing, empty, truncated, corrupt, too large or unsupported files;
        the message names the file and the reason.
    """
    path = Path(path)
    fmt = sniff_format(path)
    if fmt == "dicom":
        from mammocadx.io.dicom import read_dicom

        return read_dicom(path, **dicom_options)
    if fmt == "tiff":
        arr = _read_tiff(path)
    else:
        arr = _read_pillow(path)
    return _to_image_data(arr, path, fmt)


def _read_pillow(path: Path) -> np.ndarray:
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                w, h = im.size
                if w * h > MAX_PIXELS:
                    raise ImageReadError(f"image too large ({w}x{h} pixels; limit {MAX_PIXELS})", path)
                im.load()
                if im.mode in {"I;16", "I;16B", "I;16L", "I"}:
                    arr = np.asarray(im, dtype=np.int64)
                    if arr.min() < 0 or arr.max() > 65535:
                        raise ImageReadError("integer pixels outside 0..65535", path)
                    return arr.astype(np.uint16)
                if im.mode == "F":
                    return np.asarray(im, dtype=np.float32)
                if im.mode not in {"L", "1"}:
                    im = im.convert("L")  # colour files: ITU-R 601 luma
                return np.asarray(im, dtype=np.uint8)
    except ImageReadError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageReadError(f"image too large ({exc})", path) from exc
    except (OSError, ValueError, SyntaxError) as exc:
        # Pillow raises OSError for truncated/corrupt data, SyntaxError for bad headers.
        raise ImageReadError(f"cannot decode ({exc})", path) from exc


def _read_tiff(path: Path) -> np.ndarray:
    import tifffile

    try:
        with tifffile.TiffFile(path) as tf:
            page = tf.pages[0]
            shape = page.shape
            if int(np.prod(shape[:2])) > MAX_PIXELS:
                raise ImageReadError(f"image too large ({shape[1]}x{shape[0]} pixels; limit {MAX_PIXELS})", path)
            arr = page.asarray()
    except ImageReadError:
        raise
    except Exception as exc:  # tifffile raises many kinds (TiffFileError, ValueError, struct.error ...)
        raise ImageReadError(f"cannot decode TIFF ({type(exc).__name__}: {exc})", path) from exc
    if arr.ndim == 3:
        if arr.shape[-1] in (3, 4):
            arr = (0.299 * arr[..., 0] + 0.587 * arr[..., 1] + 0.114 * arr[..., 2]).astype(arr.dtype)
        else:
            raise ImageReadError(f"multi-page or multi-channel TIFF of shape {arr.shape} is not supported", path)
    return arr


def _to_image_data(arr: np.ndarray, path: Path, fmt: str) -> ImageData:
    if arr.ndim != 2 or min(arr.shape) < 1:
        raise ImageReadError(f"expected a 2-D greyscale image, got shape {arr.shape}", path)
    if arr.dtype == np.uint8 or arr.dtype == bool:
        bits = 8
        pixels = arr.astype(np.float32) / 255.0
    elif arr.dtype == np.uint16:
        bits = 16
        pixels = arr.astype(np.float32) / 65535.0
    elif np.issubdtype(arr.dtype, np.floating):
        bits = 32
        a = arr.astype(np.float32)
        if not np.isfinite(a).all():
            raise ImageReadError("float image holds NaN or infinite values", path)
        lo, hi = float(a.min()), float(a.max())
        pixels = (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)
    elif np.issubdtype(arr.dtype, np.integer):
        bits = int(arr.dtype.itemsize * 8)
        info = np.iinfo(arr.dtype)
        pixels = (arr.astype(np.float64) - info.min) / float(info.max - info.min)
        pixels = pixels.astype(np.float32)
    else:
        raise ImageReadError(f"unsupported pixel type {arr.dtype}", path)
    log.debug("read %s (%s, %d bit, %dx%d)", path, fmt, bits, arr.shape[1], arr.shape[0])
    return ImageData(pixels=np.ascontiguousarray(pixels, dtype=np.float32), source=path, format=fmt, bit_depth=bits)
