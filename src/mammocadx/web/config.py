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
    max_pixels : int
        Largest image accepted, in pixels (rows x columns), checked from the
        file's header before the pixels are decoded (a 16-bit PNG of a few
        hundred kB can hold 80 Mpx).
    max_stored_bytes : int
        Total bytes of the uploads kept on disk; the oldest are deleted beyond it.
    max_json_bytes : int
        Largest JSON (or any non-multipart) request body, refused while it
        streams in, before it is parsed.
    max_json_depth : int
        Deepest nesting of objects and arrays accepted in a JSON body.
    allowed_hosts : tuple of str
        Host names this server answers to besides ``localhost``, ``127.0.0.1``
        and ``::1`` (the ``Host`` header and, on POST, the ``Origin`` must name
        one: this defeats DNS rebinding and cross-site posts).
    """

    max_upload_bytes: int = 64 * 1024 * 1024
    timeout_s: float = 60.0
    max_pending: int = 64
    max_images: int = 64
    cache_images: int = 4
    preview_max_side: int = 2048
    workers: int = 1
    max_pixels: int = 40_000_000
    max_stored_bytes: int = 1024 * 1024 * 1024
    max_json_bytes: int = 64 * 1024
    max_json_depth: int = 8
    allowed_hosts: tuple[str, ...] = ()

    def host_names(self) -> frozenset[str]:
        """Every host name accepted in ``Host`` and ``Origin`` (lower case, IPv6 without brackets)."""
        extra = {h.strip().lower().strip("[]") for h in self.allowed_hosts if h.strip()}
        return frozenset({"localhost", "127.0.0.1", "::1"} | extra)
