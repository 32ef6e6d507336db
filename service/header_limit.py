"""Refuse requests with absurdly large headers (431) before any route or middleware runs.

uvicorn's httptools parser accepts headers of any size, so the limit is enforced here.
"""

from __future__ import annotations

import json
from typing import Any

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
