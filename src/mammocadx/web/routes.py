"""The HTTP routes: the page, health, the model card, upload and predict (thin: store and runner do the work)."""
from __future__ import annotations

import json
import re
from pathlib import Path

from fastapi import APIRouter, File, Form, UploadFile
from fastapi.responses import FileResponse, JSONResponse
from pydantic import TypeAdapter, ValidationError

from mammocadx import __version__
from mammocadx.web.api_errors import ApiError
from mammocadx.web.card import public_card
from mammocadx.web.config import WebConfig
from mammocadx.web.runner import DICOM_KINDS, ModelRunner, dicom_dir
from mammocadx.web.schemas import (
    BoxRoi,
    CircleRoi,
    ErrorResponse,
    Health,
    ImageInfo,
    ModelCard,
    PredictRequest,
    PredictResponse,
)
from mammocadx.web.guards import json_depth
from mammocadx.web.store import ImageStore

STATIC_DIR = Path(__file__).resolve().parent / "static"

_ROI_ADAPTER: TypeAdapter[CircleRoi | BoxRoi] = TypeAdapter(CircleRoi | BoxRoi)
#: Longest accepted ``roi`` form field: four numbers and their names fit in a few dozen characters.
MAX_ROI_FIELD = 1024


def parse_roi_field(text: str) -> CircleRoi | BoxRoi:
    """Parse the multipart ``roi`` field (JSON object) into a ROI model (422 when malformed or oversized)."""
    bad = ApiError(422, 'roi must be JSON {"cx","cy","r"} or {"x","y","w","h"} in image pixels', "bad_roi")
    if len(text) > MAX_ROI_FIELD or json_depth(text.encode("utf-8", "replace"), 1) > 1:
        raise bad
    try:
        return _ROI_ADAPTER.validate_python(json.loads(text))
    except (json.JSONDecodeError, ValidationError) as exc:
        raise ApiError(422, 'roi must be JSON {"cx","cy","r"} or {"x","y","w","h"} in image pixels', "bad_roi") from exc


def build_router(store: ImageStore, runner: ModelRunner, config: WebConfig) -> APIRouter:
    """The app's routes over ``store`` (uploads) and ``runner`` (the model)."""
    router = APIRouter()
    predictor = runner.predictor

    @router.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html")

    @router.api_route("/favicon.ico", methods=["GET", "HEAD"], include_in_schema=False)
    async def favicon() -> FileResponse:
        return FileResponse(STATIC_DIR / "favicon.ico", media_type="image/vnd.microsoft.icon",
                            headers={"Cache-Control": "max-age=86400"})

    @router.get("/healthz", response_model=Health, tags=["service"])
    async def healthz() -> Health:
        """Liveness: the server answers and a model is loaded."""
        return Health(model_loaded=predictor is not None, version=__version__,
                      max_upload_bytes=config.max_upload_bytes)

    @router.get("/api/model", response_model=ModelCard, tags=["model"])
    async def model_card() -> JSONResponse:
        """The model card: what the model is for, how it was made and evaluated, its limits (no local paths)."""
        card = public_card(predictor.card)
        return JSONResponse(ModelCard.model_validate(card).model_dump(mode="json", exclude_unset=True))

    @router.post("/api/image", response_model=ImageInfo, tags=["predict"],
                 responses={413: {"model": ErrorResponse}, 415: {"model": ErrorResponse}})
    async def upload_image(file: UploadFile = File(..., description="DICOM, PNG, PGM, JPEG, TIFF or BMP")) -> ImageInfo:
        """Upload a mammogram; returns its id, size and an 8-bit preview (windowed as the model sees it)."""
        got = await store.ingest(file)
        entry = got.entry
        return ImageInfo(image_id=entry.image_id, width=entry.width, height=entry.height, format=entry.format,
                         bit_depth=entry.bit_depth, sha256=entry.sha256, size_bytes=entry.size_bytes,
                         preview_png=got.preview_png, preview_width=got.preview_size[0],
                         preview_height=got.preview_size[1], **(entry.view_info or {}))

    @router.post("/api/predict", response_model=PredictResponse, tags=["predict"],
                 responses={404: {"model": ErrorResponse}, 503: {"model": ErrorResponse},
                            504: {"model": ErrorResponse}})
    async def predict(request: PredictRequest) -> PredictResponse:
        """Score the lesion at ``roi`` on an uploaded image; with the pseudocolour ROI and its Grad-CAM."""
        entry, image = await store.load(request.image_id)
        return await runner.predict(entry, image, request.roi, request.explain, request.stability)

    @router.post("/api/predict/upload", response_model=PredictResponse, tags=["predict"],
                 responses={413: {"model": ErrorResponse}, 415: {"model": ErrorResponse}})
    async def predict_upload(
        file: UploadFile = File(..., description="DICOM, PNG, PGM, JPEG, TIFF or BMP"),
        roi: str = Form(..., description='ROI as JSON: {"cx":..,"cy":..,"r":..} or {"x":..,"y":..,"w":..,"h":..}'),
        explain: bool = Form(True),
    ) -> PredictResponse:
        """Upload and score in one request (for scripts: ``curl -F file=@case.dcm -F 'roi={"cx":538,"cy":343,"r":29}'``)."""
        roi_model = parse_roi_field(roi)
        got = await store.ingest(file)
        return await runner.predict(got.entry, got.image, roi_model, explain)

    @router.get("/api/dicom/{token}/{kind}", tags=["predict"], responses={404: {"model": ErrorResponse}})
    async def dicom_file(token: str, kind: str) -> FileResponse:
        """A DICOM output of a prediction on a DICOM upload: ``sr`` (Structured Report) or ``gradcam`` (overlay)."""
        gone = ApiError(404, "no such DICOM output (unknown, or the server was restarted)", "not_found")
        if not re.fullmatch(r"[0-9a-f]{32}", token) or kind not in DICOM_KINDS:
            raise gone
        folder = dicom_dir(store.root, token)
        files = sorted(folder.glob(f"*{DICOM_KINDS[kind]}")) if folder.is_dir() else []
        if len(files) != 1 or files[0].is_symlink():
            raise gone
        return FileResponse(files[0], media_type="application/dicom", filename=files[0].name)

    return router
