"""Issue 18: the engine registry and the messages a user without Ray gets (no Ray needed here)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from mammocadx.cli import main
from mammocadx.errors import ConfigError, EngineError
from mammocadx.scale.engines import create_engine, list_engines


def test_unknown_engine_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown engine 'spark'"):
        create_engine("spark")
    assert "local" in list_engines()


def test_without_ray_the_engine_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    from mammocadx.scale.ray_engine import RayEngine

    with pytest.raises(EngineError, match=r"pip install 'mammocadx\[ray\]'"):
        RayEngine().start()


def test_cli_without_ray_is_one_line_and_exit_2(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)
    rc = main(["-q", "extract", "--dataset", "synthetic", "--data", str(tmp_path / "c"), "--engine", "ray",
               "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 2 and "mammocadx[ray]" in err and len(err.strip().splitlines()) == 1


def test_ray_options_need_the_ray_engine(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["-q", "extract", "--dataset", "synthetic", "--data", str(tmp_path / "c"), "--workers", "2",
               "--out", str(tmp_path / "out")])
    assert rc == 2 and "--workers: only with --engine ray" in capsys.readouterr().err
