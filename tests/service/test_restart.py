"""Kill the server (SIGKILL) in the middle of an ingestion job: after a restart the job resumes
under the same id and every video ends up indexed exactly once."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import httpx
import pytest

from indexer.corpora.lavfi import render_colour_box
from service.jobs import JobStore
from tests.cli_forks import CliForks
from tests.support import Server, server_settings, wait_job

pytestmark = pytest.mark.slow  # server kills and restarts mid-job

COLOURS = ["red", "green", "blue", "yellow", "magenta", "orange"]


def test_restart_mid_job_resumes_and_loses_nothing(tmp_path: Path, cli_forks: CliForks) -> None:
    root = tmp_path / "videos"
    root.mkdir()
    # long enough (several windows each) that the job is still running when we kill the server
    paths = [render_colour_box(root / f"{c}.mp4", c, seconds=30.0 + i) for i, c in enumerate(COLOURS)]
    settings = server_settings(tmp_path, root, window=4.0, stride=2.0)
    first = Server(tmp_path, settings, forks=cli_forks).start()
    try:
        with first.client() as c:
            r = c.post("/v1/ingest", json={"paths": [str(p) for p in paths]})
            assert r.status_code == 202, r.text
            job_id = r.json()["id"]
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                job = c.get(f"/v1/jobs/{job_id}").json()
                if job["finished"] >= 1:
                    break
                time.sleep(0.05)
            assert 1 <= job["finished"] < job["total"], f"the job should still be running: {job}"
            first.kill()
    finally:
        first.kill()
    # the narrowest crash window: a video committed to the store, its job item still 'running'
    # (simulated: a second job's item for the already-stored first file, claimed and never finished)
    jobs = JobStore(tmp_path / "var" / "jobs.sqlite")
    committed_job = jobs.create("paths", [(str(paths[0]), paths[0].name, None)])
    jobs.close()
    with sqlite3.connect(tmp_path / "var" / "jobs.sqlite") as db:
        db.execute("UPDATE items SET state='running' WHERE job_id=?", (committed_job,))

    second = Server(tmp_path, settings, forks=cli_forks)
    second.port = first.port  # same URL, as after a real restart
    second.url = first.url
    second.start()
    try:
        with second.client() as c:
            job = wait_job(c, job_id)
            assert [it["state"] for it in job["items"]] == ["done"] * len(paths), job
            ids = [it["video_id"] for it in job["items"]]
            assert len(set(ids)) == len(paths)
            videos = c.get("/v1/videos").json()
            assert videos["total"] == len(paths)
            assert sorted(v["title"] for v in videos["items"]) == sorted(COLOURS)
            # every video is searchable, each of its clips exactly once
            for v in videos["items"]:
                body = {"query": "a coloured background", "top_k": 100, "video_ids": [v["id"]]}
                res = c.post("/v1/search", json=body).json()["results"]
                assert {m["video_id"] for m in res} == {v["id"]}
                starts = [m["start"] for m in res]
                assert len(starts) == len(set(starts)) == v["clips"]
            # the committed-before-crash item is recognised as itself: done, not a duplicate
            crashed = wait_job(c, committed_job)
            assert crashed["items"][0]["state"] == "done", crashed
            assert crashed["items"][0]["video_id"] == ids[0]
            assert c.get("/v1/jobs").json()["total"] == 2
    finally:
        second.stop()


def test_unusable_store_keeps_process_up_and_not_ready(tmp_path: Path, cli_forks: CliForks) -> None:
    """A directory that is not a store: /healthz answers, /readyz is a 503 that says why."""
    index = tmp_path / "index"
    index.mkdir()
    (index / "manifest.json").write_text('{"format": "something-else"}')
    settings = {"index_dir": str(index), "var_dir": str(tmp_path / "var")}
    srv = Server(tmp_path, settings, forks=cli_forks).start(wait=False)
    try:
        deadline = time.monotonic() + 90
        body: dict = {}
        while time.monotonic() < deadline:
            try:
                r = httpx.get(srv.url + "/readyz", timeout=2)
            except httpx.HTTPError:
                time.sleep(0.3)
                continue
            assert r.status_code == 503, r.text
            body = r.json()
            if "still loading" not in body["error"]["message"]:
                break
            time.sleep(0.3)
        assert body["error"]["code"] == "not_ready"
        assert "store" in body["error"]["message"].lower(), body
        assert httpx.get(srv.url + "/healthz", timeout=5).status_code == 200
        search = httpx.post(srv.url + "/v1/search", json={"query": "red"}, timeout=5)
        assert search.status_code == 503
    finally:
        srv.stop()
