"""API tests of the reader's web page (FastAPI TestClient, fake predictor)."""
from __future__ import annotations

import base64
import hashlib
import io
import json
import threading
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from conftest_web import (
    FAKE_CARD,
    LESION,
    LOCAL,
    FakePredictor,
    dicom_bytes,
    expected_score,
    png_bytes,
    synthetic_mammogram,
)
from mammocadx.datasets.records import Roi
from mammocadx.web import WebConfig, create_app


@pytest.fixture
def pixels() -> np.ndarray:
    return synthetic_mammogram()


@pytest.fixture
def fake() -> FakePredictor:
    return FakePredictor()


@pytest.fixture
def client(fake):
    app = create_app(predictor=fake)
    with TestClient(app, base_url=LOCAL) as c:
        yield c


def _upload(client, data: bytes, name: str = "case.png", ctype: str = "image/png"):
    return client.post("/api/image", files={"file": (name, data, ctype)})


def _png(b64: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(b64))))


def test_health_and_model_card(client):
    r = client.get("/healthz")
    assert r.status_code == 200 and r.json()["status"] == "ok" and r.json()["model_loaded"] is True
    assert r.json()["max_upload_bytes"] == 64 * 1024 * 1024
    card = client.get("/api/model").json()
    assert card["id"] == "fake-test-model" and card["version"] == "0.0-test"
    assert card["intended_use"] == "Tests of the web page only."
    assert card == {**FAKE_CARD}  # the card as the model gives it, nothing added


def test_page_served_and_self_contained(client):
    r = client.get("/")
    assert r.status_code == 200 and "text/html" in r.headers["content-type"]
    html = r.text
    assert "not a medical device" in html.lower()
    # Nothing fetched from the internet: no absolute http(s) URLs to scripts, styles or fonts.
    assert "http://" not in html and "https://" not in html
    for asset in ("/static/app.js", "/static/style.css"):
        a = client.get(asset)
        assert a.status_code == 200, asset
        assert "https://" not in a.text and "http://" not in a.text
    assert "script-src 'self'" in r.headers["content-security-policy"]


def test_openapi_documents_the_api(client):
    spec = client.get("/openapi.json").json()
    paths = spec["paths"]
    for path in ("/api/image", "/api/predict", "/api/model", "/healthz", "/api/predict/upload"):
        assert path in paths, path
    schemas = spec["components"]["schemas"]
    assert {"PredictRequest", "PredictResponse", "CircleRoi", "BoxRoi", "ImageInfo", "ModelCard"} <= set(schemas)
    assert set(schemas["PredictResponse"]["required"]) >= {"score", "threshold", "label", "roi_png"}


def test_png_upload_preview_and_predict(client, pixels, fake):
    data = png_bytes(pixels)
    r = _upload(client, data)
    assert r.status_code == 200, r.text
    info = r.json()
    assert (info["width"], info["height"]) == (480, 360)
    assert info["format"] == "png" and info["bit_depth"] == 8
    assert info["sha256"] == hashlib.sha256(data).hexdigest()
    preview = _png(info["preview_png"])
    assert preview.dtype == np.uint8 and preview.shape == (360, 480)
    # the preview is the windowed image itself (8-bit PNG in, same pixels out)
    assert np.array_equal(preview, np.asarray(Image.open(io.BytesIO(data))))

    cx, cy, r_ = LESION
    r = client.post("/api/predict", json={"image_id": info["image_id"], "roi": {"cx": cx, "cy": cy, "r": r_}})
    assert r.status_code == 200, r.text
    out = r.json()
    want = expected_score(_as_read(data), Roi(circle=(cx, cy, r_)))
    assert out["score"] == pytest.approx(want, abs=1e-5)
    assert out["threshold"] == 0.0
    assert out["label"] == ("malignant" if want > 0 else "benign") == "malignant"
    assert out["crop"] == pytest.approx([cx, cy, 2 * r_ * 1.5])
    roi_rgb = _png(out["roi_png"])
    assert roi_rgb.shape == (64, 64, 3)
    cam = _png(out["cam_png"])
    assert cam.shape == (64, 64, 3)
    heat = _png(out["heatmap_png"])
    assert heat.shape == (64, 64) and heat.max() == 255
    rep = out["report"]
    assert rep["input"]["sha256"] == info["sha256"]
    assert rep["result"] == {"score": out["score"], "threshold": 0.0, "label": "malignant", "explained": True}
    # a predictor without calibrator, conformal sets or OOD guard (a model saved before issue 16): null fields,
    # nothing in the case report (test_web_cadx.py checks them with a model that has them)
    assert out["probability"] is None and out["answer"] is None and out["ood"] is None and out["ood_reasons"] == []
    assert rep["model"] == {"id": "fake-test-model", "version": "0.0-test"}
    assert rep["roi"]["given"] == {"kind": "circle", "cx": cx, "cy": cy, "r": r_}
    assert rep["created_utc"].endswith("+00:00")
    assert "not a medical device" in rep["notice"].lower()


def _as_read(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)), dtype=np.float32) / 255.0


def test_box_roi_and_benign_side(client, pixels):
    info = _upload(client, png_bytes(pixels)).json()
    # A box on plain fat tissue away from the lesion: darker, so benign side of the threshold.
    box = {"x": 60.0, "y": 150.0, "w": 40.0, "h": 50.0}
    out = client.post("/api/predict", json={"image_id": info["image_id"], "roi": box, "explain": False}).json()
    want = expected_score(_as_read(png_bytes(pixels)), Roi(box=(60, 150, 40, 50)))
    assert out["score"] == pytest.approx(want, abs=1e-5)
    assert out["label"] == "benign" and out["score"] < 0
    assert out["cam_png"] is None and out["report"]["result"]["explained"] is False
    assert out["crop"] == pytest.approx([80.0, 175.0, 75.0])


def test_sixteen_bit_png(client, pixels):
    r = _upload(client, png_bytes(pixels, bits=16))
    assert r.status_code == 200, r.text
    info = r.json()
    assert info["bit_depth"] == 16
    preview = _png(info["preview_png"])
    assert preview.dtype == np.uint8
    assert abs(int(preview[180, 300]) - int(round(pixels[180, 300] * 255))) <= 1


def test_dicom_upload(client, pixels, tmp_path):
    pytest.importorskip("mammocadx.io.dicom", reason="DICOM reader (io/dicom.py) not on this branch yet")
    data = dicom_bytes(pixels, tmp_path / "case.dcm")
    r = _upload(client, data, name="case.png", ctype="application/octet-stream")
    assert r.status_code == 200, r.text
    info = r.json()
    assert info["format"] == "dicom" and (info["width"], info["height"]) == (480, 360)
    cx, cy, r_ = LESION
    out = client.post("/api/predict", json={"image_id": info["image_id"], "roi": {"cx": cx, "cy": cy, "r": r_}})
    assert out.status_code == 200, out.text
    assert out.json()["label"] == "malignant"


def test_one_shot_upload_and_predict(client, pixels):
    cx, cy, r_ = LESION
    r = client.post("/api/predict/upload", files={"file": ("x.bin", png_bytes(pixels), "application/octet-stream")},
                    data={"roi": json.dumps({"cx": cx, "cy": cy, "r": r_})})
    assert r.status_code == 200, r.text
    assert r.json()["label"] == "malignant"


def test_oversize_upload_is_413(fake, pixels):
    app = create_app(predictor=fake, config=WebConfig(max_upload_bytes=20_000))
    data = png_bytes(np.random.default_rng(1).random((300, 300)).astype(np.float32))  # ~90 kB, incompressible
    assert len(data) > 20_000
    with TestClient(app, base_url=LOCAL) as c:
        r = _upload(c, data)
        assert r.status_code == 413
        assert r.json() == {"detail": "upload too large: the limit is 19.5 kB", "error": "too_large"}
        # a body far above the cap is refused from its Content-Length, before it is read
        big = b"\x89PNG\r\n\x1a\n" + bytes(3_000_000)
        r = _upload(c, big)
        assert r.status_code == 413
        assert list(Path(app.state.tmpdir).iterdir()) == []


def test_oversize_chunked_body_is_413_while_streaming(fake):
    """Without a Content-Length, the cap acts on the stream itself."""
    app = create_app(predictor=fake, config=WebConfig(max_upload_bytes=10_000))

    def body():
        yield b"--xyz\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.png\"\r\n\r\n"
        for _ in range(40):  # 40 x 64 kB: well past the 10 kB cap plus 1 MiB of framing slack
            yield bytes(65536)
        yield b"\r\n--xyz--\r\n"

    with TestClient(app, base_url=LOCAL) as c:
        r = c.post("/api/image", content=body(), headers={"content-type": "multipart/form-data; boundary=xyz"})
        assert r.status_code == 413 and r.json()["error"] == "too_large"
        assert list(Path(app.state.tmpdir).iterdir()) == []


def test_wrong_content_with_image_extension_is_415(client):
    r = _upload(client, b"%PDF-1.4 not an image at all\n" * 10, name="scan.png", ctype="image/png")
    assert r.status_code == 415
    body = r.json()
    assert body["error"] == "unsupported_format"
    assert "content" in body["detail"] and "/tmp" not in body["detail"]


def test_truncated_png_is_400(client, pixels):
    data = png_bytes(pixels)[:200]
    r = _upload(client, data)
    assert r.status_code == 400
    assert r.json()["error"] == "unreadable_image" and "PNG" in r.json()["detail"]


def test_empty_file_is_400(client):
    r = _upload(client, b"")
    assert r.status_code == 400 and r.json()["error"] == "empty_file"


def test_missing_roi_is_422(client, pixels):
    info = _upload(client, png_bytes(pixels)).json()
    r = client.post("/api/predict", json={"image_id": info["image_id"]})
    assert r.status_code == 422
    assert r.json()["error"] == "invalid_request" and "roi" in r.json()["detail"]


def test_roi_outside_image_is_422(client, pixels, fake):
    info = _upload(client, png_bytes(pixels)).json()
    for roi in ({"cx": 480.0, "cy": 100.0, "r": 10.0}, {"cx": 100.0, "cy": -1.0, "r": 10.0},
                {"x": 470.0, "y": 350.0, "w": 40.0, "h": 40.0}):
        r = client.post("/api/predict", json={"image_id": info["image_id"], "roi": roi})
        assert r.status_code == 422, roi
        assert r.json()["error"] == "roi_outside" and "480x360" in r.json()["detail"]
    r = client.post("/api/predict", json={"image_id": info["image_id"], "roi": {"cx": 10.0, "cy": 10.0, "r": -3.0}})
    assert r.status_code == 422
    assert fake.calls == 0


def test_unknown_image_id_is_404(client):
    r = client.post("/api/predict", json={"image_id": "nope", "roi": {"cx": 1.0, "cy": 1.0, "r": 3.0}})
    assert r.status_code == 404 and r.json()["error"] == "unknown_image"


def test_uploads_stay_in_private_tmpdir_under_random_names(fake, pixels):
    app = create_app(predictor=fake)
    tmpdir = Path(app.state.tmpdir)
    with TestClient(app, base_url=LOCAL) as c:
        _upload(c, png_bytes(pixels), name="../../etc/evil name.png")
        files = list(tmpdir.iterdir())
        assert len(files) == 1 and "evil" not in files[0].name and files[0].suffix == ".upload"
    assert not tmpdir.exists()  # removed at shutdown


def test_timeout_is_504():
    slow = FakePredictor(delay=1.0)
    app = create_app(predictor=slow, config=WebConfig(timeout_s=0.2))
    with TestClient(app, base_url=LOCAL) as c:
        info = _upload(c, png_bytes(synthetic_mammogram())).json()
        r = c.post("/api/predict", json={"image_id": info["image_id"], "roi": {"cx": 300.0, "cy": 180.0, "r": 28.0}})
        assert r.status_code == 504 and r.json()["error"] == "timeout"


def test_concurrent_requests_are_correct_and_serialised(pixels):
    fake = FakePredictor(delay=0.01)
    app = create_app(predictor=fake)
    data = png_bytes(pixels)
    read = _as_read(data)
    rois = [(60.0 + 13 * i, 100.0 + 7 * i, 10.0 + i) for i in range(16)]
    results: dict[int, tuple[int, dict]] = {}
    with TestClient(app, base_url=LOCAL) as c:
        image_id = _upload(c, data).json()["image_id"]

        def worker(i: int) -> None:
            cx, cy, r_ = rois[i]
            if i % 4 == 0:  # some requests also upload, so uploads and predictions interleave
                resp = c.post("/api/predict/upload", files={"file": ("c.png", data, "image/png")},
                              data={"roi": json.dumps({"cx": cx, "cy": cy, "r": r_})})
            else:
                resp = c.post("/api/predict", json={"image_id": image_id, "roi": {"cx": cx, "cy": cy, "r": r_}})
            results[i] = (resp.status_code, resp.json())

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(rois))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
    assert len(results) == len(rois)
    for i, (status, body) in results.items():
        assert status == 200, body
        assert body["score"] == pytest.approx(expected_score(read, Roi(circle=rois[i])), abs=1e-5), i
        assert body["report"]["roi"]["given"]["cx"] == rois[i][0]
    assert fake.calls == len(rois)
    assert fake.max_active == 1  # the model is never entered by two threads at once


def test_image_evicted_from_memory_is_read_again(pixels):
    fake = FakePredictor()
    app = create_app(predictor=fake, config=WebConfig(cache_images=1, max_images=2))
    data_a, data_b = png_bytes(pixels), png_bytes(synthetic_mammogram(seed=3))
    with TestClient(app, base_url=LOCAL) as c:
        a = _upload(c, data_a).json()["image_id"]
        _upload(c, data_b)  # pushes a out of the memory cache (still on disk)
        r = c.post("/api/predict", json={"image_id": a, "roi": {"cx": 300.0, "cy": 180.0, "r": 28.0}})
        assert r.status_code == 200
        assert r.json()["score"] == pytest.approx(expected_score(_as_read(data_a), Roi(circle=(300, 180, 28))), abs=1e-5)
        _upload(c, data_b)  # two more images: a, the least recently used, is deleted from disk (max_images=2)
        _upload(c, data_b)
        r = c.post("/api/predict", json={"image_id": a, "roi": {"cx": 300.0, "cy": 180.0, "r": 28.0}})
        assert r.status_code == 404
        assert len(list(Path(app.state.tmpdir).iterdir())) == 2


def test_internal_errors_are_json_500(pixels):
    class Broken(FakePredictor):
        def predict(self, image, roi):
            raise RuntimeError("boom")

    app = create_app(predictor=Broken())
    with TestClient(app, base_url=LOCAL, raise_server_exceptions=False) as c:
        info = _upload(c, png_bytes(pixels)).json()
        r = c.post("/api/predict", json={"image_id": info["image_id"], "roi": {"cx": 300.0, "cy": 180.0, "r": 28.0}})
        assert r.status_code == 500 and r.json() == {
            "detail": "internal error (RuntimeError); the server log has the details", "error": "internal"}


def test_report_identifies_the_model_from_a_saved_card():
    from mammocadx.web.card import card_id as _card_id

    card = {"name": "mammocadx-paper", "created_utc": "2026-11-26T02:00:00+00:00",
            "software": {"mammocadx": "0.1.0"}, "files": {"head.json": "ab", "arrays.npz": "cd"},
            "training": {"fingerprint": "ff", "n_samples": 10}}
    assert _card_id(card) == {"id": "mammocadx-paper", "version": None, "created": "2026-11-26T02:00:00+00:00",
                              "made_with": "mammocadx 0.1.0", "files_sha256": {"head.json": "ab", "arrays.npz": "cd"},
                              "training_fingerprint": "ff"}
