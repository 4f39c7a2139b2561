"""Settings resolved once (model.config.resolve): defaults < mode recipe < explicit overrides; typed errors."""
from __future__ import annotations

import numpy as np
import pytest

from mammocadx.errors import ConfigError, MammocadxError
from mammocadx.model.config import CADxConfig, HeadConfig, resolve
from mammocadx.model.modes import MODES


@pytest.mark.parametrize("mode", ["best", "paper-grey", "linear-svm"])
def test_an_explicit_setting_equal_to_the_old_cli_default_still_wins(mode):
    """Regression (issue 13): ``--mode best --pseudocolor sine`` silently ran grey."""
    assert resolve(mode, {}).pseudocolor == "grey"
    assert resolve(mode, {"pseudocolor": "sine"}).pseudocolor == "sine"
    assert resolve(mode, {"pseudocolor": None}).pseudocolor == "grey"  # None = not given


def test_cli_options_default_to_none_and_resolve_fills_the_mode(monkeypatch):
    from mammocadx.cli import build_parser
    from mammocadx.cli.common import build_cadx

    args = build_parser().parse_args(["evaluate", "--out", "o", "--mode", "best", "--pseudocolor", "sine"])
    assert build_cadx(args).config.pseudocolor == "sine"
    args = build_parser().parse_args(["evaluate", "--out", "o", "--mode", "best"])
    assert args.pseudocolor is None and args.context is None and args.n_components is None
    assert build_cadx(args).config == resolve("best")
    assert build_cadx(build_parser().parse_args(["evaluate", "--out", "o"])).config == CADxConfig()


@pytest.mark.parametrize("over, needle", [
    ({"context": 0.5}, "context must be >= 1"),
    ({"pseudocolor": "rainbow"}, "pseudocolor"),
    ({"precision": "fp8"}, "precision"),
    ({"n_components": 0}, "n_components"),
    ({"C": -1.0}, "C must be"),
    ({"gamma": "wide"}, "gamma"),
    ({"batch_size": 0}, "batch_size"),
    ({"colour": "sine"}, "unknown settings"),
])
def test_invalid_settings_raise_config_errors(over, needle):
    with pytest.raises(ConfigError, match=needle):
        resolve("paper", over)


def test_unknown_mode_and_settings_a_head_does_not_take():
    with pytest.raises(ConfigError, match="unknown mode"):
        resolve("fastest")
    with pytest.raises(ConfigError, match="does not take"):
        resolve("best", {"threshold": 0.5})  # best chooses its own threshold (Youden)
    assert resolve("paper", {"gamma": "0.01"}).head.gamma == 0.01
    assert isinstance(ConfigError("x"), ValueError) and isinstance(ConfigError("x"), MammocadxError)


def test_evaluate_context_below_one_is_a_one_line_cli_error(monkeypatch, capsys):
    """Regression (issue 13): ``evaluate --context 0.5`` ended in a ValueError traceback."""
    import mammocadx.datasets
    from mammocadx.cli import main

    monkeypatch.setattr(mammocadx.datasets, "load_dataset", lambda *a, **k: [])
    assert main(["evaluate", "--context", "0.5", "--out", "unused"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "context must be >= 1" in err and "Traceback" not in err


def test_roi_config_raises_a_typed_error():
    from mammocadx.preprocess.roi import RoiConfig

    with pytest.raises(ConfigError):
        RoiConfig(context=0.5)


def test_config_round_trips_and_card_lists_only_what_the_head_takes():
    for mode in MODES:
        c = resolve(mode, {"segment": True})
        assert CADxConfig.from_dict(c.to_dict()) == c
        assert CADxConfig.from_dict(c.card_dict()) == c
    assert resolve("best").card_dict()["head"] == {}
    assert set(resolve("paper").card_dict()["head"]) == {"n_components", "C", "gamma", "threshold"}
    with pytest.raises(ConfigError):
        CADxConfig.from_dict({"mode": "paper", "colour": 1})
    assert HeadConfig(gamma="scale").gamma == "scale"


def test_paper_grey_threshold_is_used(tmp_path):
    """Regression (issue 13): ``threshold=0.5`` was ignored in paper-grey (a second threshold path)."""
    from mammocadx.evaluate.crossval import run_splits
    from mammocadx.evaluate.splits import grouped_kfold
    from mammocadx.model.cadx import CADx
    from mammocadx.features.featurizer import FeatureSet
    from mammocadx.records import LesionRecord, Roi

    rng = np.random.default_rng(0)
    y = np.tile([0, 1], 20)
    X = rng.normal(size=(40, 12)).astype(np.float32)
    X[:, 0] += y
    for i in range(len(y)):
        (tmp_path / f"{i}.png").write_bytes(b"x")
    records = [LesionRecord(sample_id=str(i), image_id=str(i), patient_id=str(i), image_path=tmp_path / f"{i}.png",
                            roi=Roi(circle=(5.0, 5.0, 2.0)), label=int(v)) for i, v in enumerate(y)]
    fs = FeatureSet(X=X, records=records)
    cadx = CADx.from_mode("paper-grey", threshold=0.5)
    cadx.featurizer._extractor = type("E", (), {"input_size": 224, "weights_sha256": None})()
    cadx.fit_features(fs)
    assert cadx.threshold == 0.5 == cadx.head_.threshold_ == cadx.card["threshold"]
    res = run_splits(fs.X, fs.y, fs.groups, grouped_kfold(fs.y, fs.groups, 4, 1, 0), cadx.head_factory())
    assert {f["threshold"] for f in res.fold_info} == {0.5}
