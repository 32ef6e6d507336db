"""The serving fast paths: one-query rerank kernel, the global (one vector per clip) first stage,
and rebuilding the FAISS index in place."""

from __future__ import annotations

from pathlib import Path

import faiss
import numpy as np
import pytest
import torch

from indexer.search.searcher import Searcher
from indexer.store import ClipSpan, NewVideo, Store
from indexer.store import vector_index as vi
from indexer.store.backends.faiss_local import FaissBackend
from model import TextSets, one_query_scores, partial_alignment_scores
from tests.support import clip_videos

DIM, N_V = 32, 6


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def test_one_query_scores_equal_the_batched_kernel() -> None:
    g = torch.Generator().manual_seed(0)
    text = torch.nn.functional.normalize(torch.randn(5, DIM, generator=g), dim=-1)
    videos = torch.nn.functional.normalize(torch.randn(300, N_V, DIM, generator=g), dim=-1).half()
    fast = one_query_scores(text, videos, tau=100.0, block=64)  # several blocks
    ref = partial_alignment_scores(text[None], videos, tau=100.0)[0]
    assert fast.shape == (300,)
    torch.testing.assert_close(fast, ref, atol=1e-5, rtol=1e-5)
    # the ordering is what search uses: the best clip must be the same
    assert int(fast.argmax()) == int(ref.argmax())


@pytest.mark.parametrize("block", [None, 1, 7, 64, 1000])
def test_cpu_rerank_blocks_give_the_same_scores(block: int | None) -> None:
    # the CPU kernel reuses one fp32 buffer across blocks: a stale row from an earlier (larger)
    # block or a short last block must not leak into a score
    g = torch.Generator().manual_seed(1)
    text = torch.nn.functional.normalize(torch.randn(7, DIM, generator=g), dim=-1)
    videos = torch.nn.functional.normalize(torch.randn(130, N_V, DIM, generator=g), dim=-1).half()
    ref = partial_alignment_scores(text[None], videos, tau=100.0)[0]
    fast = one_query_scores(text, videos, tau=100.0, block=block)
    torch.testing.assert_close(fast, ref, atol=1e-5, rtol=1e-5)
    assert torch.equal(torch.argsort(fast, descending=True)[:10], torch.argsort(ref, descending=True)[:10])
    # float64 query rows take the general kernel: the same scores
    general = one_query_scores(text.double(), videos, tau=100.0, block=block)
    torch.testing.assert_close(general.float(), ref, atol=1e-5, rtol=1e-5)
    assert one_query_scores(text, videos[:0], tau=100.0, block=block).shape == (0,)


@pytest.mark.parametrize("candidates", [0, 1, 64, 65, 130, 700])
def test_a_rerank_on_several_threads_gives_the_same_scores(tmp_path: Path, candidates: int) -> None:
    store, _ = _store(tmp_path / "s", 700, "flat")
    g = torch.Generator().manual_seed(2)
    rows = torch.nn.functional.normalize(torch.randn(5, DIM, generator=g), dim=-1)
    text = TextSets(vectors=rows[None], mask=torch.ones(1, 5, dtype=torch.bool))
    ids = np.random.default_rng(3).permutation(store.live_clip_ids())[:candidates]
    one, three = Searcher(store), Searcher(store, rerank_threads=3)
    try:
        want = one.rerank(text, ids)
        assert np.array_equal(three.rerank(text, ids), want)  # split at whole blocks: bit-identical
        assert np.array_equal(three.rerank(text, ids), want)  # the helper threads are reused
        ref = partial_alignment_scores(rows[None], torch.from_numpy(store.matrices(ids)), tau=100.0)[0]
        np.testing.assert_allclose(want, ref.numpy(), atol=1e-5)
        three.close()  # stops the helpers; a later search starts them again
        assert np.array_equal(three.rerank(text, ids), want)
    finally:
        three.close()
        store.close()


def test_batched_contributions_match_one_clip_and_add_up_to_the_score() -> None:
    from indexer.search.explain import clip_contributions, vector_contributions

    g = torch.Generator().manual_seed(4)
    text = torch.nn.functional.normalize(torch.randn(6, DIM, generator=g), dim=-1)
    videos = torch.nn.functional.normalize(torch.randn(9, N_V, DIM, generator=g), dim=-1).half()
    batched = clip_contributions(text, videos, 100.0)  # (C, n_v)
    assert batched.shape == (9, N_V)
    for i in range(9):
        torch.testing.assert_close(
            batched[i], vector_contributions(text, videos[i], 100.0), atol=1e-6, rtol=0
        )
    score = partial_alignment_scores(text[None], videos, tau=100.0)[0]
    torch.testing.assert_close(batched.sum(1), score, atol=1e-5, rtol=1e-5)


def _store(root: Path, clips: int, index_type: str) -> tuple[Store, np.ndarray]:
    ident = {"config": {"tau": 100.0}, "dim": DIM, "vectors_per_clip": N_V, "weights": "random:t"}
    store = Store.open(root, ident, create=True, index_type=index_type)
    rng = np.random.default_rng(0)
    # 20 topics: clips of a topic share a direction, like real embeddings of similar scenes
    centres = unit(rng.standard_normal((20, DIM)))
    topic = rng.integers(20, size=clips)
    mats = unit(centres[topic][:, None, :] + 0.8 * unit(rng.standard_normal((clips, N_V, DIM))))
    store.add_videos(clip_videos([mats[10 * v : 10 * v + 10] for v in range(clips // 10)]))
    store.flush()
    return store, mats.astype(np.float32)


@pytest.mark.parametrize("kind", ["global", "global-ivf"])
def test_global_first_stage_finds_the_exact_top(tmp_path: Path, kind: str) -> None:
    store, mats = _store(tmp_path / "s", 600, "global")
    if kind != "global":
        spec = store.rebuild_index(kind)
        assert spec["type"] == kind and spec["nlist"] > 0
    assert store.index_spec.type == kind
    assert store.stats().index_vectors == 600  # one pooled vector per clip, not N_V
    assert store.verify().ok
    rng = np.random.default_rng(1)
    found = 0
    for target in rng.choice(600, size=10, replace=False):
        q = unit(mats[target][:3] + 0.3 * unit(rng.standard_normal((3, DIM))))
        text = TextSets(vectors=torch.from_numpy(q)[None].float(), mask=torch.ones(1, 3, dtype=torch.bool))
        s = Searcher(store, candidates_per_vector=64)
        r = s.search(text, top_k=5)
        ids, exact = s.exhaustive_scores(text)
        top5 = set(ids[np.argsort(-exact[0])[:5]].tolist())
        assert r.moments[0].clip_id == int(target) + 1  # ids start at 1
        assert r.candidates < 600  # a real first stage, not a full scan
        found += len(top5 & {m.clip_id for m in r.moments})
        # scores are the exact ones
        exact_by_id = dict(zip(ids.tolist(), exact[0].tolist(), strict=True))
        for m in r.moments:
            assert m.score == pytest.approx(exact_by_id[m.clip_id], abs=1e-5)
    assert found / 50 >= 0.9
    store.close()
    # the choice is kept across a reopen (pinned), and the index is the saved one
    with Store.open(tmp_path / "s") as again:
        assert again.index_spec.type == kind
        assert again.stats().index_vectors == 600


@pytest.mark.parametrize(("kind", "codec"), [("ivf-sq8", "sq8"), ("ivf-pq", "pq4")])
def test_token_level_ivf_first_stage_finds_the_exact_top(tmp_path: Path, kind: str, codec: str) -> None:
    """The token-level IVF first stages: every row in IVF lists of 8-bit scalar codes (ivf-sq8,
    the automatic choice of mid-sized stores) or 4-bit PQ codes (ivf-pq, pinned only), then the
    exact rerank. They propose a shortlist, not the store, and keep the exact top-5."""
    store, mats = _store(tmp_path / "s", 600, "flat")
    store.rebuild_index(kind)  # an IVF index trains on stored vectors
    spec = store.index_spec
    assert spec.type == kind and spec.codec == codec and spec.nlist >= 16
    assert store.stats().index_vectors == 600 * N_V and store.verify().ok  # every row: token-level keys
    rng = np.random.default_rng(2)
    found = 0
    s = Searcher(store, candidates_per_vector=32)
    for target in rng.choice(600, size=10, replace=False):
        q = unit(mats[target][:3] + 0.3 * unit(rng.standard_normal((3, DIM))))
        text = TextSets(vectors=torch.from_numpy(q)[None].float(), mask=torch.ones(1, 3, dtype=torch.bool))
        r = s.search(text, top_k=5)
        ids, exact = s.exhaustive_scores(text)
        assert r.moments[0].clip_id == int(target) + 1 and r.candidates < 300
        found += len(set(ids[np.argsort(-exact[0])[:5]].tolist()) & {m.clip_id for m in r.moments})
    assert found / 50 >= 0.98
    store.close()
    with Store.open(tmp_path / "s") as again:  # the saved file is read back as the same structure
        assert again.index_spec.type == kind and again.verify().ok


@pytest.mark.parametrize("kind", ["ivf-sq8", "global-ivf"])
def test_a_store_indexed_under_older_probe_rules_searches_with_todays(tmp_path: Path, kind: str) -> None:
    import faiss

    from indexer.store import layout

    store, mats = _store(tmp_path / "s", 600, "global")
    spec = store.rebuild_index(kind)
    store.close()
    # the manifest as an older version wrote it: another probe count for the same lists
    manifest = layout.read_manifest(tmp_path / "s")
    manifest["index"]["nprobe"] = 3
    layout.write_manifest(tmp_path / "s", manifest)
    with Store.open(tmp_path / "s") as again:
        want = vi.probes(kind, spec["nlist"])
        assert want != 3 and again.index_spec.nprobe == want
        assert again.index_spec.nlist == spec["nlist"]  # the same lists: nothing was rebuilt
        assert faiss.extract_index_ivf(again._faiss.index).nprobe == want  # what FAISS searches with
        q = unit(mats[5][:3])
        text = TextSets(vectors=torch.from_numpy(q)[None].float(), mask=torch.ones(1, 3, dtype=torch.bool))
        assert Searcher(again).search(text, top_k=1).moments[0].clip_id == 6


def test_a_pooled_index_reranks_its_best_512_clips(tmp_path: Path) -> None:
    from indexer.search.searcher import POOLED_MAX_CANDIDATES

    # a pooled store reranks at most POOLED_MAX_CANDIDATES clips: those with the best first-stage
    # similarity (here every one of 600 clips is a hit)
    store, _ = _store(tmp_path / "s", 600, "global")
    rng = np.random.default_rng(2)
    q = unit(rng.standard_normal((4, DIM)))
    text = TextSets(vectors=torch.from_numpy(q)[None].float(), mask=torch.ones(1, 4, dtype=torch.bool))
    every = Searcher(store, candidates_per_vector=600, max_candidates=10_000).candidate_clips(text)
    capped = Searcher(store, candidates_per_vector=600).candidate_clips(text)
    assert len(every) == 600 and len(capped) == POOLED_MAX_CANDIDATES
    assert capped.tolist() == every[:POOLED_MAX_CANDIDATES].tolist()  # the best ones, in order
    store.close()


@pytest.mark.parametrize(
    ("clips", "kind"),
    [(50, "flat"), (102, "flat"), (103, "ivf-sq8"), (400, "ivf-sq8"), (4_000, "ivf-sq8"),
     (13_107, "ivf-sq8"), (13_108, "global-ivf"), (100_000, "global-ivf"), (1_000_000, "global-ivf")],
)  # fmt: skip
def test_automatic_choice_by_size(clips: int, kind: str) -> None:
    """ViT-B/32 shapes (20 rows of D=512): the exact token-level scan up to 2^20 stored floats,
    token-level IVF with 8-bit codes up to 2^27, the pooled IVF beyond; ivf-pq is never automatic
    (it lost recall on the trained model, issue 17)."""
    assert vi.auto_kind(clips, 20, 512) == kind
    spec = vi.choose_spec(clips, 20, 512)
    assert spec.type == kind
    per_clip = 20 if kind == "ivf-sq8" else 1  # token-level lists hold every row
    if kind != "flat":
        assert 16 <= spec.nlist <= clips * per_clip // 39 and 8 <= spec.nprobe <= spec.nlist
        assert spec.codec == "sq8" and spec.trained_clips == clips
    if kind == "ivf-sq8":  # small stores probe at least 32 lists (recall 0.82 with 8 at 400 clips)
        assert spec.nprobe == max(32, spec.nlist // 64)
    if clips == 13_107:  # the top of the range scans 32 lists, not 1/32 (13k slower than 52k)
        assert spec.nprobe == 32
    # the demo model's 4.5k-clip store (20 rows of D=64) is in the token-level IVF range
    assert vi.auto_kind(4_532, 20, 64) == "ivf-sq8"


@pytest.mark.parametrize(
    ("clips", "rows", "dim", "views", "kind"),
    [(104_857, 20, 64, 0, "ivf-sq8"), (104_858, 20, 64, 0, "global-ivf"),
     (104_858, 20, 64, 8, "ivf-sq8"), (1_000_000, 20, 64, 8, "ivf-sq8"),
     (1_677_721, 20, 64, 8, "ivf-sq8"), (1_677_722, 20, 64, 8, "global-ivf"),
     (13_108, 20, 512, 8, "global-ivf"), (100_000, 20, 512, 8, "global-ivf"),
     (300_000, 20, 128, 8, "global-ivf"), (300_000, 20, 100, 8, "ivf-sq8")],
)  # fmt: skip
def test_a_model_with_views_keeps_every_row_further(
    clips: int, rows: int, dim: int, views: int, kind: str
) -> None:
    """Past 2^27 stored floats a model with views (searched views first) keeps the token-level
    index while a clip holds <= 2,048 floats (the demo model's 20 x 64), up to 2^31; wider clips
    (ViT-B/32) and models without views take the pooled index."""
    assert vi.auto_kind(clips, rows, dim, views) == kind
    spec = vi.choose_spec(clips, rows, dim, views=views)
    assert spec.type == kind
    if kind == "ivf-sq8":
        assert spec.nlist == min(16384, int(4 * (clips * rows) ** 0.5)) and spec.nprobe == spec.nlist // 64
    assert vi.needs_rebuild(spec, clips * 4 + 1, rows, dim, views)  # lists retrained, or past the range


def test_a_demo_store_with_views_keeps_its_lists_past_2_27() -> None:
    """A demo-shaped store with views grows through 2^27 without leaving its token-level lists;
    without views it moves to the pooled index there."""
    spec = vi.choose_spec(100_000, 20, 64, views=8)
    assert spec.type == "ivf-sq8"
    assert not vi.needs_rebuild(spec, 150_000, 20, 64, views=8)
    assert vi.needs_rebuild(spec, 150_000, 20, 64, views=0)
    # a store of a model with views made pooled past 2^27 by the rule before views first is
    # rebuilt token-level at its next check; a model without views, or ViT-B/32 shapes, stay pooled
    pooled = vi.choose_spec(200_000, 20, 64, "global-ivf")
    assert vi.needs_rebuild(pooled, 200_000, 20, 64, views=8)
    assert not vi.needs_rebuild(pooled, 200_000, 20, 64, views=0)
    assert not vi.needs_rebuild(vi.choose_spec(100_000, 20, 512), 100_000, 20, 512, views=8)
    assert not vi.needs_rebuild(vi.choose_spec(2_000_000, 20, 64, views=8), 2_000_000, 20, 64, views=8)


def test_automatic_index_is_replaced_when_outgrown() -> None:
    """flat -> ivf-sq8 past 2^20 floats, ivf-sq8 retrained after 4x growth, -> global-ivf past 2^27."""
    flat = vi.choose_spec(100, 20, 512)
    assert not vi.needs_rebuild(flat, 102, 20, 512) and vi.needs_rebuild(flat, 103, 20, 512)
    tok = vi.choose_spec(1_000, 20, 512)
    assert tok.type == "ivf-sq8"
    assert not vi.needs_rebuild(tok, 4_000, 20, 512) and vi.needs_rebuild(tok, 4_001, 20, 512)
    late = vi.choose_spec(13_000, 20, 512)
    assert not vi.needs_rebuild(late, 13_107, 20, 512) and vi.needs_rebuild(late, 13_108, 20, 512)


def test_a_loaded_index_of_another_structure_does_not_match() -> None:
    """A file written before a type change (same list count, other codes) is rebuilt on load."""
    rows = unit(np.random.default_rng(3).standard_normal((2_000, DIM))).astype(np.float32)
    sq8 = vi.IndexSpec("ivf-sq8", nlist=16, nprobe=8, codec="sq8")
    others = [
        vi.IndexSpec("ivf", nlist=16, nprobe=8),  # float32 lists
        vi.IndexSpec("ivf-pq", nlist=16, nprobe=8, codec="pq4"),
        vi.IndexSpec("flat"),
        vi.IndexSpec("ivf-sq8", nlist=32, nprobe=8, codec="sq8"),  # trained for another size
    ]
    for other in others:
        index = vi.build_index(other, DIM, rows)
        assert not vi.matches(index, sq8) and vi.matches(index, other)
    assert vi.matches(vi.build_index(sq8, DIM, rows), sq8)


def test_rebuild_index_back_to_token_level(tmp_path: Path) -> None:
    store, _ = _store(tmp_path / "s", 100, "global")
    store.rebuild_index("flat")
    assert store.stats().index_vectors == 100 * N_V
    assert store.verify().ok
    with pytest.raises(ValueError, match="unknown index type"):
        store.rebuild_index("nope")
    store.close()


def test_pool_is_the_normalised_mean() -> None:
    m = unit(np.random.default_rng(0).standard_normal((4, N_V, DIM))).astype(np.float16)
    g = vi.pool(m)
    assert g.shape == (4, DIM) and g.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(g, axis=1), 1.0, atol=1e-5)
    ref = m.astype(np.float32).mean(1)
    np.testing.assert_allclose(g, ref / np.linalg.norm(ref, axis=1, keepdims=True), atol=1e-5)


def _wide_and_tight(seed: int, clips: int = 1_200, per_clip: int = 5, d: int = 16) -> np.ndarray:
    """(clips, per_clip, d) rows around 60 centres of widths 0.05-0.8: some IVF lists are wide."""
    rng = np.random.default_rng(seed)
    centres = unit(rng.standard_normal((60, d)))
    width = rng.uniform(0.05, 0.8, 60)
    topic = rng.integers(60, size=clips * per_clip)
    rows = unit(centres[topic] + width[topic, None] * rng.standard_normal((len(topic), d)) / np.sqrt(d))
    return rows.astype(np.float32).reshape(clips, per_clip, d)


def test_radius_bounded_probing_finds_more_of_the_best_rows() -> None:
    """ivf-sq8 probes the lists with the best q.c + w * radius: with w = 0 exactly FAISS's own
    probing (same hits, same scores), with the default weight more of the rows that truly match
    best at the same probe count (wide lists whose centroid is not among the query's nearest)."""
    gained = []
    for seed in range(3):
        mats = _wide_and_tight(seed)
        c, n_v, d = mats.shape
        spec = vi.IndexSpec("ivf-sq8", nlist=64, nprobe=4, codec="sq8")
        index = vi.build_index(spec, d, mats.reshape(-1, d))
        vi.add_clips(index, np.arange(1, c + 1), mats)
        radii = vi.ListRadii(index)
        rng = np.random.default_rng(10 + seed)
        q = unit(rng.standard_normal((200, d))).astype(np.float32)
        plain, plain_ids = vi.search(index, q, 10)
        same, same_ids = vi.search_bounded(radii, q, 10, weight=0.0)
        np.testing.assert_array_equal(same_ids, plain_ids)
        np.testing.assert_allclose(same, plain, atol=1e-6)
        exact = np.argsort(-(q @ mats.reshape(-1, d).T), axis=1)[:, :10] // n_v + 1  # clip ids
        _, bounded_ids = vi.search_bounded(radii, q, 10)
        assert bounded_ids.shape == (200, 10) and (bounded_ids > 0).all()

        def recall(ids: np.ndarray, exact: np.ndarray = exact) -> float:
            shares = [len(set(e) & set(i)) / len(set(e)) for e, i in zip(exact, ids, strict=True)]
            return float(np.mean(shares))

        gained.append(recall(bounded_ids) - recall(plain_ids))
    assert min(gained) >= 0 and np.mean(gained) >= 0.01, gained


def test_list_radii_follow_added_rows() -> None:
    """The radii are measured from the index's own codes and kept up to date as rows are added: the
    same as measuring afresh, and (up to the 8-bit codes) the rows' true distances from their centroid."""
    import faiss

    mats = _wide_and_tight(0, clips=600)
    c, n_v, d = mats.shape
    index = vi.build_index(vi.IndexSpec("ivf-sq8", nlist=32, nprobe=4, codec="sq8"), d, mats.reshape(-1, d))
    vi.add_clips(index, np.arange(1, 301), mats[:300])
    radii = vi.ListRadii(index)
    early = radii.update().copy()
    vi.add_clips(index, np.arange(301, c + 1), mats[300:])
    later = radii.update()
    assert (later >= early).all() and (later > early).any()
    np.testing.assert_array_equal(later, vi.ListRadii(index).update())
    rows = mats.reshape(-1, d)
    _, assign = faiss.extract_index_ivf(index).quantizer.search(rows, 1)
    true = np.zeros(32, np.float32)
    np.maximum.at(true, assign[:, 0], np.linalg.norm(rows - radii.centroids[assign[:, 0]], axis=1))
    np.testing.assert_allclose(later, true, atol=0.01)
    # the store never removes rows before a rebuild, but a list that shrank is measured again
    index.remove_ids(np.arange(1, 301, dtype=np.int64))
    np.testing.assert_array_equal(radii.update(), vi.ListRadii(index).update())
    index.remove_ids(np.arange(301, c + 1, dtype=np.int64))
    assert index.ntotal == 0 and not radii.update().any()


def test_a_token_level_store_finds_clips_added_after_its_first_search(tmp_path: Path) -> None:
    """Through the store: an ivf-sq8 store searched, then given new clips, finds them (the bounded
    probing measures the new rows' lists), and a reopened store searches its saved index the same way."""
    store, _ = _store(tmp_path / "s", 300, "flat")
    store.rebuild_index("ivf-sq8")
    s = Searcher(store, candidates_per_vector=32)
    rng = np.random.default_rng(5)
    probe = unit(rng.standard_normal((3, DIM))).astype(np.float32)
    text = TextSets(vectors=torch.from_numpy(probe)[None], mask=torch.ones(1, 3, dtype=torch.bool))
    before = s.search(text, top_k=3)
    # a new video whose clips hold the query rows themselves: the best match of every query row
    new = unit(rng.standard_normal((10, N_V, DIM))).astype(np.float32)  # (10, N_V, D)
    new[:, :3] = probe
    spans = [ClipSpan(2.0 * c, 2.0 * c + 4) for c in range(10)]
    store.add_videos([(NewVideo("/new.mp4", "new", "hnew", 20, 25, 64, 64, "h264", 1), spans, new)])
    store.flush()
    after = s.search(text, top_k=3)
    assert {m.clip_id for m in after.moments} <= set(range(301, 311))
    assert before.moments and store._faiss._radii is not None  # the store probed by the bound
    store.rebuild_index("ivf-sq8")  # a new index: the radii of the old one are dropped with it
    assert store._faiss._radii is None
    assert [m.clip_id for m in s.search(text, top_k=3).moments] == [m.clip_id for m in after.moments]
    store.close()
    with Store.open(tmp_path / "s") as again:
        assert again.index_spec.type == "ivf-sq8"
        found = Searcher(again, candidates_per_vector=32).search(text, top_k=3)
        assert [m.clip_id for m in found.moments] == [m.clip_id for m in after.moments]


class _ResetWhenRead(vi.ListRadii):
    """Radii whose index, when a search reads it, is the moment a rebuild (which holds only the
    write lock) drops the backend's radii: the interleaving of the two threads, made deterministic."""

    def __init__(self, index: faiss.Index, backend: FaissBackend) -> None:
        self.backend = backend
        super().__init__(index)

    @property  # type: ignore[override]
    def index(self) -> faiss.Index:
        self.backend._radii = None
        return self._index

    @index.setter
    def index(self, value: faiss.Index) -> None:
        self._index = value


def test_a_search_survives_a_rebuild_dropping_the_radii_meanwhile(tmp_path: Path) -> None:
    """A search reads the radii once: a rebuild resetting them between its check and its use (the
    search then passed None and failed) leaves it answering from the radii it checked."""
    store, mats = _store(tmp_path / "s", 300, "flat")
    store.rebuild_index("ivf-sq8")
    backend = store._faiss
    assert isinstance(backend, FaissBackend)
    q = mats[:2, 0]
    expected = store.candidates(q, 8)
    backend._radii = _ResetWhenRead(backend.index, backend)
    scores, ids = store.candidates(q, 8)
    np.testing.assert_array_equal(ids, expected[1])
    np.testing.assert_allclose(scores, expected[0], atol=1e-6)
    store.close()


def test_bounded_probing_edge_cases() -> None:
    """More probes than lists scans every list (as FAISS does), an empty index or query set answers
    empty arrays, and the index's own probe count is left as it was."""
    mats = _wide_and_tight(1, clips=100, per_clip=20)
    c, n_v, d = mats.shape
    index = vi.build_index(vi.IndexSpec("ivf-sq8", nlist=16, nprobe=32, codec="sq8"), d, mats.reshape(-1, d))
    radii = vi.ListRadii(index)
    q = mats[:3, 0]
    scores, ids = vi.search_bounded(radii, q, 5)  # nothing added yet
    assert scores.shape == ids.shape == (3, 0)
    vi.add_clips(index, np.arange(1, c + 1), mats)
    plain, plain_ids = vi.search(index, q, 50)
    every, every_ids = vi.search_bounded(radii, q, 50)  # 32 probes of 16 lists: all of them
    np.testing.assert_array_equal(every_ids, plain_ids)
    np.testing.assert_allclose(every, plain, atol=1e-6)
    assert vi._base(index).nprobe == 32
    scores, ids = vi.search_bounded(radii, q[:0], 5)
    assert scores.shape == ids.shape == (0, 5)
