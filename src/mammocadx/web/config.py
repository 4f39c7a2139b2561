"""Limits of the reader's web server (one frozen dataclass shared by its modules)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class WebConfig:
    """Limits of one web app.

    Attributes
    ----------
    max_upload_bytes : int
        Largest accepted upload (the whole request body may be 1 MiB more for
        multipart framing).
    timeout_s : float
        Longest a prediction may take, queueing included (then 504).
    max_pending : int
        Most predictions queued or running at once (then 503).
    max_images : int
        Uploaded images kept on disk; the oldest are deleted beyond this.
    cache_images : int
        Decoded images kept in memory (a 24 Mpx mammogram is ~100 MB as float32).
    preview_max_side : int
        Longest side of the preview PNG sent to the page (coordinates are
        always in full-resolution pixels).
    workers : int
        Threads running the model (calls are serialised by the predictor's lock).
    """

    max_upload_bytes: int = 64 * 1024 * 1024
    timeout_s: float = 60.0
    max_pending: int = 64
    max_images: int = 64
    cache_images: int = 4
    preview_max_side: int = 2048
    workers: int = 1
