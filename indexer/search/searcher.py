"""Two-stage moment search over a Store: FAISS candidates, then the exact partial-alignment rerank.

    searcher = Searcher(store, model)          # model: a T2VParser (text side is enough)
    result = searcher.search("a man slices onions", top_k=10, group_by_video=False,
                             video_ids=None, min_score=None)
    result.moments    -> list[ScoredMoment] best first (video_id, clip_id, title, path, start, end, score)
    result.groups     -> list[VideoHits] when group_by_video (best moments per video)
    result.timings_ms -> {'encode', 'candidates', 'rerank', 'metadata', 'total'}

Stage 1 searches the FAISS index with the query's vectors and unions the hit clips (a token-level
IVF index of a trained model with views: the K views first, then only the word vectors a quick
look finds close enough to matter; otherwise every valid vector); stage 2 scores those clips
exactly with `partial_alignment_scores` over their stored float16 (T+K) x D matrices.
`exhaustive_scores` scores every live clip (the recall reference).
A Searcher is safe to share between threads (the store serialises what needs it).
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from typing import Any, Protocol

import numpy as np
import torch

from indexer.store import Store, searched_views
from indexer.store import vector_index as vi
from model import T2VParser, TextSets, one_query_scores, partial_alignment_scores
from model.scoring import rerank_block

# Exact-scoring a video_ids filter's clips directly is cheaper than FAISS below this many clips.
FILTER_EXACT_MAX_CLIPS = 20_000
# Clips gathered per rerank block: bounds the float16 copy in memory.
RERANK_BLOCK = 4096
# FAISS hits per query vector when not given. Token-level first stages need 128 to keep the exact
# top-10 on 4.5k trained demo clips (recall 0.996 vs 0.977 at 64) and rerank the same few dozen
# clips either way on clustered ViT-B/32 stores. A pooled index needs 128 on a store of a million
# clips, whose topics hold hundreds of near-duplicates (recall 0.995 vs 0.935 at 64), and keeps
# more of the exact top-10 on trained embeddings (issue 17, docs/BENCHMARKS.md).
HITS_PER_VECTOR = 128
# Clips reranked at most when not given: token-level hits name few clips (the cap is for safety);
# a pooled index's hits reach ~1,100 clips at 52k-100k clustered clips, of which the 512 with the
# best first-stage similarity keep recall 1.000 (rerank ~5 ms instead of 11.5).
TOKEN_MAX_CANDIDATES = 4096
POOLED_MAX_CANDIDATES = 512
# Views first (issue 17). A trained model's K decomposition views (the last K rows of a query set)
# carry the matches that decide its top moments: on 4.5k-81k trained demo clips no word vector's
# best row in the whole store reached the exact 10th best score (bench/bench_relevance.py), and the
# views alone with twice the hits found as much of the exact top-10 as every vector (1.0000 /
# 0.9975 / 0.9969 against 1.0000 / 0.9978 / 0.9941) with a tenth of the clips to rerank. A word
# vector is still searched in full when a quick look (1/WORD_PROBE_SHARE of the lists, its best
# row) comes within WORD_MARGIN of the score the answer needs, as the views' clips show it: where
# words matter (another model, planted test vectors) they are searched as before. Only a trained
# checkpoint's views come first (`store.searched_views`): random or pretrained-only weights have
# untrained views, and there the extra steps cost 25-35% (random ViT-B/32 stores, issue 17).
VIEW_HITS_FACTOR = 2
WORD_PROBE_SHARE = 16
WORD_MARGIN = 0.05
# index types whose rows are every stored vector, searched by probing inverted lists
_TOKEN_IVF_TYPES = ("ivf", "ivf-sq8", "ivf-pq")


@dataclass(frozen=True)
class ScoredMoment:
    """One clip window and its score (the service turns it into its REST `Moment`)."""

    video_id: int
    clip_id: int
    title: str
    path: str
    start: float  # seconds
    end: float
    score: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class VideoHits:
    video_id: int
    title: str
    path: str
    score: float  # best moment's score
    moments: list[ScoredMoment]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class SearchResult:
    query: str
    moments: list[ScoredMoment]
    groups: list[VideoHits] | None = None
    candidates: int = 0  # clips scored exactly
    timings_ms: dict[str, float] = field(default_factory=dict)
    # the query set that was scored (for explanations); not part of the printed result
    text: TextSets | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(replace(self, text=None)).items() if k != "text"}


class QueryEncoder(Protocol):
    """What encodes queries: a T2VParser, or `model.onnx_text.OnnxTextEncoder` (the same sets, faster)."""

    def encode_texts(self, texts: list[str]) -> TextSets: ...


class Searcher:
    """Query encoding + two-stage search over one Store.

    candidates_per_vector: FAISS hits per query vector (stage 1; None: HITS_PER_VECTOR);
    max_candidates caps the union (the clips with the best single-vector similarity are kept; None:
    4096 for a token-level index, 512 for a pooled one, looked up per query since a growing store
    changes its index);
    faiss_threads: OpenMP threads per FAISS call; encoder: what encodes query text (default: the model);
    rerank_threads: threads one search's exact rerank may use on a CPU (the same scores as one).
    """

    def __init__(
        self,
        store: Store,
        model: T2VParser | None = None,
        candidates_per_vector: int | None = None,
        max_candidates: int | None = None,
        faiss_threads: int = 1,
        encoder: QueryEncoder | None = None,
        rerank_threads: int = 1,
    ) -> None:
        self.store = store
        self.model = model
        self.encoder: QueryEncoder | None = encoder if encoder is not None else model
        self.candidates_per_vector = candidates_per_vector
        self.max_candidates = max_candidates
        self.faiss_threads = faiss_threads
        self.rerank_threads = max(1, rerank_threads)
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()

    # ------------------------------------------------------------ stages
    def encode(self, query: str) -> TextSets:
        if self.encoder is None:
            raise ValueError("this Searcher has no model: pass TextSets instead of text")
        with torch.no_grad():
            return self.encoder.encode_texts([query])

    def candidate_clips(
        self, text: TextSets, video_ids: Sequence[int] | None = None, top_k: int = 10
    ) -> np.ndarray:
        """Stage 1: the clips to score exactly, live ones only, for an answer of `top_k` moments
        (what decides which word vectors are searched when views come first)."""
        return self._stage1(text, video_ids, top_k, per_video=0)[0]

    def _stage1(
        self, text: TextSets, video_ids: Sequence[int] | None, top_k: int, per_video: int
    ) -> tuple[np.ndarray, np.ndarray | None, float]:
        """(candidate clip ids, their exact scores when stage 1 already has them (else None),
        seconds of exact scoring stage 1 did); `per_video` > 0: the answer is `top_k` videos of
        up to `per_video` moments each."""
        if video_ids is not None:
            ids = self.store.live_clip_ids(video_ids)
            if len(ids) <= FILTER_EXACT_MAX_CLIPS:
                return ids, None, 0.0
        vecs = text.vectors[0][text.mask[0]].float().cpu().numpy()  # (m, D)
        spec = self.store.index_spec
        pooled = vi.is_pooled(spec)
        if pooled:
            # a global (one vector per clip) index: the pooled query joins the per-row probes
            vecs = np.concatenate([vecs, vi.pool(vecs[None])], axis=0)  # (m + 1, D)
        k = self.candidates_per_vector or HITS_PER_VECTOR
        cap = self.max_candidates or (POOLED_MAX_CANDIDATES if pooled else TOKEN_MAX_CANDIDATES)
        views = searched_views(self.store.identity)
        if spec.type not in _TOKEN_IVF_TYPES or not 0 < views < len(vecs):
            hits = self.store.candidates(vecs, k, self.faiss_threads)  # (m, k) each
            return self._merge([hits], video_ids, cap), None, 0.0
        # views first: their hits, scored exactly, give the score the answer needs
        view_hits = self.store.candidates(vecs[-views:], k * VIEW_HITS_FACTOR, self.faiss_threads)
        ids = self._merge([view_hits], video_ids, cap)
        t0 = time.perf_counter()
        scores = self.rerank(text, ids)
        scored = time.perf_counter() - t0
        floor = self._needed_score(ids, scores, top_k, per_video)
        words = vecs[:-views]  # (m - K, D)
        look = max(1, spec.nprobe // WORD_PROBE_SHARE)
        best, found = self.store.candidates(words, 1, self.faiss_threads, probes=look)  # (m - K, 1)
        if best.shape[1] == 0:  # an empty index
            return ids, scores, scored
        near = words[(best[:, 0] >= floor - WORD_MARGIN) | (found[:, 0] < 0)]  # none found: search it
        if len(near) == 0:
            return ids, scores, scored
        word_hits = self.store.candidates(near, k, self.faiss_threads)
        merged = self._merge([view_hits, word_hits], video_ids, cap)
        # the views' clips keep their scores; only the clips the words added are scored now
        seen = np.isin(merged, ids)
        by_id = np.argsort(ids)
        out = np.empty(len(merged), dtype=np.float32)
        out[seen] = scores[by_id[np.searchsorted(ids, merged[seen], sorter=by_id)]]
        t0 = time.perf_counter()
        out[~seen] = self.rerank(text, merged[~seen])
        return merged, out, scored + time.perf_counter() - t0

    def _needed_score(self, ids: np.ndarray, scores: np.ndarray, top_k: int, per_video: int) -> float:
        """The score a clip must reach to change an answer built from these scored clips: the
        top_k-th best; grouped (`per_video` > 0), the lowest of the top_k-th video's best and each
        top video's per_video-th moment. -inf when the clips give fewer moments or videos."""
        if per_video <= 0:
            if len(scores) < top_k:
                return -np.inf
            return float(np.partition(scores, len(scores) - top_k)[-top_k])
        order = np.argsort(-scores, kind="stable")
        videos = self.store.clip_videos(ids[order])  # best clip first
        top, first, counts = np.unique(videos, return_index=True, return_counts=True)
        if len(top) < top_k:
            return -np.inf
        kept = np.argsort(first, kind="stable")[:top_k]  # the top_k videos, by their best clip
        if (counts[kept] < per_video).any():
            return -np.inf  # a kept video's later moments may be anywhere below
        ranked = scores[order]
        floor = float(ranked[first[kept[-1]]])
        for v in top[kept]:
            floor = min(floor, float(ranked[videos == v][per_video - 1]))
        return floor

    def _merge(
        self, hits: list[tuple[np.ndarray, np.ndarray]], video_ids: Sequence[int] | None, cap: int
    ) -> np.ndarray:
        """FAISS answers (scores, clip ids) -> live clips (of `video_ids`), best similarity first, at
        most `cap`."""
        flat_ids = np.concatenate([i.ravel() for _, i in hits])
        flat_scores = np.concatenate([s.ravel() for s, _ in hits])
        ok = flat_ids >= 0
        flat_ids, flat_scores = flat_ids[ok], flat_scores[ok]
        if len(flat_ids) == 0:
            return np.zeros(0, dtype=np.int64)
        # best similarity per clip, then the top `cap` clips
        order = np.argsort(-flat_scores, kind="stable")
        uniq, first = np.unique(flat_ids[order], return_index=True)
        best_first = uniq[np.argsort(first)]
        live = self.store.filter_live(best_first, video_ids)
        return live[:cap]

    def rerank(self, text: TextSets, clip_ids: np.ndarray) -> np.ndarray:
        """Stage 2: exact partial-alignment scores (C,) of one query against `clip_ids`."""
        out = np.empty(len(clip_ids), dtype=np.float32)
        rows = text.vectors[0][text.mask[0]]  # (n_t valid, D): no padding to mask in the kernel
        # on a CPU with rerank_threads > 1: the clips split at whole kernel blocks, each part
        # gathered and scored by its own thread (same blocks, so the same scores as one thread)
        size = rerank_block(rows)
        blocks = -(-len(clip_ids) // size)
        parts = max(1, min(self.rerank_threads, blocks)) if rows.device.type == "cpu" else 1
        cuts = [size * (blocks * i // parts) for i in range(parts)] + [len(clip_ids)]
        (a, b), *others = itertools.pairwise(cuts)
        helpers = []
        for c, d in others:
            try:
                helpers.append(self._rerank_pool().submit(self._score, rows, clip_ids[c:d], out[c:d]))
            except RuntimeError:  # closed meanwhile (the service stopping): score it here
                self._score(rows, clip_ids[c:d], out[c:d])
        self._score(rows, clip_ids[a:b], out[a:b])
        for f in helpers:
            f.result()
        return out

    def _score(self, rows: torch.Tensor, clip_ids: np.ndarray, out: np.ndarray) -> None:
        """Exact scores of `clip_ids` into `out`, gathered RERANK_BLOCK clips at a time."""
        for start in range(0, len(clip_ids), RERANK_BLOCK):
            chunk = clip_ids[start : start + RERANK_BLOCK]
            mats = torch.from_numpy(self.store.matrices(chunk)).to(rows.device)  # (c, n_v, D) float16
            with torch.no_grad():
                s = one_query_scores(rows, mats, tau=self.store.tau)  # (c,)
            out[start : start + len(chunk)] = s.float().cpu().numpy()

    def _rerank_pool(self) -> ThreadPoolExecutor:
        with self._pool_lock:
            if self._pool is None:
                # helpers take the starting thread's torch threads (1 in the service's workers):
                # kernels round differently with another count, and the scores must not change
                init = partial(torch.set_num_threads, torch.get_num_threads())
                self._pool = ThreadPoolExecutor(self.rerank_threads - 1, "t2v-rerank", initializer=init)
            return self._pool

    def close(self) -> None:
        """Stop the rerank helper threads (a later search starts them again)."""
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown()

    def exhaustive_scores(
        self, text: TextSets, video_ids: Sequence[int] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(clip ids (N,), scores (Q, N)) of every live clip: the exact reference for recall."""
        ids = self.store.live_clip_ids(video_ids)
        out = np.empty((text.vectors.shape[0], len(ids)), dtype=np.float32)
        for start in range(0, len(ids), RERANK_BLOCK):
            chunk = ids[start : start + RERANK_BLOCK]
            mats = torch.from_numpy(self.store.matrices(chunk)).to(text.vectors.device)
            with torch.no_grad():
                s = partial_alignment_scores(text.vectors, mats, text.mask, tau=self.store.tau)
            out[:, start : start + len(chunk)] = s.float().cpu().numpy()
        return ids, out

    # ------------------------------------------------------------ the query
    def search(
        self,
        query: str | TextSets,
        top_k: int = 10,
        group_by_video: bool = False,
        video_ids: Sequence[int] | None = None,
        min_score: float | None = None,
        exhaustive: bool = False,
        moments_per_video: int = 3,
    ) -> SearchResult:
        """Best moments for one query (text, or TextSets of one query).

        Pass the text, not a pre-encoded set, when the timings matter: `encode` is timed here,
        around the call that encodes (it is 0 for a TextSets argument, which was encoded elsewhere).
        """
        if top_k < 1:
            raise ValueError("top_k must be >= 1")
        t0 = time.perf_counter()
        text = self.encode(query) if isinstance(query, str) else query
        if text.vectors.shape[0] != 1:
            raise ValueError("search takes one query; use exhaustive_scores for batches")
        t1 = time.perf_counter()
        known, scored = None, 0.0  # exact scores stage 1 computed, and its seconds of scoring
        if exhaustive:
            clip_ids = self.store.live_clip_ids(video_ids)
        else:
            per_video = max(1, moments_per_video) if group_by_video else 0
            clip_ids, known, scored = self._stage1(text, video_ids, top_k, per_video)
        t2 = time.perf_counter()
        scores = self.rerank(text, clip_ids) if known is None else known
        # best first; equal scores (a still scene's identical windows) by clip id, the earlier
        # moment first, whatever order stage 1 found them in
        order = np.lexsort((clip_ids, -scores))
        if min_score is not None:
            order = order[scores[order] >= min_score]
        t3 = time.perf_counter()
        # metadata only for what can be returned
        keep = order if group_by_video else order[:top_k]
        records = {r.id: r for r in self.store.clip_records(clip_ids[keep].tolist())}
        moments = [
            ScoredMoment(r.video_id, r.id, r.title, r.path, r.start, r.end, float(scores[i]))
            for i in keep.tolist()
            if (r := records.get(int(clip_ids[i]))) is not None
        ]
        groups = None
        if group_by_video:
            groups = group_moments(moments, top_k, moments_per_video)
            moments = [m for g in groups for m in g.moments]
        t4 = time.perf_counter()
        label = query if isinstance(query, str) else ""
        timings = {
            "encode": (t1 - t0) * 1e3,
            "candidates": (t2 - t1 - scored) * 1e3,  # stage 1's exact scoring counts as rerank
            "rerank": (t3 - t2 + scored) * 1e3,
            "metadata": (t4 - t3) * 1e3,
            "total": (t4 - t0) * 1e3,
        }
        return SearchResult(label, moments, groups, int(len(clip_ids)), timings, text)


def group_moments(moments: list[ScoredMoment], top_k: int, per_video: int) -> list[VideoHits]:
    """Moments (best first) -> the top_k videos, each with its best `per_video` moments."""
    groups: dict[int, VideoHits] = {}
    for m in moments:
        g = groups.get(m.video_id)
        if g is None:
            if len(groups) >= top_k:
                continue
            g = groups[m.video_id] = VideoHits(m.video_id, m.title, m.path, m.score, [])
        if len(g.moments) < per_video:
            g.moments.append(m)
    return list(groups.values())
