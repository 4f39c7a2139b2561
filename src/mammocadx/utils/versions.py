"""Installed package versions, read from package metadata (no import of the package itself)."""
from __future__ import annotations

from functools import lru_cache


@lru_cache(maxsize=None)
def dist_version(dist: str) -> str:
    """Version of an installed distribution (e.g. ``"torch"``), or ``"absent"``.

    Read from the installed metadata, so asking for torch's version does not
    import torch (seconds), and the answer is the same whether or not the
    package has been imported in this process.
    """
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "absent"
