"""API-key check for write endpoints and path confinement for server-side ingestion."""

from __future__ import annotations

import hmac
import os
from pathlib import Path

from fastapi import Request

from .errors import ForbiddenPath, Unauthorized


def presented_key(request: Request) -> str | None:
    key = request.headers.get("x-api-key")
    if key:
        return key
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return None


def check_api_key(request: Request, keys: list[str]) -> None:
    """No keys configured: open. Otherwise one of them must be presented (constant-time compare)."""
    if not keys:
        return
    given = presented_key(request)
    if given is None:
        raise Unauthorized("this endpoint needs an API key (header X-API-Key)")
    if not any(hmac.compare_digest(given.encode(), k.encode()) for k in keys):
        raise Unauthorized("invalid API key")


def confine_path(raw: str, roots: list[Path]) -> Path:
    """The real path of `raw` if it lies inside one of `roots` after resolving symlinks, else refuse.

    `..` components are refused outright (even when they would stay inside a root), relative paths
    too, so what is logged is what was read.
    """
    if not roots:
        raise ForbiddenPath("server-side ingestion is disabled: no allowed roots are configured")
    if "\x00" in raw:
        raise ForbiddenPath("path contains a NUL byte")
    p = Path(raw)
    if not p.is_absolute():
        raise ForbiddenPath(f"path must be absolute: {raw!r}")
    if ".." in p.parts:
        raise ForbiddenPath(f"path must not contain '..': {raw!r}")
    real = Path(os.path.realpath(p))
    for root in roots:
        real_root = Path(os.path.realpath(root))
        if real == real_root or real.is_relative_to(real_root):
            return real
    raise ForbiddenPath(f"path is outside the allowed roots (symlinks are resolved): {raw!r}")
