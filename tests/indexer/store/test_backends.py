"""Vector backends: the Qdrant backend against the real in-process Qdrant engine (qdrant-edge-py)
and, for the calls a Qdrant cluster receives, qdrant-client's local mode behind a recorder. The
same store searched with FAISS and with Qdrant gives the same top-10 after the exact rerank; a
video is fully present or absent in the engine after deletes and crashes; verify checks both."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from indexer.search.searcher import Searcher
from indexer.store import Store, StoreBusyError
from indexer.store.backends import BackendConfig
from indexer.store.backends.qdrant import SYNC_FILE
from tests.indexer.store.test_store import NV, D, add, identity, query

pytest.importorskip("qdrant_edge")

QDRANT = BackendConfig("qdrant")
ROOT = Path(__file__).resolve().parents[3]


def engine_ids(store: Store) -> list[int]:
    """The clip ids the store's Qdrant engine holds."""
    return store._view.faiss.engine.ids().tolist()  # type: ignore[attr-defined]


def top10(store: Store, queries: list[Any]) -> list[list[tuple[int, float]]]:
    searcher = Searcher(store)
    return [[(m.clip_id, round(m.score, 5)) for m in searcher.search(q, top_k=10).moments] for q in queries]


def test_qdrant_search_equals_faiss_and_deletes_leave_the_engine(tmp_path: Path) -> None:
    rng = np.random.default_rng(10)
    store = Store.open(tmp_path, identity(), create=True, backend=QDRANT)
    vids = [add(store, rng, i, clips=3)[0] for i in range(40)]
    assert store.remove_video(vids[5]) == 3
    gone = store.clips_of(vids[5])
    queries = [query(rng, n) for n in (1, 3, 5, 8)]
    on_qdrant = top10(store, queries)
    assert engine_ids(store) == store.live_clip_ids().tolist()  # the deleted video left the engine
    assert not {c.id for c in gone} & set(engine_ids(store))
    assert store.stats().index == {**store.stats().index, "type": "qdrant"}
    assert store.stats().index_vectors == 39 * 3
    report = store.verify()
    assert report.ok, report.problems
    store.close()
    with Store.open(tmp_path, identity()) as faiss_store:  # the same store, the default backend
        assert top10(faiss_store, queries) == on_qdrant
    assert all(len(hits) == 10 for hits in on_qdrant)


def test_crash_before_export_and_lost_sync_are_caught_up_on_open(tmp_path: Path) -> None:
    rng = np.random.default_rng(11)
    with Store.open(tmp_path, identity(), create=True, backend=QDRANT) as store:
        vids = [add(store, rng, i)[0] for i in range(4)]
    # commits the engine never saw: the state a crash right after the SQLite commit leaves
    with Store.open(tmp_path, identity()) as faiss_only:
        new, _ = add(faiss_only, rng, 9)
        faiss_only.remove_video(vids[0])
    with Store.open(tmp_path, identity(), backend=QDRANT) as store:
        assert engine_ids(store) == store.live_clip_ids().tolist()
        assert {c.id for c in store.clips_of(new)} <= set(engine_ids(store))
        assert store.verify().ok
        stray = rng.normal(size=(1, NV, D)).astype(np.float16)
        store._view.faiss.engine.upsert(np.array([999]), stray, stray[:, 0].astype(np.float32))  # type: ignore[attr-defined]
    # no sync record: the engine's content is unknown to the store, so it is emptied and refilled
    (tmp_path / SYNC_FILE).unlink()
    with Store.open(tmp_path, identity(), backend=QDRANT) as store:
        assert engine_ids(store) == store.live_clip_ids().tolist() and store.verify().ok
    # an engine a crash left unreadable is derived data too: started again empty and refilled
    (tmp_path / "qdrant" / "edge_config.json").write_text("{")
    with Store.open(tmp_path, identity(), backend=QDRANT) as store:
        assert engine_ids(store) == store.live_clip_ids().tolist() and store.verify().ok


@pytest.mark.slow  # a fresh interpreter importing the store (torch): ~10 s on 2 busy cores
def test_killed_writer_leaves_every_video_whole_in_both_places(tmp_path: Path) -> None:
    rng = np.random.default_rng(12)
    with Store.open(tmp_path, identity(), create=True, backend=QDRANT) as store:
        add(store, rng, 0)
    # a writer that commits videos and deletes one, then dies without flushing or closing
    script = textwrap.dedent(
        f"""
        import os, numpy as np
        from indexer.store import Store
        from indexer.store.backends import BackendConfig
        from tests.indexer.store.test_store import add, identity
        store = Store.open({str(tmp_path)!r}, identity(), backend=BackendConfig("qdrant"))
        rng = np.random.default_rng(13)
        ids = [add(store, rng, i)[0] for i in range(1, 6)]
        store.remove_video(ids[2])
        os._exit(0)
        """
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    subprocess.run([sys.executable, "-c", script], check=True, cwd=ROOT, env=env, timeout=120)
    with Store.open(tmp_path, identity(), backend=QDRANT) as store:
        assert store.count_videos() == 5  # 1 + 5 committed - 1 deleted
        assert engine_ids(store) == store.live_clip_ids().tolist()
        report = store.verify()
        assert report.ok, report.problems


def test_verify_reports_engine_disagreement_and_rebuild_repairs_it(tmp_path: Path) -> None:
    rng = np.random.default_rng(14)
    store = Store.open(tmp_path, identity(), create=True, backend=QDRANT)
    for i in range(3):
        add(store, rng, i)
    engine = store._view.faiss.engine  # type: ignore[attr-defined]
    ids = store.live_clip_ids()
    engine.delete([int(ids[0])])
    wrong = rng.normal(size=(1, NV, D)).astype(np.float16)
    engine.upsert(ids[1:2], wrong, wrong[:, 0].astype(np.float32))
    engine.upsert(np.array([999]), wrong, wrong[:, 0].astype(np.float32))
    problems = store.verify().problems
    assert f"clip {ids[0]} is missing from Qdrant" in problems
    assert "Qdrant holds clip 999, which is deleted or unknown" in problems
    assert f"clip {ids[1]}: Qdrant's vectors differ from the matrices" in problems
    store.rebuild_index("flat")  # index types are FAISS's; on Qdrant a rebuild re-exports
    assert store.verify().ok and engine_ids(store) == ids.tolist()
    # compaction keeps clip ids: the engine stays as it is and search goes on
    vid = store.list_videos()[0].id
    store.remove_video(vid)
    assert store.compact()["removed_clips"] == 2
    assert store.verify().ok and engine_ids(store) == store.live_clip_ids().tolist()
    assert Searcher(store).search(query(rng), top_k=3).moments
    store.close()


def test_the_in_process_engine_has_one_opener(tmp_path: Path) -> None:
    with Store.open(tmp_path, identity(), create=True, backend=QDRANT):
        with pytest.raises(StoreBusyError, match="open in another process"):
            Store.open(tmp_path, identity(), backend=QDRANT)
    store = Store.open(tmp_path, identity(), backend=QDRANT)
    del store  # dropped without close (a caller that forgot): the engine and its lock go with it
    with Store.open(tmp_path, identity(), backend=QDRANT) as again:
        assert again.verify().ok


@pytest.mark.slow  # qdrant-client's local mode scores in Python: ~5 s
def test_cluster_contract_calls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What a Qdrant server receives (qdrant-client's local mode answers, a recorder listens)."""
    qdrant_client = pytest.importorskip("qdrant_client")
    from qdrant_client import QdrantClient, models

    calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []

    class Recording(QdrantClient):
        def __init__(self, url: str | None = None, api_key: str | None = None) -> None:
            calls.append(("connect", (url, api_key), {}))
            super().__init__(location=":memory:")

        def __getattribute__(self, name: str) -> Any:
            attr = super().__getattribute__(name)
            if name.startswith("_") or not callable(attr):
                return attr

            def record(*args: Any, **kwargs: Any) -> Any:
                calls.append((name, args, kwargs))
                return attr(*args, **kwargs)

            return record

    monkeypatch.setattr(qdrant_client, "QdrantClient", Recording)
    cluster = BackendConfig(
        "qdrant", qdrant_url="http://qdrant:6333", qdrant_api_key="k", collection="lib", shards=6, replicas=2
    )
    rng = np.random.default_rng(15)
    store = Store.open(tmp_path, identity(), create=True, backend=cluster)
    vids = [add(store, rng, i, clips=3)[0] for i in range(12)]
    store.remove_video(vids[1])
    queries = [query(rng, 4), query(rng, 2)]
    on_cluster = top10(store, queries)
    assert store.verify().ok
    store.close()
    with Store.open(tmp_path, identity()) as faiss_store:
        assert top10(faiss_store, queries) == on_cluster

    by_name: dict[str, list[tuple[tuple[Any, ...], dict[str, Any]]]] = {}
    for name, args, kwargs in calls:
        by_name.setdefault(name, []).append((args, kwargs))
    assert by_name["connect"] == [(("http://qdrant:6333", "k"), {})]
    ((args, kw),) = by_name["create_collection"]
    assert args == ("lib",) and kw["shard_number"] == 6 and kw["replication_factor"] == 2
    rows, pooled = kw["vectors_config"]["set"], kw["vectors_config"]["pooled"]
    assert rows.multivector_config.comparator == models.MultiVectorComparator.MAX_SIM
    assert rows.datatype == models.Datatype.FLOAT16 and rows.distance == models.Distance.DOT
    assert rows.hnsw_config.m == 0 and rows.size == D and pooled.size == D
    upserted = [p for args, kw in by_name["upsert"] for p in kw["points"]]
    assert all(kw["wait"] for _, kw in by_name["upsert"])
    assert sorted(p.id for p in upserted) == sorted(c for v in vids for c in _clip_ids(v))
    assert np.asarray(upserted[0].vector["set"]).shape == (NV, D)
    ((args, kw),) = by_name["delete"]
    assert sorted(kw["points_selector"].points) == sorted(_clip_ids(vids[1])) and kw["wait"]
    args, kw = by_name["query_points"][0]
    assert kw["using"] == "set" and np.asarray(kw["query"]).shape == (4, D)
    assert [p.using for p in kw["prefetch"]] == ["pooled"] * 5  # the pooled query + one per row
    assert kw["with_vectors"] is False


def _clip_ids(video_id: int) -> list[int]:
    """Clip ids of a video in these tests: 3 clips each, ids in commit order."""
    return [3 * (video_id - 1) + c + 1 for c in range(3)]


def test_backend_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """T2V_VECTORS__* become the store's typed BackendConfig; the defaults are the backend's own."""
    from indexer.settings import IndexerSettings

    assert IndexerSettings().vectors.config() == BackendConfig()
    monkeypatch.setenv("T2V_VECTORS__BACKEND", "qdrant")
    monkeypatch.setenv("T2V_VECTORS__QDRANT_URL", "http://q:6333")
    monkeypatch.setenv("T2V_VECTORS__SHARDS", "6")
    config = IndexerSettings().vectors.config()
    assert (config.kind, config.qdrant_url) == ("qdrant", "http://q:6333")
    assert (config.shards, config.replicas) == (6, 1)
    monkeypatch.setenv("T2V_VECTORS__BACKEND", "milvus")
    with pytest.raises(ValueError, match="faiss"):
        IndexerSettings()
