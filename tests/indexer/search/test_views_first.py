"""Views first (issue 17): on a token-level IVF index of a model with K views, stage 1 searches the
query's K views, scores their clips exactly, and searches a word vector in full only when a quick
look (few lists, its best row) comes close to the score the answer needs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from indexer.search import searcher as searcher_module
from indexer.search.searcher import Searcher
from indexer.store import Store
from tests.support import clip_videos

DIM, FRAMES, VIEWS = 32, 4, 2
N_V = FRAMES + VIEWS
CLIPS = 1_200


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Store, np.ndarray]]:
    """A store of a model with 2 views per clip, every row in an ivf-sq8 index."""
    root = tmp_path_factory.mktemp("views") / "s"
    ident = {
        "config": {"tau": 100.0, "mode": "trained"},
        "dim": DIM,
        "frames": FRAMES,
        "num_tokens": VIEWS,
        "vectors_per_clip": N_V,
        "weights": "checkpoint:views-first",
    }
    store = Store.open(root, ident, create=True, index_type="flat")
    rng = np.random.default_rng(0)
    centres = unit(rng.standard_normal((30, DIM)))  # topics: clips of one share a direction
    topic = rng.integers(30, size=CLIPS)
    mats = unit(centres[topic][:, None, :] + 0.8 * unit(rng.standard_normal((CLIPS, N_V, DIM))))
    store.add_videos(clip_videos([mats[10 * v : 10 * v + 10] for v in range(CLIPS // 10)]))
    store.flush()
    store.rebuild_index("ivf-sq8")
    assert store.index_spec.type == "ivf-sq8" and store.index_spec.nprobe >= 16
    yield store, mats.astype(np.float32)
    store.close()


class Spy:
    """Records each stage-1 FAISS call: (query vectors, hits, probes)."""

    def __init__(self, store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[tuple[int, int, int | None]] = []
        real = store.candidates

        def candidates(queries: np.ndarray, k: int, threads: int = 1, probes: int | None = None):  # type: ignore[no-untyped-def]
            self.calls.append((len(queries), k, probes))
            return real(queries, k, threads, probes)

        monkeypatch.setattr(store, "candidates", candidates)


def query(words: np.ndarray, views: np.ndarray, padding: int = 2) -> searcher_module.TextSets:
    """A query set as the model lays it out: word rows, padding rows (masked), then the K views."""
    rows = np.concatenate([words, np.zeros((padding, DIM), np.float32), views])
    mask = np.r_[np.ones(len(words)), np.zeros(padding), np.ones(len(views))].astype(bool)
    return searcher_module.TextSets(
        vectors=torch.from_numpy(rows)[None].float(), mask=torch.from_numpy(mask)[None]
    )


def far_words(rng: np.random.Generator, mats: np.ndarray, n: int) -> np.ndarray:
    """n word rows that describe nothing stored: each one's best row cosine in the store < 0.65."""
    rows = mats.reshape(-1, DIM)
    out = [w for w in unit(rng.standard_normal((50 * n, DIM))) if (rows @ w).max() < 0.65][:n]
    assert len(out) == n
    return np.stack(out).astype(np.float32)


def exact_top(s: Searcher, text: searcher_module.TextSets, k: int) -> list[int]:
    ids, scores = s.exhaustive_scores(text)
    return ids[np.argsort(-scores[0], kind="stable")[:k]].tolist()


def test_views_alone_when_no_word_comes_close(
    built: tuple[Store, np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    store, mats = built
    rng = np.random.default_rng(1)
    spy = Spy(store, monkeypatch)
    s = Searcher(store, candidates_per_vector=32)
    nprobe = store.index_spec.nprobe
    for target in rng.choice(CLIPS, size=8, replace=False):
        views = unit(mats[target][FRAMES - 2 : FRAMES] + 0.2 * unit(rng.standard_normal((VIEWS, DIM))))
        words = far_words(rng, mats, 3)
        text = query(words, views.astype(np.float32))
        spy.calls.clear()
        r = s.search(text, top_k=5)
        # the views with twice the hits, then a quick look of the 3 words: none searched in full
        assert spy.calls == [(VIEWS, 64, None), (3, 1, max(1, nprobe // searcher_module.WORD_PROBE_SHARE))]
        assert r.moments[0].clip_id == int(target) + 1  # ids start at 1
        assert [m.clip_id for m in r.moments] == exact_top(s, text, 5)
        assert r.candidates < 200  # a shortlist, not the store
        # the exact scoring of the views' clips is the answer's: timed as rerank, not as stage 1
        assert r.timings_ms["rerank"] > 0.01
        ids, exact = s.exhaustive_scores(text)
        by_id = dict(zip(ids.tolist(), exact[0].tolist(), strict=True))
        assert all(m.score == pytest.approx(by_id[m.clip_id], abs=1e-5) for m in r.moments)


def test_a_word_that_matches_is_searched_in_full(
    built: tuple[Store, np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A word vector close to one clip's frame (better than anything the views find) names that
    clip: the quick look sees it, the word is searched in full, and the clip is in the answer."""
    store, mats = built
    rng = np.random.default_rng(2)
    spy = Spy(store, monkeypatch)
    s = Searcher(store, candidates_per_vector=32)
    for a, b in rng.choice(CLIPS, size=(6, 2), replace=False):
        views = unit(mats[a][FRAMES : FRAMES + VIEWS] + 0.5 * unit(rng.standard_normal((VIEWS, DIM))))
        words = unit(rng.standard_normal((3, DIM)))
        words[1] = unit(mats[b][0] + 0.05 * unit(rng.standard_normal(DIM)))  # clip b's first frame
        text = query(words.astype(np.float32), views.astype(np.float32))
        top = exact_top(s, text, 5)
        assert int(b) + 1 in top  # the word decides the exact answer
        spy.calls.clear()
        r = s.search(text, top_k=5)
        assert len(spy.calls) == 3 and spy.calls[2][0] >= 1  # the close word searched in full
        assert [m.clip_id for m in r.moments] == top
        ids, exact = s.exhaustive_scores(text)  # the views' clips keep their scores, the rest scored
        by_id = dict(zip(ids.tolist(), exact[0].tolist(), strict=True))
        assert all(m.score == pytest.approx(by_id[m.clip_id], abs=1e-5) for m in r.moments)
        assert r.timings_ms["rerank"] > 0.01


def test_a_grouped_answer_needs_its_last_video_not_its_last_moment(tmp_path: Path) -> None:
    """Grouped by video, a word that names another video's clip matters as long as that clip beats
    the top_k-th video's best, however many strong clips the first video has: one long video of
    clips near the views must not hide the second and third videos a word finds."""
    ident = {"config": {"tau": 100.0, "mode": "trained"}, "dim": DIM, "frames": FRAMES,
             "num_tokens": VIEWS, "vectors_per_clip": N_V, "weights": "checkpoint:grouped"}  # fmt: skip
    rng = np.random.default_rng(5)
    topic = unit(rng.standard_normal(DIM))
    long_video = unit(topic + 0.05 * unit(rng.standard_normal((100, N_V, DIM))))  # 100 clips near the views
    others = unit(rng.standard_normal((1_000, N_V, DIM)))  # 100 videos of 10 unrelated clips
    word = unit(rng.standard_normal(DIM))
    others[30, 0] = unit(word + 0.3 * unit(rng.standard_normal(DIM)))  # one frame of video 4 near the word
    videos = [long_video] + [others[10 * v : 10 * v + 10] for v in range(100)]
    with Store.open(tmp_path / "s", ident, create=True, index_type="flat") as store:
        store.add_videos(clip_videos(videos))
        store.rebuild_index("ivf-sq8")
        views = unit(topic + 0.1 * unit(rng.standard_normal((VIEWS, DIM)))).astype(np.float32)
        words = np.concatenate([word[None], far_words(rng, np.concatenate(videos), 2)]).astype(np.float32)
        text = query(words, views)
        s = Searcher(store)
        for per_video in (1, 3):
            want = s.search(text, top_k=3, group_by_video=True, moments_per_video=per_video, exhaustive=True)
            got = s.search(text, top_k=3, group_by_video=True, moments_per_video=per_video)
            assert [g.video_id for g in got.groups] == [g.video_id for g in want.groups]
            assert len(got.groups) == 3 and got.groups[1].video_id == 5  # the word's video, second
        # ungrouped, the 10 best moments are all the long video's: the word's clip is not needed
        assert {m.video_id for m in s.search(text, top_k=10).moments} == {1}


def test_a_grouped_answer_keeps_a_top_video_s_moment_only_a_word_finds(tmp_path: Path) -> None:
    """Grouped with several moments a video, a word that names a second moment of a top video
    matters even below the last video's best: that video's second moment is in the answer."""
    ident = {"config": {"tau": 100.0, "mode": "trained"}, "dim": DIM, "frames": FRAMES,
             "num_tokens": VIEWS, "vectors_per_clip": N_V, "weights": "checkpoint:moments"}  # fmt: skip
    rng = np.random.default_rng(8)
    mats = unit(rng.standard_normal((600, N_V, DIM)))
    topic, word = unit(rng.standard_normal(DIM)), unit(rng.standard_normal(DIM))
    mats[0] = unit(topic + 0.05 * unit(rng.standard_normal((N_V, DIM))))  # video 1's first clip
    mats[10] = unit(topic + 0.3 * unit(rng.standard_normal((N_V, DIM))))  # video 2's first clip
    mats[5, 0] = unit(word + 0.6 * unit(rng.standard_normal(DIM)))  # one frame of video 1's 6th clip
    with Store.open(tmp_path / "s", ident, create=True) as store:
        store.add_videos(clip_videos([mats[10 * v : 10 * v + 10] for v in range(60)]))
        store.rebuild_index("ivf-sq8")
        views = unit(topic + 0.1 * unit(rng.standard_normal((VIEWS, DIM)))).astype(np.float32)
        words = np.concatenate([word[None], far_words(rng, mats, 2)]).astype(np.float32)
        text = query(words, views)
        s = Searcher(store, candidates_per_vector=16)
        want = s.search(text, top_k=2, group_by_video=True, moments_per_video=3, exhaustive=True)
        assert [m.clip_id for m in want.groups[0].moments][:2] == [1, 6]  # the word's clip second
        assert want.groups[1].video_id == 2 and want.groups[1].score > want.groups[0].moments[1].score
        got = s.search(text, top_k=2, group_by_video=True, moments_per_video=3)
        assert [g.video_id for g in got.groups] == [1, 2]
        assert [m.clip_id for m in got.groups[0].moments][:2] == [1, 6]


@pytest.mark.parametrize("kind", ["flat", "global-ivf"])
def test_other_indexes_search_every_vector_at_once(
    tmp_path: Path, built: tuple[Store, np.ndarray], monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    """An exact or pooled first stage has no lists to look into: one search of every vector."""
    store, mats = built
    try:
        store.rebuild_index(kind)
        spy = Spy(store, monkeypatch)
        text = query(unit(mats[3][:3]), unit(mats[3][FRAMES:]))
        r = Searcher(store, candidates_per_vector=32).search(text, top_k=5)
        pooled = 1 if kind == "global-ivf" else 0  # the pooled query joins the rows
        assert spy.calls == [(3 + VIEWS + pooled, 32, None)]
        assert r.moments[0].clip_id == 4
    finally:
        store.rebuild_index("ivf-sq8")


@pytest.mark.parametrize("weights", ["random:untrained", "pretrained:openai"])
def test_untrained_views_do_not_come_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, weights: str
) -> None:
    """Random or pretrained-only weights have untrained decomposition views: every vector is
    searched at once, and the token-level index keeps the range of a model without views."""
    ident = {"config": {"tau": 100.0, "mode": "trained"}, "dim": DIM, "frames": FRAMES,
             "num_tokens": VIEWS, "vectors_per_clip": N_V, "weights": weights}  # fmt: skip
    rng = np.random.default_rng(6)
    mats = unit(rng.standard_normal((600, N_V, DIM)))
    with Store.open(tmp_path / "s", ident, create=True) as store:
        store.add_videos(clip_videos([mats[10 * v : 10 * v + 10] for v in range(60)]))
        store.rebuild_index("ivf-sq8")
        spy = Spy(store, monkeypatch)
        text = query(unit(mats[3][:3]), unit(mats[3][FRAMES:]))
        assert Searcher(store, candidates_per_vector=32).search(text, top_k=5).moments[0].clip_id == 4
        assert spy.calls == [(3 + VIEWS, 32, None)]
        assert store._faiss.views == 0  # type: ignore[attr-defined]


def test_views_first_keeps_the_exact_top_on_clustered_queries(built: tuple[Store, np.ndarray]) -> None:
    """Queries whose every row is near the target clip (words and views alike): the same share of
    the exact top-5 as searching every vector."""
    store, mats = built
    rng = np.random.default_rng(3)
    s = Searcher(store, candidates_per_vector=32)
    found = every = 0
    for target in rng.choice(CLIPS, size=12, replace=False):
        rows = unit(mats[target] + 0.3 * unit(rng.standard_normal((N_V, DIM)))).astype(np.float32)
        text = query(rows[:FRAMES], rows[FRAMES:])
        top = set(exact_top(s, text, 5))
        found += len(top & {m.clip_id for m in s.search(text, top_k=5).moments})
        ids = s._merge([store.candidates(text.vectors[0][text.mask[0]].numpy(), 32)], None, 4096)
        scores = s.rerank(text, ids)
        every += len(top & set(ids[np.argsort(-scores, kind="stable")[:5]].tolist()))
    assert found >= every - 1 and found / 60 >= 0.95


def test_tied_moments_come_in_clip_order(tmp_path: Path) -> None:
    """Clips with identical matrices (a still scene's windows) score the same: they are answered
    in clip id order (the earlier moment first), as the exhaustive reference orders them, whatever
    order stage 1 found them in."""
    ident = {"config": {"tau": 100.0, "mode": "trained"}, "dim": DIM, "frames": FRAMES,
             "num_tokens": VIEWS, "vectors_per_clip": N_V, "weights": "checkpoint:ties"}  # fmt: skip
    rng = np.random.default_rng(7)
    mats = unit(rng.standard_normal((600, N_V, DIM)))
    still = unit(rng.standard_normal((N_V, DIM)))
    twins = [37, 5, 412, 230]  # added in this order of ids: 6, 38, 231, 413
    mats[twins] = still
    with Store.open(tmp_path / "s", ident, create=True) as store:
        store.add_videos(clip_videos([mats[10 * v : 10 * v + 10] for v in range(60)]))
        store.rebuild_index("ivf-sq8")
        text = query(unit(still[:3] + 0.2 * unit(rng.standard_normal((3, DIM)))), still[FRAMES:])
        for s in (Searcher(store), Searcher(store, candidates_per_vector=4)):
            r = s.search(text, top_k=4)
            assert len({m.score for m in r.moments}) == 1  # one score: ties
            assert [m.clip_id for m in r.moments] == [6, 38, 231, 413]
            assert [m.clip_id for m in r.moments] == exact_top(s, text, 4)
