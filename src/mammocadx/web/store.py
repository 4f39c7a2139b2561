"""The image store: uploads saved under one private folder, decoded, kept for a while, evicted.

Uploads are written only under a private temporary folder made for this app
(``tempfile.mkdtemp``), under random names; the client's filename is never used
and never stored. The format is told from the file's content (magic bytes),
never from its name: anything else gets 415; files that cannot be decoded get
400. The folder is removed when the app shuts down.
"""
from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import logging
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
from fastapi import UploadFile

from mammocadx.errors import DicomError, ImageReadError
from mammocadx.io.images import ImageData, read_image, sniff_format
from mammocadx.web.api_errors import ApiError, too_large
from mammocadx.web.config import WebConfig

log = logging.getLogger(__name__)

T = TypeVar("T")


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
        """Keep ``entry`` (and its decoded image in the memory cache); evict the oldest beyond ``max_images``."""
        with self._lock:
            self._entries[entry.image_id] = entry
            self._remember(entry.image_id, image)
            while len(self._entries) > self.config.max_images:
                old_id, old = self._entries.popitem(last=False)
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

    async def ingest(self, upload: UploadFile) -> Ingested:
        """Save ``upload`` under a random name, decode it and keep it; the file is removed on any failure."""
        path, sha, size = await self._save(upload)
        if size == 0:
            path.unlink(missing_ok=True)
            raise ApiError(400, "the uploaded file is empty (0 bytes)", "empty_file")
        try:
            image, preview_b64, dims = await run_io(lambda: self._decode(path), self.config.timeout_s,
                                                    "reading the image")
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        rows, cols = image.shape
        entry = StoredImage(image_id=path.stem, path=path, sha256=sha, size_bytes=size, format=image.format,
                            bit_depth=image.bit_depth, width=cols, height=rows)
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
            return read_image(path)

    def _decode(self, path: Path) -> tuple[ImageData, str, tuple[int, int]]:
        with self._decode_slots:
            try:
                fmt = sniff_format(path)
            except ImageReadError as exc:
                raise ApiError(415, f"unsupported file: {exc.reason}. The format is told from the file's content, "
                                    "not its name.", "unsupported_format") from exc
            try:
                image = read_image(path)
            except DicomError as exc:  # a DICOM of a kind we do not read: colour, multi-frame, not a mammogram ...
                raise ApiError(415, f"unsupported DICOM: {exc.reason}", "unsupported_dicom") from exc
            except ImageReadError as exc:
                raise ApiError(400, f"cannot read this {fmt.upper()} file: {exc.reason}", "unreadable_image") from exc
            small = preview(image, self.config.preview_max_side)
        return image, png_base64(small), (int(small.shape[1]), int(small.shape[0]))
