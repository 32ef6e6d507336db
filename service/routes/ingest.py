"""Bulk ingestion (server paths or uploads) and the job endpoints."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request

from ..engine import Engine
from ..errors import BadRequest, invalid_body
from ..schemas import IngestRequest, Job, JobPage
from .deps import engine, require_read_key, require_write_key

router = APIRouter(prefix="/v1", tags=["ingest"])

_BINARY = {"type": "string", "format": "binary"}
_INGEST_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": IngestRequest.model_json_schema()},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        # at least one part: an empty array would be a body with no file (400)
                        "files": {"type": "array", "minItems": 1, "items": _BINARY}
                    },
                    "required": ["files"],
                }
            },
        },
    }
}


@router.post(
    "/ingest",
    response_model=Job,
    status_code=202,
    dependencies=[Depends(require_write_key)],
    openapi_extra=_INGEST_BODY,
)
async def ingest(request: Request, eng: Engine = Depends(engine)) -> Job:
    """Queue videos for indexing: a JSON `{"paths": [...]}` of server files, or multipart `files`.

    Returns the job at once; poll `GET /v1/jobs/{id}` for per-item progress.
    """
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "application/json":
        try:
            body = IngestRequest.model_validate_json(await request.body())
        except ValueError as e:  # names the field, or says the body is not JSON
            raise invalid_body(e, "ingest body") from e
        return await eng.submit_paths(body)
    if ctype == "multipart/form-data":
        return await eng.submit_uploads(request)
    raise BadRequest("send application/json {'paths': [...]} or multipart/form-data with 'files'")


@router.get("/jobs", response_model=JobPage, dependencies=[Depends(require_read_key)])
async def list_jobs(
    offset: int = Query(0, ge=0, le=2**63 - 1), limit: int = Query(20, ge=1), eng: Engine = Depends(engine)
) -> JobPage:
    return await eng.list_jobs(offset, limit)


@router.get("/jobs/{job_id}", response_model=Job, dependencies=[Depends(require_read_key)])
async def get_job(job_id: str, eng: Engine = Depends(engine)) -> Job:
    return await eng.get_job(job_id)
