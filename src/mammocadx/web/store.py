"""The image store: uploads saved under one private folder, decoded, kept for a while, evicted.

Uploads are written only under a private temporary folder made for this app
(``tempfile.mkdtemp``), under random names; the client's filename is never used
and never stored. The format is told from the file's content (magic bytes),
never from its name: anything else gets 415; files that cannot be decoded get
400. Images above ``WebConfig.max_pixels`` are refused (413) from their
header, before their pixels are decoded. The folder is removed when the app
shuts down; a server killed before that leaves it behind, and the next server
to start sweeps it (:func:`make_upload_folder`).
"""
from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import logging
import os
import re
import shutil
import tempfile
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from fastapi import UploadFile

from mammocadx.errors import DicomError, ImageReadError
from mammocadx.io.images import ImageData, read_image, sniff_format
from mammocadx.web.api_errors import ApiError, too_large
from mammocadx.web.config import WebConfig
from mammocadx.web.schemas import WindowPreset

log = logging.getLogger(__name__)

T = TypeVar("T")

FOLDER_PREFIX = "mammocadx-web-"
_OWNED = re.compile(re.escape(FOLDER_PREFIX) + r"(\d+)-[A-Za-z0-9_]+$")
_LEGACY = re.compile(re.escape(FOLDER_PREFIX) + r"[A-Za-z0-9_]+$")
_UPLOAD_NAME = re.compile(r"[0-9a-f]{32}\.upload$")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def sweep_stale_folders(parent: Path, legacy_age_s: float = 86400.0) -> list[Path]:
    """Delete upload folders left by servers that were killed before they could clean up.

    Only folders this module makes are touched: ``mammocadx-web-<pid>-*``
    owned by this user whose process is gone, and older unnamed
    ``mammocadx-web-*`` folders (from earlier versions) that hold nothing but
    upload files and were last changed more than ``legacy_age_s`` ago.

    Returns
    -------
    list of Path
        The folders deleted.
    """
    removed: list[Path] = []
    uid = os.getuid() if hasattr(os, "getuid") else None
    for folder in parent.glob(FOLDER_PREFIX + "*"):
        try:
            st = folder.lstat()
            if not folder.is_dir() or folder.is_symlink() or (uid is not None and st.st_uid != uid):
                continue
            owned = _OWNED.match(folder.name)
            if owned:
                stale = not _pid_alive(int(owned.group(1)))
            elif _LEGACY.match(folder.name):
                stale = (time.time() - st.st_mtime > legacy_age_s
                         and all(_UPLOAD_NAME.match(f.name) for f in folder.iterdir()))
            else:
                stale = False
        except OSError:
            continue
        if stale:
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    if removed:
        log.info("removed %d upload folder(s) left by servers that did not stop cleanly", len(removed))
    return removed


def make_upload_folder(parent: Path | None = None) -> Path:
    """Sweep stale upload folders under ``parent`` (default: the system temp folder), then make a private one.

    The new folder's name carries this process id, so a later server can tell
    whether its owner is still running.
    """
    base = Path(parent) if parent is not None else Path(tempfile.gettempdir())
    sweep_stale_folders(base)
    return Path(tempfile.mkdtemp(prefix=f"{FOLDER_PREFIX}{os.getpid()}-", dir=base))


@dataclass
class StoredImage:
    """One uploaded image: where its bytes are, what they hash to, what was read from them."""

    image_id: str
    path: Path
    sha256: str
    size_bytes: int
    format: str
    bit_depth: int
    width: int
    height: int
    view_info: dict[str, Any] | None = None


@dataclass
class Ingested:
    """An upload just stored: its entry, the decoded image and the 8-bit preview (base64 PNG and size)."""

    entry: StoredImage
    image: ImageData
    preview_png: str
    preview_size: tuple[int, int]


async def run_io(fn: Callable[[], T], timeout_s: float, what: str) -> T:
    """Run blocking ``fn`` in Starlette's thread pool (never on the event loop), under a timeout (504)."""
    from starlette.concurrency import run_in_threadpool

    try:
        return await asyncio.wait_for(run_in_threadpool(fn), timeout=timeout_s)
    except TimeoutError as exc:
        raise ApiError(504, f"{what} took longer than {timeout_s:g} s", "timeout") from exc


def png_base64(array: np.ndarray) -> str:
    """Encode a uint8 grey (H,W) or RGB (H,W,3) array, or float in [0,1], as base64 PNG."""
    from PIL import Image

    a = np.asarray(array)
    if a.dtype != np.uint8:
        a = np.clip(np.rint(a.astype(np.float32) * 255.0), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG", compress_level=3)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def preview(image: ImageData, max_side: int) -> np.ndarray:
    """The image as 8-bit, downscaled (area interpolation) so its longer side is at most ``max_side``."""
    import cv2

    u8 = image.to_uint8()
    rows, cols = u8.shape
    scale = max_side / max(rows, cols)
    if scale < 1.0:
        u8 = cv2.resize(u8, (max(1, round(cols * scale)), max(1, round(rows * scale))), interpolation=cv2.INTER_AREA)
    return u8


class ImageStore:
    """Uploaded files under one private folder, random names, bounded count; a small decoded cache.

    Parameters
    ----------
    root : Path
        The private folder (made by the app, removed at shutdown).
    config : WebConfig
        ``max_images``, ``cache_images``, ``max_upload_bytes``, ``preview_max_side``, ``timeout_s``.
    """

    def __init__(self, root: Path, config: WebConfig):
        self.root = root
        self.config = config
        self._entries: OrderedDict[str, StoredImage] = OrderedDict()
        self._cache: OrderedDict[str, ImageData] = OrderedDict()
        self._lock = threading.Lock()
        # At most two images decoded at once: a 24 Mpx mammogram takes ~100 MB as float32 plus intermediates.
        self._decode_slots = threading.BoundedSemaphore(2)

    # ---------------------------------------------------------------- bookkeeping
    def new_path(self) -> Path:
        """A fresh random file name in the private folder."""
        return self.root / f"{uuid.uuid4().hex}.upload"

    def add(self, entry: StoredImage, image: ImageData) -> None:
        """Keep ``entry`` (and its decoded image in the memory cache).

        The least recently used images are deleted beyond ``max_images`` files
        or ``max_stored_bytes`` on disk (the newest is always kept).
        """
        with self._lock:
            self._entries[entry.image_id] = entry
            self._remember(entry.image_id, image)
            stored = sum(e.size_bytes for e in self._entries.values())
            while len(self._entries) > 1 and (len(self._entries) > self.config.max_images
                                              or stored > self.config.max_stored_bytes):
                old_id, old = self._entries.popitem(last=False)
                stored -= old.size_bytes
                self._cache.pop(old_id, None)
                old.path.unlink(missing_ok=True)

    def get(self, image_id: str) -> tuple[StoredImage, ImageData | None]:
        """The entry of ``image_id`` and its decoded image when still cached (404 when unknown or evicted)."""
        with self._lock:
            entry = self._entries.get(image_id)
            if entry is None:
                raise ApiError(404, "unknown image id: upload the image again (the server keeps a few recent ones)",
                               "unknown_image")
            self._entries.move_to_end(image_id)
            image = self._cache.get(image_id)
            if image is not None:
                self._cache.move_to_end(image_id)
            return entry, image

    def remember(self, image_id: str, image: ImageData) -> None:
        """Put a re-read image back in the memory cache (if its entry still exists)."""
        with self._lock:
            if image_id in self._entries:
                self._remember(image_id, image)

    def _remember(self, image_id: str, image: ImageData) -> None:
        self._cache[image_id] = image
        self._cache.move_to_end(image_id)
        while len(self._cache) > self.config.cache_images:
            self._cache.popitem(last=False)

    # ---------------------------------------------------------------- reading
    async def load(self, image_id: str) -> tuple[StoredImage, ImageData]:
        """The entry and decoded image of ``image_id``, read again from disk when evicted from memory."""
        entry, image = self.get(image_id)
        if image is None:
            image = await run_io(lambda: self._read(entry.path), self.config.timeout_s, "reading the image")
            self.remember(entry.image_id, image)
        return entry, image

    @property
    def stored_bytes(self) -> int:
        """Bytes of the uploads on disk now."""
        with self._lock:
            return sum(e.size_bytes for e in self._entries.values())

    async def ingest(self, upload: UploadFile) -> Ingested:
        """Save ``upload`` under a random name, decode it and keep it; the file is removed on any failure."""
        path, sha, size = await self._save(upload)
        if size == 0:
            path.unlink(missing_ok=True)
            raise ApiError(400, "the uploaded file is empty (0 bytes)", "empty_file")
        try:
            image, preview_b64, dims, view_info = await run_io(lambda: self._decode(path), self.config.timeout_s,
                                                               "reading the image")
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        rows, cols = image.shape
        entry = StoredImage(image_id=path.stem, path=path, sha256=sha, size_bytes=size, format=image.format,
                            bit_depth=image.bit_depth, width=cols, height=rows, view_info=view_info)
        self.add(entry, image)
        return Ingested(entry, image, preview_b64, dims)

    async def _save(self, upload: UploadFile) -> tuple[Path, str, int]:
        path = self.new_path()
        digest = hashlib.sha256()
        size = 0
        limit = self.config.max_upload_bytes
        try:
            with path.open("wb") as fh:
                while chunk := await upload.read(1024 * 1024):
                    size += len(chunk)
                    if size > limit:
                        raise too_large(limit)
                    digest.update(chunk)
                    fh.write(chunk)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return path, digest.hexdigest(), size

    def _read(self, path: Path) -> ImageData:
        with self._decode_slots:
            return read_image(path, **self._dicom_options(path))

    def _dicom_options(self, path: Path) -> dict[str, Any]:
        return {"max_pixels": self.config.max_pixels} if sniff_format(path) == "dicom" else {}

    def _decode(self, path: Path) -> tuple[ImageData, str, tuple[int, int], dict[str, Any]]:
        with self._decode_slots:
            try:
                fmt = sniff_format(path)
            except ImageReadError as exc:
                raise ApiError(415, f"unsupported file: {exc.reason}. The format is told from the file's content, "
                                    "not its name.", "unsupported_format") from exc
            try:
                header = probe_header(path, fmt)
                self._check_pixels(header)
                image = read_image(path, **({"max_pixels": self.config.max_pixels} if fmt == "dicom" else {}))
            except DicomError as exc:  # a DICOM of a kind we do not read: colour, multi-frame, not a mammogram ...
                raise ApiError(415, f"unsupported DICOM: {exc.reason}", "unsupported_dicom") from exc
            except ImageReadError as exc:
                raise ApiError(400, f"cannot read this {fmt.upper()} file: {exc.reason}", "unreadable_image") from exc
            small = preview(image, self.config.preview_max_side)
        return image, png_base64(small), (int(small.shape[1]), int(small.shape[0])), view_info(image, header)

    def _check_pixels(self, header: dict[str, Any]) -> None:
        cols, rows = header["size"]
        limit = self.config.max_pixels
        if cols * rows > limit:
            raise ApiError(413, f"image too large: {cols}x{rows} pixels ({cols * rows / 1e6:.1f} Mpx); "
                                f"the limit is {limit / 1e6:g} Mpx", "image_too_large")


def probe_header(path: Path, fmt: str) -> dict[str, Any]:
    """Facts from a file's header, read without decoding its pixels: ``size`` (columns, rows) and, for DICOM,
    its windows (``windows``: centre, width, explanation) and pixel spacing (``spacing_mm``: row, column).

    Raises
    ------
    ImageReadError, DicomError
        When the header cannot be read.
    """
    if fmt == "dicom":
        from mammocadx.io.dicom import read_dicom_header

        ds = read_dicom_header(path, force=True, max_pixels=2**62)
        return {"size": (int(ds.Columns), int(ds.Rows)), "windows": _dicom_windows(ds),
                "spacing_mm": _dicom_spacing(ds)}
    if fmt == "tiff":
        import tifffile

        try:
            with tifffile.TiffFile(path) as tf:
                shape = tf.pages[0].shape
        except Exception as exc:  # tifffile raises many kinds (TiffFileError, ValueError, struct.error ...)
            raise ImageReadError(f"cannot read the TIFF header ({type(exc).__name__})", path) from exc
        return {"size": (int(shape[1]), int(shape[0]))}
    import warnings

    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:  # reads the header only
                return {"size": (int(im.size[0]), int(im.size[1]))}
    except Image.DecompressionBombError as exc:
        raise ApiError(413, "image too large (its header declares a huge pixel count)", "image_too_large") from exc
    except (OSError, ValueError, SyntaxError) as exc:
        raise ImageReadError(f"cannot read the {fmt.upper()} header", path) from exc


def _as_list(value: Any) -> list[Any]:
    if value is None or value == "":
        return []
    return list(value) if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue" else [value]


def _dicom_windows(ds: Any) -> list[dict[str, Any]]:
    centres, widths = _as_list(ds.get("WindowCenter", None)), _as_list(ds.get("WindowWidth", None))
    names = _as_list(ds.get("WindowCenterWidthExplanation", None))
    out = []
    for i, (c, w) in enumerate(zip(centres, widths)):
        try:
            c, w = float(c), float(w)
        except (TypeError, ValueError):
            continue
        if w > 0:
            out.append({"center": c, "width": w, "name": str(names[i]).strip() if i < len(names) else ""})
    return out


def _dicom_spacing(ds: Any) -> list[float] | None:
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        values = _as_list(ds.get(keyword, None))
        try:
            spacing = [float(v) for v in values[:2]]
        except (TypeError, ValueError):
            continue
        if len(spacing) == 2 and all(0 < v < 10 for v in spacing):
            return spacing
    return None


def view_info(image: ImageData, header: dict[str, Any]) -> dict[str, Any]:
    """What the viewer draws: laterality, view, pixel spacing (mm) and window presets in preview grey levels.

    The preview is the image as the library windowed it (the file's first
    window, its VOI LUT or a min-max range), 8-bit; the file's other windows are
    mapped onto those 0..255 grey levels, so the page can offer them as presets.
    """
    meta = image.meta or {}
    presets = [WindowPreset(name="As read (model's view)", center=127.5, width=255.0)]
    applied = meta.get("window") or {}
    if applied.get("kind") == "window":
        lo, hi = applied["center"] - applied["width"] / 2, applied["center"] + applied["width"] / 2
    elif applied.get("kind") in {"minmax", "percentile"}:
        lo, hi = applied.get("low"), applied.get("high")
    else:
        lo = hi = None
    if lo is not None and hi is not None and hi > lo:
        for i, w in enumerate(header.get("windows", [])[1:] if applied.get("kind") == "window"
                              else header.get("windows", [])):
            centre = (w["center"] - lo) / (hi - lo) * 255.0
            width = w["width"] / (hi - lo) * 255.0
            presets.append(WindowPreset(name=w["name"] or f"File window {i + 2}", center=round(centre, 2),
                                        width=round(max(width, 1.0), 2)))
    presets += [WindowPreset(name="Dense tissue", center=170.0, width=120.0),
                WindowPreset(name="High contrast", center=127.5, width=128.0)]
    return {"laterality": meta.get("laterality"), "view": meta.get("view"),
            "pixel_spacing_mm": header.get("spacing_mm"), "windows": [p.model_dump() for p in presets]}
