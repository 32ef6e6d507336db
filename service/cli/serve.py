"""`t2v serve` and `t2v demo`: run the service from settings/flags, or build and serve the demo."""

from __future__ import annotations

import json
import logging
import shutil
import socket
import sys
from pathlib import Path

import typer
from pydantic import ValidationError

from indexer.settings import DEMO_CHECKPOINT
from service.cli.common import fail
from service.settings import ServiceSettings


def _uvicorn(settings: ServiceSettings) -> None:
    import uvicorn

    from service.app import create_app

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level="info")


def serve(
    host: str | None = typer.Option(None, help="bind address (T2V_HOST)"),
    port: int | None = typer.Option(None, help="bind port (T2V_PORT)"),
    index_dir: Path | None = typer.Option(None, help="store directory (T2V_INDEX_DIR)"),
    var_dir: Path | None = typer.Option(None, help="jobs DB and uploads (T2V_VAR_DIR)"),
    config: str | None = typer.Option(None, help="model config (T2V_MODEL__CONFIG)"),
    checkpoint: Path | None = typer.Option(None, help="T2VParser checkpoint (T2V_MODEL__CHECKPOINT)"),
    allowed_root: list[Path] = typer.Option([], help="directory POST /v1/ingest may read (repeatable)"),
    api_key: list[str] = typer.Option([], help="API key for write endpoints (repeatable)"),
) -> None:
    """Run the search service (flags override T2V_* environment settings)."""
    data = ServiceSettings().model_dump()
    flags = {"host": host, "port": port, "index_dir": index_dir, "var_dir": var_dir}
    data.update({k: v for k, v in flags.items() if v is not None})
    if config is not None:
        data["model"].update(config=config, checkpoint=checkpoint)
    elif checkpoint is not None:
        data["model"]["checkpoint"] = checkpoint
    if allowed_root:
        data["allowed_roots"] = list(allowed_root)
    if api_key:
        data["api_keys"] = list(api_key)
    try:
        settings = ServiceSettings.model_validate(data)
    except ValidationError as e:
        fail(f"invalid settings: {e.errors()[0]['loc']}: {e.errors()[0]['msg']}")
    ckpt = settings.model.checkpoint
    if ckpt is not None and not Path(ckpt).is_file():
        fail(f"checkpoint {ckpt} does not exist (set --checkpoint or T2V_MODEL__CHECKPOINT)")
    for root in settings.allowed_roots:
        if not root.is_dir():
            fail(f"allowed root {root} is not a directory")
    _uvicorn(settings)


def _free_port(host: str, preferred: int) -> int:
    with socket.socket() as s:
        try:
            s.bind((host, preferred))
            return preferred
        except OSError:
            s.bind((host, 0))
            return int(s.getsockname()[1])


def demo(
    workdir: Path = typer.Option(Path("var/demo"), help="where the demo library, store and state go"),
    port: int = typer.Option(8000, help="preferred port (a free one is picked if taken)"),
    fresh: bool = typer.Option(False, help="rebuild the demo library and store from scratch"),
    no_serve: bool = typer.Option(False, help="build the demo store, then exit"),
) -> None:
    """Render the demo library, index it with the demo model and serve it on 127.0.0.1."""
    from service.demo import build_demo

    if fresh and workdir.exists():
        shutil.rmtree(workdir)
    # demo scenes last 2-3 s: short windows make each scene its own moment
    settings = ServiceSettings(index_dir=workdir / "index", var_dir=workdir / "var", window=4.0, stride=2.0)
    settings.host = "127.0.0.1"
    if settings.model.checkpoint is None and settings.model.config == "t2v-tiny":
        typer.echo(
            f"warning: the demo model {DEMO_CHECKPOINT} does not exist yet; using the t2v-tiny config "
            "with random weights, so rankings are meaningless",
            err=True,
        )
    try:
        summary = build_demo(settings, workdir / "videos", log=lambda m: typer.echo(m))
    except Exception as e:  # a clear line, not a trace
        fail(f"building the demo failed: {e}")
    if no_serve:
        return
    settings.port = _free_port(settings.host, port)
    url = f"http://{settings.host}:{settings.port}"
    body = json.dumps({"query": summary.example_query, "top_k": 3})
    typer.echo(f"\nT2V search demo: {summary.videos} videos, {summary.clips} clips")
    typer.echo(f"open {url}/  (API docs: {url}/docs)")
    typer.echo(f"try:  curl -s {url}/v1/search -H 'content-type: application/json' -d '{body}'\n")
    sys.stdout.flush()
    _uvicorn(settings)
