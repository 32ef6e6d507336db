"""The app factory: `create_app(settings)`; `uvicorn --factory service.app:create_app` reads env."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import swagger_ui_bundle
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles

from .engine import Engine
from .errors import install_error_handlers
from .header_limit import HeaderLimitMiddleware
from .metrics import Metrics, timed_requests
from .openapi import document_contract
from .routes import ingest, ops, search, videos
from .settings import ServiceSettings

STATIC_DIR = Path(__file__).resolve().parent / "static"


def create_app(
    settings: ServiceSettings | None = None, on_started: Callable[[Engine], None] | None = None
) -> FastAPI:
    """The app; `on_started(engine)` is called once loading ends (`engine.load_error` says how), so
    `t2v serve` can print that it is ready, or stop with one line instead of serving only 503s."""
    settings = settings if settings is not None else ServiceSettings()
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = Engine(settings, metrics)
        app.state.engine = engine
        # load in the background: /healthz answers at once, /readyz says 503 until loaded
        loading = asyncio.create_task(engine.start(), name="t2v-engine-start")
        if on_started is not None:
            loading.add_done_callback(lambda task: None if task.cancelled() else on_started(engine))
        try:
            yield
        finally:
            loading.cancel()
            await engine.stop()

    app = FastAPI(
        docs_url=None,  # served below from the swagger-ui-bundle package: no CDN, works offline
        title="T2V search",
        version="1.0.0",
        summary="Semantic video moment search with T2VParser partial-alignment scores",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.metrics = metrics
    install_error_handlers(app)
    app.add_middleware(timed_requests, metrics=metrics)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["content-type", "x-api-key", "authorization", "range"],
        )
    app.add_middleware(HeaderLimitMiddleware)  # outermost: absurd headers never reach a route
    for module in (search, videos, ingest, ops):
        app.include_router(module.router)
    document_contract(app, settings)  # every status per route, limits, security schemes
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.mount("/docs-assets", StaticFiles(directory=swagger_ui_bundle.swagger_ui_path), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} - API docs",
            swagger_js_url="/docs-assets/swagger-ui-bundle.js",
            swagger_css_url="/docs-assets/swagger-ui.css",
            swagger_favicon_url="/docs-assets/favicon-32x32.png",
        )

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html")

    return app
