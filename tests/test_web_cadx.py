"""The web app over a real (tiny) CADx: fitted on a few synthetic cases, saved, loaded by ``create_app(model_dir)``.

Checks that the page's numbers are the library's own: the score the API returns
for a lesion is the one ``CADx.load(dir).predict`` gives for the same image and
ROI, and the Grad-CAM comes from the explain module at ROI resolution.
"""
from __future__ import annotations

import base64
import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

for _mod, _what in (("mammocadx.features.extract", "feature extractor"), ("mammocadx.model.persist", "model files"),
                    ("mammocadx.explain.api", "Grad-CAM API"), ("mammocadx.datasets.synthetic", "synthetic cohort")):
    pytest.importorskip(_mod, reason=f"{_what} ({_mod}) not on this branch yet")

from conftest_web import LOCAL, LiveServer  # noqa: E402
from mammocadx.datasets.records import Roi  # noqa: E402
from mammocadx.datasets.synthetic import load_synthetic  # noqa: E402
from mammocadx.io.images import read_image  # noqa: E402
from mammocadx.model.cadx import CADx  # noqa: E402
from mammocadx.web import create_app  # noqa: E402


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A paper-mode model (PCA 4) fitted on 6 synthetic patients' training images (with probability, conformal
    sets and OOD guard, as ``train`` fits them), one without them (as saved before), and one held-out case."""
    import torch

    torch.set_num_threads(min(2, torch.get_num_threads()))
    tmp = tmp_path_factory.mktemp("web-cadx")
    records = load_synthetic(tmp / "cohort", n_patients=6, seed=0)
    train = [r for r in records if r.split != "test"]
    test = [r for r in records if r.split == "test"]
    assert train and test
    cadx = CADx.paper(n_components=4)
    fs = cadx.featurize(train)
    model_dir = cadx.fit_features(fs).fit_answers(fs).save(tmp / "model")
    old_dir = CADx.paper(n_components=4).fit_features(fs).save(tmp / "old-model")
    case = test[0]
    cx, cy = case.extra["centre"]
    return {"model_dir": Path(model_dir), "old_dir": Path(old_dir), "case": case,
            "lesion": (float(cx), float(cy), float(case.extra["radius"]))}


def _png(b64: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(b64))))


def test_api_gives_the_library_score_and_gradcam(tiny):
    model_dir, case, (cx, cy, r) = tiny["model_dir"], tiny["case"], tiny["lesion"]
    app = create_app(model_dir=model_dir)
    data = Path(case.image_path).read_bytes()
    entries = Path(app.state.predictor.cadx.extractor.cache.entries_dir)
    before = {p for p in entries.rglob("*") if p.is_file()} if entries.exists() else set()
    with TestClient(app, base_url=LOCAL) as c:
        card = c.get("/api/model").json()
        assert card["name"] == "mammocadx-paper" and "not a medical device" in card["intended_use"].lower()
        info = c.post("/api/image", files={"file": ("x", data, "application/octet-stream")}).json()
        out = c.post("/api/predict", json={"image_id": info["image_id"], "roi": {"cx": cx, "cy": cy, "r": r}})
        assert out.status_code == 200, out.text
        out = out.json()

    # privacy: the reader's lesion left nothing in the user's feature cache
    after = {p for p in entries.rglob("*") if p.is_file()} if entries.exists() else set()
    assert after == before

    # the library's own answer, from the model the app loaded with CADx.load(model_dir)
    cadx = app.state.predictor.cadx
    assert isinstance(cadx, CADx) and cadx.card["name"] == card["name"]
    ref = cadx.predict(read_image(case.image_path), Roi(circle=(cx, cy, r)))
    assert out["score"] == pytest.approx(ref.score, rel=1e-5, abs=1e-6)
    assert out["threshold"] == pytest.approx(ref.threshold)
    assert out["label"] == ref.label == ("malignant" if ref.score > ref.threshold else "benign")
    assert out["crop"] == pytest.approx(list(ref.crop))
    size = ref.roi_rgb.shape[0]
    roi_png = _png(out["roi_png"])
    assert roi_png.shape == (size, size, 3)
    assert np.abs(roi_png.astype(float) - np.rint(ref.roi_rgb * 255)).max() <= 1  # the pseudocolour the CNN saw
    assert out["explain_error"] is None
    assert _png(out["cam_png"]).shape == (size, size, 3)
    heat = _png(out["heatmap_png"])
    assert heat.shape == (size, size) and heat.max() > 0
    rep = out["report"]
    assert rep["model"]["id"] == "mammocadx-paper"
    assert rep["model"]["created"] == card.get("created_utc", card.get("created"))
    if "files" in card:  # the model files' SHA-256 pin the exact model in the case report
        assert rep["model"]["files_sha256"] == card["files"]
    if "training" in card:
        assert rep["model"]["training_fingerprint"] == card["training"]["fingerprint"]
    assert rep["result"]["explained"] is True
    # issue 16: calibrated probability, answer and OOD flag, as the library gives them, in the response and report
    assert 0.0 <= out["probability"] <= 1.0 and out["probability"] == pytest.approx(ref.probability, abs=1e-6)
    assert out["answer"] == ref.answer and out["answer"] in ("benign", "malignant", "uncertain")
    assert out["ood"] is ref.ood and out["ood_reasons"] == ref.ood_reasons
    assert rep["result"]["probability"] == out["probability"] and rep["result"]["answer"] == out["answer"]
    assert rep["result"]["ood"] is out["ood"]


def test_api_flags_a_noise_image_and_serves_older_models(tiny):
    cx, cy, r = tiny["lesion"]
    noise = io.BytesIO()
    Image.fromarray((np.random.default_rng(0).random((256, 256)) * 255).astype(np.uint8)).save(noise, "PNG")
    for model_dir, has_answers in ((tiny["model_dir"], True), (tiny["old_dir"], False)):
        with TestClient(create_app(model_dir=model_dir), base_url=LOCAL) as c:
            info = c.post("/api/image", files={"file": ("n.png", noise.getvalue(), "image/png")}).json()
            out = c.post("/api/predict", json={"image_id": info["image_id"], "roi": {"cx": 128, "cy": 128, "r": 20},
                                               "explain": False})
            assert out.status_code == 200, out.text
            out = out.json()
        if has_answers:
            assert out["ood"] is True and any("noise-like" in why for why in out["ood_reasons"])
            assert 0.0 <= out["probability"] <= 1.0
        else:  # a model saved without them still scores; the fields are null
            assert out["probability"] is None and out["answer"] is None and out["ood"] is None
            assert out["label"] in ("benign", "malignant")


@pytest.mark.browser
@pytest.mark.slow
def test_page_with_real_model(tiny, tmp_path):
    """The real page and the real model together in headless Chromium (screenshot kept if asked)."""
    from test_web_browser import CHROMIUM, CHROMIUM_ARGS, drive_case

    if not CHROMIUM.exists():
        pytest.skip(f"no Chromium at {CHROMIUM}: install Debian's package with 'apt-get install -y chromium'")
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package (dev extra) is missing")
    case, lesion = tiny["case"], tiny["lesion"]
    image = read_image(case.image_path)
    app = create_app(model_dir=tiny["model_dir"])
    with sync_api.sync_playwright() as pw, LiveServer(app) as server:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1400, "height": 900}, accept_downloads=True)
        out = drive_case(page, server.url, Path(case.image_path), lesion, image.shape[1], image.shape[0], tmp_path,
                         timeout_ms=120_000)
        report = out["report"]
        assert report["model"]["id"] == "mammocadx-paper" and report["result"]["explained"] is True
        assert page.locator("#card-use").inner_text().lower().startswith("research")
        shot = tmp_path / "web-real-model.png"
        page.screenshot(path=str(shot), full_page=True)
        keep = os.environ.get("MAMMOCADX_WEB_SCREENSHOT")
        if keep:
            Path(keep).mkdir(parents=True, exist_ok=True)
            (Path(keep) / shot.name).write_bytes(shot.read_bytes())
            (Path(keep) / "web-real-model-report.json").write_text(json.dumps(report, indent=2))
        browser.close()


def test_dicom_upload_offers_sr_and_gradcam_for_download(tiny, tmp_path):
    """Issue 17 item 2: a DICOM upload gets its Structured Report and Grad-CAM Secondary Capture as downloads."""
    import pydicom

    from conftest_dicom_out import full_field_dicom
    from mammocadx.dicom_out import read_sr

    path, _ = full_field_dicom(tmp_path / "case.dcm", seed=5, size=384)
    with TestClient(create_app(model_dir=tiny["model_dir"]), base_url=LOCAL) as c:
        info = c.post("/api/image", files={"file": ("case.dcm", path.read_bytes(), "application/dicom")}).json()
        out = c.post("/api/predict", json={"image_id": info["image_id"], "roi": {"cx": 190, "cy": 190, "r": 30}})
        assert out.status_code == 200, out.text
        out = out.json()
        assert out["dicom_error"] is None and set(out["dicom_files"]) == {"sr", "gradcam"}
        got = {}
        for kind, url in out["dicom_files"].items():
            r = c.get(url)
            assert r.status_code == 200 and r.headers["content-type"] == "application/dicom"
            got[kind] = tmp_path / f"{kind}.dcm"
            got[kind].write_bytes(r.content)
        assert c.get(out["dicom_files"]["sr"].replace("/sr", "/nope")).status_code == 404
        assert c.get("/api/dicom/" + "0" * 32 + "/sr").status_code == 404
        png = io.BytesIO()
        Image.fromarray(np.zeros((64, 64), np.uint8)).save(png, "PNG")
        info = c.post("/api/image", files={"file": ("x.png", png.getvalue(), "image/png")}).json()
        plain = c.post("/api/predict", json={"image_id": info["image_id"], "roi": {"cx": 32, "cy": 32, "r": 8}}).json()
        assert plain["dicom_files"] is None  # a PNG has no study to write into
    (finding,) = read_sr(got["sr"])
    assert finding.score == pytest.approx(out["score"], abs=1e-4) and finding.label == out["label"]
    assert finding.probability == pytest.approx(out["probability"], abs=1e-4)
    src = pydicom.dcmread(path, stop_before_pixels=True)
    sc = pydicom.dcmread(got["gradcam"])
    assert sc.StudyInstanceUID == src.StudyInstanceUID and sc.SamplesPerPixel == 3
