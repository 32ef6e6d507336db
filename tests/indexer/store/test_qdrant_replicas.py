"""Read-only service replicas sharing one Qdrant collection with the writer (docs/SCALING.md,
"Deploying on a Qdrant cluster"): a replica opened on a copy of the writer's store directory with
T2V_VECTORS__WRITE=false answers like the writer, sends the cluster only reads, and a stale copy
never returns what it does not know. qdrant-client's local mode stands in for the cluster, one
instance behind one recorder per connection."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from indexer.store import Store, StoreError
from indexer.store.backends import BackendConfig
from tests.indexer.store.test_backends import top10
from tests.indexer.store.test_store import add, identity, query

pytestmark = pytest.mark.slow  # qdrant-client's local mode scores in Python: ~5 s

READS = {"collection_exists", "query_points", "scroll", "retrieve", "close"}


def test_read_only_replicas_share_the_writers_collection(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    qdrant_client = pytest.importorskip("qdrant_client")
    cluster = qdrant_client.QdrantClient(location=":memory:")
    connections: list[list[str]] = []  # the method names each connection called

    class Connection:
        """One service process's client: every call recorded, then answered by the one cluster."""

        def __init__(self, url: str | None = None, api_key: str | None = None) -> None:
            self.calls: list[str] = []
            connections.append(self.calls)

        def __getattr__(self, name: str) -> Any:
            self.calls.append(name)
            if name == "close":  # the cluster outlives its clients
                return lambda: None
            return getattr(cluster, name)

    monkeypatch.setattr(qdrant_client, "QdrantClient", Connection)
    writer_config = BackendConfig("qdrant", qdrant_url="http://qdrant:6333", collection="lib")
    replica_config = replace(writer_config, write=False)
    rng = np.random.default_rng(21)

    # a replica before the writer ever created the collection: refused, and nothing created
    (tmp_path / "early").mkdir()
    Store.open(tmp_path / "early", identity(), create=True).close()
    with pytest.raises(StoreError, match="never creates it"):
        Store.open(tmp_path / "early", identity(), backend=replica_config)
    assert not cluster.collection_exists("lib")

    writer = Store.open(tmp_path / "writer", identity(), create=True, backend=writer_config)
    vids = [add(writer, rng, i, clips=3)[0] for i in range(10)]
    writer.flush()
    shutil.copytree(tmp_path / "writer", tmp_path / "replica")  # the replica host's copy
    replica = Store.open(tmp_path / "replica", identity(), backend=replica_config)
    queries = [query(rng, 4), query(rng, 2)]
    assert top10(replica, queries) == top10(writer, queries)

    # the writer deletes a video and adds one; the replica's copy of the store is now stale
    gone = {c.id for c in writer.clips_of(vids[3])}
    writer.remove_video(vids[3])
    new_vid, new_mats = add(writer, rng, 10, clips=3)
    new = {c.id for c in writer.clips_of(new_vid)}
    writer.flush()
    near_new = [query(rng, 2)]
    near_new[0].vectors[0, 0] = near_new[0].vectors.new_tensor(new_mats[0, 0].astype(np.float32))
    assert {c for c, _ in top10(writer, near_new)[0]} & new  # the writer finds the new video
    for hits in top10(replica, [*queries, *near_new]):
        got = {c for c, _ in hits}
        assert not got & gone  # the deleted video left the shared collection
        assert not got & new  # unknown to the replica's SQLite: filtered out, never an error
        assert len(got) == 10
    replica.close()
    writer.close()

    replica_calls = connections[-1]
    assert len(connections) == 3  # the refused replica, the writer, the replica
    assert set(connections[0]) <= READS
    assert replica_calls and set(replica_calls) <= READS, replica_calls
    assert {"create_collection", "upsert", "delete"} <= set(connections[1])
