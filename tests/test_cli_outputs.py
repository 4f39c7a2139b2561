"""Issue 14: nothing lost, nothing surprising on the command line.

Item 2: no output option deletes or overwrites a file mammocadx did not write.
Item 3: same-name inputs in different folders never overwrite each other's outputs.
Item 4: every file a folder holds is accounted for by predict (scored, failed or skipped, with why).
"""
from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest_cli import cohort, model  # noqa: F401  (fixtures)

from mammocadx.cli import main
from mammocadx.datasets.synthetic import load_synthetic
from mammocadx.io.paths import OUTPUT_MARKER, claim_output_dir, output_stems

THESIS = "chapter 1\nfour years of work\n".encode() * 50


def _png(path: Path, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    img = np.zeros((256, 200), np.uint8)
    img[20:230, :150] = 120 + rng.integers(0, 40, size=(210, 150), dtype=np.uint8)
    Image.fromarray(img).save(path)
    return path


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# Every output option of every command, with the argument list that points it at DIR.
# "{img}" is an image, "{cohort}" a synthetic cohort, "{model}" a model folder that need not exist
# (each command must check its output before doing anything else).
OUTPUT_OPTIONS = {
    "evaluate --out": ["evaluate", "--dataset", "synthetic", "--data", "{cohort}", "--out", "{dir}"],
    "compare --out": ["compare", "--dataset", "synthetic", "--data", "{cohort}", "--out", "{dir}"],
    "ablate --out": ["ablate", "--dataset", "synthetic", "--data", "{cohort}", "--out", "{dir}"],
    "demo --out": ["demo", "--data", "{cohort}", "--out", "{dir}"],
    "train --model-out": ["train", "--mode", "paper", "--cv", "0", "--dataset", "synthetic", "--data", "{cohort}", "--model-out", "{dir}"],
    "predict --explain": ["predict", "{model}", "{img}", "--roi", "100,100,20", "--explain", "{dir}"],
    "predict --dicom-out": ["predict", "{model}", "{img}", "--roi", "100,100,20", "--dicom-out", "{dir}"],
    "predict --out": ["predict", "{model}", "{img}", "--roi", "100,100,20", "--out", "{dir}/thesis.txt"],
    "extract --out": ["extract", "--dataset", "synthetic", "--data", "{cohort}", "--out", "{dir}"],
    "segment --out": ["segment", "{img}", "--out", "{dir}"],
    "inspect --out": ["inspect", "{img}", "--out", "{dir}"],
    "synthetic --data": ["evaluate", "--dataset", "synthetic", "--data", "{dir}", "--out", "{dir}/../run"],
}


@pytest.mark.parametrize("option", sorted(OUTPUT_OPTIONS))
def test_no_output_option_deletes_or_overwrites_a_user_file(option: str, cohort: Path, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "mine"
    target.mkdir()
    (target / "thesis.txt").write_bytes(THESIS)
    (target / "notes").mkdir()
    (target / "notes" / "n.md").write_text("keep me")
    before = _snapshot(target)
    img = _png(tmp_path / "img.png")
    argv = [a.format(dir=target, img=img, cohort=cohort, model=tmp_path / "no-model") for a in OUTPUT_OPTIONS[option]]
    rc = main(["-q", *argv])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert _snapshot(target) == before  # byte-identical, nothing added, nothing removed
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert str(target) in err and any(w in err for w in ("did not write", "not written by mammocadx",
                                                         "not a synthetic cohort"))


def test_cache_clear_never_touches_other_files(tmp_path: Path) -> None:
    (tmp_path / "thesis.txt").write_bytes(THESIS)
    assert main(["cache", "clear", "--dir", str(tmp_path), "--yes", "--all"]) == 0
    assert (tmp_path / "thesis.txt").read_bytes() == THESIS


@pytest.mark.parametrize("cwd_has_files", [True, False])
def test_out_dot_is_a_message_not_a_traceback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str], cwd_has_files: bool) -> None:
    img = _png(tmp_path / "in" / "img.png")
    work = tmp_path / "work"
    work.mkdir()
    if cwd_has_files:
        (work / "thesis.txt").write_bytes(THESIS)
    monkeypatch.chdir(work)
    before = _snapshot(work)
    for argv in (["segment", str(img), "--out", "."], ["evaluate", "--out", "."], ["train", "--model-out", "."],
                 ["inspect", str(img), "--out", ".."]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "Traceback" not in err and "current folder" in err and "error" in err
    assert _snapshot(work) == before


def test_a_folder_mammocadx_wrote_is_reused_until_a_user_file_appears(tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    img = _png(tmp_path / "a.png")
    out = tmp_path / "previews"
    assert main(["inspect", str(img), "--out", str(out)]) == 0
    marker = json.loads((out / OUTPUT_MARKER).read_text())
    assert marker["files"] == ["001_a.png"]
    assert main(["inspect", str(img), "--out", str(out)]) == 0  # our own files: written again
    (out / "thesis.txt").write_bytes(THESIS)
    capsys.readouterr()
    assert main(["inspect", str(img), "--out", str(out)]) == 2
    assert "thesis.txt" in capsys.readouterr().err
    assert (out / "thesis.txt").read_bytes() == THESIS


def test_an_empty_folder_is_used_and_a_failed_command_leaves_no_new_folder(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    assert claim_output_dir(tmp_path / "empty") == (tmp_path / "empty").resolve()
    assert (tmp_path / "empty" / OUTPUT_MARKER).is_file()
    # the dataset is missing: the command fails after claiming its folder, and takes the new folder back
    assert main(["evaluate", "--dataset", "mias", "--data", str(tmp_path / "nowhere"), "--out",
                 str(tmp_path / "o")]) == 2
    assert not (tmp_path / "o").exists()


def test_train_that_fails_leaves_no_model_folder(tmp_path: Path) -> None:
    assert main(["train", "--mode", "paper", "--cv", "0", "--dataset", "mias", "--data", str(tmp_path / "nowhere"), "--model-out",
                 str(tmp_path / "models" / "m")]) == 2
    assert not (tmp_path / "models" / "m").exists()


def test_a_rerun_replaces_its_own_run_folder_but_not_one_with_a_user_file(cohort: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    argv = ["-q", "evaluate", "--dataset", "synthetic", "--data", str(cohort), "--folds", "3", "--repeats", "1",
            "--n-components", "5", "--gallery", "0", "--out", str(out)]
    assert main(argv) == 0
    listed = json.loads((out / OUTPUT_MARKER).read_text())["files"]
    assert "metrics.json" in listed and "report.html" in listed
    assert main(argv) == 0
    (out / "thesis.txt").write_bytes(THESIS)
    assert main(argv) == 2
    assert (out / "thesis.txt").read_bytes() == THESIS and (out / "metrics.json").is_file()


def test_predict_out_replaces_only_its_own_csv(model: Path, tmp_path: Path) -> None:
    img = _png(tmp_path / "a.png")
    table = tmp_path / "scores.csv"
    assert main(["predict", str(model), str(img), "--roi", "100,100,20", "--out", str(table)]) == 0
    first = table.read_text()
    assert first.startswith("path,roi,status,score,label,probability,answer,ood,ood_reasons,reason")
    assert main(["predict", str(model), str(img), "--roi", "100,100,30", "--out", str(table)]) == 0
    assert table.read_text() != first  # our own file: replaced
    assert main(["predict", str(model), str(img), "--roi", "100,100,20", "--out", str(tmp_path)]) == 2  # a folder


# ---------------------------------------------------------------- item 3

def test_output_stems_are_distinct_for_same_name_files(tmp_path: Path) -> None:
    names = output_stems([tmp_path / "P_1" / "1-1.dcm", tmp_path / "P_2" / "1-1.dcm", tmp_path / "mdb001.png"])
    assert names == ["P_1__1-1", "P_2__1-1", "mdb001"]
    assert len(set(output_stems([tmp_path / "a.png", tmp_path / "a.dcm", tmp_path / "a.png"]))) == 3


def _two_same_name_images(root: Path) -> list[Path]:
    return [_png(root / "Mass-Training_P_00001_LEFT_CC" / "1-1.png", seed=1),
            _png(root / "Mass-Training_P_00002_LEFT_CC" / "1-1.png", seed=2)]


def test_segment_same_name_inputs_do_not_overwrite_each_other(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    _two_same_name_images(tmp_path / "cbis")
    out = tmp_path / "masks"
    assert main(["segment", str(tmp_path / "cbis"), "--out", str(out)]) == 0  # a folder, as predict/inspect take
    assert "segmented 2 of 2" in capsys.readouterr().out
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert len(pngs) == 6 and len({p.split("__")[0] for p in pngs}) == 2
    report = json.loads((out / "segment.json").read_text())
    files = [e["files"]["overlay"] for e in report["segmented"]]
    assert len(set(files)) == 2 and all((out / f).is_file() for f in files)


def test_predict_explain_same_name_inputs_get_their_own_figures(model: Path, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    imgs = _two_same_name_images(tmp_path / "cbis")
    out = tmp_path / "explain"
    assert main(["predict", str(model), *map(str, imgs), "--roi", "100,100,20", "--explain", str(out)]) == 0
    printed = capsys.readouterr().out
    panels = sorted(out.glob("*_gradcam.png"))
    assert len(panels) == 2
    assert all(str(p) in printed for p in panels)  # says where each figure went


# ---------------------------------------------------------------- item 4

def test_predict_accounts_for_every_file_of_a_folder(model: Path, cohort: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    scans = tmp_path / "scans"
    scans.mkdir()
    shutil.copy(load_synthetic(cohort)[0].image_path, scans / "case.png")
    (scans / "text.png").write_text("not an image")
    (scans / "zero.dcm").write_bytes(b"")
    (scans / ".DS_Store").write_bytes(b"\x00\x01")
    assert main(["predict", str(model), str(scans), "--roi", "100,100,20", "--out", str(tmp_path / "p.csv")]) == 0
    rows = {Path(r["path"]).name: r for r in csv.DictReader((tmp_path / "p.csv").open())}
    assert set(rows) == {"case.png", "text.png", "zero.dcm", ".DS_Store"}
    assert rows["case.png"]["status"] == "ok"
    assert rows["text.png"]["status"] == "skipped" and "not a supported image" in rows["text.png"]["reason"]
    assert rows["zero.dcm"]["status"] == "skipped" and "empty file" in rows["zero.dcm"]["reason"]
    assert rows[".DS_Store"]["status"] == "skipped" and "hidden" in rows[".DS_Store"]["reason"]
    assert "4 input(s): 1 scored, 0 failed, 3 skipped" in capsys.readouterr().err
