"""Feature-cache keys of a lesion's *source*: the image file's bytes, the ROI and the preprocessing.

The feature cache (:mod:`mammocadx.features.cache`) keys a vector by the ROI
pixels the network sees, so finding it needs those pixels: every image decoded
and every ROI cut again. On mini-MIAS that decoding was most of a cached re-run.
A *source key* names the same vector without decoding anything:

- the SHA-256 of the image file's bytes (and of the lesion-mask file, if any)
  and the file's suffix (readers are chosen by content, the suffix is kept to
  be safe);
- the ROI geometry, view and laterality (segmentation uses both);
- every preprocessing parameter the caller names (segmentation, CLAHE, context,
  ROI size, pseudocolour);
- a digest of the *source code* of the reading and preprocessing modules
  (:mod:`mammocadx.io`, :mod:`mammocadx.preprocess`, :mod:`mammocadx.records`)
  and the versions of the decoding and image libraries, so that a change to how
  pixels are made can never serve an old vector;
- the extractor's own context (backbone, weights hash, engine, versions).

A vector is stored under both keys when it is computed, so either finds it.
"""
from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

from mammocadx.utils.hashing import sha256_file
from mammocadx.utils.versions import dist_version

#: Libraries whose behaviour shapes the ROI pixels.
PIXEL_LIBRARIES = ("numpy", "scipy", "opencv-python-headless", "opencv-python", "pillow", "tifffile", "pydicom",
                   "pylibjpeg", "pylibjpeg-libjpeg", "pylibjpeg-openjpeg", "pylibjpeg-rle", "pyjpegls",
                   "scikit-image")

_PACKAGE_ROOT = Path(__file__).resolve().parents[1]  # src/mammocadx
#: Parts of the package whose code turns a file into ROI pixels.
PIXEL_CODE = ("io", "preprocess", "records.py")


@lru_cache(maxsize=1)
def code_digest() -> str:
    """SHA-256 over the pixel-making source files of this package and the versions of :data:`PIXEL_LIBRARIES`."""
    h = hashlib.sha256()
    for part in PIXEL_CODE:
        base = _PACKAGE_ROOT / part
        files = sorted(base.rglob("*.py")) if base.is_dir() else [base]
        for f in files:
            h.update(str(f.relative_to(_PACKAGE_ROOT)).encode())
            h.update(f.read_bytes())
    h.update(json.dumps({lib: dist_version(lib) for lib in PIXEL_LIBRARIES}, sort_keys=True).encode())
    return h.hexdigest()


_FILE_DIGESTS: dict[tuple[str, int, int], str] = {}


def file_digest(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file's bytes (remembered in this process while its size and mtime stay the same).

    Raises
    ------
    OSError
        If the file cannot be read (the caller then decodes it the usual way and reports the error).
    """
    p = Path(path)
    st = p.stat()
    memo = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    hit = _FILE_DIGESTS.get(memo)
    if hit is not None:
        return hit
    digest = sha256_file(p)
    _FILE_DIGESTS[memo] = digest
    return digest


def source_digest(image_path: str | os.PathLike[str], roi: Any, view: str | None, laterality: str | None,
                  params: Mapping[str, Any]) -> str:
    """Digest of everything that makes one lesion's ROI pixels, without reading its pixels.

    Parameters
    ----------
    image_path : path
        The image file (hashed by content).
    roi : Roi
        :class:`~mammocadx.records.Roi` (its mask file, if any, is hashed by content).
    view, laterality : str or None
        As in the lesion record.
    params : mapping
        Preprocessing parameters (segmentation, CLAHE, context, ROI size, pseudocolour ...).

    Raises
    ------
    OSError
        If the image or mask file cannot be read.
    """
    mask = getattr(roi, "mask_path", None)
    doc = {
        "image": file_digest(image_path),
        "suffix": Path(image_path).suffix.lower(),
        "roi": {"circle": getattr(roi, "circle", None), "box": getattr(roi, "box", None),
                "mask": file_digest(mask) if mask is not None else None},
        "view": view,
        "laterality": laterality,
        "params": dict(params),
        "code": code_digest(),
    }
    text = json.dumps(doc, sort_keys=True, default=str, separators=(",", ":"))
    return "src:" + hashlib.sha256(text.encode()).hexdigest()
