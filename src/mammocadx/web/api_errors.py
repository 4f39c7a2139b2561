"""The API's errors: one exception type with a machine-readable code, and the handlers that render every error.

Every error body is ``{"detail": sentence, "error": code}``; see
:class:`~mammocadx.web.schemas.ErrorResponse`.
"""
from __future__ import annotations

import logging

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Message, Send

log = logging.getLogger(__name__)


class ApiError(HTTPException):
    """An HTTP error with a machine-readable code, rendered as :class:`~mammocadx.web.schemas.ErrorResponse`."""

    def __init__(self, status_code: int, detail: str, error: str):
        super().__init__(status_code=status_code, detail=detail)
        self.error = error


def human_bytes(n: int) -> str:
    """``n`` bytes as ``"1.5 MiB"`` or ``"19.5 kB"``."""
    return f"{n / 1048576:.1f} MiB" if n >= 1048576 else f"{n / 1024:.1f} kB"


def too_large(limit: int, what: str = "upload") -> ApiError:
    """The 413 for a body or upload above ``limit`` bytes."""
    return ApiError(413, f"{what} too large: the limit is {human_bytes(limit)}", "too_large")


def error_response(exc: ApiError) -> JSONResponse:
    """The JSON response of ``exc``."""
    return JSONResponse({"detail": exc.detail, "error": exc.error}, status_code=exc.status_code)


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
        return JSONResponse({"detail": str(exc.detail), "error": f"http_{exc.status_code}"},
                            status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body",))
            parts.append(f"{where}: {err.get('msg')}" if where else str(err.get("msg")))
        return JSONResponse({"detail": "invalid request: " + "; ".join(parts), "error": "invalid_request"},
                            status_code=422)

    @app.exception_handler(Exception)
    async def _internal_error(_request: Request, exc: Exception) -> JSONResponse:
        log.error("internal error", exc_info=exc)
        return JSONResponse({"detail": f"internal error ({type(exc).__name__}); the server log has the details",
                             "error": "internal"}, status_code=500)
