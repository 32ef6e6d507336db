"""Typed domain errors and the one place that turns any error into `{"error": {"code", "message"}}`."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match, Mount, Route

log = logging.getLogger("t2v.service")


class ServiceError(Exception):
    status = 500
    code = "internal_error"

    def __init__(self, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers


class BadRequest(ServiceError):
    status, code = 400, "bad_request"


class Unauthorized(ServiceError):
    status, code = 401, "unauthorized"


class ForbiddenPath(ServiceError):
    status, code = 403, "path_not_allowed"


class CrossSite(ServiceError):
    status, code = 403, "cross_site_request"


class NotFound(ServiceError):
    status, code = 404, "not_found"


class PayloadTooLarge(ServiceError):
    status, code = 413, "payload_too_large"


class RangeNotSatisfiable(ServiceError):
    status, code = 416, "range_not_satisfiable"


class InvalidInput(ServiceError):
    status, code = 422, "invalid_input"


class TooManyJobs(ServiceError):
    status, code = 429, "too_many_jobs"


class TooManySearches(ServiceError):
    status, code = 429, "too_many_searches"


class InsufficientStorage(ServiceError):
    status, code = 507, "insufficient_storage"


class NotReady(ServiceError):
    status, code = 503, "not_ready"


def error_body(code: str, message: str) -> dict[str, dict[str, str]]:
    return {"error": {"code": code, "message": message}}


def validation_message(errors: Sequence[Mapping[str, object]]) -> str:
    """Pydantic/FastAPI error details as one line that names each field: `paths: List should have
    at least 1 item ...`; a body that is not JSON says so, with the parser's reason and position."""
    parts = []
    for err in errors[:5]:
        raw_loc = err.get("loc")
        loc = [x for x in raw_loc if x not in ("body", "query", "path")] if isinstance(raw_loc, tuple) else []
        msg = str(err.get("msg", "invalid"))
        if err.get("type") == "json_invalid":
            ctx = err.get("ctx")
            reason = ctx.get("error", msg) if isinstance(ctx, dict) else msg
            at = f" at character {loc[0]}" if loc and isinstance(loc[0], int) else ""
            parts.append(f"the request body is not valid JSON ({reason}{at})")
            continue
        field = ".".join(str(x) for x in loc)
        parts.append(f"{field}: {msg}" if field else msg)
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    return ("; ".join(parts) or "invalid request") + more


def invalid_body(e: ValueError, what: str = "request body") -> InvalidInput:
    """A body a route parsed itself (`Model.model_validate_json`) that did not validate."""
    if isinstance(e, ValidationError):
        return InvalidInput(f"invalid {what}: {validation_message(e.errors())}")
    return InvalidInput(f"invalid {what}: {str(e).splitlines()[0] if str(e) else type(e).__name__}")


_HTTP_CODES = {
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    416: "range_not_satisfiable",
}


def install_error_handlers(app: FastAPI) -> None:
    async def on_service_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ServiceError)
        return JSONResponse(error_body(exc.code, exc.message), exc.status, headers=exc.headers)

    async def on_validation(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return JSONResponse(error_body("invalid_input", validation_message(exc.errors())), 422)

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        headers = dict(exc.headers or {})
        if exc.status_code == 405:  # every method of the path, not only the first route's
            headers["Allow"] = ", ".join(_allowed_methods(request))
        return JSONResponse(error_body(code, str(exc.detail)), exc.status_code, headers=headers)

    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        # the trace goes to the log, never to the client
        log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        return JSONResponse(error_body("internal_error", "internal server error"), 500)

    app.add_exception_handler(ServiceError, on_service_error)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(Exception, on_unexpected)


def _allowed_methods(request: Request) -> list[str]:
    methods: set[str] = set()
    todo = list(request.app.routes)
    while todo:  # included routers nest their routes
        route = todo.pop()
        if isinstance(route, Route):
            if route.matches(request.scope)[0] != Match.NONE:
                methods |= route.methods or set()
        elif not isinstance(route, Mount):
            inner = getattr(route, "original_router", route)  # FastAPI's included-router wrapper
            todo.extend(getattr(inner, "routes", []))
    return sorted(methods)
