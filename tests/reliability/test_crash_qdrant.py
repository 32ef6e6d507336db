"""kill -9 during `t2v index add` with the Qdrant backend on (T2V_VECTORS__BACKEND=qdrant, the
in-process engine): after each kill every acknowledged video is whole in SQLite, the matrices and
the engine, nothing is half-present in either, `verify` checks both, and a rerun completes."""

from __future__ import annotations

from pathlib import Path

import pytest

from indexer.store import Store
from indexer.store.backends import BackendConfig

from .conftest import Forks
from .kill_trials import check_store, cli_kill_trials, hits

pytest.importorskip("qdrant_edge")
pytestmark = pytest.mark.slow  # kill -9 trials

TRIALS = 4
SEED = 20261202


def check_both(index: Path, acked: dict[str, int]) -> dict[str, int]:
    """The engine first, as the killed writer left it (opening the store without the backend
    would not touch it): it holds exactly the live clips (every clip of every stored video) and
    verify with the backend on (engine ids and a sample of its vectors) passes; then the store's
    own checks."""
    with Store.open(index, backend=BackendConfig("qdrant")) as store:
        report = store.verify()
        assert report.ok, report.problems
        held = store._view.faiss.engine.ids().tolist()  # type: ignore[attr-defined]
        assert held == store.live_clip_ids().tolist()
        for vid in acked.values():
            assert {c.id for c in store.clips_of(vid)} <= set(held)
    return check_store(index, acked)


def test_kill9_during_cli_add_with_qdrant(
    forks: Forks, corpus: list[Path], tiny_ckpt: Path, tmp_path: Path
) -> None:
    env = {"T2V_VECTORS__BACKEND": "qdrant"}
    outcomes, full = cli_kill_trials(
        forks, corpus, tiny_ckpt, tmp_path, trials=TRIALS, seed=SEED, check=check_both, env=env, timeout=300
    )
    what = "acks waited for, +s, running at kill, acknowledged"
    print(f"\nqdrant cli kill -9 trials ({what}): {outcomes} / {full:.1f}s")
    assert hits(outcomes, len(corpus)) >= 2, outcomes
