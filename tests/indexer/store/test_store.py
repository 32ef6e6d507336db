"""Store and search units on random unit vectors (no model): crash states, readers, deletion, recall."""

from __future__ import annotations

import fcntl
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from indexer.ingest.pipeline import clip_windows, expand_paths
from indexer.search.searcher import Searcher
from indexer.store import (
    ClipSpan,
    ModelMismatchError,
    NewVideo,
    Store,
    StoreError,
    VideoNotInStoreError,
)
from indexer.store import vector_index as vi
from model import TextSets

D, NV = 16, 6


def identity(weights: str = "checkpoint:abc") -> dict[str, Any]:
    return {
        "config": {"backbone": "x", "tau": 100.0, "frames": 4, "num_tokens": 2, "name": "t"},
        "checkpoint_sha256": weights.split(":")[-1],
        "dim": D,
        "frames": 4,
        "num_tokens": 2,
        "vectors_per_clip": NV,
        "weights": weights,
    }


def unit(rng: np.random.Generator, *shape: int) -> np.ndarray:
    x = rng.normal(size=(*shape, D))
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def video(i: int) -> NewVideo:
    return NewVideo(f"/v/{i}.mp4", f"video {i}", f"hash{i}", 10.0, 25.0, 64, 48, "h264", 1000)


def add(store: Store, rng: np.random.Generator, i: int, clips: int = 2) -> tuple[int, np.ndarray]:
    mats = unit(rng, clips, NV)
    spans = [ClipSpan(5.0 * c, 5.0 * c + 5) for c in range(clips)]
    return store.add_video(video(i), spans, mats), mats


def query(rng: np.random.Generator, n: int = 3) -> TextSets:
    return TextSets(vectors=torch.from_numpy(unit(rng, 1, n)), mask=torch.ones(1, n, dtype=torch.bool))


def test_rows_round_trip_and_open_errors(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(StoreError, match="not a video store"):
        Store.open(tmp_path / "nothing")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(StoreError, match="not empty"):
        Store.open(tmp_path / "busy", identity(), create=True)
    store = Store.open(tmp_path / "s", identity(), create=True)
    vid, mats = add(store, rng, 1, clips=3)
    ids = store.live_clip_ids([vid])
    np.testing.assert_allclose(store.matrices(ids).astype(np.float32), mats, atol=1e-3)
    store.close()
    with pytest.raises(ModelMismatchError, match="weights: store has 'checkpoint:abc'.*reindex"):
        Store.open(tmp_path / "s", identity("checkpoint:other"))
    with Store.open(tmp_path / "s", identity()) as again:  # the same model is welcome
        assert again.get_video(vid) is not None and again.stats().clips == 3


def test_crash_leftovers_are_repaired_on_open(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    store = Store.open(tmp_path, identity(), create=True)
    kept = [add(store, rng, i) for i in range(3)]
    store.flush()
    seg = next((tmp_path / "matrices").iterdir())
    committed_size = seg.stat().st_size
    # a writer killed after appending rows but before its commit, plus stray files
    with open(seg, "ab") as f:
        f.write(b"\x01" * (NV * D * 2 * 2 + 7))
    (tmp_path / "matrices" / "seg-g0-000099.f16").write_bytes(b"\x00" * 100)
    (tmp_path / ".manifest.json.tmp").write_text("{")
    del store  # no close: the process died

    store = Store.open(tmp_path, identity())
    assert seg.stat().st_size == committed_size
    assert sorted(p.name for p in (tmp_path / "matrices").iterdir()) == [seg.name]
    assert not (tmp_path / ".manifest.json.tmp").exists()
    report = store.verify()
    assert report.ok, report.problems
    vid, mats = add(store, rng, 9)  # appends land right after the committed rows
    np.testing.assert_allclose(store.matrices(store.live_clip_ids([vid])).astype(np.float32), mats, atol=1e-3)
    for v, m in kept:
        np.testing.assert_allclose(store.matrices(store.live_clip_ids([v])).astype(np.float32), m, atol=1e-3)
    store.close()


def test_commits_missing_from_saved_faiss_are_caught_up(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    store = Store.open(tmp_path, identity(), create=True)
    for i in range(3):
        add(store, rng, i)
    store.flush()  # the index file holds 6 clips
    for i in range(3, 5):
        add(store, rng, i)  # committed, never flushed
    other = Store.open(tmp_path, identity())
    assert other.stats().index_vectors == 10 * NV
    assert other.verify().ok
    other.close()
    store.close()
    # a torn index file (crash while writing it outside the atomic rename) is rebuilt
    index_file = next(tmp_path.glob("faiss-g*.index"))
    index_file.write_bytes(b"garbage")
    with Store.open(tmp_path, identity()) as third:
        assert third.stats().index_vectors == 10 * NV and third.verify().ok


def test_a_reader_closes_at_once_while_a_writer_holds_the_lock(tmp_path: Path) -> None:
    """A reader (`t2v search`) that only caught up with another process's commits has nothing to
    save: its close does not wait for the write lock a long writer (a compaction, an upgrade's
    training) holds; it waited up to 120 s, then raised, and the search printed nothing."""
    rng = np.random.default_rng(3)
    writer = Store.open(tmp_path, identity(), create=True)
    for i in range(4):
        add(writer, rng, i)  # committed, not flushed: the reader catches them up
    with open(tmp_path / "write.lock", "a+") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # another writer's long operation
        reader = Store.open(tmp_path, identity())
        assert reader.stats().clips == 8
        closing = threading.Thread(target=reader.close, daemon=True)
        closing.start()
        closing.join(30)
        assert not closing.is_alive(), "the reader's close waited for the write lock"
    writer.close()
    with Store.open(tmp_path, identity()) as again:  # the writer saved its own commits
        assert again.stats().index_vectors == 8 * NV and again.verify().ok


def test_an_index_file_of_other_keys_is_rebuilt_even_when_a_writer_holds_the_lock(tmp_path: Path) -> None:
    """One pooled row per clip saved where the store keeps every row (the same FAISS structure): an
    opener that cannot run the open-time check (a writer holds the lock) rebuilds it from the
    matrices instead of serving it."""
    rng = np.random.default_rng(8)
    with Store.open(tmp_path, identity(), create=True) as store:
        for i in range(5):
            add(store, rng, i)
        store.flush()
        assert store.index_spec.type == "flat"
        pooled = vi.build_index(vi.IndexSpec("global"), D)
        vi.add_clips(pooled, store.live_clip_ids(), store.matrices(store.live_clip_ids()), pooled=True)
        vi.write_atomic(pooled, next(tmp_path.glob("faiss-g*.index")))
    with open(tmp_path / "write.lock", "a+") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        with Store.open(tmp_path, identity()) as reader:
            assert reader.stats().index_vectors == 10 * NV
    with Store.open(tmp_path, identity()) as free:  # may write: saves the rebuilt index, says so
        assert any("FAISS index rebuilt" in r for r in free.repairs) and free.verify().ok
    with Store.open(tmp_path, identity()) as again:
        assert again.repairs == [] and again.stats().index_vectors == 10 * NV


def test_verify_reports_disagreement(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    store = Store.open(tmp_path, identity(), create=True)
    add(store, rng, 1)
    store.close()
    seg = next((tmp_path / "matrices").iterdir())
    data = bytearray(seg.read_bytes())
    data[:64] = b"\x00" * 64  # zero part of the first row
    seg.write_bytes(bytes(data))
    with Store.open(tmp_path) as s:
        report = s.verify()
    assert not report.ok and any("not unit vectors" in p for p in report.problems)


def test_readers_see_commits_and_deletions_at_once(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    writer = Store.open(tmp_path, identity(), create=True)
    reader = Store.open(tmp_path, identity())
    searcher = Searcher(reader)
    assert len(reader.live_clip_ids()) == 0
    vid, mats = add(writer, rng, 1, clips=1)
    q = TextSets(vectors=torch.from_numpy(mats[:, :3].copy()), mask=torch.ones(1, 3, dtype=torch.bool))
    hits = searcher.search(q, top_k=5)
    assert [m.video_id for m in hits.moments] == [vid]
    assert writer.remove_video(vid) == 1
    assert searcher.search(q, top_k=5).moments == []
    with pytest.raises(VideoNotInStoreError):
        writer.remove_video(vid)
    assert reader.get_video(vid) is None and reader.count_videos() == 0
    writer.close()
    reader.close()


def test_duplicate_content_is_refused_atomically(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    with Store.open(tmp_path, identity(), create=True) as store:
        add(store, rng, 1)
        with pytest.raises(StoreError, match="already indexed"):
            add(store, rng, 1)
        assert store.count_videos() == 1 and store.stats().clips == 2
        assert store.find_duplicate("hash1") is not None
        assert store.verify().ok


def test_search_while_writing_from_threads(tmp_path: Path) -> None:
    rng = np.random.default_rng(6)
    store = Store.open(tmp_path, identity(), create=True)
    searcher = Searcher(store)
    errors: list[BaseException] = []
    stop = threading.Event()
    q = query(np.random.default_rng(60))

    def reader() -> None:
        try:
            while not stop.is_set():
                scores = [m.score for m in searcher.search(q, top_k=5).moments]
                assert scores == sorted(scores, reverse=True)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    for i in range(20):
        add(store, rng, i)
    stop.set()
    for t in threads:
        t.join()
    assert not errors
    assert store.verify().ok and store.stats().clips == 40
    store.close()


def test_search_filters_grouping_and_two_stage_recall(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    store = Store.open(tmp_path, identity(), create=True)
    for i in range(300):
        add(store, rng, i, clips=3)
    searcher = Searcher(store, candidates_per_vector=100)
    found = total = 0
    for _ in range(10):
        q = query(rng)
        ids, exact = searcher.exhaustive_scores(q)
        top = set(ids[np.argsort(-exact[0])[:10]].tolist())
        got = {m.clip_id for m in searcher.search(q, top_k=10).moments}
        found += len(top & got)
        total += 10
    assert found / total >= 0.9
    q = query(rng)
    some = [v.id for v in store.list_videos(limit=3)]
    res = searcher.search(q, top_k=10, video_ids=some)
    assert {m.video_id for m in res.moments} <= set(some) and len(res.moments) == 9
    grouped = searcher.search(q, top_k=4, group_by_video=True, moments_per_video=2)
    assert grouped.groups is not None and len(grouped.groups) == 4
    assert all(1 <= len(g.moments) <= 2 and g.score == g.moments[0].score for g in grouped.groups)
    cut = res.moments[4].score
    assert all(m.score >= cut for m in searcher.search(q, top_k=10, video_ids=some, min_score=cut).moments)
    store.close()


def test_compact_to_ivf_keeps_search_working(tmp_path: Path) -> None:
    rng = np.random.default_rng(8)
    store = Store.open(tmp_path, identity(), create=True)
    vids = [add(store, rng, i, clips=4)[0] for i in range(200)]
    for v in vids[:50]:
        store.remove_video(v)
    out = store.compact("ivf")
    assert out["removed_clips"] == 200 and out["index"]["type"] == "ivf"
    assert store.verify().ok
    store.close()
    with Store.open(tmp_path, identity()) as s:
        assert s.stats().index["type"] == "ivf" and s.stats().clips == 600
        ids = s.live_clip_ids([vids[60]])
        q = TextSets(vectors=torch.from_numpy(s.matrices(ids[:1]).astype(np.float32)[:, :3]),
                     mask=torch.ones(1, 3, dtype=torch.bool))  # fmt: skip
        assert Searcher(s).search(q, top_k=1).moments[0].clip_id == int(ids[0])


def test_a_pinned_ivf_type_with_too_few_clips_never_leaves_the_store_unopenable(tmp_path: Path) -> None:
    """Compacting to an IVF type whose lists the live clips cannot train is refused before anything
    is rewritten (it committed the new generation, then every open failed training). A store pinned
    to an IVF type while it has too few clips (created so, or by older code) opens and searches
    exactly, and trains the pinned type once it has grown enough."""
    rng = np.random.default_rng(4)
    store = Store.open(tmp_path / "a", identity(), create=True)
    ids = [add(store, rng, i, clips=1)[0] for i in range(5)]
    for vid in ids[1:]:
        store.remove_video(vid)
    generation = store.stats().generation
    with pytest.raises(StoreError, match="too few to train a 'global-ivf' index"):
        store.compact("global-ivf")
    assert store.stats().generation == generation and store.stats().clips == 1
    store.close()
    with Store.open(tmp_path / "a", identity()) as again:
        assert again.verify().ok and again.index_spec.type != "global-ivf"

    pinned = Store.open(tmp_path / "b", identity(), create=True, index_type="ivf-sq8")  # nothing to train on
    rng = np.random.default_rng(5)
    _, first = add(pinned, rng, 0, clips=1)
    hit = Searcher(pinned).search(
        TextSets(vectors=torch.from_numpy(first[:, :2]), mask=torch.ones(1, 2, dtype=torch.bool)), top_k=1
    )
    assert hit.moments[0].video_id == 1
    pinned.close()
    with Store.open(tmp_path / "b", identity()) as b:  # reopens; grows until the lists can train
        assert b.index_spec.type == "ivf-sq8"
        for i in range(1, 40):
            add(b, rng, i, clips=2)
        assert vi.matches(b._faiss.index, b.index_spec) and b.index_spec.type == "ivf-sq8"
        assert b.verify().ok


def test_compacting_a_pinned_store_keeps_its_type(tmp_path: Path) -> None:
    """`t2v index compact` without a type on a pinned store keeps the pinned type (it chose one by
    size and kept the pin, freezing the store on a type it never asked for)."""
    rng = np.random.default_rng(6)
    store = Store.open(tmp_path, identity(), create=True)
    ids = [add(store, rng, i)[0] for i in range(30)]
    store.compact("hnsw")
    store.remove_video(ids[0])
    out = store.compact()
    assert out["index"]["type"] == "hnsw" and store.index_spec.type == "hnsw"
    store.close()
    with Store.open(tmp_path, identity()) as again:
        assert again.index_spec.type == "hnsw" and again.stats().clips == 58 and again.verify().ok


def test_another_openers_flush_keeps_a_pin_made_meanwhile(tmp_path: Path) -> None:
    """The service has the store open while `t2v index compact --index-type` (or rebuild_index)
    pins it: the service's next flush saves the pinned index, it wrote its own stale one over it."""
    rng = np.random.default_rng(7)
    a = Store.open(tmp_path, identity(), create=True)
    for i in range(30):
        add(a, rng, i)
    a.flush()
    b = Store.open(tmp_path, identity())
    assert b.index_spec.type == "flat"
    a.rebuild_index("hnsw")
    a.close()
    b.flush()
    b.close()
    with Store.open(tmp_path, identity()) as c:
        assert c.index_spec.type == "hnsw" and c._faiss.manifest.get("index_pinned") is True
        assert c.verify().ok


def test_clip_windows() -> None:
    assert clip_windows(3.0, 10, 5) == [ClipSpan(0.0, 3.0)]
    assert clip_windows(10.0, 10, 5) == [ClipSpan(0.0, 10.0)]
    spans = clip_windows(22.0, 10, 5)
    assert [(s.start, s.end) for s in spans] == [(0, 10), (5, 15), (10, 20), (12, 22)]
    with pytest.raises(ValueError, match="unsearchable"):
        clip_windows(30.0, 5, 10)


def test_expand_paths_folders_and_manifests(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "x.mp4").write_bytes(b"1")
    (tmp_path / "a" / "b" / "y.mp4").write_bytes(b"2")
    (tmp_path / "a" / ".hidden.mp4").write_bytes(b"3")
    manifest = tmp_path / "m.jsonl"
    manifest.write_text('{"video": "a/x.mp4", "title": "X"}\n\n{"video": "/abs/z.mp4"}\n')
    items = list(expand_paths([tmp_path / "a", manifest, tmp_path / "missing.mp4"]))
    assert [(i.path, i.title) for i in items] == [
        (tmp_path / "a" / "b" / "y.mp4", None),
        (tmp_path / "a" / "x.mp4", None),
        (tmp_path / "a" / "x.mp4", "X"),
        (Path("/abs/z.mp4"), None),
        (tmp_path / "missing.mp4", None),
    ]
    manifest.write_text('{"path": "oops"}\n')
    with pytest.raises(ValueError, match="m.jsonl:1"):
        list(expand_paths([manifest]))


def test_reindex_swap_interrupted_between_renames_completes_on_open(tmp_path: Path) -> None:
    rng = np.random.default_rng(9)
    root, new = tmp_path / "idx", tmp_path / "idx.reindex-new"
    with Store.open(root, identity("checkpoint:old"), create=True) as old:
        add(old, rng, 1)
    with Store.open(new, identity("checkpoint:new"), create=True) as fresh:
        add(fresh, rng, 2)
        add(fresh, rng, 3)
    root.rename(tmp_path / "idx.reindex-old")  # the crash: first rename done, second not
    with Store.open(root, identity("checkpoint:new")) as s:
        assert s.count_videos() == 2 and s.verify().ok
    assert not (tmp_path / "idx.reindex-old").exists() and not new.exists()


def test_reader_survives_compaction_by_another_writer(tmp_path: Path) -> None:
    rng = np.random.default_rng(10)
    writer = Store.open(tmp_path, identity(), create=True)
    kept, mats = add(writer, rng, 1)
    gone, _ = add(writer, rng, 2)
    reader = Store.open(tmp_path, identity())  # has the clip table, has mapped no segment yet
    ids = reader.live_clip_ids([kept])
    writer.remove_video(gone)
    writer.compact()  # new generation: the segment files the reader knows are deleted
    np.testing.assert_allclose(reader.matrices(ids).astype(np.float32), mats, atol=1e-3)
    assert len(reader.live_clip_ids()) == 2
    writer.close()
    reader.close()


def test_flush_upgrades_a_grown_flat_index_to_global_ivf(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from indexer.store import vector_index

    rng = np.random.default_rng(11)
    store = Store.open(tmp_path, identity(), create=True)
    vids = [add(store, rng, i, clips=2)[0] for i in range(100)]
    store.flush()
    assert store.stats().index["type"] == "flat"
    monkeypatch.setattr(vector_index, "FLAT_MAX_ELEMENTS", 200 * NV * D - 1)  # now too big for flat
    monkeypatch.setattr(vector_index, "TOKEN_IVF_MAX_ELEMENTS", 200 * NV * D - 1)  # and for ivf-sq8
    monkeypatch.setattr(vector_index, "VIEWS_TOKEN_MAX_ELEMENTS", 200 * NV * D - 1)  # views first too
    store.flush()
    stats = store.stats()
    # one pooled vector per clip, not every row: RAM per clip stays D floats at any size
    assert stats.index["type"] == "global-ivf" and stats.index_vectors == 200
    assert stats.index["trained_clips"] == 200 and stats.index["codec"] == "sq8"
    assert store.verify().ok
    ids = store.live_clip_ids([vids[7]])
    q = TextSets(vectors=torch.from_numpy(store.matrices(ids[:1]).astype(np.float32)[:, :3]),
                 mask=torch.ones(1, 3, dtype=torch.bool))  # fmt: skip
    assert Searcher(store).search(q, top_k=1).moments[0].clip_id == int(ids[0])
    store.close()
    with Store.open(tmp_path, identity()) as again:  # the saved index is the new one
        assert again.stats().index["type"] == "global-ivf" and again.verify().ok


def test_growing_store_switches_and_retrains_by_itself(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ingestion alone (no flush, no command) moves a growing store off the flat index, retrains
    the IVF lists after 4x growth, and a reader opened before the switch follows it."""
    from indexer.store import vector_index

    monkeypatch.setattr(vector_index, "FLAT_MAX_ELEMENTS", 20 * NV * D)  # flat up to 20 clips
    monkeypatch.setattr(vector_index, "TOKEN_IVF_MAX_ELEMENTS", 20 * NV * D)  # no token-level IVF range
    monkeypatch.setattr(vector_index, "VIEWS_TOKEN_MAX_ELEMENTS", 20 * NV * D)  # nor views first
    rng = np.random.default_rng(12)
    writer = Store.open(tmp_path, identity(), create=True)
    reader = Store.open(tmp_path)
    for i in range(10):
        add(writer, rng, i, clips=2)
    assert writer.stats().index["type"] == "flat" and reader.stats().index["type"] == "flat"
    add(writer, rng, 10, clips=2)  # 22 clips: past flat
    first = writer.stats().index
    assert first["type"] == "global-ivf" and first["trained_clips"] == 22
    add(writer, rng, 11, clips=2)  # the reader notices at the next commit it sees
    assert reader.stats().index == writer.stats().index and reader.stats().index_vectors == 24
    for i in range(12, 45):
        add(writer, rng, i, clips=2)  # 90 clips > 4 x 22: lists retrained for today's size
    grown = writer.stats().index
    assert grown["type"] == "global-ivf" and grown["trained_clips"] == 90
    assert reader.stats().index == grown and reader.stats().index_vectors == 90 and reader.verify().ok
    writer.close()
    reader.close()
    # pinned at creation: never replaced
    pinned = Store.open(tmp_path / "pinned", identity(), create=True, index_type="flat")
    for i in range(15):
        add(pinned, rng, 100 + i, clips=2)
    assert pinned.stats().index["type"] == "flat"
    pinned.close()


def test_growing_store_passes_through_token_level_ivf(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The automatic range between flat and the pooled index: every row in 8-bit IVF lists
    (ivf-sq8), retrained after 4x growth, kept further for a model with views (searched views
    first), replaced by global-ivf past its size; each stage finds a stored clip from some of its
    own rows, and a reader follows every switch."""
    from indexer.store import vector_index

    monkeypatch.setattr(vector_index, "FLAT_MAX_ELEMENTS", 10 * NV * D)  # flat up to 10 clips
    monkeypatch.setattr(vector_index, "TOKEN_IVF_MAX_ELEMENTS", 50 * NV * D)  # ivf-sq8 up to 50
    monkeypatch.setattr(vector_index, "VIEWS_TOKEN_MAX_ELEMENTS", 100 * NV * D)  # views first: 100
    rng = np.random.default_rng(13)
    writer = Store.open(tmp_path, identity(), create=True)
    reader = Store.open(tmp_path)
    stored: dict[int, np.ndarray] = {}

    def grow(videos: range) -> None:
        for i in videos:
            vid, mats = add(writer, rng, i, clips=2)
            for cid, m in zip(writer.live_clip_ids([vid]).tolist(), mats, strict=True):
                stored[cid] = m

    def finds_a_stored_clip(store: Store) -> None:
        cid = sorted(stored)[len(stored) // 2]
        q = TextSets(vectors=torch.from_numpy(stored[cid][:3].astype(np.float32))[None],
                     mask=torch.ones(1, 3, dtype=torch.bool))  # fmt: skip
        assert Searcher(store).search(q, top_k=1).moments[0].clip_id == cid

    grow(range(5))
    assert writer.stats().index["type"] == "flat"
    grow(range(5, 6))  # 12 clips: past flat
    first = writer.stats().index
    assert first["type"] == "ivf-sq8" and first["codec"] == "sq8" and first["trained_clips"] == 12
    assert writer.stats().index_vectors == 12 * NV  # token-level: every row, not one per clip
    finds_a_stored_clip(writer)
    grow(range(6, 25))  # 50 clips > 4 x 12: lists retrained for today's size
    grown = writer.stats().index
    assert grown["type"] == "ivf-sq8" and grown["trained_clips"] == 50
    assert reader.stats().index == grown and reader.stats().index_vectors == 50 * NV and reader.verify().ok
    finds_a_stored_clip(reader)
    grow(range(25, 38))  # 76 clips: past the plain token-level range, not a model with views'
    assert writer.stats().index == grown and reader.stats().index == grown
    finds_a_stored_clip(reader)
    grow(range(38, 51))  # 102 clips: past the token-level range
    last = writer.stats().index
    assert last["type"] == "global-ivf" and writer.stats().index_vectors == 102
    assert reader.stats().index == last and reader.verify().ok
    finds_a_stored_clip(writer)
    writer.close()
    reader.close()
    with Store.open(tmp_path, identity()) as again:  # the saved index is the last one
        assert again.stats().index["type"] == "global-ivf" and again.verify().ok


def test_a_pooled_store_of_a_model_with_views_goes_back_to_every_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A store of a model with views that went pooled under the rule before views first (here: a
    views range of 0) is rebuilt token-level by its next commit once the rule keeps every row, and
    a reader follows."""
    from indexer.store import vector_index

    monkeypatch.setattr(vector_index, "FLAT_MAX_ELEMENTS", 10 * NV * D)
    monkeypatch.setattr(vector_index, "TOKEN_IVF_MAX_ELEMENTS", 20 * NV * D)
    monkeypatch.setattr(vector_index, "VIEWS_TOKEN_MAX_ELEMENTS", 20 * NV * D)  # the rule before
    rng = np.random.default_rng(14)
    writer = Store.open(tmp_path, identity(), create=True)
    for i in range(15):
        add(writer, rng, i, clips=2)
    assert writer.stats().index["type"] == "global-ivf"
    reader = Store.open(tmp_path)
    monkeypatch.setattr(vector_index, "VIEWS_TOKEN_MAX_ELEMENTS", 1000 * NV * D)  # views first
    add(writer, rng, 15, clips=2)
    index = writer.stats().index
    assert index["type"] == "ivf-sq8" and index["trained_clips"] == 32
    assert writer.stats().index_vectors == 32 * NV and writer.verify().ok
    assert reader.stats().index == index and reader.verify().ok
    writer.close()
    reader.close()


def test_pooled_rebuild_reuses_the_index_vectors(tmp_path: Path) -> None:
    """global -> global-ivf -> global rebuilds: the pooled vectors are read back from FAISS or
    pooled again; either way they are the clips' pooled vectors (8-bit codes: to their precision)."""
    from indexer.store import vector_index

    rng = np.random.default_rng(13)
    store = Store.open(tmp_path, identity(), create=True, index_type="global")
    for i in range(60):
        add(store, rng, i, clips=2)
    ids = store.live_clip_ids()
    expect = vector_index.pool(store.matrices(ids))
    for kind in ("global-ivf", "global"):
        store.rebuild_index(kind)
        got_ids, got = vector_index.pooled_vectors(store._index)
        order = np.argsort(got_ids)
        assert np.array_equal(got_ids[order], ids) and store.stats().index["type"] == kind
        tol = 0.02 if kind == "global-ivf" else 1e-6  # global after 8-bit codes: pooled again
        np.testing.assert_allclose(got[order], expect, atol=tol)
    assert store.verify().ok
    store.close()
