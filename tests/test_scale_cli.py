"""Issue 18 on the command line: ``--engine ray`` gives the local engine's run folder, predictions and features."""
from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest_cli import cohort, model  # noqa: F401  (fixtures)
from conftest_ray import ray_local  # noqa: F401  (fixture)

from mammocadx.cli import main
from mammocadx.scale.parquet import read_features, read_table


def _metrics(run: Path) -> dict:
    m = json.loads((run / "metrics.json").read_text())
    m.pop("command")  # the one line that differs: it names the engine
    return m


def test_evaluate_on_ray_writes_the_local_run_folder(cohort: Path, tmp_path: Path,  # noqa: F811
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    # No Ray running: the command starts a local one and stops it again.
    args = ["-q", "evaluate", "--dataset", "synthetic", "--data", str(cohort), "--folds", "3", "--repeats", "2",
            "--gallery", "0"]
    assert main([*args, "--out", str(tmp_path / "local")]) == 0
    assert main([*args, "--engine", "ray", "--workers", "2", "--out", str(tmp_path / "ray")]) == 0
    import ray

    assert not ray.is_initialized()
    local, on_ray = tmp_path / "local", tmp_path / "ray"
    assert _metrics(on_ray) == _metrics(local)
    assert (on_ray / "predictions.csv").read_bytes() == (local / "predictions.csv").read_bytes()
    ids, X = read_features(on_ray / "features.parquet")
    with (local / "predictions.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert sorted(ids) == sorted({r["sample_id"] for r in rows}) and X.shape == (len(ids), 1280)
    table = read_table(on_ray / "predictions.parquet")
    assert table["sample_id"] == [r["sample_id"] for r in rows]
    assert np.allclose(table["score"], [float(r["score"]) for r in rows], atol=5e-7)
    engine = json.loads((on_ray / "engine.json").read_text())
    assert engine["engine"] == "ray" and engine["address"] == "local" and engine["last_run"]["rows"] == 30
    assert not (local / "engine.json").exists()


def test_extract_writes_the_same_parquet_on_both_engines(ray_local, cohort: Path, tmp_path: Path) -> None:  # noqa: F811
    base = ["-q", "extract", "--dataset", "synthetic", "--data", str(cohort), "--mode", "best"]
    assert main([*base, "--out", str(tmp_path / "local")]) == 0
    assert main([*base, "--engine", "ray", "--out", str(tmp_path / "ray")]) == 0
    ids_l, X_l = read_features(tmp_path / "local" / "features.parquet")
    ids_r, X_r = read_features(tmp_path / "ray" / "features.parquet")
    assert ids_l == ids_r and len(ids_l) == 30 and np.array_equal(X_l, X_r)
    info = json.loads((tmp_path / "ray" / "extract.json").read_text())
    assert info["n_written"] == 30 and info["engine"]["engine"] == "ray" and info["featurizer"]["pseudocolor"] == "grey"
    # the local run filled the cache: the Ray run decoded nothing
    assert info["engine"]["last_run"]["from_cache"] == 30
    table = read_table(tmp_path / "local" / "features.parquet")
    assert set(table) == {"sample_id", "image_id", "patient_id", "label", "image", "features"}


def test_extract_refuses_the_finetuned_mode(cohort: Path, tmp_path: Path,  # noqa: F811
                                            capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["-q", "extract", "--dataset", "synthetic", "--data", str(cohort), "--mode", "finetune",
               "--out", str(tmp_path / "x")])
    assert rc == 2 and "frozen CNN features" in capsys.readouterr().err and not (tmp_path / "x").exists()


def test_predict_on_ray_scores_a_folder_like_the_local_engine(ray_local, cohort: Path, model: Path,  # noqa: F811
                                                              tmp_path: Path) -> None:
    scans = tmp_path / "scans"
    images = sorted((cohort / "images").glob("*.png"))[:6]
    scans.mkdir()
    for p in images:
        shutil.copy(p, scans / p.name)
    (scans / "broken.png").write_bytes(images[0].read_bytes()[:300])  # a truncated PNG: read, fails to decode
    (scans / "notes.txt").write_text("not an image")
    args = ["-q", "predict", str(model), str(scans), "--roi", "150,150,40"]
    assert main([*args, "--out", str(tmp_path / "local.csv")]) == 1  # one file fails: exit 1, the rest scored
    assert main([*args, "--engine", "ray", "--out", str(tmp_path / "ray.csv")]) == 1
    assert (tmp_path / "ray.csv").read_text() == (tmp_path / "local.csv").read_text()
    rows = list(csv.DictReader((tmp_path / "ray.csv").open()))
    assert [r["status"] for r in rows].count("ok") == 6
    assert {r["status"] for r in rows} == {"ok", "error", "skipped"}
    # Parquet when the name says so, with the same rows
    assert main([*args, "--engine", "ray", "--out", str(tmp_path / "ray.parquet")]) == 1
    table = read_table(tmp_path / "ray.parquet")
    assert table["score"] == [r["score"] for r in rows] and table["path"] == [r["path"] for r in rows]
    # and it is recognised as ours: run again over it
    assert main([*args, "--engine", "ray", "--out", str(tmp_path / "ray.parquet")]) == 1


def test_predict_on_ray_refuses_per_case_figures(model: Path, tmp_path: Path,  # noqa: F811
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    img = tmp_path / "x.png"
    rc = main(["-q", "predict", str(model), str(img), "--roi", "10,10,5", "--engine", "ray",
               "--explain", str(tmp_path / "figs")])
    assert rc == 2 and "without --engine ray" in capsys.readouterr().err


@pytest.mark.shared_data
def test_mini_mias_metrics_identical_on_ray(mias_dir: Path, tmp_path: Path, tmp_path_factory,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """The issue's criterion: evaluate --dataset mias --engine ray gives the local metrics.json (own empty caches)."""
    base = ["-q", "evaluate", "--dataset", "mias", "--data", str(mias_dir), "--gallery", "0"]
    monkeypatch.setenv("MAMMOCADX_CACHE_DIR", str(tmp_path_factory.mktemp("cache-a")))
    assert main([*base, "--out", str(tmp_path / "local")]) == 0
    monkeypatch.setenv("MAMMOCADX_CACHE_DIR", str(tmp_path_factory.mktemp("cache-b")))
    assert main([*base, "--engine", "ray", "--out", str(tmp_path / "ray")]) == 0
    assert _metrics(tmp_path / "ray") == _metrics(tmp_path / "local")
    assert (tmp_path / "ray" / "predictions.csv").read_bytes() == (tmp_path / "local" / "predictions.csv").read_bytes()
    engine = json.loads((tmp_path / "ray" / "engine.json").read_text())
    assert engine["last_run"]["computed"] == 119 and engine["last_run"]["from_cache"] == 0
