"""Hostile requests against a live server with API keys and one allowed root: each is refused with
the right code, the server stays up, and the library is unchanged afterwards."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import free_port, wait_job

from .conftest import Forks, kill9, tiny_settings

pytestmark = pytest.mark.slow  # a live server's refusals

KEY = "s3cret-key"
MAX_UPLOAD = 64 * 1024


@pytest.fixture(scope="module")
def server(
    forks: Forks, corpus: list[Path], tiny_ckpt: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    work = tmp_path_factory.mktemp("sec")
    outside = work / "outside"
    outside.mkdir()
    secret = outside / "secret.mp4"
    secret.write_bytes(corpus[1].read_bytes())
    root = work / "library"  # the one allowed root
    root.mkdir()
    (root / "red.mp4").write_bytes(corpus[0].read_bytes())
    link = root / "escape.mp4"
    os.symlink(secret, link)
    limits = {"max_upload_bytes": MAX_UPLOAD, "max_items_per_job": 50}
    settings = tiny_settings(work, root, tiny_ckpt, api_keys=[KEY], limits=limits)
    port = free_port()
    url, proc = forks.start_server(settings, work / "server.log", port)
    try:
        with httpx.Client(base_url=url, timeout=60, headers={"X-API-Key": KEY}) as c:
            r = c.post("/v1/ingest", json={"paths": [str(root / "red.mp4")]})
            assert r.status_code == 202, r.text
            assert wait_job(c, r.json()["id"])["items"][0]["state"] == "done"
        yield {"url": url, "root": root, "secret": secret, "link": link, "work": work, "port": port}
    finally:
        kill9(proc)


def snapshot(url: str, work: Path) -> tuple[Any, ...]:
    """What must not change: the listing, the job list, the store files, the uploads."""
    with httpx.Client(base_url=url, timeout=60) as c:
        videos = c.get("/v1/videos").json()
        jobs = c.get("/v1/jobs", headers={"X-API-Key": KEY}).json()["total"]
    up = work / "var" / "uploads"
    uploads = sorted(p.name for p in up.rglob("*")) if up.exists() else []
    matrices = sorted((p.name, p.stat().st_size) for p in (work / "index" / "matrices").iterdir())
    return videos, jobs, uploads, matrices


def assert_error(r: httpx.Response, status: int) -> None:
    assert r.status_code == status, (r.status_code, r.text[:300])
    assert "error" in r.json(), r.text[:300]


def test_refusals_leave_the_store_unchanged(server: dict[str, Any]) -> None:
    url, root, work = server["url"], server["root"], server["work"]
    before = snapshot(url, work)
    vid = before[0]["items"][0]["id"]
    timings: dict[str, float] = {}

    def timed(name: str, fn: Any) -> httpx.Response:
        t0 = time.perf_counter()
        r = fn()
        timings[name] = time.perf_counter() - t0
        return r

    keyed = {"X-API-Key": KEY}
    with httpx.Client(base_url=url, timeout=60) as c:
        # path traversal and symlink escapes from the allowed root
        for p in [
            f"{root}/../outside/secret.mp4",
            str(server["secret"]),
            str(server["link"]),
            "relative/video.mp4",
            "/etc/passwd",
            f"{root}/a\x00.mp4",
        ]:
            assert_error(c.post("/v1/ingest", json={"paths": [p]}, headers=keyed), 403)
        # missing or wrong API key on every write route (and a wrong key anywhere)
        for headers in ({}, {"X-API-Key": "wrong"}, {"Authorization": "Bearer wrong"}):
            assert_error(c.post("/v1/ingest", json={"paths": [str(root / "red.mp4")]}, headers=headers), 401)
            files = [("files", ("x.mp4", b"0" * 10, "video/mp4"))]
            assert_error(c.post("/v1/ingest", files=files, headers=headers), 401)
            assert_error(c.delete(f"/v1/videos/{vid}", headers=headers), 401)
        assert_error(c.get("/v1/videos", headers={"X-API-Key": "wrong"}), 401)
        # an upload over the per-file limit (checked while streaming)
        big = [("files", ("big.mp4", os.urandom(MAX_UPLOAD * 4), "video/mp4"))]
        assert_error(timed("oversized upload", lambda: c.post("/v1/ingest", files=big, headers=keyed)), 413)
        # a multipart bomb: thousands of tiny file parts
        bomb = [("files", (f"{i}.mp4", b"x", "video/mp4")) for i in range(5000)]
        r = timed("multipart bomb", lambda: c.post("/v1/ingest", files=bomb, headers=keyed))
        assert r.status_code == 413, r.text[:300]
        # absurd JSON: a 5 MB body of paths, and deep nesting
        huge = {"paths": [f"{root}/{'a' * 100}.mp4"] * 50_000}
        r = timed("5 MB JSON", lambda: c.post("/v1/ingest", json=huge, headers=keyed))
        assert r.status_code in (413, 422), r.text[:300]
        deep = "[" * 100_000 + "]" * 100_000
        r = c.post("/v1/search", content=deep, headers={"content-type": "application/json"})
        assert r.status_code in (400, 422), r.text[:300]  # unparseable body, not a 500
        # non-UTF-8 text
        bad = b'{"query": "\xff\xfe caf\xe9"}'
        r = c.post("/v1/search", content=bad, headers={"content-type": "application/json"})
        assert r.status_code in (400, 422), r.text[:300]
        r = c.post(
            "/v1/ingest",
            content=b'{"paths": ["/x\xff.mp4"]}',
            headers={**keyed, "content-type": "application/json"},
        )
        assert r.status_code in (403, 422), r.text[:300]
        # a 100k-character query, by POST and by GET
        long_q = "cat " * 25_000
        r = timed("100k-char query", lambda: c.post("/v1/search", json={"query": long_q}))
        assert_error(r, 422)
        assert c.get("/v1/search", params={"q": long_q[:6000]}).status_code == 422
    # an absurd header (64 KiB): refused by the HTTP layer, server stays up
    with socket.create_connection(("127.0.0.1", server["port"]), timeout=30) as s:
        s.sendall(b"GET /v1/videos HTTP/1.1\r\nHost: x\r\nX-Junk: " + b"a" * 65536 + b"\r\n\r\n")
        head = s.recv(200)
    assert head.startswith(b"HTTP/1.1 431"), head
    with httpx.Client(base_url=url, timeout=60) as c:
        assert c.get("/healthz").status_code == 200
        assert c.post("/v1/search", json={"query": "a red square"}).status_code == 200
    assert snapshot(url, work) == before
    print("\nrefusal times (s):", {k: round(v, 3) for k, v in timings.items()})
    assert max(timings.values()) < 30
