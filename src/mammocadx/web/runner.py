"""The model runner: one worker thread runs the predictor, under a queue bound and a timeout.

The torch model and its Grad-CAM hooks are not thread-safe, so calls run one at
a time in a worker thread, under a per-request timeout (504) and a bound on
queued requests (503). :meth:`ModelRunner.predict` turns one scored lesion into
the API's :class:`~mammocadx.web.schemas.PredictResponse` with its case report.
"""
from __future__ import annotations

import asyncio
import logging
import math
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from mammocadx import __version__
from mammocadx.datasets.records import Roi
from mammocadx.errors import ImageReadError, MammocadxError, RoiError
from mammocadx.io.images import ImageData
from mammocadx.web.api_errors import ApiError, clean_detail
from mammocadx.web.card import NOTICE, card_id, validated_performance
from mammocadx.web.config import WebConfig
from mammocadx.web.predictor import Predictor
from mammocadx.web.schemas import BoxRoi, CaseReport, CircleRoi, PredictResponse, StabilityPoint
from mammocadx.web.store import StoredImage, png_base64

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Sizes, relative to the marked ROI, at which the verdict's stability is shown.
STABILITY_SCALES = (0.8, 0.9, 1.0, 1.1, 1.2)


def to_roi(roi: CircleRoi | BoxRoi, width: int, height: int) -> Roi:
    """Turn the request's ROI into the library's, refusing ROIs that miss the image or exceed it (422).

    A circle may be at most as wide as the image's longer side, a box at most
    the image's size: larger ROIs only cost the single model worker time and
    memory (a radius of 4x the image side took 17.7 s and 3.5 GB).
    """
    if isinstance(roi, CircleRoi):
        cx, cy = roi.cx, roi.cy
        lib = Roi(circle=(roi.cx, roi.cy, roi.r))
        too_big = 2 * roi.r > max(width, height)
        size = f"a circle {2 * roi.r:.0f} pixels wide"
    else:
        cx, cy = roi.x + roi.w / 2, roi.y + roi.h / 2
        lib = Roi(box=(roi.x, roi.y, roi.w, roi.h))
        too_big = roi.w > width or roi.h > height
        size = f"a {roi.w:.0f}x{roi.h:.0f} box"
    if not all(math.isfinite(v) for v in (cx, cy, *roi.model_dump().values())):
        raise ApiError(422, "ROI values must be finite numbers", "bad_roi")
    if not (0 <= cx < width and 0 <= cy < height):
        raise ApiError(422, f"ROI centre ({cx:.1f}, {cy:.1f}) lies outside the {width}x{height} image "
                            "(x from the left, y from the top, image pixels)", "roi_outside")
    if too_big:
        raise ApiError(422, f"ROI too large: {size} on a {width}x{height} image", "bad_roi")
    return lib


def scaled(roi: CircleRoi | BoxRoi, k: float) -> CircleRoi | BoxRoi:
    """The same centre, size times ``k``."""
    if isinstance(roi, CircleRoi):
        return CircleRoi(cx=roi.cx, cy=roi.cy, r=roi.r * k)
    w, h = roi.w * k, roi.h * k
    return BoxRoi(x=roi.x + (roi.w - w) / 2, y=roi.y + (roi.h - h) / 2, w=w, h=h)


def is_grey(rgb: np.ndarray) -> bool:
    """Whether an RGB ROI has three equal channels (a grey ROI rather than a pseudocolour one)."""
    a = np.asarray(rgb)
    return a.ndim == 2 or (a.ndim == 3 and bool(np.array_equal(a[..., 0], a[..., 1]))
                           and bool(np.array_equal(a[..., 1], a[..., 2])))


#: The DICOM outputs a DICOM upload gets, by the name its download link uses: the file name's ending.
DICOM_KINDS: dict[str, str] = {"sr": "_sr.dcm", "gradcam": "_gradcam.dcm"}


def dicom_dir(root: Path, token: str) -> Path:
    """The folder of one prediction's DICOM outputs inside the upload folder ``root``."""
    return root / "dicom-out" / token


def answer_fields(pred: Any) -> dict[str, Any]:
    """Probability, answer (benign/malignant/uncertain) and OOD flag with reasons of a prediction (None: the model
    has none of them; predictors other than the CADx's may lack the attributes)."""
    prob = getattr(pred, "probability", None)
    reasons = getattr(pred, "ood_reasons", None)
    return {"probability": None if prob is None else float(prob), "answer": getattr(pred, "answer", None),
            "ood": None if reasons is None else bool(reasons),
            "ood_reasons": [clean_detail(str(r)) for r in reasons or []]}


class ModelRunner:
    """Run a :class:`~mammocadx.web.predictor.Predictor` off the event loop, one call at a time.

    Parameters
    ----------
    predictor : Predictor
        The model.
    config : WebConfig
        ``workers``, ``max_pending`` and ``timeout_s``.
    """

    def __init__(self, predictor: Predictor, config: WebConfig):
        self.predictor = predictor
        self.config = config
        self.pending = 0
        self.executor = ThreadPoolExecutor(max_workers=config.workers, thread_name_prefix="mammocadx-model")

    def shutdown(self) -> None:
        """Stop the worker thread; queued calls are cancelled."""
        self.executor.shutdown(wait=False, cancel_futures=True)

    async def run(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` in the model thread under the queue bound (503) and the timeout (504)."""
        cfg = self.config
        if self.pending >= cfg.max_pending:
            raise ApiError(503, f"server busy: {self.pending} predictions queued; try again shortly", "busy")
        self.pending += 1
        try:
            loop = asyncio.get_running_loop()
            return await asyncio.wait_for(loop.run_in_executor(self.executor, fn), timeout=cfg.timeout_s)
        except TimeoutError as exc:
            raise ApiError(504, f"the prediction took longer than {cfg.timeout_s:g} s and was abandoned",
                           "timeout") from exc
        finally:
            self.pending -= 1

    async def predict(self, entry: StoredImage, image: ImageData, roi_in: CircleRoi | BoxRoi,
                      explain: bool, stability: bool = False) -> PredictResponse:
        """Score (and explain) the lesion at ``roi_in`` on ``image``; the response carries its case report.

        With ``stability``, the same centre is also scored at
        :data:`STABILITY_SCALES` times the size (those that fit the image).
        """
        roi = to_roi(roi_in, entry.width, entry.height)
        nearby: list[tuple[float, Roi]] = []
        if stability:
            for k in STABILITY_SCALES:
                if k == 1.0:
                    continue
                try:
                    nearby.append((k, to_roi(scaled(roi_in, k), entry.width, entry.height)))
                except (ApiError, ValueError):  # too small or too large at this scale: left out
                    continue
        predictor = self.predictor

        def job() -> dict[str, Any]:
            t0 = time.perf_counter()
            pred = predictor.predict(image, roi)
            out: dict[str, Any] = {"pred": pred, "roi_png": png_base64(np.asarray(pred.roi_rgb))}
            out["cam_png"] = out["heatmap_png"] = out["explain_error"] = None
            if explain:
                try:
                    expl = predictor.explain(image, roi, pred)
                except MammocadxError as exc:  # e.g. the backbone is unavailable: still show the score
                    log.warning("explanation failed: %s", exc)
                    out["explain_error"] = clean_detail(str(exc.reason))
                else:
                    out["cam_png"] = png_base64(expl.overlay)
                    out["heatmap_png"] = png_base64(np.asarray(expl.heatmap, dtype=np.float32))
            out["dicom_files"] = out["dicom_error"] = None
            writer = getattr(predictor, "dicom_outputs", None)
            if explain and entry.format == "dicom" and writer is not None:
                token = uuid.uuid4().hex
                try:
                    writer(entry.path, roi, dicom_dir(entry.path.parent, token))
                except MammocadxError as exc:  # e.g. a DICOM without UIDs: the score stands
                    log.warning("DICOM outputs failed: %s", exc)
                    out["dicom_error"] = clean_detail(str(exc.reason))
                else:
                    out["dicom_files"] = {k: f"/api/dicom/{token}/{k}" for k in DICOM_KINDS}
            points = [(1.0, pred)] + [(k, predictor.predict(image, r)) for k, r in nearby]
            out["stability"] = [StabilityPoint(scale=k, score=float(p.score), label=str(p.label))
                                for k, p in sorted(points, key=lambda kp: kp[0])] if stability else None
            out["elapsed_ms"] = (time.perf_counter() - t0) * 1000.0
            return out

        try:
            out = await self.run(job)
        except RoiError as exc:
            raise ApiError(422, f"ROI: {exc.reason}", "roi_outside") from exc
        except ImageReadError as exc:
            raise ApiError(400, f"cannot read the image: {exc.reason}", "unreadable_image") from exc
        except MammocadxError as exc:
            log.exception("prediction failed")
            raise ApiError(500, f"the model failed: {exc.reason}", "model_error") from exc
        except ValueError as exc:  # the library refusing an ROI it cannot cut (e.g. a sliver of a box)
            log.warning("prediction refused: %s", exc)
            raise ApiError(422, f"ROI: {exc}", "bad_roi") from exc
        pred = out["pred"]
        score, threshold = float(pred.score), float(pred.threshold)
        label = str(pred.label)
        crop = tuple(float(v) for v in pred.crop)
        answers = answer_fields(pred)
        report = CaseReport(
            created_utc=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            software=f"mammocadx {__version__}",
            input={"sha256": entry.sha256, "size_bytes": entry.size_bytes, "format": entry.format,
                   "width": entry.width, "height": entry.height, "bit_depth": entry.bit_depth},
            roi={"given": {"kind": "circle" if isinstance(roi_in, CircleRoi) else "box", **roi_in.model_dump()},
                 "crop": {"cx": crop[0], "cy": crop[1], "side": crop[2]},
                 "units": "image pixels, x from the left, y from the top"},
            result={"score": score, "threshold": threshold, "label": label,
                    **{k: v for k, v in answers.items() if v is not None and v != []},  # what the model has
                    "explained": out["cam_png"] is not None},
            model=card_id(predictor.card),
            notice=NOTICE,
        )
        if out["explain_error"]:
            report.result["explain_error"] = out["explain_error"]
        if out["stability"]:
            report.result["stability"] = [p.model_dump() for p in out["stability"]]
        performance = validated_performance(predictor.card)
        if performance:
            report.model["validated_performance"] = performance
        return PredictResponse(image_id=entry.image_id, score=score, threshold=threshold, label=label, crop=crop,
                               roi_png=out["roi_png"], cam_png=out["cam_png"], heatmap_png=out["heatmap_png"],
                               explain_error=out["explain_error"], elapsed_ms=out["elapsed_ms"], report=report,
                               roi_colour="grey" if is_grey(pred.roi_rgb) else "pseudocolour",
                               stability=out["stability"], dicom_files=out["dicom_files"],
                               dicom_error=out["dicom_error"], **answers)
