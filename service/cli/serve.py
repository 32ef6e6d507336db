"""`t2v serve` and `t2v demo`: run the service from settings/flags, or build and serve the demo.

Both bind their port before anything else (a taken port is one `error:` line, never a silent move
to another port), print the URL, and exit with one `error:` line (code 2) when the model or store
cannot be loaded: a server that could only answer 503 is not left running.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from service.cli.common import fail
from service.cli.store_access import store_model

if TYPE_CHECKING:
    from service.engine import Engine
    from service.settings import ServiceSettings

_START_FAILED = "engine failed to start"  # the engine's log message; the CLI reports it as its error line


class _DropStartFailure(logging.Filter):
    """The command prints a failed start as its one `error:` line: the log need not repeat it."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(_START_FAILED)


def _log_config() -> dict[str, Any]:
    # uvicorn's start/stop chatter is replaced by the URL line below; requests and warnings stay
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"start": {"()": _DropStartFailure}},
        "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "plain",
                "stream": "ext://sys.stderr",
                "filters": ["start"],
            }
        },
        # libraries log their set-up chatter (open_clip: on the root logger) at INFO: warnings only
        "loggers": {
            "t2v": {"level": "INFO"},
            "uvicorn.error": {"level": "WARNING"},
            "uvicorn.access": {"level": "INFO"},
        },
        "root": {"handlers": ["stderr"], "level": "WARNING"},
    }


def bind(host: str, port: int, flag: str = "--port or T2V_PORT") -> socket.socket:
    """A listening-ready socket on host:port, or one `error:` line saying the port is taken."""
    try:
        family, kind, proto, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as e:
        fail(f"cannot use the bind address {host!r}: {e.strerror} (set --host or T2V_HOST)")
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: restarts reuse the port
    try:
        sock.bind(addr)
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:
            fail(f"port {port} on {host} is already in use (another t2v serve?); choose another with {flag}")
        fail(f"cannot listen on {host}:{port}: {e.strerror} (choose another with {flag})")
    return sock


def url_of(host: str, port: int) -> str:
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


def run_server(settings: ServiceSettings, sock: socket.socket) -> None:
    """Serve on the bound socket until stopped; a failed model/store load stops it with one line."""
    import uvicorn

    from service.app import create_app

    failure: list[str] = []

    def started(engine: Engine) -> None:
        if engine.load_error is not None:
            failure.append(engine.load_error)
            server.should_exit = True
            return
        typer.echo(f"ready: {engine.lib.describe()}")

    from service.header_limit import header_timeout_protocol

    config = uvicorn.Config(
        create_app(settings, on_started=started),
        log_config=_log_config(),
        http=header_timeout_protocol(settings.header_timeout),  # slow-loris connections are closed
    )
    server = uvicorn.Server(config)
    server.run(sockets=[sock])
    if failure:
        # e.g. "ModelMismatchError: the store at ... `t2v index reindex ...`" -> the reason, then what to do
        reason = failure[0].split(": ", 1)[-1]
        fail(f"the service cannot start: {reason}")


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
    """Run the search service (flags override T2V_* environment settings); prints its URL."""
    from service.settings import ServiceSettings, load_settings

    flags: dict[str, object] = {"host": host, "port": port, "index_dir": index_dir, "var_dir": var_dir}
    overrides = {k: v for k, v in flags.items() if v is not None}
    if config is not None:  # a config flag without a checkpoint flag drops the configured checkpoint
        overrides["model"] = {"config": config, "checkpoint": checkpoint}
    elif checkpoint is not None:
        overrides["model"] = {"checkpoint": checkpoint}
    if allowed_root:
        overrides["allowed_roots"] = list(allowed_root)
    if api_key:
        overrides["api_keys"] = list(api_key)
    settings = load_settings(ServiceSettings, **overrides)  # SettingsInvalid: one line (cli_errors)
    chosen = config or checkpoint or any(os.environ.get(f"T2V_MODEL__{k}") for k in ("CONFIG", "CHECKPOINT"))
    if not chosen:  # no model chosen: an existing store is served with the model it was built with
        own = store_model(settings.index_dir, settings)
        if own is not None:
            settings.model.checkpoint = own
    ckpt = settings.model.checkpoint
    if ckpt is not None and not Path(ckpt).is_file():
        fail(f"checkpoint {ckpt} does not exist (set --checkpoint or T2V_MODEL__CHECKPOINT)")
    for root in settings.allowed_roots:
        if not root.is_dir():
            fail(f"allowed root {root} is not a directory (--allowed-root or T2V_ALLOWED_ROOTS)")
    sock = bind(settings.host, settings.port)
    url = url_of(settings.host, sock.getsockname()[1])  # port 0: the one the system chose
    typer.echo(
        f"t2v serve: {url}/  (API docs: {url}/docs; store {settings.index_dir}); loading the model ..."
    )
    sys.stdout.flush()
    run_server(settings, sock)


def demo(
    workdir: Path = typer.Option(Path("var/demo"), help="where the demo library, store and state go"),
    port: int = typer.Option(8000, help="port to serve on (an error if it is taken)"),
    fresh: bool = typer.Option(False, help="rebuild the demo library and store from scratch"),
    no_serve: bool = typer.Option(False, help="build the demo store, then exit"),
) -> None:
    """Render the demo library, index it with the demo model and serve it on 127.0.0.1."""
    from indexer.settings import DEMO_CHECKPOINT
    from service.demo import build_demo
    from service.settings import ServiceSettings, load_settings

    # demo scenes last 2-3 s: short windows make each scene its own moment
    settings = load_settings(
        ServiceSettings,
        index_dir=workdir / "index",
        var_dir=workdir / "var",
        window=4.0,
        stride=2.0,
        host="127.0.0.1",
        port=port,
    )
    sock = None if no_serve else bind(settings.host, settings.port, flag="--port")  # before minutes of work
    if fresh and workdir.exists():
        shutil.rmtree(workdir)
    if settings.model.checkpoint is None and settings.model.config == "t2v-tiny":
        typer.echo(
            f"warning: the demo model {DEMO_CHECKPOINT} does not exist; using the t2v-tiny config "
            "with random weights, so rankings are meaningless",
            err=True,
        )
    try:
        summary = build_demo(settings, workdir / "videos", log=lambda m: typer.echo(m))
    except Exception as e:  # a clear line, not a trace
        fail(f"building the demo failed: {e}")
    if sock is None:
        return
    url = url_of(settings.host, sock.getsockname()[1])
    body = json.dumps({"query": summary.example_query, "top_k": 3})
    typer.echo(f"\nT2V search demo: {summary.videos} videos, {summary.clips} clips")
    typer.echo(f"open {url}/  (API docs: {url}/docs)")
    typer.echo(f"try:  curl -s {url}/v1/search -H 'content-type: application/json' -d '{body}'\n")
    sys.stdout.flush()
    run_server(settings, sock)
