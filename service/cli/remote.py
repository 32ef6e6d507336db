"""A REST client for a running service: `t2v search --server URL` and `t2v ingest --server URL`.

Plain httpx (the indexer never imports FastAPI); the server's `{"error": {"code", "message"}}`
bodies become RemoteError messages, which the CLI prints as one `error:` line (exit code 2).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import typer

from service.cli.common import EXIT_SOME_FAILED, fail, format_time

POLL_SECONDS = 0.5


class RemoteError(Exception):
    """The server refused a request, or could not be reached."""


class RemoteClient:
    def __init__(self, url: str, api_key: str | None = None, timeout: float = 120.0) -> None:
        if not url.startswith(("http://", "https://")):
            raise RemoteError(f"--server must be an http(s) URL, got {url!r}")
        import httpx  # here, not at the top: `t2v --help` does not pay for it

        headers = {"X-API-Key": api_key} if api_key else {}
        self.url = url.rstrip("/")
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> RemoteClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, method: str, path: str, **kw: Any) -> dict[str, Any]:
        import httpx

        try:
            r = self._http.request(method, path, **kw)
        except httpx.HTTPError as e:
            raise RemoteError(f"cannot reach {self.url}: {e}") from None
        try:
            body = r.json()
        except ValueError:
            body = None
        if r.status_code >= 400:
            msg = body["error"]["message"] if isinstance(body, dict) and "error" in body else r.text[:200]
            raise RemoteError(f"{self.url} answered {r.status_code}: {msg}")
        if not isinstance(body, dict):
            raise RemoteError(f"{self.url} did not answer JSON for {path}")
        return body

    def search(self, query: str, **options: Any) -> dict[str, Any]:
        body = {"query": query, **{k: v for k, v in options.items() if v is not None}}
        return self._call("POST", "/v1/search", json=body)

    def ingest_paths(self, paths: Sequence[str]) -> dict[str, Any]:
        return self._call("POST", "/v1/ingest", json={"paths": list(paths)})

    def upload(self, files: Sequence[Path]) -> dict[str, Any]:
        with ExitStack() as stack:
            parts = [
                ("files", (f.name, stack.enter_context(open(f, "rb")), "application/octet-stream"))
                for f in files
            ]
            return self._call("POST", "/v1/ingest", files=parts)

    def job(self, job_id: str) -> dict[str, Any]:
        return self._call("GET", f"/v1/jobs/{job_id}")

    def wait(
        self, job_id: str, on_update: Callable[[dict[str, Any]], None], timeout: float | None = None
    ) -> dict[str, Any]:
        """Poll the job until it is done; on_update sees every state."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            job = self.job(job_id)
            on_update(job)
            if job["state"] == "done":
                return job
            if deadline is not None and time.monotonic() > deadline:
                raise RemoteError(f"job {job_id} not done after {timeout:.0f}s")
            time.sleep(POLL_SECONDS)


def remote_search(
    server: str,
    api_key: str | None,
    query: str,
    top_k: int,
    group_by_video: bool,
    video_ids: list[int] | None,
    min_score: float | None,
    as_json: bool,
    sources: list[str] | None = None,
) -> None:
    """`t2v search --server`: the same output shape as a local search, from POST /v1/search."""
    from service.cli.words import match_lines

    with RemoteClient(server, api_key) as client:
        body = client.search(
            query,
            top_k=top_k,
            group_by_video=group_by_video,
            video_ids=video_ids,
            min_score=min_score,
            sources=sources,  # None: the server's default (every source the library has)
        )
    if as_json:
        typer.echo(json.dumps(body, indent=2))
        return
    if not body["results"]:
        typer.echo("no results")
        return
    for m in body["results"]:
        span = f"{format_time(m['start'])}-{format_time(m['end'])}"
        typer.echo(f"{m['score']:.4f}  video {m['video_id']}  {span}  {m['title']}")
        for line in match_lines(m.get("matches") or (), query):
            typer.echo(line)
    typer.echo(f"({body['took_ms']:.0f} ms on {server})", err=True)


def ingest(
    paths: list[str] = typer.Argument(
        ..., help="video files or folders (uploaded) or, with --server-paths, server files or folders"
    ),
    server: str = typer.Option(..., "--server", help="URL of a running t2v service"),
    api_key: str | None = typer.Option(None, "--api-key", help="sent as X-API-Key"),
    server_paths: bool = typer.Option(
        False, "--server-paths", help="send the paths for the server to read instead of uploading"
    ),
    wait: bool = typer.Option(True, "--wait/--no-wait", help="follow the job until it is done"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bar"),
) -> None:
    """Ingest videos into a running service (upload or server paths), with a job progress bar."""
    with RemoteClient(server, api_key) as client:
        if server_paths:
            job = client.ingest_paths(paths)
        else:
            files = local_files(paths)
            if not files:
                fail(f"no files to upload in {', '.join(paths)}")
            job = client.upload(files)
        typer.echo(f"job {job['id']}: {job['total']} item(s)", err=True)
        if not wait:
            typer.echo(job["id"])
            return
        job = _follow(client, job, quiet)
    failed = 0
    for item in job["items"]:
        where = f" -> video {item['video_id']}" if item.get("video_id") is not None else ""
        reason = f" ({item['reason']})" if item.get("reason") else ""
        typer.echo(f"{item['state']:9s} {item['name']}{where}{reason}")
        failed += item["state"] == "failed"
    counts = ", ".join(f"{n} {k}" for k, n in sorted(job["counts"].items()) if n)
    typer.echo(f"job {job['id']} done: {counts}")
    if failed:
        raise typer.Exit(EXIT_SOME_FAILED)


def local_files(paths: Sequence[str]) -> list[Path]:
    """Files as given, folders recursively (sorted, hidden files skipped), as `t2v index add`
    expands them; a missing path is one `error:` line."""
    missing = [p for p in paths if not Path(p).exists()]
    if missing:
        fail(f"no such file or folder: {', '.join(missing)} (use --server-paths for server files)")
    files: list[Path] = []
    for raw in map(Path, paths):
        if raw.is_dir():
            found = (f for f in sorted(raw.rglob("*")) if f.is_file())
            files.extend(
                f for f in found if not any(part.startswith(".") for part in f.relative_to(raw).parts)
            )
        else:
            files.append(raw)
    return files


def _follow(client: RemoteClient, job: dict[str, Any], quiet: bool) -> dict[str, Any]:
    from tqdm import tqdm

    bar = tqdm(total=job["total"], unit="video", disable=quiet, desc="ingest")
    try:

        def update(j: dict[str, Any]) -> None:
            bar.update(j["finished"] - bar.n)
            running = [i["name"] for i in j["items"] if i["state"] == "running"]
            bar.set_postfix_str(running[0] if running else j["state"])

        return client.wait(job["id"], update)
    finally:
        bar.close()
