"""Issue 14, items 5-8: cache clear asks, manifests from the command line, per-lesion ROI tables, small surprises."""
from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import numpy as np
import pytest

from conftest_cli import cohort, model  # noqa: F401  (fixtures)

from mammocadx.cli import build_parser, main
from mammocadx.datasets.synthetic import load_synthetic


# ---------------------------------------------------------------- item 5

def _filled_cache(root: Path) -> Path:
    from mammocadx.features.cache import FeatureCache

    cache = FeatureCache(root)
    for i in range(3):
        cache.put(f"{i:02d}" + "ab" * 31, np.ones(8, np.float32) * i)
    (root / "onnx").mkdir(parents=True, exist_ok=True)
    (root / "onnx" / "lite0.onnx").write_bytes(b"x" * 5000)
    assert cache.info().entries == 3
    return root


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_cache_clear_never_acts_on_piped_input(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    from mammocadx.features.cache import FeatureCache

    root = _filled_cache(tmp_path / "c")
    # 'mammocadx cache info | mammocadx cache clear': stdin is a pipe holding the info text
    monkeypatch.setattr("sys.stdin", io.StringIO("location: ...\nentries: 3\n"))
    assert main(["cache", "clear", "--dir", str(root)]) == 2
    assert "--yes" in capsys.readouterr().err
    assert FeatureCache(root).info().entries == 3
    # on a terminal it asks; anything but yes keeps everything
    monkeypatch.setattr("sys.stdin", _Tty("n\n"))
    assert main(["cache", "clear", "--dir", str(root)]) == 0
    assert FeatureCache(root).info().entries == 3
    monkeypatch.setattr("sys.stdin", _Tty("y\n"))
    assert main(["cache", "clear", "--dir", str(root)]) == 0
    assert FeatureCache(root).info().entries == 0


def test_cache_clear_says_what_it_removed_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = _filled_cache(tmp_path / "c")
    assert main(["cache", "clear", "--dir", str(root), "--yes"]) == 0
    captured = capsys.readouterr()
    lines = [ln for ln in (captured.out + captured.err).splitlines() if "clear" in ln]
    assert len(lines) == 1, lines  # printed once (the library logs at debug level)
    assert ": 3 entries" in lines[0] and "ONNX exports" in lines[0] and "kept" in lines[0]
    assert (root / "onnx" / "lite0.onnx").is_file()


def test_readme_does_not_pipe_into_cache_clear() -> None:
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    assert "| mammocadx cache clear" not in readme and "mammocadx cache clear --yes" in readme


# ---------------------------------------------------------------- item 6

def _manifest_outside(cohort: Path, folder: Path, missing: bool = True) -> Path:
    """A manifest in ``folder`` whose images live in ``cohort`` (absolute paths), plus one missing image."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for r in load_synthetic(cohort):
        x, y, w, h = r.extra["box"]
        rows.append([str(r.image_path), r.label_name, r.patient_id, x, y, w, h])
    if missing:
        rows.append([str(cohort / "images" / "gone.png"), "benign", "P-missing", 10, 10, 30, 30])
    with (folder / "manifest.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "label", "patient_id", "box_x", "box_y", "box_w", "box_h"])
        w.writerows(rows)
    return folder


def test_manifest_outside_paths_need_the_cli_flag_the_hint_names(cohort: Path, tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    data = _manifest_outside(cohort, tmp_path / "m")
    argv = ["-q", "evaluate", "--dataset", "manifest", "--data", str(data), "--folds", "3", "--repeats", "1",
            "--n-components", "5", "--gallery", "0", "--out", str(tmp_path / "run")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "--allow-outside" in err and "Traceback" not in err
    assert main([*argv, "--allow-outside"]) == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    # the row whose image is missing is counted and listed, not silently dropped
    assert metrics["protocol"]["n_skipped"] == 1
    assert metrics["protocol"]["n_lesions"] == len(load_synthetic(cohort))
    skipped = list(csv.DictReader((tmp_path / "run" / "skipped.csv").open()))
    assert len(skipped) == 1 and skipped[0]["image"].endswith("gone.png") and "not found" in skipped[0]["reason"]


def test_manifest_columns_are_documented_in_help() -> None:
    sub = build_parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    text = sub["evaluate"].format_help()
    for word in ("patient_id", "box_x,box_y,box_w,box_h", "cx,cy,r", "mask_path", "--allow-outside"):
        assert word in text, word
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    assert "box_x, box_y, box_w, box_h" in readme and "--allow-outside" in readme


# ---------------------------------------------------------------- item 7

def test_predict_rois_table_scores_one_lesion_per_row(model: Path, cohort: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    recs = load_synthetic(cohort)[:2]
    (tmp_path / "imgs").mkdir()
    for r in recs:
        shutil.copy(r.image_path, tmp_path / "imgs" / r.image_path.name)
    (x, y, w, h), (cx, cy) = recs[1].extra["box"], recs[0].extra["centre"]
    table = tmp_path / "rois.csv"
    table.write_text(
        "path,cx,cy,r,x,y,w,h\n"
        f"imgs/{recs[0].image_path.name},{cx},{cy},{recs[0].extra['radius']},,,,\n"   # circle
        f"imgs/{recs[1].image_path.name},,,,{x},{y},{w},{h}\n"                       # box
        f"imgs/{recs[1].image_path.name},50,60,-3,,,,\n"                             # bad radius
        "imgs/missing.png,50,60,10,,,,\n"                                             # missing image
        f"imgs/{recs[0].image_path.name},1,2,3,4,5,6,7\n")                           # two forms
    out = tmp_path / "scores.csv"
    rc = main(["predict", str(model), "--rois", str(table), "--out", str(out)])
    assert rc == 1
    rows = list(csv.DictReader(out.open()))
    assert [r["status"] for r in rows] == ["ok", "ok", "error", "error", "error"]
    assert rows[0]["roi"] == f"{cx:g},{cy:g},{recs[0].extra['radius']:g}" and rows[1]["roi"] == f"{x:g},{y:g},{w:g},{h:g}"
    assert all(math.isfinite(float(r["score"])) for r in rows[:2])
    # each row scored with its own ROI: the same score as predict IMAGE --roi with that ROI
    for row in rows[:2]:
        assert main(["predict", str(model), row["path"], "--roi", row["roi"], "--out", str(tmp_path / "one.csv")]) == 0
        assert next(csv.DictReader((tmp_path / "one.csv").open()))["score"] == row["score"]
    reasons = " ".join(r["reason"] for r in rows[2:])
    assert "'r' must be positive" in reasons and "file not found" in reasons and "one lesion form" in reasons
    assert "rois.csv row 3" in " ".join(r["path"] for r in rows)  # bad rows named by their row
    err = capsys.readouterr().err
    assert "5 input(s): 2 scored, 3 failed" in err


# ---------------------------------------------------------------- item 8

def test_negative_roi_values_parse_and_an_roi_outside_is_refused(model: Path, cohort: Path, tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    img = load_synthetic(cohort)[0].image_path
    assert main(["predict", str(model), str(img), "--roi", "-50,-50,30", "--out", str(tmp_path / "a.csv")]) == 1
    row = next(csv.DictReader((tmp_path / "a.csv").open()))
    assert row["status"] == "error" and "outside" in row["reason"]
    assert main(["predict", str(model), str(img), "--roi", "200,200,5000", "--out", str(tmp_path / "b.csv")]) == 1
    row = next(csv.DictReader((tmp_path / "b.csv").open()))
    assert "more than twice" in row["reason"]
    assert "expected one argument" not in capsys.readouterr().err


def test_missing_model_error_names_the_train_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["predict", str(tmp_path / "nomodel"), str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert "mammocadx train" in err and "save_model" not in err


def test_undefined_precision_is_said_not_printed_as_nan() -> None:
    from mammocadx.evaluate.crossval import CVResult

    nan = float("nan")
    per_repeat = [{"auc": 0.6, "accuracy": 0.5, "sensitivity": 0.0, "specificity": 1.0, "precision": nan, "f1": 0.0}] * 2
    text = CVResult(protocol={}, predictions=[], per_repeat=per_repeat, per_fold=[]).text()
    assert "nan" not in text and "undefined (no positive calls" in text


def test_grey_mode_figures_are_titled_grey() -> None:
    from mammocadx.explain.figures import panel_figure
    from mammocadx.explain.gradcam import Explanation

    grey = np.random.default_rng(0).random((32, 32))
    z = np.zeros((32, 32), np.float32)
    expl = Explanation(cam=z, signed_cam=z, score=0.1, features=np.zeros(4), feature_gradient=np.zeros(4),
                       cam_lowres=z[:4, :4], target_layer="x")
    fig = panel_figure(expl, grey, np.stack([grey] * 3, -1), title="t")
    assert fig.axes[1].get_title().startswith("grey ROI")
    fig = panel_figure(expl, grey, np.stack([grey, grey ** 2, 1 - grey], -1), title="t")
    assert fig.axes[1].get_title().startswith("pseudocolour ROI")


def test_identical_training_runs_have_one_fingerprint(cohort: Path, tmp_path: Path) -> None:
    from mammocadx.model.persist import model_fingerprint

    for name, when in (("a", "2026-01-01T00:00:00+00:00"), ("b", "2026-06-01T12:00:00+00:00")):
        assert main(["-q", "train", "--mode", "paper", "--cv", "0", "--dataset", "synthetic", "--data", str(cohort), "--n-components", "5",
                     "--model-out", str(tmp_path / name)]) == 0
        card = json.loads((tmp_path / name / "model.json").read_text())
        assert card["created_utc"]
    assert model_fingerprint(tmp_path / "a") == model_fingerprint(tmp_path / "b")
    assert main(["-q", "train", "--mode", "paper", "--cv", "0", "--dataset", "synthetic", "--data", str(cohort), "--n-components", "4",
                 "--model-out", str(tmp_path / "c")]) == 0
    assert model_fingerprint(tmp_path / "c") != model_fingerprint(tmp_path / "a")


def test_models_folder_is_ignored_by_git() -> None:
    lines = (Path(__file__).parents[1] / ".gitignore").read_text().splitlines()
    assert "models/" in lines


def test_no_progress_bars_when_stderr_is_not_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    from mammocadx.utils.progress import bars_enabled, progress

    monkeypatch.setattr("sys.stderr", io.StringIO())
    assert not bars_enabled()
    bar = progress(range(3), total=3, desc="x")
    assert list(bar) == [0, 1, 2] and bar.disable
    monkeypatch.setattr("sys.stderr", _Tty())
    import logging

    monkeypatch.setattr(logging.getLogger("mammocadx"), "level", logging.INFO)
    assert bars_enabled()


def test_roc_legends_name_the_pooled_auc_of_the_tables(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import matplotlib.pyplot as plt

    from mammocadx.evaluate.figures import plot_mean_rocs
    from mammocadx.evaluate.plots import plot_roc

    figs: list = []
    monkeypatch.setattr(plt, "close", figs.append)
    rng = np.random.default_rng(0)
    y = np.r_[np.zeros(20), np.ones(20)]
    # each fold ranks well, but on its own offset: pooled AUC is lower than the mean of fold AUCs
    curves = [(y, np.r_[rng.normal(0, 1, 20), rng.normal(2, 1, 20)] + 3 * k) for k in range(5)]
    plot_mean_rocs({"paper": curves}, tmp_path / "m.png", pooled_auc={"paper": 0.612})
    plot_roc(curves, tmp_path / "r.png", pooled_auc=0.612)
    for fig in figs:
        labels = " | ".join(t.get_text() for t in fig.axes[0].get_legend().get_texts())
        assert "mean of fold AUCs" in labels and "0.612" in labels and "pooled" in labels, labels
