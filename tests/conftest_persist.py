"""Helpers for the robustness tests: a hang guard, crafted headers and small valid files of every format."""
from __future__ import annotations

import io
import os
import struct
import threading
import warnings
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from mammocadx.errors import MammocadxError

#: Seconds one read may take before the test calls it a hang.
READ_TIMEOUT_S = float(os.environ.get("MAMMOCADX_READ_TIMEOUT", "20"))


def fuzz_examples(default: int) -> int:
    """Hypothesis example count: ``default`` in the fast suite, ``$MAMMOCADX_FUZZ_EXAMPLES`` when set."""
    return int(os.environ.get("MAMMOCADX_FUZZ_EXAMPLES", default))


def guarded(fn: Callable[..., Any], *args: Any, timeout: float = READ_TIMEOUT_S,
            expected: type[BaseException] = MammocadxError, **kwargs: Any) -> tuple[str, Any]:
    """Run ``fn`` in a daemon thread; ``("ok", result)`` or ``("refused", error)`` for a typed error.

    Any other exception, or no answer within ``timeout`` seconds, fails the
    test with the input named (a daemon thread cannot keep pytest from exiting).
    """
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                box["ok"] = fn(*args, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - classified below, in the test thread
            box["error"] = exc

    t = threading.Thread(target=target, daemon=True, name=f"guarded-{getattr(fn, '__name__', 'call')}")
    t.start()
    t.join(timeout)
    where = f"{getattr(fn, '__name__', fn)}{args!r}"[:300]
    if t.is_alive():
        raise AssertionError(f"hang: {where} did not return within {timeout:.0f} s")
    if "error" in box:
        exc = box["error"]
        if isinstance(exc, expected):
            return "refused", exc
        raise AssertionError(f"crash: {where} raised {type(exc).__name__}: {exc}") from exc
    return "ok", box["ok"]


# ----------------------------------------------------------------------------- crafted files

def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_with_header(width: int, height: int, bit_depth: int = 8, colour: int = 0, idat: bytes = b"") -> bytes:
    """A PNG with a valid-CRC IHDR of any size and the given (compressed) IDAT payload."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(idat))
            + png_chunk(b"IEND", b""))


def _pillow_bytes(arr: np.ndarray, fmt: str, **kw: Any) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, fmt, **kw)
    return buf.getvalue()


def sample_image(seed: int = 0, shape: tuple[int, int] = (48, 40)) -> np.ndarray:
    """A small textured greyscale image (uint8)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    base = 120 + 60 * np.sin(xx / 5.0) * np.cos(yy / 7.0) + rng.normal(0, 15, shape)
    return np.clip(base, 0, 255).astype(np.uint8)


def valid_files(dicom_dir: Path | None = None) -> dict[str, bytes]:
    """One small valid file of every format read_image supports (bytes, keyed by a name with extension)."""
    import tifffile

    img = sample_image()
    out = {
        "png8.png": _pillow_bytes(img, "PNG"),
        "png16.png": _pillow_bytes((img.astype(np.uint16) * 257), "PNG"),
        "jpeg.jpg": _pillow_bytes(img, "JPEG", quality=90),
        "pgm.pgm": _pillow_bytes(img, "PPM"),
        "bmp.bmp": _pillow_bytes(img, "BMP"),
        "rgb.png": _pillow_bytes(np.stack([img, img // 2, 255 - img], -1), "PNG"),
    }
    buf = io.BytesIO()
    tifffile.imwrite(buf, img.astype(np.uint16) * 100)
    out["tiff16.tif"] = buf.getvalue()
    buf = io.BytesIO()
    tifffile.imwrite(buf, img, compression="zlib")
    out["tiff_zlib.tif"] = buf.getvalue()
    if dicom_dir is not None:
        from conftest_dicom import write_dicom

        p = write_dicom(dicom_dir / "mg.dcm", img.astype(np.uint16) * 16, bits_stored=12, window=(2000, 3000))
        out["mg.dcm"] = p.read_bytes()
    return out
