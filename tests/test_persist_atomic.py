"""Atomic files and folders: an interruption never leaves a half result at the final name."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from mammocadx.io import atomic
from mammocadx.io.atomic import atomic_directory, atomic_write_bytes, atomic_write_text, remove_stale_temporaries


def test_write_bytes_and_text_replace_whole_files(tmp_path):
    f = tmp_path / "metrics.json"
    atomic_write_text(f, '{"auc": 0.5}\n')
    assert f.read_text() == '{"auc": 0.5}\n'
    atomic_write_bytes(f, b"new")
    assert f.read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]


def test_new_files_get_normal_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write_bytes(tmp_path / "a", b"x")
    finally:
        os.umask(old)
    assert (tmp_path / "a").stat().st_mode & 0o777 == 0o644


def test_failed_file_write_keeps_the_old_content(tmp_path, monkeypatch):
    f = tmp_path / "predictions.csv"
    f.write_text("old,complete\n")

    def boom(fd):
        raise OSError(5, "I/O error")

    monkeypatch.setattr(atomic.os, "fsync", boom)
    with pytest.raises(OSError, match="I/O error"):
        atomic_write_text(f, "new,half")
    monkeypatch.undo()
    assert f.read_text() == "old,complete\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["predictions.csv"]


def test_directory_appears_only_when_complete(tmp_path):
    final = tmp_path / "runs" / "run1"
    with atomic_directory(final) as tmp:
        assert tmp.parent == final.parent and tmp.name.startswith("run1.tmp-")
        (tmp / "a.txt").write_text("a")
        (tmp / "sub").mkdir()
        (tmp / "sub" / "b.txt").write_text("b")
        assert not final.exists()
    assert (final / "sub" / "b.txt").read_text() == "b"
    assert [p.name for p in final.parent.iterdir()] == ["run1"]


def test_exception_removes_the_temporary_folder_and_keeps_the_previous(tmp_path):
    final = tmp_path / "model"
    final.mkdir()
    (final / "old.txt").write_text("previous, complete")
    with pytest.raises(KeyboardInterrupt):
        with atomic_directory(final) as tmp:
            (tmp / "half.txt").write_text("half")
            raise KeyboardInterrupt  # Ctrl-C mid-write
    assert [p.name for p in tmp_path.iterdir()] == ["model"]
    assert [p.name for p in final.iterdir()] == ["old.txt"]
    with pytest.raises(RuntimeError):
        with atomic_directory(tmp_path / "fresh") as tmp:
            (tmp / "x").write_text("x")
            raise RuntimeError("crash")
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def test_replacement_swaps_the_whole_folder(tmp_path):
    final = tmp_path / "cache"
    final.mkdir()
    (final / "stale.npy").write_text("stale")
    with atomic_directory(final) as tmp:
        (tmp / "fresh.npy").write_text("fresh")
    assert [p.name for p in final.iterdir()] == ["fresh.npy"]
    assert [p.name for p in tmp_path.iterdir()] == ["cache"]


def test_replace_false_and_files_are_refused(tmp_path):
    (tmp_path / "d").mkdir()
    with pytest.raises(FileExistsError):
        with atomic_directory(tmp_path / "d", replace=False):
            pass
    (tmp_path / "f").write_text("a file")
    with pytest.raises(FileExistsError, match="not a folder"):
        with atomic_directory(tmp_path / "f"):
            pass
    assert (tmp_path / "f").read_text() == "a file"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d", "f"]


def test_failed_swap_puts_the_previous_folder_back(tmp_path, monkeypatch):
    final = tmp_path / "model"
    final.mkdir()
    (final / "v1").write_text("1")
    real_rename = os.rename
    calls = []

    def rename(src, dst):
        calls.append((Path(src).name, Path(dst).name))
        if len(calls) == 2:  # "new in" fails after "old aside" succeeded
            raise OSError(16, "Device or resource busy")
        return real_rename(src, dst)

    monkeypatch.setattr(atomic.os, "rename", rename)
    with pytest.raises(OSError, match="busy"):
        with atomic_directory(final) as tmp:
            (tmp / "v2").write_text("2")
    monkeypatch.undo()
    assert [p.name for p in final.iterdir()] == ["v1"]
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def test_stale_temporaries_are_cleaned_and_a_set_aside_folder_restored(tmp_path):
    final = tmp_path / "model"
    # what SIGKILL between "old aside" and "new in" leaves: no final, an .old- and a .tmp-
    old = tmp_path / "model.old-0123abcd"
    old.mkdir()
    (old / "v1").write_text("1")
    tmp = tmp_path / "model.tmp-89abcdef"
    tmp.mkdir()
    (tmp / "half").write_text("h")
    (tmp_path / "model.tmp-notours").mkdir()  # not our naming pattern: left alone
    removed = remove_stale_temporaries(final)
    assert [p.name for p in removed] == ["model.tmp-89abcdef"]
    assert (final / "v1").read_text() == "1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model", "model.tmp-notours"]
    assert remove_stale_temporaries(tmp_path / "missing" / "x") == []


def test_json_is_strict_and_byte_stable(tmp_path):
    import json

    import numpy as np

    from mammocadx.io.atomic import atomic_write_json

    obj = {"auc": np.float64(0.7125), "ci": np.array([0.61, float("nan")]), "n": np.int64(119),
           "path": tmp_path / "x.png", "classes": {"malignant", "benign"}, "ok": np.bool_(True)}
    a = atomic_write_json(tmp_path / "a.json", obj).read_bytes()
    b = atomic_write_json(tmp_path / "b.json", obj).read_bytes()
    assert a == b and a.endswith(b"\n") and b"NaN" not in a
    assert json.loads(a) == {"auc": 0.7125, "ci": [0.61, None], "n": 119, "path": str(tmp_path / "x.png"),
                             "classes": ["benign", "malignant"], "ok": True}
    with pytest.raises(TypeError, match="object"):
        atomic_write_json(tmp_path / "c.json", {"x": object()})
    assert not (tmp_path / "c.json").exists()


def test_csv_cells_are_defused_and_numbers_exact(tmp_path):
    import csv

    import numpy as np

    from mammocadx.io.atomic import atomic_write_csv, csv_cell

    assert csv_cell("=HYPERLINK(\"http://x\")") == "'=HYPERLINK(\"http://x\")"
    assert [csv_cell(v) for v in ("+1 555", "@SUM(A1)", "-cmd", "\tx")] == ["'+1 555", "'@SUM(A1)", "'-cmd", "'\tx"]
    assert [csv_cell(v) for v in ("-0.53", "1e-3", "mdb005", "")] == ["-0.53", "1e-3", "mdb005", ""]
    assert [csv_cell(v) for v in (np.float32(0.1), np.float64(-0.25), 0.1 + 0.2, float("nan"), None,
                                  True, np.bool_(False), np.int64(3))] == \
        ["0.1", "-0.25", "0.30000000000000004", "", "", "true", "false", "3"]
    rows = [{"image_id": "=cmd|' /C calc'!A0", "score": np.float64(-1.2345678901234567), "label": "benign"},
            {"image_id": "mdb005", "score": 0.5}]
    p = atomic_write_csv(tmp_path / "predictions.csv", rows, ["image_id", "score", "label"])
    text = p.read_text()
    assert text.splitlines()[0] == "image_id,score,label" and "\r" not in text
    back = list(csv.DictReader(text.splitlines()))
    assert back[0]["image_id"].startswith("'=") and float(back[0]["score"]) == -1.2345678901234567
    assert back[1] == {"image_id": "mdb005", "score": "0.5", "label": ""}
    with pytest.raises(ValueError):
        atomic_write_csv(tmp_path / "bad.csv", [{"nope": 1}], ["image_id"])
    assert not (tmp_path / "bad.csv").exists()
