"""Cross-origin rules from ``CORS_ORIGINS``, for HTTP and for WebSocket handshakes.

Browsers enforce CORS on HTTP responses but not on WebSockets: any page may open a socket to any
server, sending its ``Origin``. So handshakes are checked here, against the same list. A
handshake without ``Origin`` (not from a browser) passes, as does one from the server's own
origin (a page it serves); any other origin not listed is refused before the socket opens.

With ``ENVIRONMENT=development`` the pages of local dev servers are allowed as well, whatever
their port (``http://localhost:<port>``, ``http://127.0.0.1:<port>``); staging and production
allow exactly ``CORS_ORIGINS``.
"""

from __future__ import annotations

import re
from typing import Any, Final
from urllib.parse import urlsplit

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from .config import Settings

EXPOSED_HEADERS: Final = [
    "X-Request-ID",
    "Retry-After",
    "X-RateLimit-Limit",
    "X-RateLimit-Remaining",
    "X-RateLimit-Reset",
]
#: Origins of pages served on this machine (Vite, Streamlit, ...), allowed in development.
LOCAL_ORIGINS: Final = r"http://(localhost|127\.0\.0\.1)(:[0-9]{1,5})?"


class WebSocketOriginMiddleware:
    def __init__(
        self, app: ASGIApp, allowed_origins: list[str], allowed_pattern: str | None = None
    ) -> None:
        self.app = app
        self.allow_all = "*" in allowed_origins
        self.allowed = frozenset(origin.rstrip("/").lower() for origin in allowed_origins)
        self.pattern = re.compile(allowed_pattern) if allowed_pattern is not None else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket" and not self.allow_all and not self.allows(scope):
            await send({"type": "websocket.close", "code": 1008})
            return
        await self.app(scope, receive, send)

    def allows(self, scope: Scope) -> bool:
        origin = host = None
        for name, value in scope["headers"]:
            if name == b"origin":
                origin = value.decode("latin-1").rstrip("/").lower()
            elif name == b"host":
                host = value.decode("latin-1").lower()
        if origin is None or origin in self.allowed:
            return True
        if self.pattern is not None and self.pattern.fullmatch(origin):
            return True
        return host is not None and urlsplit(origin).netloc == host


def install_cors(app: FastAPI, settings: Settings) -> None:
    app.add_middleware(
        WebSocketOriginMiddleware,
        allowed_origins=settings.cors_origins,
        allowed_pattern=_origin_pattern(settings),
    )
    app.add_middleware(CORSMiddleware, **_cors_options(settings))


def with_cors(app: ASGIApp, settings: Settings) -> ASGIApp:
    """``app`` behind the same CORS rules, for answers made outside the app's own middleware
    (a rate-limit refusal): browsers only let a page read a response carrying them."""
    return CORSMiddleware(app, **_cors_options(settings))


def _cors_options(settings: Settings) -> dict[str, Any]:
    return {
        "allow_origins": settings.cors_origins,
        "allow_origin_regex": _origin_pattern(settings),
        "allow_credentials": True,
        "allow_methods": ["*"],
        "allow_headers": ["*"],
        "expose_headers": EXPOSED_HEADERS,
    }


def _origin_pattern(settings: Settings) -> str | None:
    return LOCAL_ORIGINS if settings.environment == "development" else None
