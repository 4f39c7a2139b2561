"""Helpers for the web tests: a small deterministic predictor and synthetic mammograms.

The fake predictor runs the library's real ROI cut and sine pseudocolour, and
scores a lesion by its mean brightness, so a test can compute the score it must
get back for any ROI (this is how the concurrency test detects cross-talk). It
also records how many calls overlap, to check that the app serialises them.
"""
from __future__ import annotations

import io
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mammocadx.datasets.records import Roi
from mammocadx.io.images import ImageData, to_uint8
from mammocadx.preprocess.pseudocolor import pseudocolor
from mammocadx.preprocess.roi import RoiConfig, extract_roi, roi_square
from mammocadx.web.predictor import Explanation

FAKE_CARD = {
    "id": "fake-test-model",
    "version": "0.0-test",
    "intended_use": "Tests of the web page only.",
    "limitations": ["Scores brightness, not malignancy."],
}
ROI_CONFIG = RoiConfig(size=64, context=1.5)
#: Base URL for TestClient: the app answers only to local host names (TestClient's default is "testserver").
LOCAL = "http://localhost"


@dataclass
class FakePrediction:
    score: float
    label: str
    threshold: float
    roi_grey: np.ndarray
    roi_rgb: np.ndarray
    crop: tuple[float, float, float]


def expected_score(pixels: np.ndarray, roi: Roi) -> float:
    """The score the fake predictor gives: 8 x (mean ROI brightness - 0.4)."""
    grey = extract_roi(pixels, roi, ROI_CONFIG)
    return float(8.0 * (grey.mean() - 0.4))


class FakePredictor:
    """A :class:`mammocadx.web.predictor.Predictor` for tests (threshold 0, score from brightness)."""

    def __init__(self, delay: float = 0.0, threshold: float = 0.0):
        self.delay = delay
        self.threshold = threshold
        self.calls = 0
        self.active = 0
        self.max_active = 0
        self._count_lock = threading.Lock()

    @property
    def card(self) -> dict:
        return dict(FAKE_CARD)

    def _enter(self) -> None:
        with self._count_lock:
            self.calls += 1
            self.active += 1
            self.max_active = max(self.max_active, self.active)

    def _leave(self) -> None:
        with self._count_lock:
            self.active -= 1

    def predict(self, image: ImageData, roi: Roi) -> FakePrediction:
        self._enter()
        try:
            if self.delay:
                time.sleep(self.delay)
            grey = extract_roi(image.pixels, roi, ROI_CONFIG, source=image.source)
            crop = roi_square(roi, image.shape, ROI_CONFIG)
            score = float(8.0 * (grey.mean() - 0.4))
            label = "malignant" if score > self.threshold else "benign"
            return FakePrediction(score, label, self.threshold, grey, pseudocolor(to_uint8(grey), "sine"), crop)
        finally:
            self._leave()

    def explain(self, image: ImageData, roi: Roi, prediction: FakePrediction) -> Explanation:
        grey = prediction.roi_grey
        heat = (grey - grey.min()) / max(float(np.ptp(grey)), 1e-6)
        red = np.stack([heat, np.zeros_like(heat), 1.0 - heat], axis=-1)
        overlay = 0.5 * np.repeat(grey[..., None], 3, axis=-1) + 0.5 * red
        return Explanation(heatmap=heat.astype(np.float32), overlay=np.clip(overlay, 0, 1).astype(np.float32))


#: Where the synthetic lesion sits in :func:`synthetic_mammogram` (cx, cy, r), image pixels.
LESION = (300.0, 180.0, 28.0)


def synthetic_mammogram(width: int = 480, height: int = 360, seed: int = 0,
                        lesion: tuple[float, float, float] = LESION) -> np.ndarray:
    """A float32 [0,1] image: a half-ellipse 'breast' on black with a bright round lesion at ``lesion`` (cx, cy, r).

    Deliberately not square, so that swapped x/y would put the ROI elsewhere.
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    breast = ((xx / (0.85 * width)) ** 2 + ((yy - height / 2) / (0.48 * height)) ** 2) < 1.0
    img = np.where(breast, 0.35 + 0.05 * rng.standard_normal((height, width)), 0.0).astype(np.float32)
    cx, cy, r = lesion
    d2 = (xx - cx) ** 2 + (yy - cy) ** 2
    img += 0.5 * np.exp(-d2 / (2 * (r / 1.5) ** 2)).astype(np.float32)
    return np.clip(img, 0.0, 1.0)


def png_bytes(pixels: np.ndarray, bits: int = 8) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    if bits == 16:
        Image.fromarray(np.rint(pixels * 65535).astype(np.uint16)).save(buf, format="PNG")
    else:
        Image.fromarray(to_uint8(pixels)).save(buf, format="PNG")
    return buf.getvalue()


def dicom_bytes(pixels: np.ndarray, path: Path) -> bytes:
    """A minimal 12-bit MONOCHROME2 mammography DICOM written with pydicom."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.2"  # Digital Mammography X-Ray - For Presentation
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "MG"
    ds.PatientID = "SYNTH"
    ds.ImageLaterality = "L"
    ds.ViewPosition = "CC"
    arr = np.rint(pixels * 4095).astype(np.uint16)
    ds.Rows, ds.Columns = arr.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.PixelData = arr.tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path.read_bytes()


def dicom_with_windows(pixels: np.ndarray, path: Path, spacing_mm: float, windows: dict[str, tuple[float, float]]) -> Path:
    """:func:`dicom_bytes` plus Imager Pixel Spacing and named windows ``{name: (centre, width)}``, 12-bit units."""
    import pydicom

    dicom_bytes(pixels, path)
    ds = pydicom.dcmread(path)
    ds.ImagerPixelSpacing = [spacing_mm, spacing_mm]
    ds.WindowCenter = [c for c, _ in windows.values()]
    ds.WindowWidth = [w for _, w in windows.values()]
    ds.WindowCenterWidthExplanation = list(windows)
    ds.save_as(path)
    return path


class LiveServer:
    """Run an ASGI app under uvicorn on a free loopback port in a background thread.

    Use as a context manager; ``url`` is ``http://127.0.0.1:PORT``.
    """

    def __init__(self, app, host: str = "127.0.0.1"):
        import socket

        import uvicorn

        with socket.socket() as s:
            s.bind((host, 0))
            self.port = s.getsockname()[1]
        self.url = f"http://{host}:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host=host, port=self.port, log_level="warning",
                                                   lifespan="on", limit_concurrency=512, backlog=512))
        self.thread = threading.Thread(target=self.server.run, name="uvicorn-test", daemon=True)

    def __enter__(self) -> "LiveServer":
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=20)
