"""Prometheus metrics on a per-app registry (no process globals, so tests can build many apps)."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

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


def timed_requests(app: ASGIApp, metrics: Metrics) -> ASGIApp:
    """`app` with every HTTP request timed (`metrics.request_seconds`, by route template and
    status) until its response starts. Plain ASGI, not Starlette's `BaseHTTPMiddleware`, which runs
    each request in a task group with memory streams (a streamed video's body passes through them
    chunk by chunk)."""
    histogram = metrics.request_seconds

    async def timed(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        start = time.perf_counter()
        observed = False

        def observe(status: int) -> None:
            nonlocal observed
            if not observed:
                observed = True
                route = scope.get("route")  # set by the router: the template keeps labels few
                template = getattr(route, "path", None) or "unmatched"
                elapsed = time.perf_counter() - start
                histogram.labels(scope["method"], template, str(status)).observe(elapsed)

        async def send_timed(message: Message) -> None:
            if message["type"] == "http.response.start":
                observe(int(message["status"]))
            await send(message)

        try:
            await app(scope, receive, send_timed)
        finally:
            observe(500)  # no response started: the error handlers did not answer either

    return timed
