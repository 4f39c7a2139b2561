"""What this process may use of the machine: CPUs, and where its caches live."""
from __future__ import annotations

import os
from pathlib import Path

#: Environment variable naming the cache folder.
CACHE_ENV_VAR = "MAMMOCADX_CACHE_DIR"


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one, else the CPU count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def default_cache_dir(default_sub: str | None = None) -> Path:
    """The one cache location: ``$MAMMOCADX_CACHE_DIR`` if set, else ``~/.cache/mammocadx[/default_sub]``.

    ``default_sub`` names the sub-folder used only when the variable is unset
    (the feature cache: ``~/.cache/mammocadx/features``; generated cohorts: the root).
    """
    env = os.environ.get(CACHE_ENV_VAR)
    if env:
        return Path(env).expanduser()
    root = Path.home() / ".cache" / "mammocadx"
    return root / default_sub if default_sub else root
