"""The kill -9 trial loop that the crash tests share (tests/reliability/test_crash.py with the FAISS
backend, test_crash_qdrant.py with the Qdrant backend): `t2v index add` killed at seeded random
moments, the store checked as the killed writer left it, then a rerun that must complete it."""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from indexer.store import Store
from tests.cli_forks import ForkedRun

from .conftest import Forks, base_env, kill9, wait_exit

ACK = re.compile(r"indexed: (.+) \(video (\d+),")

# (index, acknowledged path -> video id) -> every stored path -> video id; raises when wrong
Check = Callable[[Path, dict[str, int]], dict[str, int]]


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


def cli_add(
    forks: Forks, corpus_dir: Path, index: Path, ckpt: Path, log: Path, env: dict[str, str] | None = None
) -> ForkedRun:
    """`t2v index add` of the corpus folder with the tiny model, 1 s clips (forked: the process)."""
    argv = ["index", "add", str(corpus_dir), "--index", str(index), "--checkpoint", str(ckpt)]
    return forks.cli([*argv, "--window", "1", "--stride", "1", "--batch-size", "4"], log, env)


def cli_kill_trials(
    forks: Forks,
    corpus: list[Path],
    ckpt: Path,
    work: Path,
    *,
    trials: int,
    seed: int,
    check: Check = check_store,
    env: dict[str, str] | None = None,
    timeout: float = 180,
) -> tuple[list[tuple[float, bool, int]], float]:
    """Calibrate (one uninterrupted add, which must acknowledge every video and pass `check`), then
    `trials` times: add into a fresh index, kill -9 after a seeded 0.3-0.95 of the calibrated time,
    `check` what it left, rerun, and require the rerun to skip every acknowledged video and leave
    the whole corpus. -> ([(delay s, running at the kill, videos acknowledged)], calibrated s)."""
    rng = random.Random(seed)
    corpus_dir = corpus[0].parent
    env = {**base_env(), **env} if env else None

    def add(index: Path, log: Path) -> ForkedRun:
        return cli_add(forks, corpus_dir, index, ckpt, log, env)

    t0 = time.monotonic()
    wait_exit(add(work / "calib", work / "calib.log"), timeout)
    full = time.monotonic() - t0
    calib = acked_lines(work / "calib.log")
    assert len(calib) == len(corpus), (work / "calib.log").read_text()
    check(work / "calib", calib)
    outcomes = []
    for trial in range(trials):
        index, log = work / f"idx{trial}", work / f"add{trial}.log"
        delay = rng.uniform(0.3, 0.95) * full
        run = add(index, log)
        time.sleep(delay)  # a random moment is the point: nothing to wait for
        was_running = run.poll() is None
        kill9(run)
        acked = acked_lines(log)
        if (index / "manifest.json").exists():
            check(index, acked)  # the store as the killed writer left it
        else:  # killed before the store's commit point (its manifest): the store does not exist yet
            assert not acked, "a video was acknowledged before the store existed"
        outcomes.append((round(delay, 2), was_running, len(acked)))
        # the rerun completes the rest, skipping what is already stored
        wait_exit(add(index, work / f"rerun{trial}.log"), timeout)
        rerun = acked_lines(work / f"rerun{trial}.log")
        assert not set(rerun) & set(acked), "a rerun re-indexed an acknowledged video"
        final = check(index, acked)
        assert sorted(final) == sorted(str(p) for p in corpus)
    return outcomes, full


def hits(outcomes: list[tuple[float, bool, int]], videos: int) -> int:
    """Trials whose kill landed mid-ingestion (running, some but not all videos acknowledged)."""
    return sum(1 for _, running, n in outcomes if running and 0 < n < videos)
