"""``train`` and ``predict`` show the trained model's answers (issue 16): probability, "uncertain", OOD, metrics."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image

import pytest

from conftest_cli import cohort  # noqa: F401  (fixture)
from mammocadx.cli import main
from mammocadx.model.persist import load_model


@pytest.fixture(scope="module")
def validated(cohort: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:  # noqa: F811
    """A paper-mode model with cross-validated metrics in its card (``train --cv 3``)."""
    out = tmp_path_factory.mktemp("v") / "model"
    assert main(["-q", "train", "--mode", "paper", "--cv", "3", "--dataset", "synthetic", "--data", str(cohort),
                 "--n-components", "5", "--model-out", str(out)]) == 0
    return out


def test_train_stores_answers_and_predict_shows_probability_and_flags_noise(validated: Path, cohort: Path,  # noqa: F811
                                                                            tmp_path: Path, capsys) -> None:
    model = validated
    _, card = load_model(model)
    assert card["answers"]["calibrator"]["kind"] in ("platt", "isotonic") and "training" in card["answers"]["scores"]
    assert card["ood"]["threshold"] > 0 and card["ood"]["roughness"] is not None
    real = sorted((cohort / "images").glob("*.png"))[0] if (cohort / "images").is_dir() else \
        sorted(cohort.rglob("*.png"))[0]
    noise = tmp_path / "noise.png"
    Image.fromarray((np.random.default_rng(0).random((384, 384)) * 255).astype(np.uint8)).save(noise)
    table = tmp_path / "p.csv"
    capsys.readouterr()
    assert main(["predict", str(model), str(real), str(noise), "--roi", "190,190,30", "--out", str(table)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith("model validated by ") and "AUC" in out.splitlines()[0]
    assert "probability of malignancy" in out and "OUT OF DISTRIBUTION" in out
    rows = {Path(r["path"]).name: r for r in csv.DictReader(table.open())}
    for r in rows.values():
        assert 0.0 <= float(r["probability"]) <= 1.0 and r["answer"] in ("benign", "malignant", "uncertain")
    assert rows["noise.png"]["ood"] == "yes" and "noise-like" in rows["noise.png"]["ood_reasons"]
    assert "noise-like" not in rows[real.name]["ood_reasons"]


def test_train_operating_point_sets_the_threshold_in_the_card(cohort: Path, tmp_path: Path,  # noqa: F811
                                                              capsys) -> None:
    out = tmp_path / "m"
    assert main(["-q", "train", "--dataset", "synthetic", "--data", str(cohort), "--n-components", "5", "--cv", "0",
                 "--mode", "paper", "--operating-point", "sensitivity=0.90", "--model-out", str(out)]) == 0
    _, card = load_model(out)
    op = card["operating_point"]
    assert op["target"] == {"sensitivity": 0.9} and card["threshold"] == op["threshold"]
    assert op["sensitivity"] >= 0.9
    assert "operating point sensitivity=0.9" in capsys.readouterr().out
    assert main(["train", "--mode", "paper", "--dataset", "synthetic", "--data", str(cohort), "--operating-point",
                 "recall=0.9",
                 "--model-out", str(tmp_path / "bad")]) != 0
