"""Progress bars that show on a terminal and stay out of logs.

tqdm redraws its line with carriage returns: on a terminal that is a live bar,
in a log file or a CI transcript it is noise. :func:`progress` shows a bar only
when standard error is a terminal and the ``mammocadx`` logger is at INFO or
more verbose (not with ``-q``); otherwise it iterates silently.
"""
from __future__ import annotations

import logging
import sys
from collections.abc import Iterable
from typing import Any, TypeVar

T = TypeVar("T")


def bars_enabled() -> bool:
    """Whether progress bars should be drawn: stderr is a terminal and logging is not quiet."""
    stream = sys.stderr
    try:
        tty = bool(stream is not None and stream.isatty())
    except (AttributeError, ValueError):  # a closed or odd stream
        tty = False
    return tty and logging.getLogger("mammocadx").getEffectiveLevel() <= logging.INFO


def progress(iterable: Iterable[T] | None = None, *, total: int | None = None, desc: str = "",
             unit: str = "it", enabled: bool = True, **kwargs: Any) -> Any:
    """A tqdm bar over ``iterable`` (or a manual one with ``total``), drawn only where :func:`bars_enabled`.

    Parameters
    ----------
    iterable : iterable, optional
        What to iterate; ``None`` gives a bar to ``update()`` by hand.
    total, desc, unit
        As for ``tqdm``.
    enabled : bool, default True
        The caller's own switch (e.g. a ``progress=False`` option); the bar is
        drawn only if this and :func:`bars_enabled` are true.
    **kwargs
        Passed to ``tqdm``.
    """
    from tqdm.auto import tqdm

    kwargs.setdefault("leave", False)
    return tqdm(iterable, total=total, desc=desc, unit=unit, disable=not (enabled and bars_enabled()), **kwargs)

