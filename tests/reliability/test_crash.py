"""kill -9 at random moments (seeded) during ingestion, through the CLI and through the server.

After each kill: the store verifies, every video whose ingestion had been acknowledged (a CLI
`indexed:` line, a job item reported `done`) is present exactly once and searchable, nothing is
half-present, and a rerun / restart completes the rest.
"""

from __future__ import annotations

import random
import re
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from indexer.store import Store
from tests.support import free_port, wait_job

from .conftest import Zygote, kill9, pid_alive, tiny_settings, wait_exit

pytestmark = pytest.mark.slow  # kill -9 trials

CLI_TRIALS = 12
SERVICE_TRIALS = 8
SEED = 20261127
ACK = re.compile(r"indexed: (.+) \(video (\d+),")


def check_store(index: Path, acked: dict[str, int]) -> dict[str, int]:
    """verify passes; acknowledged videos present once with their id; each video whole. -> path->id"""
    store = Store.open(index)
    try:
        report = store.verify()
        assert report.ok, report.problems
        videos = store.list_videos(limit=10_000)
        paths = [v.path for v in videos]
        assert len(paths) == len(set(paths)), f"a video stored twice: {paths}"
        hashes = [v.content_hash for v in videos]
        assert len(hashes) == len(set(hashes))
        by_path = {v.path: v.id for v in videos}
        for path, vid in acked.items():
            assert by_path.get(path) == vid, f"acknowledged {path} (video {vid}) lost: {by_path}"
        # nothing half-present: every video has all its clips, each with its matrix and FAISS rows
        live = set(store.live_clip_ids([v.id for v in videos]).tolist())
        for v in videos:
            clips = store.clips_of(v.id)
            assert len(clips) == v.num_clips > 0
            assert {c.id for c in clips} <= live
            mats = store.matrices(np.asarray([c.id for c in clips], dtype=np.int64))
            assert np.isfinite(mats.astype(np.float32)).all()
        return by_path
    finally:
        store.close()


def acked_lines(log: Path) -> dict[str, int]:
    return {m.group(1): int(m.group(2)) for m in ACK.finditer(log.read_text())}


def cli_add(zygote: Zygote, corpus_dir: Path, index: Path, ckpt: Path, log: Path) -> int:
    argv = ["index", "add", str(corpus_dir), "--index", str(index), "--checkpoint", str(ckpt)]
    return zygote.cli([*argv, "--window", "1", "--stride", "1", "--batch-size", "4"], log)


def test_kill9_during_cli_add(zygote: Zygote, corpus: list[Path], tiny_ckpt: Path, tmp_path: Path) -> None:
    rng = random.Random(SEED)
    corpus_dir = corpus[0].parent
    # calibrate: how long one uninterrupted add takes here
    t0 = time.monotonic()
    pid = cli_add(zygote, corpus_dir, tmp_path / "calib", tiny_ckpt, tmp_path / "calib.log")
    wait_exit(pid, 180)
    full = time.monotonic() - t0
    assert len(acked_lines(tmp_path / "calib.log")) == len(corpus), (tmp_path / "calib.log").read_text()
    outcomes = []
    for trial in range(CLI_TRIALS):
        index, log = tmp_path / f"idx{trial}", tmp_path / f"add{trial}.log"
        delay = rng.uniform(0.3, 0.95) * full
        pid = cli_add(zygote, corpus_dir, index, tiny_ckpt, log)
        time.sleep(delay)
        was_running = pid_alive(pid)
        kill9(pid)
        acked = acked_lines(log)
        if (index / "manifest.json").exists():
            check_store(index, acked)
        else:  # killed before the store's commit point (its manifest): the store does not exist yet
            assert not acked, "a video was acknowledged before the store existed"
        outcomes.append((round(delay, 2), was_running, len(acked)))
        # the rerun completes the rest, skipping what is already stored
        pid = cli_add(zygote, corpus_dir, index, tiny_ckpt, tmp_path / f"rerun{trial}.log")
        wait_exit(pid, 180)
        rerun = acked_lines(tmp_path / f"rerun{trial}.log")
        assert not set(rerun) & set(acked), "a rerun re-indexed an acknowledged video"
        final = check_store(index, acked)
        assert sorted(final) == sorted(str(p) for p in corpus)
    print(f"\ncli kill -9 trials (delay s, running at kill, acknowledged): {outcomes} / full {full:.1f}s")
    # the seeded delays must actually hit ingestion, not only start-up or the end
    assert sum(1 for _, running, n in outcomes if running and 0 < n < len(corpus)) >= 2, outcomes


def test_kill9_server_during_job(zygote: Zygote, corpus: list[Path], tiny_ckpt: Path, tmp_path: Path) -> None:
    rng = random.Random(SEED + 1)
    paths = [str(p) for p in corpus]
    outcomes = []
    for trial in range(SERVICE_TRIALS):
        work = tmp_path / f"t{trial}"
        settings = tiny_settings(work, corpus[0].parent, tiny_ckpt, batch_size=4)
        port = free_port()
        log = work / "server.log"
        work.mkdir()
        url, pid = zygote.start_server(settings, log, port)
        try:
            with httpx.Client(base_url=url, timeout=30) as c:
                r = c.post("/v1/ingest", json={"paths": paths})
                assert r.status_code == 202, r.text
                job_id = r.json()["id"]
                deadline = time.monotonic() + rng.uniform(0.0, 3.0)
                job = r.json()
                while time.monotonic() < deadline:  # keep the latest acknowledged state
                    job = c.get(f"/v1/jobs/{job_id}").json()
                    time.sleep(0.05)
            kill9(pid)
        finally:
            kill9(pid)
        acked = {it["name"]: it["video_id"] for it in job["items"] if it["state"] == "done"}
        acked_paths = {p: acked[Path(p).name] for p in paths if Path(p).name in acked}
        if (work / "index" / "manifest.json").exists():
            check_store(work / "index", acked_paths)
        outcomes.append((job["state"], len(acked)))
        # restart on the same directories: the job resumes under its id and completes
        url, pid = zygote.start_server(settings, log, port)
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
            kill9(pid)
        check_store(work / "index", {p: ids[Path(p).name] for p in paths})
    print(f"\nservice kill -9 trials (job state at kill, items done): {outcomes}")
    assert sum(1 for _, n in outcomes if 0 < n < len(paths)) >= 2, outcomes
