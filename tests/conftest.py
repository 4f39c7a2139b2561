"""Shared fixtures: where ../shared/data lives, and skipping cleanly when it is absent."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    """``$MAMMOCADX_SHARED_DATA`` or ``<repo>/../shared/data``."""
    env = os.environ.get("MAMMOCADX_SHARED_DATA")
    return Path(env) if env else REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def mias_dir() -> Path:
    """The mini-MIAS folder; skips the test where it is absent."""
    d = shared_data_dir() / "mini-mias"
    if not (d / "Info.txt").is_file():
        pytest.skip(f"mini-MIAS not found at {d} (set MAMMOCADX_SHARED_DATA)")
    return d


@pytest.fixture(scope="session")
def cbis800_dir() -> Path:
    """The downsized CBIS-DDSM mass training split; skips the test where it is absent."""
    d = shared_data_dir() / "cbis-ddsm-mass-800-train"
    if not (d / "manifest.csv").is_file():
        pytest.skip(f"CBIS-DDSM 800 not found at {d} (set MAMMOCADX_SHARED_DATA)")
    return d


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep every test's caches out of the user's home (one cache per session, shared by tests)."""
    if "MAMMOCADX_CACHE_DIR" not in os.environ:
        monkeypatch.setenv("MAMMOCADX_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))
