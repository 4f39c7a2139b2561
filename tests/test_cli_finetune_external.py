"""The recommended mode as the default of train, and external validation from the command line."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest_cli import cohort  # noqa: F401  (fixture)
from mammocadx.cli import main
from mammocadx.datasets.synthetic import make_synthetic_cohort


def test_train_without_mode_gives_the_recommended_mode_with_cv_metrics(cohort: Path, tmp_path: Path) -> None:  # noqa: F811
    from mammocadx.model.modes import RECOMMENDED_MODE

    out = tmp_path / "model"
    assert main(["-q", "train", "--dataset", "synthetic", "--data", str(cohort), "--input-size", "64", "--epochs", "1",
                 "--cv", "2", "--model-out", str(out)]) == 0
    card = json.loads((out / "model.json").read_text())
    assert RECOMMENDED_MODE == "finetune" and card["mode"] == "finetune" and card["kind"] == "finetune"
    assert (out / "network.safetensors").is_file()
    m = card["metrics"]
    assert "2 fold" in m["protocol"] and 0.0 <= m["auc_ci95"][0] <= m["auc"] <= m["auc_ci95"][1] <= 1.0
    assert m["n_lesions"] == card["training_data"]["n_lesions"]


def test_external_validation_between_two_cohorts(cohort: Path, tmp_path: Path) -> None:  # noqa: F811
    """Fit once on every lesion of one cohort, score every lesion of another: one split, the usual run folder."""
    other = tmp_path / "other"
    make_synthetic_cohort(other, n_patients=10, seed=8, size=384)
    out = tmp_path / "run"
    assert main(["-q", "evaluate", "--mode", "best", "--train-dataset", "synthetic", "--train-data", str(cohort),
                 "--dataset", "synthetic", "--data", str(other), "--gallery", "0", "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    proto = metrics["protocol"]
    assert proto["name"].startswith("external validation") and proto["folds"] == 1
    assert proto["n_train"] == 30 and proto["n_test"] == 20
    rows = (out / "predictions.csv").read_text().splitlines()
    assert len(rows) == 1 + 20 and all(",test:synthetic:" in r for r in rows[1:])


def test_external_validation_needs_both_options(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from mammocadx.cli import EXIT_USAGE

    assert main(["-q", "evaluate", "--train-data", str(tmp_path), "--out", str(tmp_path / "r")]) == EXIT_USAGE
    assert "--train-data needs --train-dataset" in capsys.readouterr().err
    assert main(["-q", "evaluate", "--train-dataset", "mias", "--out", str(tmp_path / "r")]) == EXIT_USAGE
    assert "needs --train-data" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()  # refused before any output folder is made
