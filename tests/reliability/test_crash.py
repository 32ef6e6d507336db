"""kill -9 at random moments (seeded) during ingestion, through the CLI and through the server.

After each kill: the store verifies, every video whose ingestion had been acknowledged (a CLI
`indexed:` line, a job item reported `done`) is present exactly once and searchable, nothing is
half-present, and a rerun / restart completes the rest.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import httpx
import pytest

from tests.support import free_port, wait_job

from .conftest import Forks, kill9, tiny_settings
from .kill_trials import check_store, cli_kill_trials, hits

pytestmark = pytest.mark.slow  # kill -9 trials

CLI_TRIALS = 4  # each trial is an add, a kill and a rerun: ~10-15 s on 2 busy cores
SERVICE_TRIALS = 8
SEED = 20261127


def test_kill9_during_cli_add(forks: Forks, corpus: list[Path], tiny_ckpt: Path, tmp_path: Path) -> None:
    outcomes, full = cli_kill_trials(forks, corpus, tiny_ckpt, tmp_path, trials=CLI_TRIALS, seed=SEED)
    what = "acks waited for, +s, running at kill, acknowledged"
    print(f"\ncli kill -9 trials ({what}): {outcomes} / full {full:.1f}s")
    # the kills must actually hit ingestion, not only start-up or the end
    assert hits(outcomes, len(corpus)) >= 2, outcomes


def test_kill9_server_during_job(forks: Forks, corpus: list[Path], tiny_ckpt: Path, tmp_path: Path) -> None:
    rng = random.Random(SEED + 1)
    paths = [str(p) for p in corpus]
    # kill moments are drawn inside an uninterrupted job's time on this machine (a fixed range
    # misses the job on a fast machine and only hits start-up on a slow one)
    work = tmp_path / "full"
    work.mkdir()
    settings = tiny_settings(work, corpus[0].parent, tiny_ckpt, batch_size=4)
    url, proc = forks.start_server(settings, work / "server.log", free_port())
    try:
        with httpx.Client(base_url=url, timeout=30) as c:
            t0 = time.monotonic()
            wait_job(c, c.post("/v1/ingest", json={"paths": paths}).json()["id"])
            full = time.monotonic() - t0
    finally:
        kill9(proc)
    outcomes = []
    for trial in range(SERVICE_TRIALS):
        work = tmp_path / f"t{trial}"
        settings = tiny_settings(work, corpus[0].parent, tiny_ckpt, batch_size=4)
        port = free_port()
        log = work / "server.log"
        work.mkdir()
        url, proc = forks.start_server(settings, log, port)
        try:
            with httpx.Client(base_url=url, timeout=30) as c:
                r = c.post("/v1/ingest", json={"paths": paths})
                assert r.status_code == 202, r.text
                job_id = r.json()["id"]
                deadline = time.monotonic() + rng.uniform(0.1, 0.9) * full
                job = r.json()
                while time.monotonic() < deadline:  # keep the latest acknowledged state
                    job = c.get(f"/v1/jobs/{job_id}").json()
                    time.sleep(0.05)
            kill9(proc)
        finally:
            kill9(proc)
        acked = {it["name"]: it["video_id"] for it in job["items"] if it["state"] == "done"}
        acked_paths = {p: acked[Path(p).name] for p in paths if Path(p).name in acked}
        if (work / "index" / "manifest.json").exists():
            check_store(work / "index", acked_paths)
        outcomes.append((job["state"], len(acked)))
        # restart on the same directories: the job resumes under its id and completes
        url, proc = forks.start_server(settings, log, port)
        try:
            with httpx.Client(base_url=url, timeout=30) as c:
                done = wait_job(c, job_id)
                assert [it["state"] for it in done["items"]] == ["done"] * len(paths), done
                ids = {it["name"]: it["video_id"] for it in done["items"]}
                assert len(set(ids.values())) == len(paths)
                for name, vid in acked.items():
                    assert ids[name] == vid, f"{name} was acknowledged as video {vid}, now {ids[name]}"
                assert c.get("/v1/videos").json()["total"] == len(paths)
                for vid in ids.values():  # searchable, each clip exactly once
                    body = {"query": "a coloured square", "top_k": 100, "video_ids": [vid]}
                    res = c.post("/v1/search", json=body).json()["results"]
                    assert {m["video_id"] for m in res} == {vid}
                    starts = [m["start"] for m in res]
                    assert len(starts) == len(set(starts)) == c.get(f"/v1/videos/{vid}").json()["clips"]
        finally:
            kill9(proc)
        check_store(work / "index", {p: ids[Path(p).name] for p in paths})
    print(f"\nservice kill -9 trials (job state at kill, items done): {outcomes}")
    assert sum(1 for _, n in outcomes if 0 < n < len(paths)) >= 2, outcomes
