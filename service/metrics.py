"""Prometheus metrics on a per-app registry (no process globals, so tests can build many apps)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from fastapi import Request, Response
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_Next = Callable[[Request], Awaitable[Response]]
_LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.request_seconds = Histogram(
            "t2v_http_request_duration_seconds",
            "HTTP request latency by route template",
            ["method", "route", "status"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.search_stage_seconds = Histogram(
            "t2v_search_stage_seconds",
            "time spent in each search stage",
            ["stage"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.index_videos = Gauge("t2v_index_videos", "videos in the store", registry=r)
        self.index_clips = Gauge("t2v_index_clips", "clips (moments) in the store", registry=r)
        self.index_vectors = Gauge("t2v_index_vectors", "token vectors in the FAISS index", registry=r)
        self.queue_depth = Gauge("t2v_ingest_queue_depth", "ingestion items queued or running", registry=r)
        self.ingested = Counter("t2v_ingest_items_total", "ingestion items finished", ["state"], registry=r)
        self.worker_errors = Counter(
            "t2v_ingest_worker_errors_total",
            "ingestion worker failures outside one item (flush: FAISS persist, record: job database)",
            ["kind"],
            registry=r,
        )
        self.torch_threads = Gauge(
            "t2v_torch_threads",
            "intra-op torch threads of a worker pool (search, ingest)",
            ["pool"],
            registry=r,
        )
        self.worker_degraded = Gauge(
            "t2v_ingest_worker_degraded", "1 while the ingestion worker reports a problem", registry=r
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)

    async def middleware(
        self, request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        start = time.perf_counter()
        status = 500
        try:
            response = await call_next(request)
            status = response.status_code
            return response
        finally:
            route = request.scope.get("route")
            # the route template keeps the label set small (no ids in labels)
            template = getattr(route, "path", None) or "unmatched"
            self.request_seconds.labels(request.method, template, str(status)).observe(
                time.perf_counter() - start
            )
