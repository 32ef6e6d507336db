"""The in-process engine after a bulk export: the shard's files are read into the page cache
before the optimiser copies them (EdgeEngine._warm), and the store stays right."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from indexer.store import Store
from tests.indexer.store.test_backends import QDRANT, engine_ids, top10
from tests.indexer.store.test_store import add, identity, query

pytest.importorskip("qdrant_edge")
from indexer.store.backends import qdrant  # noqa: E402


def test_bulk_export_reads_the_shard_before_optimising(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    warmed: list[int] = []
    real_warm = qdrant.EdgeEngine._warm

    def warm(self: qdrant.EdgeEngine) -> None:
        warmed.append(self._pending)
        real_warm(self)

    monkeypatch.setattr(qdrant, "_WARM_POINTS", 6)
    monkeypatch.setattr(qdrant.EdgeEngine, "_warm", warm)
    rng = np.random.default_rng(22)
    with Store.open(tmp_path, identity(), create=True) as store:  # the engine is filled when it first opens
        for i in range(4):
            add(store, rng, i, clips=3)
    with Store.open(tmp_path, identity(), backend=QDRANT) as store:
        store.flush()
        assert warmed == [12]  # the bulk export of 12 points, once
        add(store, rng, 4, clips=3)
        store.flush()
        assert warmed == [12]  # 3 points: optimised without reading the files first
        assert engine_ids(store) == store.live_clip_ids().tolist()
        assert store.verify().ok
        queries = [query(rng, 3), query(rng, 5)]
        on_qdrant = top10(store, queries)
    with Store.open(tmp_path, identity()) as store:
        assert top10(store, queries) == on_qdrant
