"""Re-runs without the CNN: cached Grad-CAM explanations, ONNX Runtime features without PyTorch, numpy preprocessing."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from mammocadx.datasets.synthetic import load_synthetic
from mammocadx.explain import api
from mammocadx.features import extract as fx
from mammocadx.features.backbones import backbone_spec
from mammocadx.model.cadx import CADx

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def records(tmp_path_factory) -> list:
    return load_synthetic(tmp_path_factory.mktemp("syn") / "c", n_patients=5, seed=4, size=256)


def test_explanations_are_served_from_the_cache_until_the_head_changes(records, tmp_path, monkeypatch):
    monkeypatch.setenv("MAMMOCADX_CACHE_DIR", str(tmp_path / "cache"))
    cadx = CADx.paper(n_components=4, gamma="scale").fit(records[:-2])
    first, rois, kept, skipped = api.explain_records(cadx, records[-2:])
    assert len(first) == 2 and not skipped
    assert all(np.abs(e.feature_gradient).max() > 0 for e in first)  # a head with a real gradient

    def no_cnn(_cadx):
        raise AssertionError("loaded the CNN although the explanations are cached")

    with monkeypatch.context() as m:
        m.setattr(api, "model_backbone", no_cnn)
        again, rois2, _, _ = api.explain_records(CADx.paper(n_components=4, gamma="scale").fit(records[:-2]), records[-2:])
    np.testing.assert_array_equal(rois2, rois)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a.cam, b.cam)
        np.testing.assert_array_equal(a.signed_cam, b.signed_cam)
        np.testing.assert_array_equal(a.feature_gradient, b.feature_gradient)
        assert a.score == b.score and a.target_layer == b.target_layer

    # another head (fitted on other lesions) is another model: explained afresh
    calls = []
    real = api.model_backbone
    monkeypatch.setattr(api, "model_backbone", lambda c: calls.append(1) or real(c))
    other = CADx.paper(n_components=4, gamma="scale").fit(records[1:-2])
    fresh, _, _, _ = api.explain_records(other, records[-2:])
    assert calls and not np.allclose(fresh[0].feature_gradient, first[0].feature_gradient)


def test_broken_explanation_entry_is_recomputed(records, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("MAMMOCADX_CACHE_DIR", str(tmp_path / "cache"))
    cadx = CADx.paper(n_components=4, gamma="scale").fit(records[:-1])
    (good,), _, _, _ = api.explain_records(cadx, records[-1:])
    (entry,) = (tmp_path / "cache" / "explanations-v1").rglob("*.npz")
    entry.write_bytes(b"truncated")
    (again,), _, _, _ = api.explain_records(cadx, records[-1:])
    np.testing.assert_allclose(again.cam, good.cam, atol=1e-6)
    assert "ignoring unreadable entry" in caplog.text and entry.stat().st_size > 100


def test_numpy_preprocessing_matches_the_torch_resize_path():
    spec = backbone_spec()
    rng = np.random.default_rng(0)
    u8 = rng.integers(0, 256, (2, 224, 224, 3), dtype=np.uint8)
    x = spec.preprocess_array(u8)
    assert x.dtype == np.float32 and x.shape == (2, 3, 224, 224)
    expected = (u8.transpose(0, 3, 1, 2).astype(np.float64) / 255.0 - 0.5) / 0.5
    np.testing.assert_allclose(x, expected, atol=1e-6)
    # other sizes go through torch's antialiased resize; same normalisation
    small = spec.preprocess_array(u8[:, ::2, ::2])
    assert small.shape == (2, 3, 224, 224) and -1.0 <= small.min() and small.max() <= 1.0
    np.testing.assert_array_equal(spec.preprocess(u8).numpy(), x)


@pytest.mark.slow  # three fresh processes, each exporting or loading the network (~40 s)
@pytest.mark.skipif(not fx.onnxruntime_available(), reason="onnxruntime not installed")
def test_cached_onnx_engine_runs_without_pytorch_and_remembers_its_check(tmp_path):
    """First process exports and checks against eager fp32; a new process then needs no torch at all."""
    cache = tmp_path / "cache"
    script = textwrap.dedent(f"""
        import json, sys
        import numpy as np
        from mammocadx.features.extract import FeatureExtractor
        rgb = np.random.default_rng(int(sys.argv[1])).integers(0, 256, (3, 224, 224, 3), dtype=np.uint8)
        ext = FeatureExtractor(cache_dir={str(cache)!r}, progress=False)
        f = ext.transform(rgb)
        print(json.dumps({{"torch": "torch" in sys.modules, "runner": ext.runner_id, "norm": float(np.linalg.norm(f))}}))
    """)
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))

    def run(seed: int) -> dict:
        out = subprocess.run([sys.executable, "-c", script, str(seed)], env=env, capture_output=True, text=True,
                             check=True)
        return json.loads(out.stdout.strip().splitlines()[-1])

    first = run(1)
    assert first["torch"] and first["runner"].startswith("onnxruntime")  # exported and checked: needs torch
    (record,) = (cache / "onnx").glob("*.verified.json")
    doc = json.loads(record.read_text())
    assert doc["min_cosine"] >= fx.MIN_COSINE and doc["rois"] == 3
    second = run(2)  # other ROIs, so not served by the feature cache
    assert not second["torch"] and second["runner"] == first["runner"] and second["norm"] > 0
    # a record from another ONNX Runtime (or CPU) does not count: the check runs again
    doc["onnxruntime"] = "0.0.0"
    record.write_text(json.dumps(doc))
    third = run(3)
    assert third["torch"]
    assert json.loads(record.read_text())["onnxruntime"] != "0.0.0"
