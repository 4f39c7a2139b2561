"""ASGI middleware that guards the server before any endpoint runs.

- :class:`HostOriginGuard`: the ``Host`` header must name this server
  (localhost, 127.0.0.1, [::1] or a configured name), which defeats DNS
  rebinding; a POST must come from this server's own page (``Origin`` and
  ``Sec-Fetch-Site``), which refuses cross-site posts.
- :class:`BodySizeLimit`: uploads (multipart) are capped at the upload limit,
  every other body (JSON) at a few kB and a small nesting depth, all while the
  body streams in and before anything parses it.
- :class:`SecurityHeaders`: no sniffing, no framing, scripts from this server only.
"""
from __future__ import annotations

from urllib.parse import urlsplit

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mammocadx.web.api_errors import ApiError, send_error, too_large

#: Headers on every response: no sniffing, no referrer, no framing, scripts and styles from this server only.
SECURITY_HEADERS = {
    b"x-content-type-options": b"nosniff",
    b"referrer-policy": b"no-referrer",
    b"x-frame-options": b"DENY",
    b"content-security-policy": (b"default-src 'self'; img-src 'self' data: blob:; style-src 'self'; "
                                 b"script-src 'self'; connect-src 'self'; frame-ancestors 'none'"),
}


def json_depth(body: bytes, limit: int) -> int:
    """Nesting depth of objects/arrays in a JSON text, scanned without parsing (stops once past ``limit``)."""
    depth = deepest = 0
    in_string = escaped = False
    for byte in body:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x7B, 0x5B):  # { [
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > limit:
                    break
        elif byte in (0x7D, 0x5D):  # } ]
            depth -= 1
    return deepest


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return value.decode("latin-1")
    return None


class BodySizeLimit:
    """Refuse request bodies above their cap with 413 while they stream in; refuse deep JSON with 422.

    Multipart bodies (uploads) may be ``max_bytes``; any other body (JSON)
    ``max_json_bytes``, then its nesting depth is checked on the raw bytes before
    FastAPI parses it. Starlette parses multipart forms before the endpoint
    runs, so the cap acts on the raw stream; raising an ``HTTPException`` from
    ``receive`` makes FastAPI's body parsing re-raise it as is.
    """

    def __init__(self, app: ASGIApp, max_bytes: int, limit_shown: int, max_json_bytes: int = 64 * 1024,
                 max_json_depth: int = 8):
        self.app = app
        self.max_bytes = max_bytes
        self.limit_shown = limit_shown
        self.max_json_bytes = max_json_bytes
        self.max_json_depth = max_json_depth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in {"POST", "PUT", "PATCH"}:
            await self.app(scope, receive, send)
            return
        ctype = (_header(scope, b"content-type") or "").lower()
        if ctype.startswith("multipart/form-data"):
            cap, error = self.max_bytes, too_large(self.limit_shown)
        else:
            cap, error = self.max_json_bytes, too_large(self.max_json_bytes, "request body")
        try:
            declared = int(_header(scope, b"content-length") or 0)
        except ValueError:
            declared = 0
        if declared > cap:
            await send_error(send, error)
            return
        if cap == self.max_bytes:
            await self.app(scope, self._limited(receive, cap, error), send)
            return
        # A small body: read it all (bounded), check its depth, then hand it on unchanged.
        body = bytearray()
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            body += message.get("body", b"")
            if len(body) > cap:
                await send_error(send, error)
                return
            more = message.get("more_body", False)
        if json_depth(bytes(body), self.max_json_depth) > self.max_json_depth:
            await send_error(send, ApiError(422, f"JSON nested deeper than {self.max_json_depth} levels",
                                            "invalid_request"))
            return
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    @staticmethod
    def _limited(receive: Receive, cap: int, error: ApiError) -> Receive:
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > cap:
                    raise error
            return message

        return limited


def host_name(value: str) -> str:
    """The host of a ``Host`` header value (``name[:port]`` or ``[v6][:port]``), lower case, no brackets."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1:value.find("]")] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


class HostOriginGuard:
    """Answer only requests addressed to this server, and POSTs only from its own page.

    Parameters
    ----------
    app : ASGIApp
        The wrapped app.
    hosts : frozenset of str
        Accepted host names (lower case, IPv6 without brackets).
    """

    SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

    def __init__(self, app: ASGIApp, hosts: frozenset[str]):
        self.app = app
        self.hosts = hosts

    def _refusal(self, scope: Scope) -> ApiError | None:
        host = _header(scope, b"host")
        if host is None or host_name(host) not in self.hosts:
            return ApiError(400, "this server answers only to its own address (localhost, 127.0.0.1, [::1] "
                                 "or a name given with --allow-host); the Host header names another", "bad_host")
        if scope["method"] in self.SAFE_METHODS:
            return None
        if (_header(scope, b"sec-fetch-site") or "").lower() == "cross-site":
            return ApiError(403, "cross-site request refused: use the page this server serves", "cross_origin")
        origin = _header(scope, b"origin")
        if origin is not None:
            parts = urlsplit(origin.strip())
            if parts.scheme not in {"http", "https"} or (parts.hostname or "") not in self.hosts:
                return ApiError(403, "cross-site request refused: use the page this server serves",
                                "cross_origin")
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            refusal = self._refusal(scope)
            if refusal is not None:
                await send_error(send, refusal)
                return
        await self.app(scope, receive, send)


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
