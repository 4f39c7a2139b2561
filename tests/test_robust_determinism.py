"""Reproducible runs: same seed -> identical metrics.json and predictions.csv; CADx model files round-trip.

The CNN is replaced by fixed feature vectors (the head, the splits, the metrics
and the files are what is under test; feature extraction has its own tests).
"""
from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

from mammocadx.datasets.records import LesionRecord, Roi
from mammocadx.model.cadx import CADx, FeatureSet


@pytest.fixture
def no_cnn(monkeypatch):
    """A stand-in for the lazily loaded CNN: only what cards and run folders read from it."""
    stub = SimpleNamespace(weights_sha256="ab" * 32, input_size=224, feature_dim=64)
    monkeypatch.setattr(CADx, "extractor", property(lambda self: stub))
    return stub


def _features(tmp_path, n_patients=30, d=64, seed=0):
    rng = np.random.default_rng(seed)
    records, rows = [], []
    for p in range(n_patients):
        for k in range(2):
            label = int(rng.random() < 0.45)
            img = tmp_path / f"img{p:03d}_{k}.png"
            img.write_bytes(rng.bytes(64))
            records.append(LesionRecord(sample_id=f"s{p:03d}_{k}", image_id=img.stem, image_path=img,
                                        patient_id=f"p{p:03d}", label=label, roi=Roi(circle=(50.0, 60.0, 10.0))))
            rows.append(rng.normal(size=d) + 0.8 * label * np.linspace(1, 0, d))
    return FeatureSet(X=np.asarray(rows, dtype=np.float32), records=records)


def test_same_seed_gives_identical_metrics_and_predictions(tmp_path, no_cnn):
    from mammocadx.evaluate.run import evaluate, write_run

    fs = _features(tmp_path)
    outs = []
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        cadx = CADx.paper(n_components=20)
        ev = evaluate(cadx, fs.records, folds=4, repeats=1, seed=seed, dataset="synthetic", features=fs)
        outs.append(write_run(ev, tmp_path / "runs" / name, command="mammocadx evaluate --seed X"))
    a, b, c = outs
    for name in ("metrics.json", "predictions.csv"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), f"{name} differs between identical runs"
    assert (a / "predictions.csv").read_bytes() != (c / "predictions.csv").read_bytes()  # the seed matters
    m = json.loads((a / "metrics.json").read_text())
    assert m["protocol"]["seed"] == 0 and 0.0 <= m["auc"] <= 1.0


def test_cadx_save_load_round_trip_is_bit_exact(tmp_path, no_cnn):
    from mammocadx.model.persist import load_model, model_fingerprint

    fs = _features(tmp_path)
    cadx = CADx.paper(n_components=20).fit_features(fs)
    out = cadx.save(tmp_path / "model")
    again = CADx.load(out)
    X_new = np.random.default_rng(5).normal(size=(50, fs.X.shape[1])).astype(np.float32)
    assert np.array_equal(again.decision_function(X_new), cadx.decision_function(X_new))
    assert np.array_equal(again.decision_function(fs.X), cadx.decision_function(fs.X))
    assert again.threshold == cadx.threshold and again.config == cadx.config
    _, card = load_model(out)
    assert card["head"]["n_components"] == 20 and card["config"]["pseudocolor"] == "sine"
    assert card["backbone"]["weights_sha256"] == "ab" * 32 and card["training_data"]["n_lesions"] == 60
    assert len(card["training_data"]["fingerprint"]) == 64
    # Fitting again on the same data gives the same arrays (same bytes, same hash).
    cadx2 = CADx.paper(n_components=20).fit_features(fs)
    cadx2.card["created_utc"] = card["created_utc"]
    out2 = cadx2.save(tmp_path / "model2")
    assert (out2 / "arrays.npz").read_bytes() == (out / "arrays.npz").read_bytes()
    assert model_fingerprint(out2) == model_fingerprint(out)
