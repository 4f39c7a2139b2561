"""End-to-end test of the reader's page in headless Chromium (Debian's ``chromium``, driven by Playwright).

The real page is served by uvicorn on a free loopback port; the test uploads a
synthetic mammogram, clicks the lesion on the displayed (downscaled) image, and
waits for the score and the heat-map. Skips where ``/usr/bin/chromium`` or the
``playwright`` package is missing (install: ``apt-get install -y chromium``;
never ``playwright install``, which downloads browsers). Set
``MAMMOCADX_WEB_SCREENSHOT=/some/dir`` to keep the screenshots.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from conftest_web import FakePredictor, LiveServer, expected_score, png_bytes, synthetic_mammogram
from mammocadx.datasets.records import Roi
from mammocadx.web import create_app

pytestmark = pytest.mark.browser

CHROMIUM = Path(os.environ.get("MAMMOCADX_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# A big image, so the page shows it downscaled and the click must be mapped back to image pixels.
WIDTH, HEIGHT = 1440, 1080
BIG_LESION = (880.0, 610.0, 60.0)


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.skip(f"no Chromium at {CHROMIUM}: install Debian's package with 'apt-get install -y chromium' "
                    "(or set MAMMOCADX_CHROMIUM)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package (dev extra) is missing")
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


def _wait(predicate, timeout_ms: int) -> None:
    deadline = time.monotonic() + timeout_ms / 1000
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting on the page")
        time.sleep(0.05)


def _shot(page, tmp_path: Path, name: str) -> Path:
    out = tmp_path / name
    page.screenshot(path=str(out), full_page=True)
    keep = os.environ.get("MAMMOCADX_WEB_SCREENSHOT")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(out, Path(keep) / name)
    return out


def drive_case(page, url: str, image_path: Path, lesion: tuple[float, float, float], width: int, height: int,
               tmp_path: Path, timeout_ms: int = 30_000) -> dict:
    """Open the page, upload ``image_path``, click ``lesion``'s centre; returns the downloaded report."""
    from playwright.sync_api import expect

    # The page's CSP forbids eval, so waits use locators (not wait_for_function strings).
    page.goto(url + "/")
    expect(page.locator("#card-id")).not_to_have_text("–", timeout=timeout_ms)
    page.set_input_files("#file-input", str(image_path))
    expect(page.locator("#preview")).to_be_visible(timeout=timeout_ms)
    expect(page.locator("#preview")).to_have_attribute("src", re.compile(r"^data:image/png"), timeout=timeout_ms)
    _wait(lambda: page.locator("#preview").evaluate("el => el.complete && el.naturalWidth > 0"), timeout_ms)
    box = page.locator("#preview").bounding_box()
    assert box is not None
    cx, cy, r = lesion
    page.fill("#roi-r", str(r))
    page.mouse.click(box["x"] + cx / width * box["width"], box["y"] + cy / height * box["height"])
    expect(page.locator("#result")).to_be_visible(timeout=timeout_ms)
    expect(page.locator("#cam-img")).to_have_attribute("src", re.compile(r"^data:image/png"), timeout=timeout_ms)
    _wait(lambda: page.locator("#cam-img").evaluate("el => el.complete && el.naturalWidth > 0"), timeout_ms)
    with page.expect_download(timeout=timeout_ms) as dl:
        page.click("#download-report")
    report = json.loads(Path(dl.value.path()).read_text())
    return {"report": report, "display_box": box}


def test_page_end_to_end(browser, tmp_path):
    from playwright.sync_api import expect

    pixels = synthetic_mammogram(WIDTH, HEIGHT, lesion=BIG_LESION)
    image_path = tmp_path / "synthetic-mammogram.png"
    data = png_bytes(pixels)
    image_path.write_bytes(data)
    fake = FakePredictor()
    app = create_app(predictor=fake)
    page = browser.new_page(viewport={"width": 1400, "height": 900}, accept_downloads=True)
    with LiveServer(app) as server:
        out = drive_case(page, server.url, image_path, BIG_LESION, WIDTH, HEIGHT, tmp_path)
        report, box = out["report"], out["display_box"]
        assert box["width"] < WIDTH  # the image really is displayed downscaled
        px = WIDTH / box["width"]  # image pixels per display pixel: the click can be off by about one
        given = report["roi"]["given"]
        assert given["kind"] == "circle" and given["r"] == BIG_LESION[2]
        assert abs(given["cx"] - BIG_LESION[0]) <= 1.5 * px and abs(given["cy"] - BIG_LESION[1]) <= 1.5 * px
        read = np.asarray(pixels * 255).round().astype(np.float32) / 255.0
        want = expected_score(read, Roi(circle=(given["cx"], given["cy"], given["r"])))
        assert report["result"]["score"] == pytest.approx(want, abs=1e-4)
        assert report["result"]["label"] == "malignant" and report["result"]["explained"] is True
        assert report["model"] == {"id": "fake-test-model", "version": "0.0-test"}
        assert report["input"]["sha256"] == hashlib.sha256(data).hexdigest()
        # What the reader sees
        assert page.locator("#label").inner_text().startswith("Malignant")
        assert page.locator("#score-value").inner_text() == f"{report['result']['score']:+.2f}".replace("-", "\u2212")
        assert page.locator("#threshold-value").inner_text() == "+0.00"
        assert "not a medical device" in page.locator("#notice").inner_text().lower()
        assert page.locator("#card-use").inner_text() == "Tests of the web page only."
        assert page.locator("#error").is_hidden()
        _shot(page, tmp_path, "web-result.png")

        # A drag from the centre sets the radius; a non-image with an image name shows a clear error.
        cx, cy = box["x"] + 300 / WIDTH * box["width"], box["y"] + 500 / HEIGHT * box["height"]
        page.mouse.move(cx, cy)
        page.mouse.down()
        page.mouse.move(cx + 30, cy, steps=4)
        page.mouse.up()
        expect(page.locator("#status")).to_have_text(re.compile(r"^Done"))
        assert float(page.input_value("#roi-r")) == pytest.approx(30 * px, abs=1.5 * px)

        # Box mode: a drag from corner to corner gives a box ROI in image pixels.
        page.check("input[name=mode][value=box]")
        x0, y0 = box["x"] + 820 / WIDTH * box["width"], box["y"] + 550 / HEIGHT * box["height"]
        page.mouse.move(x0, y0)
        page.mouse.down()
        page.mouse.move(x0 + 60, y0 + 40, steps=4)
        page.mouse.up()
        expect(page.locator("#status")).to_have_text(re.compile(r"^Done"))
        with page.expect_download() as dl:
            page.click("#download-report")
        given = json.loads(Path(dl.value.path()).read_text())["roi"]["given"]
        assert given["kind"] == "box"
        assert given["x"] == pytest.approx(820, abs=1.5 * px) and given["y"] == pytest.approx(550, abs=1.5 * px)
        assert given["w"] == pytest.approx(60 * px, abs=1.5 * px) and given["h"] == pytest.approx(40 * px, abs=1.5 * px)
        # Typed coordinates and the Analyse button work without a mouse.
        page.fill("#roi-x", "850")
        page.fill("#roi-y", "580")
        page.fill("#roi-w", "64")
        page.fill("#roi-h", "64")
        page.click("#analyse")
        expect(page.locator("#status")).to_have_text(re.compile(r"^Done"))
        with page.expect_download() as dl:
            page.click("#download-report")
        rep = json.loads(Path(dl.value.path()).read_text())
        assert rep["roi"]["given"] == {"kind": "box", "x": 850, "y": 580, "w": 64, "h": 64}
        assert rep["roi"]["crop"] == {"cx": 882, "cy": 612, "side": 96}

        bad = tmp_path / "not-really.png"
        bad.write_bytes(b"this is a text file, not a mammogram\n" * 20)
        page.set_input_files("#file-input", str(bad))
        expect(page.locator("#error")).to_be_visible()
        msg = page.locator("#error").inner_text()
        assert msg.startswith("not-really.png: unsupported file") and "415" in msg
        assert page.locator("#result").is_visible()  # the previous case stays on screen
        _shot(page, tmp_path, "web-error.png")
    page.close()


def test_page_refuses_oversize_file_before_sending(browser, tmp_path):
    from playwright.sync_api import expect

    from mammocadx.web import WebConfig

    big = tmp_path / "big.png"
    big.write_bytes(png_bytes(np.random.default_rng(0).random((400, 400)).astype(np.float32)))  # ~160 kB
    app = create_app(predictor=FakePredictor(), config=WebConfig(max_upload_bytes=50_000))
    page = browser.new_page()
    posts: list[str] = []
    page.on("request", lambda req: posts.append(req.url) if req.method == "POST" else None)
    with LiveServer(app) as server:
        page.goto(server.url + "/")
        expect(page.locator("#card-id")).to_have_text("fake-test-model")
        page.wait_for_load_state("networkidle")  # /healthz, which gives the page the cap, has answered
        page.set_input_files("#file-input", str(big))
        expect(page.locator("#error")).to_be_visible()
        msg = page.locator("#error").inner_text()
        assert msg.startswith("big.png: too large") and "the limit is 48.8 kB" in msg, msg
    assert posts == []
    page.close()
