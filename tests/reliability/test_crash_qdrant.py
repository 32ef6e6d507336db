"""kill -9 during `t2v index add` with the Qdrant backend on (T2V_VECTORS__BACKEND=qdrant, the
in-process engine): after each kill every acknowledged video is whole in SQLite, the matrices and
the engine, nothing is half-present in either, `verify` checks both, and a rerun completes."""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest

from indexer.store import Store
from indexer.store.backends import BackendConfig

from .conftest import Zygote, base_env, kill9, pid_alive, wait_exit
from .test_crash import acked_lines, check_store

pytest.importorskip("qdrant_edge")
pytestmark = pytest.mark.slow  # kill -9 trials

TRIALS = 4
SEED = 20261202


def add(zygote: Zygote, corpus_dir: Path, index: Path, ckpt: Path, log: Path) -> int:
    argv = ["index", "add", str(corpus_dir), "--index", str(index), "--checkpoint", str(ckpt)]
    env = {**base_env(), "T2V_VECTORS__BACKEND": "qdrant"}
    return zygote.cli([*argv, "--window", "1", "--stride", "1", "--batch-size", "4"], log, env)


def check_engine(index: Path, acked: dict[str, int]) -> None:
    """The engine holds exactly the live clips (every clip of every stored video), and verify of
    the store with the backend on (engine ids and a sample of its vectors) passes."""
    with Store.open(index, backend=BackendConfig("qdrant")) as store:
        report = store.verify()
        assert report.ok, report.problems
        held = store._view.faiss.engine.ids().tolist()  # type: ignore[attr-defined]
        assert held == store.live_clip_ids().tolist()
        for vid in acked.values():
            assert {c.id for c in store.clips_of(vid)} <= set(held)


def test_kill9_during_cli_add_with_qdrant(
    zygote: Zygote, corpus: list[Path], tiny_ckpt: Path, tmp_path: Path
) -> None:
    rng = random.Random(SEED)
    corpus_dir = corpus[0].parent
    t0 = time.monotonic()
    pid = add(zygote, corpus_dir, tmp_path / "calib", tiny_ckpt, tmp_path / "calib.log")
    wait_exit(pid, 300)
    full = time.monotonic() - t0
    assert len(acked_lines(tmp_path / "calib.log")) == len(corpus), (tmp_path / "calib.log").read_text()
    check_engine(tmp_path / "calib", acked_lines(tmp_path / "calib.log"))
    outcomes = []
    for trial in range(TRIALS):
        index, log = tmp_path / f"idx{trial}", tmp_path / f"add{trial}.log"
        delay = rng.uniform(0.3, 0.95) * full
        pid = add(zygote, corpus_dir, index, tiny_ckpt, log)
        time.sleep(delay)
        was_running = pid_alive(pid)
        kill9(pid)
        acked = acked_lines(log)
        if (index / "manifest.json").exists():
            check_engine(index, acked)  # first: the engine as the killed writer left it
            check_store(index, acked)
        outcomes.append((round(delay, 2), was_running, len(acked)))
        pid = add(zygote, corpus_dir, index, tiny_ckpt, tmp_path / f"rerun{trial}.log")
        wait_exit(pid, 300)
        assert not set(acked_lines(tmp_path / f"rerun{trial}.log")) & set(acked)
        check_engine(index, acked)
        assert sorted(check_store(index, acked)) == sorted(str(p) for p in corpus)
    print(f"\nqdrant cli kill -9 trials (delay s, running at kill, acknowledged): {outcomes} / {full:.1f}s")
    assert sum(1 for _, running, n in outcomes if running and 0 < n < len(corpus)) >= 1, outcomes
