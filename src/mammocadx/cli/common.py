"""Argument helpers shared by several commands."""
from __future__ import annotations

import argparse


def parse_roi(text: str) -> tuple[float, ...]:
    """Parse ``X,Y,R`` (circle) or ``X,Y,W,H`` (box) in image pixels, x from the left, y from the top."""
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"--roi takes numbers separated by commas, got {text!r}") from exc
    if len(values) not in (3, 4):
        raise argparse.ArgumentTypeError("--roi takes X,Y,R (circle) or X,Y,W,H (box)")
    if any(v < 0 for v in values) or values[-1] <= 0:
        raise argparse.ArgumentTypeError(f"--roi values must be non-negative and the size positive, got {text!r}")
    return values
