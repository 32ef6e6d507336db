"""Shared route dependencies: the engine from app.state and the write-endpoint key check."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import Request

from ..security import check_api_key, check_same_origin

if TYPE_CHECKING:
    from ..engine import Engine


def engine(request: Request) -> Engine:
    return request.app.state.engine  # type: ignore[no-any-return]


def require_write_key(request: Request) -> None:
    settings = request.app.state.settings
    check_same_origin(request, settings.cors_origins)  # before the key: a page never holds one
    check_api_key(request, settings.api_keys)


def require_read_key(request: Request) -> None:
    # reads are open; a wrong key is still refused so a misconfigured client notices
    if request.headers.get("x-api-key") or request.headers.get("authorization"):
        check_api_key(request, request.app.state.settings.api_keys)
