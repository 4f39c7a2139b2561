"""Request and response models of the web API (they make the OpenAPI schema real).

Coordinates are always in the pixels of the image as read by
:func:`mammocadx.io.read_image`: ``x`` the column from the left, ``y`` the row
from the top, whatever size the page displays the image at.
"""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

#: Smallest radius (and half the smallest box side) accepted, image pixels: below it the ROI is a few pixels.
MIN_RADIUS = 2.0


class CircleRoi(BaseModel):
    """A lesion marked by its centre and radius (a click, or a drag from the centre).

    Numbers must be JSON numbers (strict: ``"29"`` is refused); the radius is at
    least :data:`MIN_RADIUS` and the circle at most as wide as the image.
    """

    model_config = ConfigDict(extra="forbid", strict=True)
    cx: float = Field(..., description="centre column, image pixels from the left", examples=[538.0])
    cy: float = Field(..., description="centre row, image pixels from the top", examples=[343.0])
    r: float = Field(..., ge=MIN_RADIUS, description="radius in image pixels", examples=[29.0])


class BoxRoi(BaseModel):
    """A lesion marked by a box (a drag from corner to corner); at most the image's size."""

    model_config = ConfigDict(extra="forbid", strict=True)
    x: float = Field(..., description="left column, image pixels")
    y: float = Field(..., description="top row, image pixels")
    w: float = Field(..., ge=2 * MIN_RADIUS, description="width in image pixels")
    h: float = Field(..., ge=2 * MIN_RADIUS, description="height in image pixels")


class WindowPreset(BaseModel):
    """A display window in the preview's grey levels (0..255): centre and width."""

    name: str
    center: float
    width: float


class ImageInfo(BaseModel):
    """An uploaded image, stored for this server's lifetime under a random id."""

    image_id: str = Field(..., description="opaque id to pass to /api/predict")
    width: int = Field(..., description="columns of the image as read (ROI coordinates refer to these)")
    height: int = Field(..., description="rows of the image as read")
    format: str = Field(..., description="format told from the file's content: png, jpeg, pgm, tiff, bmp, dicom")
    bit_depth: int
    sha256: str = Field(..., description="SHA-256 of the uploaded bytes")
    size_bytes: int
    preview_png: str = Field(..., description="base64 8-bit PNG of the windowed image (maybe downscaled)")
    preview_width: int
    preview_height: int
    laterality: str | None = Field(None, description="L or R, when the file states it (DICOM)")
    view: str | None = Field(None, description="CC, MLO ..., when the file states it (DICOM)")
    pixel_spacing_mm: list[float] | None = Field(
        None, description="(row, column) spacing in mm from the DICOM's Pixel Spacing or Imager Pixel Spacing")
    windows: list[WindowPreset] = Field(default_factory=list,
                                        description="display presets (the file's windows first), preview grey levels")


class PredictRequest(BaseModel):
    """Score a lesion on an image uploaded before with ``POST /api/image``."""

    model_config = ConfigDict(extra="forbid")
    image_id: str = Field(..., min_length=1, max_length=64)
    roi: CircleRoi | BoxRoi
    explain: bool = Field(True, description="also compute the Grad-CAM heat-map")
    stability: bool = Field(False, description="also score the same centre at 0.8, 0.9, 1.1 and 1.2 times the size")


class CaseReport(BaseModel):
    """What the page's 'Download report' button saves: enough to trace the result."""

    model_config = ConfigDict(extra="allow")
    report_version: int = 1
    created_utc: str = Field(..., description="ISO 8601 time the prediction was made (UTC)")
    software: str = Field(..., description="mammocadx version")
    input: dict[str, Any] = Field(..., description="sha256, size, format and shape of the uploaded image")
    roi: dict[str, Any] = Field(..., description="the ROI as given, and the square crop used")
    result: dict[str, Any] = Field(..., description="score, threshold, label")
    model: dict[str, Any] = Field(..., description="model card id and version")
    notice: str


class StabilityPoint(BaseModel):
    """The score of the same lesion centre with the ROI scaled by ``scale``."""

    scale: float
    score: float
    label: Literal["benign", "malignant"]


class PredictResponse(BaseModel):
    """The model's decision on one lesion, with its explanation."""

    image_id: str
    score: float = Field(..., description="decision function: positive is towards malignant; not a probability")
    threshold: float = Field(..., description="the model's operating point: score > threshold is called malignant")
    label: Literal["benign", "malignant"]
    crop: tuple[float, float, float] = Field(..., description="(cx, cy, side) of the square ROI cut, image pixels")
    roi_png: str = Field(..., description="base64 PNG of the pseudocolour ROI the CNN saw")
    cam_png: str | None = Field(None, description="base64 PNG of the Grad-CAM overlay on the ROI")
    heatmap_png: str | None = Field(None, description="base64 8-bit PNG of the heat-map alone (0..255)")
    explain_error: str | None = Field(None, description="why no heat-map could be made, when it could not")
    roi_colour: Literal["grey", "pseudocolour"] = Field(
        "pseudocolour", description="whether the ROI the network saw is grey or pseudocoloured")
    stability: list[StabilityPoint] | None = Field(
        None, description="score of the same centre at nearby sizes (when asked): how stable the verdict is")
    probability: float | None = Field(
        None, description="calibrated probability of malignancy (fitted on out-of-sample scores of the training "
                          "lesions); null for a model saved without a calibrator")
    answer: Literal["benign", "malignant", "uncertain"] | None = Field(
        None, description="'uncertain' when the model's conformal set holds both classes (or neither); "
                          "else the label; null for a model without conformal sets")
    ood: bool | None = Field(
        None, description="true when the input is unlike the training data (the result may not apply); "
                          "null for a model without an out-of-distribution guard")
    ood_reasons: list[str] = Field(default_factory=list, description="why the input is out of distribution")
    dicom_files: dict[str, str] | None = Field(
        None, description="for a DICOM upload (with explain): download links of the DICOM Structured Report "
                          "('sr') and the Grad-CAM Secondary Capture ('gradcam') in the image's study")
    dicom_error: str | None = Field(None, description="why no DICOM outputs could be written, when they could not")
    elapsed_ms: float
    report: CaseReport


class ModelCard(BaseModel):
    """The model card: free-form, with the fields the page shows typed."""

    model_config = ConfigDict(extra="allow")
    id: str | None = None
    version: str | None = None
    intended_use: Any = None
    limitations: Any = None


class Health(BaseModel):
    """The server answers; its model and its limits."""

    status: Literal["ok"] = "ok"
    model_loaded: bool
    version: str
    max_upload_bytes: int = Field(..., description="largest accepted upload")


class ErrorResponse(BaseModel):
    """Every error the API returns: a sentence for people and a code for programs."""

    detail: str = Field(..., description="what went wrong, in words")
    error: str = Field(..., description="machine-readable code, e.g. unsupported_format, too_large, roi_outside")
