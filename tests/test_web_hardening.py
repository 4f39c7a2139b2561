"""The reader's server under abuse: bounded bodies and images, private by default, short errors, local only.

Each test names the defect of issue 19 it guards (2: one JSON request froze the
server; 3: amplification; 4: privacy; 5: errors leaking internals; 6: no Host
or Origin check; 7: HEAD, favicon, grey ROI caption).
"""
from __future__ import annotations

import json
import re
import struct
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from conftest_web import (
    LESION,
    LOCAL,
    FakePredictor,
    LiveServer,
    dicom_bytes,
    dicom_with_windows,
    png_bytes,
    synthetic_mammogram,
)
from mammocadx.errors import ModelError
from mammocadx.web import WebConfig, create_app
from mammocadx.web.predictor import CADxPredictor, no_lesion_cache
from mammocadx.web.store import make_upload_folder, sweep_stale_folders

# A server path in an error body: the upload folder, a home or system folder.
SERVER_PATH = re.compile(r"/(tmp|home|root|usr|var|etc)/|mammocadx-web-|\.upload\b")


@pytest.fixture
def pixels() -> np.ndarray:
    return synthetic_mammogram()


def _client(app, **kw) -> TestClient:
    return TestClient(app, base_url=LOCAL, **kw)


def _upload(c, data: bytes, name: str = "case.png"):
    return c.post("/api/image", files={"file": (name, data, "application/octet-stream")})


def _png_header_only(width: int, height: int, bit_depth: int = 16) -> bytes:
    """A PNG whose header declares ``width`` x ``height`` grey pixels, with a tiny (invalid) payload."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def _until(predicate, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


# ----------------------------------------------------------------------------- 2. bounded JSON bodies
def test_million_key_json_is_refused_fast_while_healthz_answers():
    """Issue 19 defect 2: 11.9 MB of 1M keys took 18.8 s and froze /healthz; now refused before parsing."""
    body = ("{" + ",".join(f'"k{i}":0' for i in range(1_000_000)) + "}").encode()
    assert len(body) > 10_000_000
    app = create_app(predictor=FakePredictor())
    health_times: list[float] = []
    with LiveServer(app) as server, httpx.Client(base_url=server.url, trust_env=False, timeout=30) as http:
        stop = threading.Event()

        def poll() -> None:
            with httpx.Client(base_url=server.url, trust_env=False, timeout=30) as h:
                while not stop.is_set():
                    t0 = time.perf_counter()
                    assert h.get("/healthz").status_code == 200
                    health_times.append(time.perf_counter() - t0)
                    time.sleep(0.01)

        poller = threading.Thread(target=poll)
        poller.start()
        try:
            _until(lambda: len(health_times) >= 1)
            t0 = time.perf_counter()
            r = http.post("/api/predict", content=body, headers={"content-type": "application/json"})
            elapsed = time.perf_counter() - t0
            # the same body without a Content-Length: refused while it streams in
            t1 = time.perf_counter()
            r2 = http.post("/api/predict", content=iter([body[i:i + 65536] for i in range(0, len(body), 65536)]),
                           headers={"content-type": "application/json"})
            elapsed_chunked = time.perf_counter() - t1
            answered = len(health_times)
            _until(lambda: len(health_times) >= answered + 2)  # and it goes on answering
        finally:
            stop.set()
            poller.join()
    assert r.status_code == 413 and r.json()["error"] == "too_large", r.text
    assert len(r.content) < 200
    assert elapsed < 0.5, elapsed
    assert r2.status_code == 413 and elapsed_chunked < 1.0, (r2.status_code, elapsed_chunked)
    assert health_times and max(health_times) < 0.5, health_times


def test_deep_json_is_refused_before_parsing():
    app = create_app(predictor=FakePredictor())
    with _client(app) as c:
        deep = '{"image_id": "x", "roi": ' + "[" * 5000 + "]" * 5000 + "}"
        r = c.post("/api/predict", content=deep, headers={"content-type": "application/json"})
        assert r.status_code == 422 and "nested deeper" in r.json()["detail"]
        # a body sent without a JSON content type gets the same small cap
        r = c.post("/api/predict", content=b"x" * 100_000, headers={"content-type": "text/plain"})
        assert r.status_code == 413


def test_roi_form_field_is_bounded(pixels):
    app = create_app(predictor=FakePredictor())
    with _client(app) as c:
        roi = json.dumps({"cx": 300.0, "cy": 180.0, "r": 28.0, "pad": "x" * 5000})
        r = c.post("/api/predict/upload", files={"file": ("a", png_bytes(pixels), "image/png")}, data={"roi": roi})
        assert r.status_code == 422 and r.json()["error"] == "bad_roi"


# ----------------------------------------------------------------------------- 3. amplification
def test_pixel_bomb_refused_from_its_header(monkeypatch):
    """An 8944 x 8944 16-bit PNG (80 Mpx) is refused from its header, never decoded."""
    import mammocadx.web.store as store_mod

    def never(*_a, **_k):
        raise AssertionError("the pixels were decoded")

    monkeypatch.setattr(store_mod, "read_image", never)
    app = create_app(predictor=FakePredictor())
    with _client(app) as c:
        r = _upload(c, _png_header_only(8944, 8944))
        assert r.status_code == 413 and r.json()["error"] == "image_too_large"
        assert "8944x8944" in r.json()["detail"] and "40 Mpx" in r.json()["detail"]
        assert list(Path(app.state.tmpdir).glob("*.upload")) == []


def test_pixel_cap_is_configurable_and_covers_dicom(pixels, tmp_path):
    app = create_app(predictor=FakePredictor(), config=WebConfig(max_pixels=100_000))
    with _client(app) as c:
        assert _upload(c, png_bytes(pixels)).status_code == 413  # 480 x 360 = 172,800 px
        r = _upload(c, dicom_bytes(pixels, tmp_path / "a.dcm"))
        assert r.status_code == 413 and r.json()["error"] == "image_too_large"
        assert _upload(c, png_bytes(pixels[:200, :400])).status_code == 200  # 80,000 px


@pytest.mark.parametrize("roi, why", [
    ({"cx": 300.0, "cy": 180.0, "r": 17000.0}, "too large"),
    ({"cx": 300.0, "cy": 180.0, "r": 241.0}, "too large"),  # 482 px wide on a 480 px image
    ({"x": 10.0, "y": 10.0, "w": 100.0, "h": 361.0}, "too large"),
    ({"cx": 300.0, "cy": 180.0, "r": 1e-9}, "greater than or equal to 2"),
    ({"cx": 300.0, "cy": 180.0, "r": "29"}, "valid number"),
    ({"cx": "300", "cy": 180.0, "r": 29.0}, "valid number"),
    ({"cx": 300.0, "cy": 180.0, "r": True}, "valid number"),
])
def test_roi_strict_and_bounded_by_the_image(pixels, roi, why):
    fake = FakePredictor()
    app = create_app(predictor=fake)
    with _client(app) as c:
        image_id = _upload(c, png_bytes(pixels)).json()["image_id"]
        r = c.post("/api/predict", json={"image_id": image_id, "roi": roi})
        assert r.status_code == 422, r.text
        assert why in r.json()["detail"]
        ok = c.post("/api/predict", json={"image_id": image_id, "roi": {"cx": 300, "cy": 180, "r": 29}})
        assert ok.status_code == 200  # JSON integers are numbers
    assert fake.calls == 1


def test_stored_uploads_capped_by_total_bytes(pixels):
    data = png_bytes(pixels)
    app = create_app(predictor=FakePredictor(), config=WebConfig(max_stored_bytes=int(2.5 * len(data))))
    with _client(app) as c:
        ids = [_upload(c, data).json()["image_id"] for _ in range(4)]
        stored = list(Path(app.state.tmpdir).glob("*.upload"))
        assert len(stored) == 2 and sum(p.stat().st_size for p in stored) <= 2.5 * len(data)
        assert app.state.store.stored_bytes == 2 * len(data)
        r = c.post("/api/predict", json={"image_id": ids[0], "roi": {"cx": 300.0, "cy": 180.0, "r": 28.0}})
        assert r.status_code == 404 and "upload the image again" in r.json()["detail"]


# ----------------------------------------------------------------------------- 4. privacy
def test_model_card_served_without_local_paths():
    class Carded(FakePredictor):
        @property
        def card(self) -> dict:
            return {"id": "m", "command": "mammocadx train --data /home/reader/cases --model-out /home/reader/m",
                    "training_data": {"dataset": "cbis", "source": "/srv/data/cbis/train.csv"},
                    "metrics": {"protocol": "5-fold CV", "auc": {"mean": 0.8}}}

    app = create_app(predictor=Carded())
    with _client(app) as c:
        text = c.get("/api/model").text
    assert "/home/" not in text and "/srv/" not in text and "command" not in text
    assert json.loads(text)["training_data"]["dataset"] == "cbis"
    assert json.loads(text)["metrics"]["auc"]["mean"] == 0.8


def test_web_model_never_writes_lesion_features_to_the_cache(tmp_path):
    from mammocadx.features.cache import FeatureCache

    class Extractor:
        cache = FeatureCache(tmp_path / "cache")

    class Model:
        extractor = Extractor()

    model = Model()
    CADxPredictor(model)
    cache = model.extractor.cache
    cache.put("ab" * 32, np.ones(4, dtype=np.float32))
    assert cache.get("ab" * 32, 4) is None
    assert cache.root == tmp_path / "cache"  # the folder is still known (backbone exports live there)
    assert not any(p.is_file() for p in (tmp_path / "cache").rglob("*"))
    no_lesion_cache(model)  # idempotent
    assert model.extractor.cache is cache


def test_upload_folders_of_killed_servers_are_swept(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f"mammocadx-web-{dead.pid}-abc123"
    stale.mkdir()
    (stale / ("0" * 32 + ".upload")).write_bytes(b"patient image")
    import os

    alive = tmp_path / f"mammocadx-web-{os.getpid()}-def456"
    alive.mkdir()
    other = tmp_path / "mammocadx-web-notes"
    other.mkdir()
    (other / "notes.txt").write_text("not ours")
    new = make_upload_folder(tmp_path)
    assert not stale.exists() and alive.exists() and other.exists()
    assert new.parent == tmp_path and new.name.startswith(f"mammocadx-web-{os.getpid()}-")
    assert sweep_stale_folders(tmp_path) == []


# ----------------------------------------------------------------------------- 5. short errors
def test_error_bodies_never_name_a_server_path(pixels, tmp_path):
    dcm = dicom_bytes(pixels, tmp_path / "a.dcm")
    bad_files = {
        "pdf": b"%PDF-1.4 not an image at all\n" * 10,
        "png magic, garbage": b"\x89PNG\r\n\x1a\n" + b"garbage" * 50,
        "truncated png": png_bytes(pixels)[:300],
        "truncated dicom": dcm[: len(dcm) // 3],
        "dicom header only": dcm[:400],
        "jpeg magic, garbage": b"\xff\xd8\xff\xe0" + b"\0" * 500,
    }
    app = create_app(predictor=FakePredictor())
    with _client(app) as c:
        for what, data in bad_files.items():
            r = _upload(c, data, name=f"/home/reader/{what}.png")
            body = r.json()
            assert r.status_code in (400, 413, 415), (what, r.status_code, body)
            assert set(body) == {"detail", "error"}, what
            assert not SERVER_PATH.search(body["detail"]), (what, body)
            assert "\n" not in body["detail"] and len(body["detail"]) <= 300, (what, body)
            assert "Pixel Data" not in body["detail"], (what, body)


def test_clean_detail_keeps_urls_and_words():
    from mammocadx.web.api_errors import clean_detail

    assert clean_detail("open http://127.0.0.1:8000/ again") == "open http://127.0.0.1:8000/ again"
    assert clean_detail("image/png, 1/2 of the ROI") == "image/png, 1/2 of the ROI"
    assert clean_detail("cannot identify image file '/tmp/mammocadx-web-1-x/ab.upload'") == (
        "cannot identify image file 'the file'")
    assert clean_detail("see ~/.cache/mammocadx/features/x and C:\\Users\\me\\a.dcm") == "see the file and the file"
    assert clean_detail("line one\nTraceback\n  File \"/usr/lib/x.py\"") == "line one"
    assert len(clean_detail("x" * 5000)) == 300


def test_model_errors_are_one_short_line():
    class Failing(FakePredictor):
        def predict(self, image, roi):
            raise ModelError("decoder failed:\n  File \"/usr/lib/python3/x.py\", line 3\nRuntimeError: boom",
                             "/home/reader/model")

    app = create_app(predictor=Failing())
    with _client(app) as c:
        image_id = _upload(c, png_bytes(synthetic_mammogram())).json()["image_id"]
        r = c.post("/api/predict", json={"image_id": image_id, "roi": {"cx": 300.0, "cy": 180.0, "r": 28.0}})
    assert r.status_code == 500
    assert r.json() == {"detail": "the model failed: decoder failed:", "error": "model_error"}


# ----------------------------------------------------------------------------- 6. Host and Origin
def test_host_header_must_name_this_server():
    app = create_app(predictor=FakePredictor(), config=WebConfig(allowed_hosts=("reader.lan",)))
    with TestClient(app, base_url="http://evil.example") as c:
        r = c.get("/healthz")
        assert r.status_code == 400 and r.json()["error"] == "bad_host" and "localhost" in r.json()["detail"]
        assert c.get("/").status_code == 400
        for host in ("localhost:8000", "127.0.0.1", "127.0.0.1:8123", "[::1]:8000", "LOCALHOST", "reader.lan:80"):
            assert c.get("/healthz", headers={"host": host}).status_code == 200, host
        for host in ("evil.example", "127.0.0.1.evil.example", "localhost.evil.example:8000", ""):
            assert c.get("/healthz", headers={"host": host}).status_code == 400, host


def test_cross_site_posts_are_refused(pixels):
    app = create_app(predictor=FakePredictor())
    data = png_bytes(pixels)
    with _client(app) as c:
        files = {"file": ("a.png", data, "image/png")}
        r = c.post("/api/image", files=files, headers={"origin": "http://evil.example"})
        assert r.status_code == 403 and r.json()["error"] == "cross_origin"
        assert c.post("/api/image", files=files, headers={"origin": "null"}).status_code == 403
        assert c.post("/api/image", files=files, headers={"sec-fetch-site": "cross-site"}).status_code == 403
        assert list(Path(app.state.tmpdir).glob("*.upload")) == []
        ok = c.post("/api/image", files=files, headers={"origin": "http://127.0.0.1:8000",
                                                         "sec-fetch-site": "same-origin"})
        assert ok.status_code == 200
        # reading is not state-changing: a GET with a foreign Origin still answers (the Host is ours)
        assert c.get("/healthz", headers={"origin": "http://evil.example"}).status_code == 200


# ----------------------------------------------------------------------------- 7. small things
def test_head_favicon_and_roi_colour(pixels):
    class Grey(FakePredictor):
        def predict(self, image, roi):
            p = super().predict(image, roi)
            p.roi_rgb = np.repeat(p.roi_grey[..., None], 3, axis=-1)
            return p

    app = create_app(predictor=Grey())
    with _client(app) as c:
        head = c.head("/")
        assert head.status_code == 200 and head.content == b"" and "text/html" in head.headers["content-type"]
        icon = c.get("/favicon.ico")
        assert icon.status_code == 200 and icon.headers["content-type"] == "image/vnd.microsoft.icon"
        assert icon.content[:4] == b"\0\0\1\0" and len(icon.content) < 4096
        image_id = _upload(c, png_bytes(pixels)).json()["image_id"]
        out = c.post("/api/predict", json={"image_id": image_id, "roi": {"cx": 300.0, "cy": 180.0, "r": 28.0}}).json()
        assert out["roi_colour"] == "grey"
    app = create_app(predictor=FakePredictor())  # the fake's ROI is sine pseudocolour
    with _client(app) as c:
        image_id = _upload(c, png_bytes(pixels)).json()["image_id"]
        out = c.post("/api/predict", json={"image_id": image_id, "roi": {"cx": 300.0, "cy": 180.0, "r": 28.0}}).json()
        assert out["roi_colour"] == "pseudocolour"


def test_stability_over_nearby_sizes(pixels):
    from conftest_web import expected_score
    from mammocadx.datasets.records import Roi

    fake = FakePredictor()
    app = create_app(predictor=fake)
    cx, cy, r_ = LESION
    with _client(app) as c:
        info = _upload(c, png_bytes(pixels)).json()
        out = c.post("/api/predict", json={"image_id": info["image_id"], "roi": {"cx": cx, "cy": cy, "r": r_},
                                           "stability": True}).json()
    read = np.rint(pixels * 255).astype(np.float32) / 255.0
    points = out["stability"]
    assert [p["scale"] for p in points] == [0.8, 0.9, 1.0, 1.1, 1.2]
    for p in points:
        assert p["score"] == pytest.approx(expected_score(read, Roi(circle=(cx, cy, r_ * p["scale"]))), abs=1e-5)
    assert points[2]["score"] == pytest.approx(out["score"])
    assert out["report"]["result"]["stability"] == points
    assert fake.calls == 5


def test_dicom_viewer_facts(pixels, tmp_path):
    """Laterality, view, pixel spacing and the file's windows reach the page (preview grey levels)."""
    path = dicom_with_windows(pixels, tmp_path / "a.dcm", 0.1, {"FULL": (2048, 4096), "SOFT": (1024, 2048)})
    app = create_app(predictor=FakePredictor())
    with _client(app) as c:
        info = _upload(c, path.read_bytes()).json()
    assert info["laterality"] == "L" and info["view"] == "CC"
    assert info["pixel_spacing_mm"] == [0.1, 0.1]
    names = [w["name"] for w in info["windows"]]
    assert names[0].startswith("As read") and "SOFT" in names
    soft = info["windows"][names.index("SOFT")]
    # the file's first window spans 0..4096 (centre 2048, width 4096) = the preview's 0..255
    assert soft["center"] == pytest.approx(1024 / 4096 * 255, abs=0.1)
    assert soft["width"] == pytest.approx(2048 / 4096 * 255, abs=0.1)
