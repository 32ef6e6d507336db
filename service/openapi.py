"""Write the live OpenAPI schema: `python -m service.openapi [docs/openapi.json]` (the snapshot)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from .settings import ServiceSettings

SNAPSHOT = Path(__file__).resolve().parent.parent / "docs" / "openapi.json"


def live_schema() -> dict[str, Any]:
    # the default settings' schema (limits and key requirements follow the settings); building
    # the app loads no model
    from .app import create_app

    return create_app(ServiceSettings()).openapi()


ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
        }
    },
}
_WHY = {
    400: "bad request (content type, malformed multipart body)",
    401: "API key missing (write routes, when keys are configured) or wrong",
    403: "refused: a cross-site write, or a path outside the allowed roots",
    404: "no such video or job (or its file is gone)",
    413: "payload too large (file size, files per upload)",
    416: "range not satisfiable",
    422: "invalid input (parameters, body, limits)",
    429: "too many jobs or searches at once (Retry-After)",
    431: "request headers too large",
    503: "the model and store are still loading (or failed to load)",
    507: "no space left on the server's disk",
}


def _statuses(method: str, path: str) -> set[int]:
    """Every error status a route can answer (each is raised by code the route runs)."""
    codes = {431}  # the header limit runs before every route
    if path == "/readyz":
        return codes | {503}
    if not path.startswith("/v1/"):
        return codes
    codes |= {401, 422, 503}
    if method == "post":
        codes.add(400)  # a body that is not JSON / not multipart
    write = (method, path) in (("post", "/v1/ingest"), ("delete", "/v1/videos/{video_id}"))
    if write:
        codes.add(403)
    if path == "/v1/ingest":
        codes |= {400, 413, 429, 507}
    if path == "/v1/search":
        codes.add(429)
    if "{video_id}" in path or "{job_id}" in path:
        codes.add(404)
    if path.endswith("/stream"):
        codes.add(416)
    return codes


def document_contract(app: FastAPI, settings: ServiceSettings) -> None:
    """Make `app.openapi()` state the whole contract: every error status per route (one error
    body), the page-size limit as `maximum`, and the API-key security schemes (required on write
    routes when keys are configured, optional everywhere else)."""
    base = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = base()
        components = schema.setdefault("components", {})
        components.setdefault("schemas", {})["Error"] = ERROR_SCHEMA
        components["securitySchemes"] = {
            "ApiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            "Bearer": {"type": "http", "scheme": "bearer"},
        }
        keyed: list[dict[str, list[str]]] = [{"ApiKey": []}, {"Bearer": []}]
        for path, ops in schema["paths"].items():
            for method, op in ops.items():
                responses = op.setdefault("responses", {})
                for code in sorted(_statuses(method, path)):
                    entry = responses.setdefault(str(code), {"description": _WHY[code]})
                    entry["content"] = {
                        "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}
                    }
                for param in op.get("parameters", []):
                    if param["name"] == "limit" and param.get("in") == "query":
                        param["schema"]["maximum"] = settings.limits.max_page_size
                if path.startswith("/v1/"):
                    write = "403" in responses
                    op["security"] = keyed if write and settings.api_keys else [{}, *keyed]
        _item_limits(schema, settings.limits.max_items_per_job)
        _search_limits(schema, settings.limits.max_query_chars, settings.limits.max_top_k)
        _job_links(schema)
        _integer_bounds(schema)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def _item_limits(schema: dict[str, Any], max_items: int) -> None:
    """The per-job item limit as `maxItems` of the paths (422 above). Not of the uploaded files:
    too many is a 413, which a schema-violating request may not get."""
    body = schema["paths"]["/v1/ingest"]["post"]["requestBody"]["content"]
    body["application/json"]["schema"]["properties"]["paths"]["maxItems"] = max_items


def _search_limits(schema: dict[str, Any], max_chars: int, max_top_k: int) -> None:
    """The configured query length and top_k limits as `maxLength` / `maximum` (422 above)."""
    body = schema["components"]["schemas"]["SearchRequest"]["properties"]
    body["query"]["maxLength"] = max_chars
    body["top_k"]["maximum"] = max_top_k
    for param in schema["paths"]["/v1/search"]["get"]["parameters"]:
        if param["name"] == "q":
            param["schema"]["maxLength"] = max_chars
        elif param["name"] == "top_k":
            param["schema"]["maximum"] = max_top_k


def _job_links(schema: dict[str, Any]) -> None:
    """Links from a job to the video its first item became. A job item's `video_id` is null until
    the item is done; a link names one value, which a client (and schemathesis' stateful phase)
    skips when it is null. Without explicit links, schemathesis infers `items/*/video_id`
    wildcards and followed a null into `/v1/videos/None`."""
    targets = {
        f"{method}_video{path.removeprefix('/v1/videos/{video_id}').replace('/', '_')}": op["operationId"]
        for path, ops in schema["paths"].items()
        if path.startswith("/v1/videos/{video_id}")
        for method, op in ops.items()
    }
    sources = (
        ("/v1/ingest", "post", "202", "$response.body#/items/0/video_id"),
        ("/v1/jobs/{job_id}", "get", "200", "$response.body#/items/0/video_id"),
        ("/v1/jobs", "get", "200", "$response.body#/items/0/items/0/video_id"),
    )
    for path, method, status, expression in sources:
        response = schema["paths"][path][method]["responses"][status]
        response["links"] = {
            name: {
                "operationId": op_id,
                "parameters": {"video_id": expression},
                "description": "the video of the first item, once it is done (null before: not followed)",
            }
            for name, op_id in sorted(targets.items())
        }


def render(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else SNAPSHOT
    out.write_text(render(live_schema()))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()


_INT64_MAX = 2**63 - 1


def _integer_bounds(node: Any) -> None:
    """Integer bounds as integers: pydantic writes `le=2**63 - 1` as a float, which rounds up to
    2**63 (so a client may send an id the server must refuse)."""
    if isinstance(node, dict):
        if node.get("type") == "integer":
            for key in ("maximum", "minimum", "exclusiveMaximum", "exclusiveMinimum"):
                v = node.get(key)
                if isinstance(v, float) and v.is_integer():
                    node[key] = _INT64_MAX if v >= _INT64_MAX else int(v)
        for value in node.values():
            _integer_bounds(value)
    elif isinstance(node, list):
        for value in node:
            _integer_bounds(value)
