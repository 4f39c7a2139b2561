"""End-to-end test of the reader's page in headless Chromium (Debian's ``chromium``, driven by Playwright).

The real page is served by uvicorn on a free loopback port; the test uploads a
synthetic mammogram, marks lesions on the displayed (zoomed) image, zooms,
windows, and makes requests fail, checking that no stale result is ever shown.
Skips where ``/usr/bin/chromium`` or the ``playwright`` package is missing
(install: ``apt-get install -y chromium``; never ``playwright install``, which
downloads browsers). Screenshots are kept under the test's tmp folder (the path
is printed; ``pytest -s`` shows it); set ``MAMMOCADX_WEB_SCREENSHOT=/some/dir``
to copy them there too.
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

from conftest_web import (
    FakePredictor,
    LiveServer,
    dicom_with_windows,
    expected_score,
    png_bytes,
    synthetic_mammogram,
)
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


def shot(page, folder: Path, name: str) -> Path:
    """Screenshot of the whole page, kept in ``folder`` (and copied to $MAMMOCADX_WEB_SCREENSHOT if set)."""
    out = folder / name
    page.screenshot(path=str(out), full_page=True)
    print(f"screenshot: {out}")
    keep = os.environ.get("MAMMOCADX_WEB_SCREENSHOT")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(out, Path(keep) / name)
    return out


def view_transform(page, canvas: str = "#view") -> tuple[float, float, float]:
    """(scale, left, top): a screen point is left + x * scale, top + y * scale for image pixel (x, y)."""
    d = page.locator(canvas).evaluate("el => [el.dataset.scale, el.dataset.ox, el.dataset.oy]")
    box = page.locator(canvas).bounding_box()
    return float(d[0]), box["x"] + float(d[1]), box["y"] + float(d[2])


def to_screen(page, x: float, y: float) -> tuple[float, float]:
    s, left, top = view_transform(page)
    return left + x * s, top + y * s


def to_image(page, sx: float, sy: float) -> tuple[float, float]:
    s, left, top = view_transform(page)
    return (sx - left) / s, (sy - top) / s


def drag(page, p0: tuple[float, float], p1: tuple[float, float]) -> None:
    page.mouse.move(*p0)
    page.mouse.down()
    page.mouse.move(*p1, steps=5)
    page.mouse.up()


def download(page, button: str) -> str:
    with page.expect_download() as dl:
        page.click(button)
    return Path(dl.value.path()).read_text()


def fail_predictions(page, status: int, detail: str, error: str) -> None:
    """Make every later /api/predict answer ``status`` (as the server would), until ``page.unroute``."""
    body = json.dumps({"detail": detail, "error": error})
    page.route("**/api/predict", lambda route: route.fulfill(status=status, content_type="application/json", body=body))


def assert_no_result(page) -> None:
    """No result card, verdict or report of an earlier mark is on screen."""
    assert page.locator("#result").is_hidden()
    assert page.locator("#label").inner_text() == ""
    assert page.locator("#download-report").is_disabled() and page.locator("#download-html").is_disabled()


def open_case(page, url: str, image_path: Path, timeout_ms: int = 30_000) -> None:
    """Open the page and upload ``image_path``; returns when the viewer shows it."""
    from playwright.sync_api import expect

    # The page's CSP forbids eval, so waits use locators (not wait_for_function strings).
    page.goto(url + "/")
    expect(page.locator("#card-id")).not_to_have_text("–", timeout=timeout_ms)
    page.set_input_files("#file-input", str(image_path))
    expect(page.locator("#view")).to_be_visible(timeout=timeout_ms)
    expect(page.locator("#view")).to_have_attribute("data-scale", re.compile(r"^\d"), timeout=timeout_ms)


def drive_case(page, url: str, image_path: Path, lesion: tuple[float, float, float], width: int, height: int,
               tmp_path: Path, timeout_ms: int = 30_000) -> dict:
    """Open the page, upload ``image_path``, click ``lesion``'s centre; returns the downloaded report."""
    from playwright.sync_api import expect

    open_case(page, url, image_path, timeout_ms)
    cx, cy, r = lesion
    page.fill("#roi-r", str(r))
    page.mouse.click(*to_screen(page, cx, cy))
    expect(page.locator("#result")).to_be_visible(timeout=timeout_ms)
    expect(page.locator("#cam-img")).to_have_attribute("src", re.compile(r"^data:image/png"), timeout=timeout_ms)
    _wait(lambda: page.locator("#cam-img").evaluate("el => el.complete && el.naturalWidth > 0"), timeout_ms)
    report = json.loads(download(page, "#download-report"))
    return {"report": report, "scale": view_transform(page)[0]}


def test_page_end_to_end(browser, tmp_path):
    from playwright.sync_api import expect

    pixels = synthetic_mammogram(WIDTH, HEIGHT, lesion=BIG_LESION)
    image_path = tmp_path / "synthetic-mammogram.png"
    data = png_bytes(pixels)
    image_path.write_bytes(data)
    read = np.asarray(pixels * 255).round().astype(np.float32) / 255.0
    app = create_app(predictor=FakePredictor())
    page = browser.new_page(viewport={"width": 1500, "height": 1000}, accept_downloads=True)
    with LiveServer(app) as server:
        out = drive_case(page, server.url, image_path, BIG_LESION, WIDTH, HEIGHT, tmp_path)
        report, scale = out["report"], out["scale"]
        assert scale < 1  # the image really is displayed downscaled
        px = 1 / scale  # image pixels per display pixel: the click can be off by about one
        given = report["roi"]["given"]
        assert given["kind"] == "circle" and given["r"] == BIG_LESION[2]
        assert abs(given["cx"] - BIG_LESION[0]) <= 1.5 * px and abs(given["cy"] - BIG_LESION[1]) <= 1.5 * px
        want = expected_score(read, Roi(circle=(given["cx"], given["cy"], given["r"])))
        assert report["result"]["score"] == pytest.approx(want, abs=1e-4)
        assert report["result"]["label"] == "malignant" and report["result"]["explained"] is True
        assert [p["scale"] for p in report["result"]["stability"]] == [0.8, 0.9, 1.0, 1.1, 1.2]
        assert report["model"] == {"id": "fake-test-model", "version": "0.0-test"}
        assert report["input"]["sha256"] == hashlib.sha256(data).hexdigest()
        # What the reader sees: neutral wording, the score, the stability, the ROI the network saw.
        verdict = page.locator("#label").inner_text()
        assert verdict.startswith("Score above the operating point") and "Malignant side" not in verdict
        assert page.locator("#score-value").inner_text() == f"{report['result']['score']:+.2f}".replace("-", "\u2212")
        assert page.locator("#threshold-value").inner_text() == "+0.00"
        assert page.locator("#stability-rows tr").count() == 5
        assert page.locator("#roi-caption").inner_text() == "Pseudocolour ROI"
        assert "not a medical device" in page.locator("#notice").inner_text().lower()
        assert page.locator("#card-use").inner_text() == "Tests of the web page only."
        assert page.locator("#error").is_hidden()
        html = download(page, "#download-html")
        assert "mammocadx case report" in html and html.count("<img") == 3 and "not a medical device" in html.lower()
        shot(page, tmp_path, "web-result.png")

        # Zoom with the wheel about the cursor: the image point under the cursor stays put.
        sx, sy = to_screen(page, 700, 500)
        page.mouse.move(sx, sy)
        page.mouse.wheel(0, -600)
        expect(page.locator("#view")).not_to_have_attribute("data-scale", str(scale))
        _wait(lambda: view_transform(page)[0] > 1.8 * scale, 5000)
        x, y = to_image(page, sx, sy)
        assert x == pytest.approx(700, abs=2) and y == pytest.approx(500, abs=2)
        # Pan with the tool, then fit and 1:1.
        page.check("input[name=mode][value=pan]")
        before = view_transform(page)
        sx, sy = to_screen(page, 700, 500)  # (checking the radio may have scrolled the page)
        drag(page, (sx, sy), (sx - 120, sy + 40))
        after = view_transform(page)
        assert after[1] == pytest.approx(before[1] - 120, abs=1) and after[2] == pytest.approx(before[2] + 40, abs=1)
        page.click("#zoom-1")
        assert view_transform(page)[0] == pytest.approx(1.0, abs=1e-6)
        page.click("#zoom-fit")
        assert view_transform(page)[0] == pytest.approx(scale, rel=1e-6)
        page.mouse.move(*to_screen(page, 880, 610))
        page.mouse.wheel(0, -400)
        _wait(lambda: view_transform(page)[0] > 1.5 * scale, 5000)

        # Window/level by drag, invert, and back to a preset.
        page.check("input[name=mode][value=window]")
        assert page.locator("#wl-readout").inner_text() == "W 255 · L 128"
        cx, cy = to_screen(page, 880, 610)
        drag(page, (cx, cy), (cx - 155, cy - 40))
        assert page.locator("#wl-readout").inner_text() == "W 100 · L 168"
        page.check("#invert")
        assert page.locator("#wl-readout").inner_text().endswith("inverted")
        # The magnifier: a 3x lens under the pointer changes what is drawn there.
        lx, ly = to_screen(page, 880, 610)
        page.mouse.move(lx + 1, ly + 1)
        clip = {"x": lx - 60, "y": ly - 60, "width": 120, "height": 120}
        plain = page.screenshot(clip=clip)
        page.check("#magnifier")
        page.mouse.move(lx, ly)
        assert page.screenshot(clip=clip) != plain
        shot(page, tmp_path, "web-zoom-window.png")
        page.uncheck("#magnifier")
        page.uncheck("#invert")
        page.select_option("#wl-preset", index=0)
        assert page.locator("#wl-readout").inner_text() == "W 255 · L 128"

        # A second mark (a box on fat tissue): listed beside the first, and the card shows its own result.
        page.click("#zoom-fit")
        page.check("input[name=mode][value=box]")
        drag(page, to_screen(page, 300, 480), to_screen(page, 380, 540))
        expect(page.locator("#result-title")).to_have_text("Result for mark #2")
        expect(page.locator("#marks li")).to_have_count(2)
        assert page.locator("#label").inner_text().startswith("Score at or below the operating point")
        rep2 = json.loads(download(page, "#download-report"))
        g2 = rep2["roi"]["given"]
        assert g2["kind"] == "box" and g2["x"] == pytest.approx(300, abs=1.5 * px) and g2["w"] == pytest.approx(80, abs=3 * px)
        assert rep2["result"]["score"] == pytest.approx(expected_score(read, Roi(box=(g2["x"], g2["y"], g2["w"], g2["h"]))),
                                                        abs=1e-4)
        # Selecting mark #1 shows its result again (its own ROI).
        page.locator("#marks li[data-mark='1'] .mark-select").click()
        expect(page.locator("#result-title")).to_have_text("Result for mark #1")
        assert json.loads(download(page, "#download-report"))["roi"]["given"]["cx"] == given["cx"]
        shot(page, tmp_path, "web-two-marks.png")

        # Failures never leave the previous result on screen.
        # (a) a value the form blocks
        page.check("input[name=mode][value=circle]")
        page.fill("#roi-cx", "700")
        page.fill("#roi-cy", "500")
        page.fill("#roi-r", "1")
        page.click("#analyse")
        assert_no_result(page)
        assert "at least 2 pixels" in page.locator("#error").inner_text()
        # (b) the server refuses the ROI (422: wider than the image)
        page.fill("#roi-r", "900")
        page.click("#analyse")
        expect(page.locator("#error")).to_contain_text("The mark was refused: ROI too large")
        assert_no_result(page)
        expect(page.locator("#marks li[data-mark='3'] .mark-result")).to_contain_text("failed")
        # (c) the server is busy (503); (d) the server forgot the image (404): the page says to open it again
        for status, detail, error, shown, at, says in (
                (503, "server busy: 64 predictions queued; try again shortly", "busy", 1, (600, 400), "The server is busy"),
                (404, "unknown image id: upload the image again", "unknown_image", 2, (620, 420), "Open the image again")):
            fail_predictions(page, status, detail, error)
            page.locator(f"#marks li[data-mark='{shown}'] .mark-select").click()
            expect(page.locator("#result")).to_be_visible()  # a good result is on screen, then a new mark fails
            page.mouse.click(*to_screen(page, *at))
            expect(page.locator("#error")).to_contain_text(says)
            assert_no_result(page)
            shot(page, tmp_path, f"web-failed-request-{status}.png")
            page.unroute("**/api/predict")
        # after a 404 further marks say so too, without asking the server
        page.mouse.click(*to_screen(page, 640, 440))
        expect(page.locator("#error")).to_contain_text("Open the image again")
        assert_no_result(page)
        assert page.locator("#analyse").is_disabled()

        # A non-image with an image name: a clear error, the open case stays.
        bad = tmp_path / "not-really.png"
        bad.write_bytes(b"this is a text file, not a mammogram\n" * 20)
        page.set_input_files("#file-input", str(bad))
        expect(page.locator("#error")).to_contain_text("not-really.png: unsupported file")
        assert "415" in page.locator("#error").inner_text()
        assert page.locator("#view").is_visible()
        shot(page, tmp_path, "web-error.png")
    page.close()


def test_dicom_labels_presets_scale_bar_and_second_view(browser, tmp_path):
    """The DICOM's laterality and view, its windows as presets, a scale bar from its pixel spacing; a second view."""
    import pydicom
    from playwright.sync_api import expect

    path = dicom_with_windows(synthetic_mammogram(WIDTH, HEIGHT, lesion=BIG_LESION), tmp_path / "case.dcm", 0.07,
                              {"FULL": (2048, 4096), "DENSE": (2600, 1600)})
    app = create_app(predictor=FakePredictor())
    page = browser.new_page(viewport={"width": 1500, "height": 1000}, accept_downloads=True)
    with LiveServer(app) as server:
        open_case(page, server.url, path)
        meta = page.locator("#image-meta").inner_text()
        assert "L CC" in meta and "0.07 mm/px" in meta
        options = page.locator("#wl-preset option").all_inner_texts()
        assert options[0].startswith("As read") and "DENSE" in options
        page.select_option("#wl-preset", label="DENSE")
        expect(page.locator("#wl-readout")).to_have_text(re.compile(r"^W 100 · L 162"))
        # Typed coordinates and the Analyse button work without a mouse, on a freshly opened image.
        page.fill("#roi-cx", "880")
        page.fill("#roi-cy", "610")
        page.fill("#roi-r", "60")
        page.click("#analyse")
        expect(page.locator("#marks li .mark-result")).to_contain_text("score")
        assert "(4.2 mm)" in page.locator("#marks li .mark-select").inner_text()
        shot(page, tmp_path, "web-dicom.png")

        # A second view of the same breast, side by side, with the lesion marked in both.
        mlo = dicom_with_windows(synthetic_mammogram(1200, 1500, seed=4, lesion=(700.0, 800.0, 50.0)),
                                 tmp_path / "mlo.dcm", 0.07, {"FULL": (2048, 4096)})
        ds = pydicom.dcmread(mlo)
        ds.ViewPosition = "MLO"
        ds.save_as(mlo)
        page.set_input_files("#file-input-2", str(mlo))
        expect(page.locator("#view2")).to_have_attribute("data-scale", re.compile(r"^\d"))
        first, second = page.locator("#view").bounding_box(), page.locator("#view2").bounding_box()
        assert second["x"] >= first["x"] + first["width"] and abs(second["y"] - first["y"]) < 2  # side by side
        assert page.locator("#marks li").count() == 1  # the first view's mark stays
        s2, left2, top2 = view_transform(page, "#view2")
        page.fill("#roi-r", "50")
        page.mouse.click(left2 + 700 * s2, top2 + 800 * s2)
        expect(page.locator("#result-title")).to_have_text("Result for mark #2 (L MLO)")
        assert "L MLO" in page.locator("#marks li[data-mark='2'] .mark-select").inner_text()
        rep = json.loads(download(page, "#download-report"))
        assert rep["input"]["sha256"] == hashlib.sha256(mlo.read_bytes()).hexdigest()
        assert rep["roi"]["given"]["cx"] == pytest.approx(700, abs=2 / s2)
        page.locator("#marks li[data-mark='1'] .mark-select").click()
        expect(page.locator("#result-title")).to_have_text("Result for mark #1 (L CC)")
        assert "L CC" in page.locator("#image-meta").inner_text()  # the toolbar follows the selected view
        shot(page, tmp_path, "web-two-views.png")
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
