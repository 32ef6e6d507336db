"""A store written by the store code before it was split into parts (commit 1e5c9f1, the
single-file facade) opens with today's code, reads back the same, verifies clean and takes writes.

The store and what the old code read from it are under data/ (make_v1_store.py made them).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from indexer.store import MANIFEST, ClipSpan, NewVideo, Store

DATA = Path(__file__).parent / "data"


@pytest.fixture
def old_store(tmp_path: Path) -> Path:
    root = tmp_path / "store"
    shutil.copytree(DATA / "v1-store", root)
    return root


def expected() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((DATA / "v1-expected.json").read_text())
    return data


def recorded_identity(root: Path) -> dict[str, Any]:
    identity: dict[str, Any] = json.loads((root / MANIFEST).read_text())["model"]
    return identity


def unit(rng: np.random.Generator, clips: int, vectors: int, dim: int) -> np.ndarray:
    x = rng.normal(size=(clips, vectors, dim))
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def test_old_store_reads_back_the_same(old_store: Path) -> None:
    exp = expected()
    arrays = np.load(DATA / "v1-expected.npz")
    with Store.open(old_store, recorded_identity(old_store)) as store:
        report = store.verify()
        assert report.ok, report.problems
        stats = store.stats().to_dict()
        assert {k: v for k, v in stats.items() if k not in ("path", "disk_bytes")} == exp["stats"]
        assert [v.to_dict() for v in store.list_videos(limit=100)] == exp["videos"]
        assert store.count_videos() == len(exp["videos"]) and store.count_videos("video 5") == 1
        for vid, clips in exp["clips"].items():
            assert [c.__dict__ for c in store.clips_of(int(vid))] == clips
        for vid in exp["removed_video_ids"]:
            assert store.get_video(vid) is None and store.clips_of(vid) == []
        # the reads search makes: stage 1 candidates, the live filter (tombstones), exact matrices
        live = store.live_clip_ids()
        np.testing.assert_array_equal(live, arrays["live_clip_ids"])
        np.testing.assert_array_equal(store.matrices(live), arrays["matrices"])
        scores, ids = store.candidates(arrays["queries"], 8)
        np.testing.assert_array_equal(ids, arrays["candidate_ids"])
        np.testing.assert_allclose(scores, arrays["candidate_scores"], rtol=1e-6)
        assert set(store.filter_live(ids.ravel()).tolist()) == set(ids.ravel().tolist()) & set(live.tolist())
        records = store.clip_records(live.tolist())
        assert [r.id for r in records] == live.tolist()


def test_old_store_takes_writes_and_reopens(old_store: Path) -> None:
    exp = expected()
    identity = recorded_identity(old_store)
    old_manifest = json.loads((old_store / MANIFEST).read_text())
    arrays = np.load(DATA / "v1-expected.npz")
    dim, per_clip = int(identity["dim"]), int(identity["vectors_per_clip"])
    mats = unit(np.random.default_rng(5), 3, per_clip, dim)
    gone = exp["videos"][0]["id"]
    with Store.open(old_store, identity) as store:
        spans = [ClipSpan(0.0, 5.0), ClipSpan(5.0, 10.0), ClipSpan(10.0, 15.0)]
        new_id = store.add_video(
            NewVideo("/v/new.mp4", "new", "hash-new", 15.0, 25.0, 64, 48, "h264", 1), spans, mats
        )
        assert store.remove_video(gone) == len(exp["clips"][str(gone)])
        assert store.find_duplicate("hash0") is None and store.find_duplicate("hash-new") is not None
    # the files keep the documented names and the manifest its keys
    assert sorted(p.name for p in (old_store / "matrices").iterdir()) == ["seg-g1-000001.f16"]
    assert sorted(p.name for p in old_store.glob("faiss-g*.index")) == ["faiss-g1.index"]
    assert set(json.loads((old_store / MANIFEST).read_text())) == set(old_manifest)
    for name in (MANIFEST, "faiss-g1.index"):  # rewritten atomically, readable by as many as before
        assert (old_store / name).stat().st_mode & 0o777 == (old_store / "meta.sqlite").stat().st_mode & 0o777

    with Store.open(old_store, identity) as store:
        assert store.verify().ok
        kept = [v["id"] for v in exp["videos"][1:]]
        assert [v.id for v in store.list_videos(limit=100)] == [*kept, new_id]
        np.testing.assert_allclose(
            store.matrices(store.live_clip_ids([new_id])).astype(np.float32), mats, atol=1e-3
        )
        old_live = store.live_clip_ids(kept)
        rows = np.isin(arrays["live_clip_ids"], old_live)
        np.testing.assert_array_equal(store.matrices(old_live), arrays["matrices"][rows])
        stats = store.stats()
        removed = len(exp["clips"][str(gone)])
        assert stats.clips == exp["stats"]["clips"] - removed + 3
        assert stats.deleted_clips == exp["stats"]["deleted_clips"] + removed
        out = store.compact()
        assert out["generation"] == 2 and out["live_clips"] == stats.clips and store.verify().ok
    with Store.open(old_store, identity) as store:
        assert store.stats().generation == 2 and store.verify().ok
        assert [v.id for v in store.list_videos(limit=100)] == [*kept, new_id]
