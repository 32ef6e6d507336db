"""Issue 16 item 6: what uploads leave behind. Before: a body cut by kill -9 stayed on disk, the
file of a video deleted just before a kill stayed, and every failed upload left an empty job
directory. Now failures and deletes remove their files and directories, and a start removes what
no queued item and no stored video refers to."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import httpx
import pytest

from tests.support import wait_job

from .conftest import Forks, kill9, tiny_settings

pytestmark = pytest.mark.slow  # live servers and a kill -9


def upload_files(uploads: Path) -> list[str]:
    return sorted(str(p.relative_to(uploads)) for p in uploads.rglob("*")) if uploads.exists() else []


def test_upload_leftovers_are_removed(
    forks: Forks, corpus: list[Path], tiny_ckpt: Path, tmp_path: Path
) -> None:
    settings = tiny_settings(tmp_path, corpus[0].parent, tiny_ckpt)
    uploads = tmp_path / "var" / "uploads"
    url, proc = forks.start_server(settings, tmp_path / "server.log")
    try:
        with httpx.Client(base_url=url, timeout=60) as c:
            # a failed upload leaves nothing, not even its job directory
            r = c.post("/v1/ingest", files=[("files", ("notes.mp4", b"not a video at all", "video/mp4"))])
            job = wait_job(c, r.json()["id"])
            assert job["items"][0]["state"] == "failed", job
            assert upload_files(uploads) == []
            # a stored upload keeps its file; deleting the video removes file and directory
            body = [("files", ("keep.mp4", corpus[0].read_bytes(), "video/mp4"))]
            keep_id = wait_job(c, c.post("/v1/ingest", files=body).json()["id"])["items"][0]["video_id"]
            body = [("files", ("gone.mp4", corpus[1].read_bytes(), "video/mp4"))]
            gone_id = wait_job(c, c.post("/v1/ingest", files=body).json()["id"])["items"][0]["video_id"]
            assert len([p for p in uploads.rglob("*") if p.is_file()]) == 2
            assert c.delete(f"/v1/videos/{gone_id}").status_code == 200
            kept = upload_files(uploads)
            assert len(kept) == 2, kept  # keep's directory and file
        # a body cut by kill -9 mid-upload
        host, port = url.removeprefix("http://").split(":")
        s = socket.create_connection((host, int(port)))
        head = (
            f"POST /v1/ingest HTTP/1.1\r\nHost: {host}\r\nContent-Type: multipart/form-data; boundary=B\r\n"
            "Content-Length: 10000000\r\n\r\n--B\r\n"
            'Content-Disposition: form-data; name="files"; filename="cut.mp4"\r\n\r\n'
        )
        s.sendall(head.encode() + b"\0" * 200_000)
        deadline = time.monotonic() + 30
        while len(upload_files(uploads)) < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(upload_files(uploads)) == 4, upload_files(uploads)  # the partial file is there
    finally:
        kill9(proc)
    s.close()
    # a file whose video was deleted just before a kill (deleted in the store, file not yet)
    stray = uploads / "deadbeef00000000" / "0000.upload"
    stray.parent.mkdir()
    stray.write_bytes(corpus[2].read_bytes())
    url, proc = forks.start_server(settings, tmp_path / "server2.log")
    try:
        assert upload_files(uploads) == kept
        with httpx.Client(base_url=url, timeout=60) as c:
            assert c.get(f"/v1/videos/{keep_id}/stream").content == corpus[0].read_bytes()
    finally:
        kill9(proc)
