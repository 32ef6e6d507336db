"""The committed docs/openapi.json is the live schema (regenerate: python -m service.openapi)."""

from __future__ import annotations

import json

from service.openapi import SNAPSHOT, live_schema, render


def test_openapi_snapshot_matches_live_schema() -> None:
    live = render(live_schema())
    assert SNAPSHOT.exists(), "docs/openapi.json is missing: run `python -m service.openapi`"
    committed = SNAPSHOT.read_text()
    if committed != live:
        live_paths = set(json.loads(live)["paths"])
        old_paths = set(json.loads(committed)["paths"])
        raise AssertionError(
            "docs/openapi.json is stale: run `python -m service.openapi`; "
            f"added paths {sorted(live_paths - old_paths)}, removed {sorted(old_paths - live_paths)}"
        )


def test_schema_documents_the_api() -> None:
    schema = live_schema()
    paths = schema["paths"]
    for path in ("/v1/search", "/v1/ingest", "/v1/jobs/{job_id}", "/v1/videos/{video_id}/stream", "/metrics"):
        assert path in paths
    assert set(paths["/v1/search"]) == {"get", "post"}
    body = paths["/v1/ingest"]["post"]["requestBody"]["content"]
    assert {"application/json", "multipart/form-data"} <= set(body)
