"""ASGI middleware that guards the server before any endpoint runs: body size and response headers."""
from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mammocadx.web.api_errors import send_error, too_large

#: Headers on every response: no sniffing, no referrer, no framing, scripts and styles from this server only.
SECURITY_HEADERS = {
    b"x-content-type-options": b"nosniff",
    b"referrer-policy": b"no-referrer",
    b"x-frame-options": b"DENY",
    b"content-security-policy": (b"default-src 'self'; img-src 'self' data: blob:; style-src 'self'; "
                                 b"script-src 'self'; connect-src 'self'; frame-ancestors 'none'"),
}


class BodySizeLimit:
    """Refuse request bodies above ``max_bytes`` with 413 while they stream in.

    Starlette parses multipart forms before the endpoint runs, so the cap must
    act on the raw stream; raising an ``HTTPException`` from ``receive`` makes
    FastAPI's body parsing re-raise it as is (any other exception becomes 400).
    """

    def __init__(self, app: ASGIApp, max_bytes: int, limit_shown: int):
        self.app = app
        self.max_bytes = max_bytes
        self.limit_shown = limit_shown

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in {"POST", "PUT", "PATCH"}:
            await self.app(scope, receive, send)
            return
        for key, value in scope.get("headers", []):
            if key == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = 0
                if declared > self.max_bytes:
                    await send_error(send, too_large(self.limit_shown))
                    return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise too_large(self.limit_shown)
            return message

        await self.app(scope, limited, send)


class SecurityHeaders:
    """Add :data:`SECURITY_HEADERS` to every HTTP response that does not set them itself."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {k.lower() for k, _ in headers}
                headers += [(k, v) for k, v in SECURITY_HEADERS.items() if k not in present]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_headers)
