"""Issue 16 items 4b, 4c and 7 on a live server: the var dir (job database, uploads) fills up on a
real tmpfs, and the FAISS flush fails (an injected fault). Before: uploads got 400
"malformed multipart body", a new job got a 500 "cannot rollback", the worker froze until a
restart, and a failed flush showed only in the log at shutdown while the next job stayed queued.
Now: 507, the worker reports the problem on /readyz and /metrics, and resumes once space is back."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import wait_job

from .conftest import Forks, fill, kill9, mounted_tmpfs, tiny_settings
from .test_attacks import store_write_locked, wait_item_running

pytestmark = pytest.mark.slow  # a live server, a tmpfs, ingestion jobs


@pytest.fixture
def var_tmpfs(tmp_path: Path) -> Iterator[Path]:
    with mounted_tmpfs(tmp_path / "var", "4m") as mnt:
        yield mnt


def wait_for(what: str, check: Callable[[], Any], timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def problems(c: httpx.Client) -> list[str]:
    r = c.get("/readyz")
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["status"] == "degraded") == bool(body["problems"]), body
    return list(body["problems"])


def test_full_var_dir_and_failing_flush(
    forks: Forks, corpus: list[Path], tiny_ckpt: Path, tmp_path: Path, var_tmpfs: Path
) -> None:
    root = corpus[0].parent
    flag = tmp_path / "faiss-fault"
    settings = tiny_settings(tmp_path, root, tiny_ckpt, var_dir=str(var_tmpfs))
    url, proc = forks.start_server(settings, tmp_path / "server.log", faiss_write_fault=str(flag))
    try:
        with httpx.Client(base_url=url, timeout=60) as c:
            # 7: a full upload disk is 507, not a 400 blaming the client; nothing is left behind
            filler = fill(var_tmpfs)
            body = [("files", ("v.mp4", corpus[0].read_bytes(), "video/mp4"))]
            r = c.post("/v1/ingest", files=body)
            assert r.status_code == 507, (r.status_code, r.text)
            assert r.json()["error"]["code"] == "insufficient_storage"
            print(f"\nupload on a full var dir: {r.status_code} {r.json()['error']['message']}")
            assert not [p for p in (var_tmpfs / "uploads").rglob("*")], "partial upload left behind"
            filler.unlink()

            # 4b: the var dir fills while an item runs: its outcome cannot be recorded
            with store_write_locked(tmp_path / "index"):
                r = c.post("/v1/ingest", json={"paths": [str(p) for p in corpus[1:3]]})
                assert r.status_code == 202, r.text
                job_id = r.json()["id"]
                wait_item_running(c, job_id, 0)
                filler = fill(var_tmpfs)
                # a new job on the full disk: 507 (was 500 'cannot rollback')
                r = c.post("/v1/ingest", json={"paths": [str(corpus[3])]})
                assert r.status_code == 507, (r.status_code, r.text)
            found = wait_for("the worker to report it", lambda: problems(c))
            print(f"readyz while the var dir is full: {found}")
            assert any("cannot record job progress" in p for p in found), found
            metrics = c.get("/metrics").text
            assert "t2v_ingest_worker_degraded 1.0" in metrics
            filler.unlink()  # space back: the queue resumes without a restart
            job = wait_job(c, job_id, timeout=120)
            assert [it["state"] for it in job["items"]] == ["done", "done"], job
            wait_for("the problem to clear", lambda: not problems(c))

            # 4c: the FAISS flush fails: reported at once, no temp file left, the queue goes on
            flag.touch()
            r = c.post("/v1/ingest", json={"paths": [str(corpus[4])]})
            assert wait_job(c, r.json()["id"])["items"][0]["state"] == "done"
            found = wait_for("the flush failure", lambda: problems(c))
            assert any("persisting the FAISS index failed" in p for p in found), found
            assert 't2v_ingest_worker_errors_total{kind="flush"}' in c.get("/metrics").text
            assert not [p.name for p in (tmp_path / "index").iterdir() if p.name.endswith(".tmp")]
            r = c.post("/v1/ingest", json={"paths": [str(corpus[5])]})
            assert wait_job(c, r.json()["id"])["items"][0]["state"] == "done"
            flag.unlink()
            wait_for("the flush to succeed", lambda: not problems(c))
            hits = c.post("/v1/search", json={"query": "a colour", "top_k": 10}).json()["results"]
            assert len({h["video_id"] for h in hits}) == 4
    finally:
        kill9(proc)
