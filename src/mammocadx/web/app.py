"""A local reader's page: upload a mammogram, mark the lesion, see the score and why.

:func:`create_app` builds a FastAPI application that is a thin shell over the
library: images are read by :func:`mammocadx.io.read_image`, lesions scored and
explained by a :class:`~mammocadx.web.predictor.Predictor` (by default
:class:`~mammocadx.web.predictor.CADxPredictor` over ``CADx.load(model_dir)``).

Limits and safety
-----------------
- Request bodies above ``WebConfig.max_upload_bytes`` are refused with 413,
  while they stream in (the Content-Length header is checked first).
- The format is told from the file's content (magic bytes), never from its
  name: anything else gets 415; files that cannot be decoded get 400.
- Uploads are written only under a private temporary folder made for this app
  (``tempfile.mkdtemp``), under random names; the client's filename is never
  used and never stored. The folder is removed when the app shuts down.
- The model runs in a worker thread, one call at a time (the torch model and its
  Grad-CAM hooks are not thread-safe), under a per-request timeout (504) and a
  bound on queued requests (503).
- Every error is JSON ``{"detail": sentence, "error": code}``.
"""
from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import logging
import math
import shutil
import tempfile
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from fastapi import FastAPI, File, Form, HTTPException, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mammocadx import __version__
from mammocadx.datasets.records import Roi
from mammocadx.errors import DicomError, ImageReadError, MammocadxError, RoiError
from mammocadx.io.images import ImageData, read_image, sniff_format
from mammocadx.web.predictor import CADxPredictor, Predictor
from mammocadx.web.schemas import (
    BoxRoi,
    CaseReport,
    CircleRoi,
    ErrorResponse,
    Health,
    ImageInfo,
    ModelCard,
    PredictRequest,
    PredictResponse,
)

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"

NOTICE = (
    "Research use only. Not a medical device: not cleared or approved for clinical diagnosis. "
    "The score is a classifier's decision value, not a probability of cancer."
)

T = TypeVar("T")


@dataclass(frozen=True)
class WebConfig:
    """Limits of one web app.

    Attributes
    ----------
    max_upload_bytes : int
        Largest accepted upload (the whole request body may be 1 MiB more for
        multipart framing).
    timeout_s : float
        Longest a prediction may take, queueing included (then 504).
    max_pending : int
        Most predictions queued or running at once (then 503).
    max_images : int
        Uploaded images kept on disk; the oldest are deleted beyond this.
    cache_images : int
        Decoded images kept in memory (a 24 Mpx mammogram is ~100 MB as float32).
    preview_max_side : int
        Longest side of the preview PNG sent to the page (coordinates are
        always in full-resolution pixels).
    workers : int
        Threads running the model (calls are serialised by the predictor's lock).
    """

    max_upload_bytes: int = 64 * 1024 * 1024
    timeout_s: float = 60.0
    max_pending: int = 64
    max_images: int = 64
    cache_images: int = 4
    preview_max_side: int = 2048
    workers: int = 1


class ApiError(HTTPException):
    """An HTTP error with a machine-readable code, rendered as :class:`ErrorResponse`."""

    def __init__(self, status_code: int, detail: str, error: str):
        super().__init__(status_code=status_code, detail=detail)
        self.error = error


def _human_bytes(n: int) -> str:
    return f"{n / 1048576:.1f} MiB" if n >= 1048576 else f"{n / 1024:.1f} kB"


def _too_large(limit: int) -> ApiError:
    return ApiError(413, f"upload too large: the limit is {_human_bytes(limit)}", "too_large")


class BodySizeLimit:
    """ASGI middleware: refuse request bodies above ``max_bytes`` with 413 while they stream in.

    Starlette parses multipart forms before the endpoint runs, so the cap must
    act on the raw stream; raising an ``HTTPException`` from ``receive`` makes
    FastAPI's body parsing re-raise it as is (any other exception becomes 400).
    """

    def __init__(self, app: ASGIApp, max_bytes: int, limit_shown: int):
        self.app = app
        self.max_bytes = max_bytes
        self.limit_shown = limit_shown

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in {"POST", "PUT", "PATCH"}:
            await self.app(scope, receive, send)
            return
        for key, value in scope.get("headers", []):
            if key == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = 0
                if declared > self.max_bytes:
                    await _send_error(send, _too_large(self.limit_shown))
                    return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _too_large(self.limit_shown)
            return message

        await self.app(scope, limited, send)


async def _send_error(send: Send, exc: ApiError) -> None:
    response = JSONResponse({"detail": exc.detail, "error": exc.error}, status_code=exc.status_code)
    await response({"type": "http"}, _empty_receive, send)


async def _empty_receive() -> Message:  # pragma: no cover - JSONResponse never reads
    return {"type": "http.disconnect"}


@dataclass
class _StoredImage:
    image_id: str
    path: Path
    sha256: str
    size_bytes: int
    format: str
    bit_depth: int
    width: int
    height: int


class _ImageStore:
    """Uploaded files under one private temp folder, random names, bounded count; a small decoded cache."""

    def __init__(self, root: Path, max_images: int, cache_images: int):
        self.root = root
        self.max_images = max_images
        self.cache_images = cache_images
        self._entries: OrderedDict[str, _StoredImage] = OrderedDict()
        self._cache: OrderedDict[str, ImageData] = OrderedDict()
        self._lock = threading.Lock()

    def new_path(self) -> Path:
        return self.root / f"{uuid.uuid4().hex}.upload"

    def add(self, entry: _StoredImage, image: ImageData) -> None:
        with self._lock:
            self._entries[entry.image_id] = entry
            self._remember(entry.image_id, image)
            while len(self._entries) > self.max_images:
                old_id, old = self._entries.popitem(last=False)
                self._cache.pop(old_id, None)
                old.path.unlink(missing_ok=True)

    def get(self, image_id: str) -> tuple[_StoredImage, ImageData | None]:
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
        with self._lock:
            if image_id in self._entries:
                self._remember(image_id, image)

    def _remember(self, image_id: str, image: ImageData) -> None:
        self._cache[image_id] = image
        self._cache.move_to_end(image_id)
        while len(self._cache) > self.cache_images:
            self._cache.popitem(last=False)


def _png_base64(array: np.ndarray) -> str:
    """Encode a uint8 grey (H,W) or RGB (H,W,3) array, or float in [0,1], as base64 PNG."""
    from PIL import Image

    a = np.asarray(array)
    if a.dtype != np.uint8:
        a = np.clip(np.rint(a.astype(np.float32) * 255.0), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG", compress_level=3)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _preview(image: ImageData, max_side: int) -> np.ndarray:
    import cv2

    u8 = image.to_uint8()
    rows, cols = u8.shape
    scale = max_side / max(rows, cols)
    if scale < 1.0:
        u8 = cv2.resize(u8, (max(1, round(cols * scale)), max(1, round(rows * scale))), interpolation=cv2.INTER_AREA)
    return u8


def _to_roi(roi: CircleRoi | BoxRoi, width: int, height: int) -> Roi:
    """Turn the request's ROI into the library's, refusing ROIs that miss the image (422)."""
    if isinstance(roi, CircleRoi):
        cx, cy, extent = roi.cx, roi.cy, 2 * roi.r
        lib = Roi(circle=(roi.cx, roi.cy, roi.r))
    else:
        cx, cy, extent = roi.x + roi.w / 2, roi.y + roi.h / 2, max(roi.w, roi.h)
        lib = Roi(box=(roi.x, roi.y, roi.w, roi.h))
    if not all(math.isfinite(v) for v in (cx, cy, extent)):
        raise ApiError(422, "ROI values must be finite numbers", "bad_roi")
    if not (0 <= cx < width and 0 <= cy < height):
        raise ApiError(422, f"ROI centre ({cx:.1f}, {cy:.1f}) lies outside the {width}x{height} image "
                            "(x from the left, y from the top, image pixels)", "roi_outside")
    if extent > 4 * max(width, height):
        raise ApiError(422, f"ROI of {extent:.0f} pixels is far larger than the {width}x{height} image", "bad_roi")
    return lib


def _card_id(card: dict[str, Any]) -> dict[str, Any]:
    """What identifies the model in a case report: id, version, creation time, file hashes, training fingerprint.

    Cards name these in a few ways (``name``/``id``, ``created``/``created_utc``,
    ``software.mammocadx``/``mammocadx_version``); the SHA-256 of the model files,
    when the card has them, pins the exact model.
    """
    ident = card.get("id") or card.get("model_id") or card.get("name")
    version = card.get("version") or card.get("model_version")
    out: dict[str, Any] = {"id": str(ident) if ident is not None else None,
                           "version": str(version) if version is not None else None}
    created = card.get("created") or card.get("created_utc")
    if created:
        out["created"] = created
    software = card.get("software") if isinstance(card.get("software"), dict) else {}
    made_with = software.get("mammocadx") or card.get("mammocadx_version")
    if made_with:
        out["made_with"] = f"mammocadx {made_with}"
    if isinstance(card.get("files"), dict):
        out["files_sha256"] = card["files"]
    for key in ("training", "training_data"):
        section = card.get(key)
        if isinstance(section, dict) and section.get("fingerprint"):
            out["training_fingerprint"] = section["fingerprint"]
            break
    return out


def create_app(model_dir: Path | None = None, predictor: Predictor | None = None,
               config: WebConfig | None = None) -> FastAPI:
    """Build the web application.

    Parameters
    ----------
    model_dir : Path, optional
        A saved model folder, loaded with ``CADx.load`` (ignored when
        ``predictor`` is given).
    predictor : Predictor, optional
        Any object with ``predict``, ``explain`` and ``card`` (see
        :class:`~mammocadx.web.predictor.Predictor`); tests inject fakes.
    config : WebConfig, optional
        Upload cap, timeout and queue limits.

    Returns
    -------
    fastapi.FastAPI
        The app; ``app.state.tmpdir`` is its private upload folder.

    Raises
    ------
    ValueError
        If neither ``model_dir`` nor ``predictor`` is given.
    ModelError
        If ``model_dir`` cannot be loaded (raised by the library).
    """
    if predictor is None:
        if model_dir is None:
            raise ValueError("create_app needs a model_dir or a predictor")
        predictor = CADxPredictor.load(model_dir)
    cfg = config or WebConfig()
    tmpdir = Path(tempfile.mkdtemp(prefix="mammocadx-web-"))
    store = _ImageStore(tmpdir, cfg.max_images, cfg.cache_images)
    executor = ThreadPoolExecutor(max_workers=cfg.workers, thread_name_prefix="mammocadx-model")
    pending = 0
    # At most two images decoded at once: a 24 Mpx mammogram takes ~100 MB as float32 plus intermediates.
    decode_slots = threading.BoundedSemaphore(2)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            executor.shutdown(wait=False, cancel_futures=True)
            shutil.rmtree(tmpdir, ignore_errors=True)

    app = FastAPI(
        title="mammocadx reader",
        version=__version__,
        description=(
            "Score a breast lesion on a mammogram (benign vs malignant) and see the Grad-CAM of the decision. "
            "Coordinates are image pixels, x from the left, y from the top. " + NOTICE
        ),
        # Swagger UI and ReDoc load their scripts from a CDN; this tool fetches nothing from the internet.
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
        responses={400: {"model": ErrorResponse}, 413: {"model": ErrorResponse}, 415: {"model": ErrorResponse},
                   422: {"model": ErrorResponse}},
    )
    app.state.tmpdir = tmpdir
    app.state.config = cfg
    app.state.predictor = predictor
    app.add_middleware(BodySizeLimit, max_bytes=cfg.max_upload_bytes + 1024 * 1024, limit_shown=cfg.max_upload_bytes)

    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse({"detail": exc.detail, "error": exc.error}, status_code=exc.status_code)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"detail": str(exc.detail), "error": f"http_{exc.status_code}"},
                            status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body",))
            parts.append(f"{where}: {err.get('msg')}" if where else str(err.get("msg")))
        return JSONResponse({"detail": "invalid request: " + "; ".join(parts), "error": "invalid_request"},
                            status_code=422)

    @app.exception_handler(Exception)
    async def _internal_error(_request: Request, exc: Exception) -> JSONResponse:
        log.error("internal error", exc_info=exc)
        return JSONResponse({"detail": f"internal error ({type(exc).__name__}); the server log has the details",
                             "error": "internal"}, status_code=500)

    @app.middleware("http")
    async def _security_headers(request: Request, call_next: Callable[[Request], Any]) -> Any:
        response = await call_next(request)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault(
            "Content-Security-Policy",
            "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
            "connect-src 'self'; frame-ancestors 'none'",
        )
        return response

    async def run_model(fn: Callable[[], T]) -> T:
        """Run ``fn`` in the model thread under the queue bound and the timeout."""
        nonlocal pending
        if pending >= cfg.max_pending:
            raise ApiError(503, f"server busy: {pending} predictions queued; try again shortly", "busy")
        pending += 1
        try:
            loop = asyncio.get_running_loop()
            return await asyncio.wait_for(loop.run_in_executor(executor, fn), timeout=cfg.timeout_s)
        except TimeoutError as exc:
            raise ApiError(504, f"the prediction took longer than {cfg.timeout_s:g} s and was abandoned",
                           "timeout") from exc
        finally:
            pending -= 1

    async def run_io(fn: Callable[[], T]) -> T:
        """Decode in a worker thread (never blocks the event loop), under the timeout."""
        from starlette.concurrency import run_in_threadpool

        try:
            return await asyncio.wait_for(run_in_threadpool(fn), timeout=cfg.timeout_s)
        except TimeoutError as exc:
            raise ApiError(504, f"reading the image took longer than {cfg.timeout_s:g} s", "timeout") from exc

    async def save_upload(upload: UploadFile) -> tuple[Path, str, int]:
        path = store.new_path()
        digest = hashlib.sha256()
        size = 0
        try:
            with path.open("wb") as fh:
                while chunk := await upload.read(1024 * 1024):
                    size += len(chunk)
                    if size > cfg.max_upload_bytes:
                        raise _too_large(cfg.max_upload_bytes)
                    digest.update(chunk)
                    fh.write(chunk)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return path, digest.hexdigest(), size

    def decode(path: Path) -> tuple[ImageData, str, tuple[int, int]]:
        with decode_slots:
            return _decode(path)

    def reread(path: Path) -> ImageData:
        with decode_slots:
            return read_image(path)

    def _decode(path: Path) -> tuple[ImageData, str, tuple[int, int]]:
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
        preview = _preview(image, cfg.preview_max_side)
        return image, _png_base64(preview), (int(preview.shape[1]), int(preview.shape[0]))

    async def ingest(upload: UploadFile) -> tuple[_StoredImage, ImageData, str, tuple[int, int]]:
        path, sha, size = await save_upload(upload)
        if size == 0:
            path.unlink(missing_ok=True)
            raise ApiError(400, "the uploaded file is empty (0 bytes)", "empty_file")
        try:
            image, preview_b64, (pw, ph) = await run_io(lambda: decode(path))
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        rows, cols = image.shape
        entry = _StoredImage(image_id=path.stem, path=path, sha256=sha, size_bytes=size, format=image.format,
                             bit_depth=image.bit_depth, width=cols, height=rows)
        store.add(entry, image)
        return entry, image, preview_b64, (pw, ph)

    async def predict_on(entry: _StoredImage, image: ImageData | None, roi_in: CircleRoi | BoxRoi,
                         explain: bool) -> PredictResponse:
        roi = _to_roi(roi_in, entry.width, entry.height)
        if image is None:  # evicted from the memory cache: read again from the private folder
            image = await run_io(lambda: reread(entry.path))
            store.remember(entry.image_id, image)
        img = image

        def job() -> dict[str, Any]:
            t0 = time.perf_counter()
            pred = predictor.predict(img, roi)
            out: dict[str, Any] = {"pred": pred, "roi_png": _png_base64(np.asarray(pred.roi_rgb))}
            out["cam_png"] = out["heatmap_png"] = out["explain_error"] = None
            if explain:
                try:
                    expl = predictor.explain(img, roi, pred)
                except MammocadxError as exc:  # e.g. the backbone is unavailable: still show the score
                    log.warning("explanation failed: %s", exc)
                    out["explain_error"] = str(exc.reason)
                else:
                    out["cam_png"] = _png_base64(expl.overlay)
                    out["heatmap_png"] = _png_base64(np.asarray(expl.heatmap, dtype=np.float32))
            out["elapsed_ms"] = (time.perf_counter() - t0) * 1000.0
            return out

        try:
            out = await run_model(job)
        except RoiError as exc:
            raise ApiError(422, f"ROI: {exc.reason}", "roi_outside") from exc
        except ImageReadError as exc:
            raise ApiError(400, f"cannot read the image: {exc.reason}", "unreadable_image") from exc
        except MammocadxError as exc:
            log.exception("prediction failed")
            raise ApiError(500, f"the model failed: {exc.reason}", "model_error") from exc
        pred = out["pred"]
        score, threshold = float(pred.score), float(pred.threshold)
        label = str(pred.label)
        crop = tuple(float(v) for v in pred.crop)
        report = CaseReport(
            created_utc=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            software=f"mammocadx {__version__}",
            input={"sha256": entry.sha256, "size_bytes": entry.size_bytes, "format": entry.format,
                   "width": entry.width, "height": entry.height, "bit_depth": entry.bit_depth},
            roi={"given": {"kind": "circle" if isinstance(roi_in, CircleRoi) else "box", **roi_in.model_dump()},
                 "crop": {"cx": crop[0], "cy": crop[1], "side": crop[2]},
                 "units": "image pixels, x from the left, y from the top"},
            result={"score": score, "threshold": threshold, "label": label,
                    "explained": out["cam_png"] is not None},
            model=_card_id(predictor.card),
            notice=NOTICE,
        )
        if out["explain_error"]:
            report.result["explain_error"] = out["explain_error"]
        return PredictResponse(image_id=entry.image_id, score=score, threshold=threshold, label=label, crop=crop,
                               roi_png=out["roi_png"], cam_png=out["cam_png"], heatmap_png=out["heatmap_png"],
                               explain_error=out["explain_error"], elapsed_ms=out["elapsed_ms"], report=report)

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/healthz", response_model=Health, tags=["service"])
    async def healthz() -> Health:
        """Liveness: the server answers and a model is loaded."""
        return Health(model_loaded=predictor is not None, version=__version__, max_upload_bytes=cfg.max_upload_bytes)

    @app.get("/api/model", response_model=ModelCard, tags=["model"])
    async def model_card() -> JSONResponse:
        """The model card: what the model is for, how it was made and evaluated, its limits."""
        return JSONResponse(ModelCard.model_validate(predictor.card).model_dump(mode="json", exclude_unset=True))

    @app.post("/api/image", response_model=ImageInfo, tags=["predict"],
              responses={413: {"model": ErrorResponse}, 415: {"model": ErrorResponse}})
    async def upload_image(file: UploadFile = File(..., description="DICOM, PNG, PGM, JPEG, TIFF or BMP")) -> ImageInfo:
        """Upload a mammogram; returns its id, size and an 8-bit preview (windowed as the model sees it)."""
        entry, _image, preview_b64, (pw, ph) = await ingest(file)
        return ImageInfo(image_id=entry.image_id, width=entry.width, height=entry.height, format=entry.format,
                         bit_depth=entry.bit_depth, sha256=entry.sha256, size_bytes=entry.size_bytes,
                         preview_png=preview_b64, preview_width=pw, preview_height=ph)

    @app.post("/api/predict", response_model=PredictResponse, tags=["predict"],
              responses={404: {"model": ErrorResponse}, 503: {"model": ErrorResponse}, 504: {"model": ErrorResponse}})
    async def predict(request: PredictRequest) -> PredictResponse:
        """Score the lesion at ``roi`` on an uploaded image; with the pseudocolour ROI and its Grad-CAM."""
        entry, image = store.get(request.image_id)
        return await predict_on(entry, image, request.roi, request.explain)

    @app.post("/api/predict/upload", response_model=PredictResponse, tags=["predict"],
              responses={413: {"model": ErrorResponse}, 415: {"model": ErrorResponse}})
    async def predict_upload(
        file: UploadFile = File(..., description="DICOM, PNG, PGM, JPEG, TIFF or BMP"),
        roi: str = Form(..., description='ROI as JSON: {"cx":..,"cy":..,"r":..} or {"x":..,"y":..,"w":..,"h":..}'),
        explain: bool = Form(True),
    ) -> PredictResponse:
        """Upload and score in one request (for scripts: ``curl -F file=@case.dcm -F 'roi={"cx":538,"cy":343,"r":29}'``)."""
        roi_model = _parse_roi_field(roi)
        entry, image, _preview_b64, _dims = await ingest(file)
        return await predict_on(entry, image, roi_model, explain)

    return app


def _parse_roi_field(text: str) -> CircleRoi | BoxRoi:
    """Parse the multipart ``roi`` field (JSON object) into a ROI model (422 when malformed)."""
    import json

    from pydantic import TypeAdapter, ValidationError

    try:
        return TypeAdapter(CircleRoi | BoxRoi).validate_python(json.loads(text))
    except (json.JSONDecodeError, ValidationError) as exc:
        raise ApiError(422, 'roi must be JSON {"cx","cy","r"} or {"x","y","w","h"} in image pixels', "bad_roi") from exc
