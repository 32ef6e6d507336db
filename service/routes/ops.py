"""Liveness, readiness, metrics."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Response

from ..engine import Engine
from ..schemas import Health, Ready
from .deps import engine

router = APIRouter(tags=["operations"])


@router.get("/healthz", response_model=Health)
async def healthz() -> Health:
    """The process is up."""
    return Health(status="ok")


@router.get("/readyz", response_model=Ready, responses={503: {"description": "still loading"}})
async def readyz(eng: Engine = Depends(engine)) -> Ready:
    """Model and store are loaded (503 until then)."""
    return await eng.readiness()


@router.get("/metrics", response_class=Response, responses={200: {"content": {"text/plain": {}}}})
async def metrics(eng: Engine = Depends(engine)) -> Response:
    """Prometheus text format."""
    return Response(await eng.metrics_text(), media_type="text/plain; version=0.0.4; charset=utf-8")
