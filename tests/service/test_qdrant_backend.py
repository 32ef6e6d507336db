"""The service with stage 1 on Qdrant (T2V_VECTORS__BACKEND=qdrant, the in-process engine): ingest,
search and delete over HTTP; afterwards the store and the engine agree (verify checks both)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from indexer.store import Store
from indexer.store.backends import BackendConfig
from tests.support import Server, server_settings, wait_job

pytest.importorskip("qdrant_edge")


@pytest.mark.slow  # a server process and three ingestions
def test_service_searches_and_deletes_through_qdrant(tmp_path: Path, colour_videos: dict[str, Path]) -> None:
    root = colour_videos["red"].parent
    settings = server_settings(tmp_path, root, vectors__backend="qdrant")
    server = Server(tmp_path, settings).start()
    try:
        with server.client() as c:
            paths = [str(colour_videos[k]) for k in ("red", "green", "blue")]
            job = wait_job(c, c.post("/v1/ingest", json={"paths": paths}).json()["id"])
            ids = [it["video_id"] for it in job["items"]]
            assert [it["state"] for it in job["items"]] == ["done"] * 3, job
            clips = sum(c.get(f"/v1/videos/{v}").json()["clips"] for v in ids)

            def found() -> list[tuple[int, float]]:
                res = c.post("/v1/search", json={"query": "a coloured square", "top_k": 100}).json()
                return [(m["video_id"], m["start"]) for m in res["results"]]

            hits = found()
            assert len(hits) == len(set(hits)) == clips  # every clip once: a small store is all candidates
            assert c.delete(f"/v1/videos/{ids[1]}").status_code == 200
            after = found()
            assert {v for v, _ in after} == {ids[0], ids[2]}
            assert sorted(after) == sorted(h for h in hits if h[0] != ids[1])
    finally:
        server.stop()
    assert (tmp_path / "index" / "qdrant").is_dir()
    with Store.open(tmp_path / "index", backend=BackendConfig("qdrant")) as store:
        report = store.verify()
        assert report.ok, report.problems
        held = store._view.faiss.engine.ids()  # type: ignore[attr-defined]
        np.testing.assert_array_equal(held, store.live_clip_ids())
