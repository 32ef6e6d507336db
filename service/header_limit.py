"""Bound what a client can hold: header size (431 before any route or middleware runs) and the time
to send the headers (a slow-loris connection is closed).

uvicorn's httptools parser accepts headers of any size, so the size limit is enforced here. uvicorn
bounds the idle time between requests (`timeout_keep_alive`) but not a request whose headers
trickle in, so `header_timeout_protocol` gives its HTTP protocol a deadline for them.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

# Browsers and proxies stay far below this (nginx default: 8 KiB per line, 32 KiB total).
MAX_HEADER_BYTES = 32 * 1024


class HeaderLimitMiddleware:
    def __init__(self, app: Any, max_bytes: int = MAX_HEADER_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            size = sum(len(k) + len(v) for k, v in scope.get("headers", ()))
            if size > self.max_bytes:
                message = f"request headers of {size} bytes exceed the limit of {self.max_bytes}"
                body = json.dumps({"error": {"code": "headers_too_large", "message": message}}).encode()
                headers = [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ]
                await send({"type": "http.response.start", "status": 431, "headers": headers})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


class _HeaderDeadline(H11Protocol):
    """uvicorn's h11 protocol with a deadline for a request's headers: from the connection's start
    (or the first byte of a later request) until the request line and headers are complete."""

    header_timeout = 10.0  # seconds; set by header_timeout_protocol

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._deadline: asyncio.TimerHandle | None = None
        self._arm()

    def _arm(self) -> None:
        if self._deadline is None:
            self._deadline = self.loop.call_later(self.header_timeout, self._too_slow)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _waiting_for_headers(self) -> bool:
        return self.cycle is None or self.cycle.response_complete

    def data_received(self, data: bytes) -> None:
        if self._waiting_for_headers():
            self._arm()  # a later request on a kept-alive connection gets its own deadline
        super().data_received(data)
        if not self._waiting_for_headers():
            self._disarm()

    def _too_slow(self) -> None:
        self._deadline = None
        if self._waiting_for_headers() and not self.transport.is_closing():
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)


def header_timeout_protocol(seconds: float) -> type[H11Protocol]:
    """The HTTP protocol class for `uvicorn.Config(http=...)`: h11 with a `seconds` deadline for
    each request's headers (an idle or slow-loris connection is closed when it passes)."""
    return type("HeaderDeadlineProtocol", (_HeaderDeadline,), {"header_timeout": float(seconds)})
