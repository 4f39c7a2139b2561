"""The API's errors: one exception type with a machine-readable code, and the handlers that render every error.

Every error body is ``{"detail": sentence, "error": code}``; see
:class:`~mammocadx.web.schemas.ErrorResponse`.
"""
from __future__ import annotations

import logging
import re

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Message, Send

log = logging.getLogger(__name__)

#: Longest ``detail`` sent to a client; the server log keeps the rest.
MAX_DETAIL_CHARS = 300
# Absolute or home-relative file paths (POSIX and Windows), quoted or not.
_PATH = re.compile(r"""(?:(?<![\w.:/~])~?/(?:[^\s'"<>/]+/)+[^\s'"<>,;)]*)|(?:\b[A-Za-z]:\\[^\s'"<>]*)""")
# Library reasons that are true but cryptic for a reader.
_REWORDED = (
    (re.compile(r"no Pixel Data", re.I), "the DICOM file is truncated or has no image data"),
)


def clean_detail(text: str) -> str:
    """A short, one-line reason safe to send to a client: no file paths, no tracebacks, no internals.

    Keeps the first line, replaces any file path by "the file", rewords a few
    cryptic library messages and cuts the result to :data:`MAX_DETAIL_CHARS`.
    """
    line = str(text).strip().splitlines()[0].strip() if str(text).strip() else "error"
    line = _PATH.sub("the file", line)
    for pattern, words in _REWORDED:
        if pattern.search(line):
            line = pattern.sub(words, line)
    if len(line) > MAX_DETAIL_CHARS:
        line = line[: MAX_DETAIL_CHARS - 1].rstrip() + "\u2026"
    return line


class ApiError(HTTPException):
    """An HTTP error with a machine-readable code, rendered as :class:`~mammocadx.web.schemas.ErrorResponse`."""

    def __init__(self, status_code: int, detail: str, error: str, headers: dict[str, str] | None = None):
        super().__init__(status_code=status_code, detail=detail, headers=headers)
        self.error = error


def human_bytes(n: int) -> str:
    """``n`` bytes as ``"1.5 MiB"`` or ``"19.5 kB"``."""
    return f"{n / 1048576:.1f} MiB" if n >= 1048576 else f"{n / 1024:.1f} kB"


def too_large(limit: int, what: str = "upload") -> ApiError:
    """The 413 for a body or upload above ``limit`` bytes.

    It closes the connection: the rest of the body is never read, and a client
    still sending it must not wait for the server to drain it.
    """
    return ApiError(413, f"{what} too large: the limit is {human_bytes(limit)}", "too_large",
                    headers={"Connection": "close"})


def error_response(exc: ApiError) -> JSONResponse:
    """The JSON response of ``exc`` (its detail passed through :func:`clean_detail`)."""
    return JSONResponse({"detail": clean_detail(exc.detail), "error": exc.error}, status_code=exc.status_code,
                        headers=exc.headers)


async def send_error(send: Send, exc: ApiError) -> None:
    """Answer with ``exc`` straight from ASGI middleware (before any app code runs)."""
    await error_response(exc)({"type": "http"}, _empty_receive, send)


async def _empty_receive() -> Message:  # pragma: no cover - JSONResponse never reads
    return {"type": "http.disconnect"}


def install_error_handlers(app: FastAPI) -> None:
    """Render :class:`ApiError`, HTTP errors, validation errors and anything unexpected as JSON."""

    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"detail": clean_detail(str(exc.detail)), "error": f"http_{exc.status_code}"},
                            status_code=exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        parts = []
        for err in errors[:5]:  # a few are enough to fix a request; never echo a huge body back
            where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body",))
            parts.append(f"{where}: {err.get('msg')}" if where else str(err.get("msg")))
        if len(errors) > 5:
            parts.append(f"and {len(errors) - 5} more")
        return JSONResponse({"detail": clean_detail("invalid request: " + "; ".join(parts)),
                             "error": "invalid_request"}, status_code=422)

    @app.exception_handler(Exception)
    async def _internal_error(_request: Request, exc: Exception) -> JSONResponse:
        log.error("internal error", exc_info=exc)
        return JSONResponse({"detail": f"internal error ({type(exc).__name__}); the server log has the details",
                             "error": "internal"}, status_code=500)
