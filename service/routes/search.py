"""POST/GET /v1/search."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query

from ..engine import Engine
from ..schemas import NON_BLANK, SearchRequest, SearchResponse, Source
from .deps import engine, require_read_key

router = APIRouter(prefix="/v1", tags=["search"], dependencies=[Depends(require_read_key)])


@router.post("/search", response_model=SearchResponse)
async def search(body: SearchRequest, eng: Engine = Depends(engine)) -> SearchResponse:
    """Moments ranked by the partial-alignment score of the query against the stored video sets,
    fused with the full-text ranking of their subtitles, speech and on-screen text (`sources`)."""
    return await eng.search(body)


@router.get("/search", response_model=SearchResponse)
async def search_get(
    q: str = Query(..., min_length=1, json_schema_extra=NON_BLANK, description="query text"),
    top_k: int = Query(10, ge=1, le=100),
    group_by_video: bool = Query(False),
    moments_per_video: int = Query(1, ge=1, le=50),
    sources: list[Source] | None = Query(None, description="repeat: sources=visual&sources=ocr"),
    eng: Engine = Depends(engine),
) -> SearchResponse:
    """The same search for simple clients: `GET /v1/search?q=...`."""
    body = SearchRequest(
        query=q,
        top_k=top_k,
        group_by_video=group_by_video,
        moments_per_video=moments_per_video,
        sources=sources,
    )
    return await eng.search(body)
