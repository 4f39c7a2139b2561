"""50 concurrent predictions through the real HTTP stack (uvicorn on loopback), with the bounded load script."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from conftest_web import LESION, FakePredictor, LiveServer, png_bytes, synthetic_mammogram
from mammocadx.web import create_app

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "load_web.py"


def _load_script():
    spec = importlib.util.spec_from_file_location("load_web", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_fifty_concurrent_predictions_no_error():
    load_web = _load_script()
    fake = FakePredictor(delay=0.005)
    app = create_app(predictor=fake)
    rois = load_web.jittered_rois(*LESION, n=50)
    with LiveServer(app) as server:
        figures = load_web.run_load(server.url, png_bytes(synthetic_mammogram()), rois, concurrency=50, max_seconds=60)
    assert figures["ok"] == 50 and figures["errors"] == 0 and figures["unfinished"] == 0, figures
    assert fake.calls == 50 and fake.max_active == 1
    assert figures["latency_ms"]["p95"] >= figures["latency_ms"]["p50"] > 0


def test_load_script_refuses_non_loopback():
    load_web = _load_script()
    with pytest.raises(SystemExit, match="loopback"):
        load_web.run_load("http://example.org:8000", b"x", [{"cx": 1.0, "cy": 1.0, "r": 1.0}])
