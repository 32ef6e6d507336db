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


POLL = 0.005  # s between reads of a run's log: well under one video's ingestion (~0.1 s here)


def watch(run: ForkedRun, log: Path, t0: float, until: int, timeout: float) -> list[float]:
    """Follow `run`'s log until it has acknowledged `until` videos or has ended: the moments
    (s after `t0`) each acknowledgement was seen. Killed and failed after `timeout` s."""
    seen: list[float] = []
    deadline = t0 + timeout
    while True:
        ended = run.poll() is not None  # before the read: a run that ended has written everything
        now = time.monotonic()
        n = len(acked_lines(log))
        seen += [now - t0] * (n - len(seen))
        if n >= until or ended:
            return seen
        if now > deadline:
            kill9(run)
            raise AssertionError(f"`t2v index add` still running after {timeout}s: {log.read_text()[-2000:]}")
        time.sleep(POLL)


def per_video(seen: list[float]) -> float:
    """Mean seconds between acknowledgements (videos finish in bursts: a batch of clips may end two)."""
    return (seen[-1] - seen[0]) / (len(seen) - 1)


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
) -> tuple[list[tuple[int, float, bool, int]], float]:
    """Calibrate (one uninterrupted add, which must acknowledge every video and pass `check`), then
    `trials` times: add into a fresh index, kill -9 it, `check` what it left, rerun, and require the
    rerun to skip every acknowledged video and leave the whole corpus.

    Where each kill lands is decided by what the run has done, not by a clock calibrated under
    another load: the first trial kills during start-up (a seeded 0.3-1.0 of the calibrated time to
    the first acknowledgement: store creation, model load, the first video), every other one waits
    until the run has acknowledged a seeded 1..videos-4 videos and kills a seeded 0-1 of this run's
    mean time per video later (the calibration's while it has seen only one), i.e. inside the next
    videos.
    -> ([(acknowledgements waited for, s after the last of them or after the start, running at the
    kill, videos acknowledged)], calibrated s)."""
    rng = random.Random(seed)
    corpus_dir = corpus[0].parent
    env = {**base_env(), **env} if env else None
    videos = len(corpus)

    def add(index: Path, log: Path) -> ForkedRun:
        return cli_add(forks, corpus_dir, index, ckpt, log, env)

    t0 = time.monotonic()
    run = add(work / "calib", work / "calib.log")
    calib_seen = watch(run, work / "calib.log", t0, videos + 1, timeout)
    wait_exit(run, timeout)
    full = time.monotonic() - t0
    calib = acked_lines(work / "calib.log")
    assert len(calib) == len(corpus) == len(calib_seen), (work / "calib.log").read_text()
    check(work / "calib", calib)
    print(f"\ncalibration: acknowledgements at {[round(t, 2) for t in calib_seen]}, exit {full:.2f}s")
    outcomes = []
    for trial in range(trials):
        index, log = work / f"idx{trial}", work / f"add{trial}.log"
        t0 = time.monotonic()
        run = add(index, log)
        if trial == 0:
            target, delay = 0, rng.uniform(0.3, 1.0) * calib_seen[0]
        else:
            target = rng.randint(1, videos - 4)  # the kill window spans ~1 video; bursts end 2-3
            seen = watch(run, log, t0, target, timeout)
            step = per_video(seen) if len(seen) > 1 else per_video(calib_seen)
            delay = rng.uniform(0.0, 1.0) * step
        time.sleep(delay)  # a random moment inside the work is the point: nothing to wait for
        was_running = run.poll() is None
        kill9(run)
        acked = acked_lines(log)
        if (index / "manifest.json").exists():
            check(index, acked)  # the store as the killed writer left it
        else:  # killed before the store's commit point (its manifest): the store does not exist yet
            assert not acked, "a video was acknowledged before the store existed"
        outcomes.append((target, round(delay, 3), was_running, len(acked)))
        # the rerun completes the rest, skipping what is already stored
        wait_exit(add(index, work / f"rerun{trial}.log"), timeout)
        rerun = acked_lines(work / f"rerun{trial}.log")
        assert not set(rerun) & set(acked), "a rerun re-indexed an acknowledged video"
        final = check(index, acked)
        assert sorted(final) == sorted(str(p) for p in corpus)
    return outcomes, full


def hits(outcomes: list[tuple[int, float, bool, int]], videos: int) -> int:
    """Trials whose kill landed mid-ingestion (running, some but not all videos acknowledged)."""
    return sum(1 for _, _, running, n in outcomes if running and 0 < n < videos)
