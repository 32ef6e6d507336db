"""What is seen, said and written, in one ranking: the visual partial-alignment ranking fused with
the full-text (FTS5/BM25) ranking of the stored subtitle, speech and on-screen-text lines.
Lines holding under half of the query's content words do not count (MIN_COVERAGE).

    result = fused_search(searcher, "kitchen tour", sources=None, top_k=10)   # None: every source

Each text hit (a line) is placed in the clip of its video whose window is centred nearest to the
line. The clips are fused by reciprocal-rank fusion (RRF, k=60): score = sum over the rankings a
clip is in of 1 / (k + rank). RRF was chosen over calibrated scores (z-scored visual + normalised
BM25) by bench/bench_text.py (docs/BENCHMARKS.md): BM25 and partial-alignment scores live on
unrelated scales whose spread changes per query, ranks do not. A moment with matching lines is
returned at the best line's time ("the moment is where the words are"), with the lines in
`matches`. A store without text, or a query no line matches, is the visual search unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np

from indexer.search.searcher import ScoredMoment, Searcher, SearchResult, group_moments
from indexer.store import ClipRecord
from indexer.store.texttracks import TextHit, query_words
from indexer.text.lines import SOURCES, TEXT_SOURCES
from model import TextSets

RRF_K = 60.0  # the usual constant: a rank-1 hit in one list outweighs rank ~2 in another by little
VISUAL_POOL = 200  # visual moments ranked before fusion (the rest rank after them)
TEXT_LIMIT = 200  # matching lines read per query
LINES_SHOWN = 3  # matching lines kept per moment
# A line counts for the text ranking only when it holds at least this share of the query's words
# (stop words aside): a description of pictures ("a red circle moving left") shares a word or two
# with many lines, and rank fusion would otherwise lift those lines above the visual match
# (bench/bench_text.py measured visual R@1 0.39 -> 0.00 without it).
MIN_COVERAGE = 0.5
STOP_WORDS = frozenset(
    "a an the and or of to in on at by for with from is are was were be it its this that then "
    "there here as into over under up down out".split()
)
Method = Literal["rrf", "score"]


@dataclass(frozen=True)
class TextMatch:
    source: str  # 'subtitles' | 'speech' | 'ocr'
    start: float  # seconds
    end: float
    text: str


@dataclass(frozen=True)
class FusedMoment(ScoredMoment):
    """A ScoredMoment whose score is the fused score; start/end are the best matching line's time
    when lines matched (the clip window otherwise)."""

    visual_score: float | None = None  # the partial-alignment score (None: visual not searched)
    sources: tuple[str, ...] = ()  # the rankings that placed it: 'visual' and/or text sources
    matches: tuple[TextMatch, ...] = ()  # best first
    clip_start: float = 0.0  # the clip window the moment belongs to
    clip_end: float = 0.0


def check_sources(sources: Sequence[str] | None) -> list[str]:
    """None -> every source; otherwise the given ones, checked (ValueError names a bad one)."""
    if sources is None:
        return list(SOURCES)
    bad = [s for s in sources if s not in SOURCES]
    if bad or not sources:
        raise ValueError(
            f"unknown source {bad[0]!r}; sources are {', '.join(SOURCES)}" if bad else "no source"
        )
    return list(dict.fromkeys(sources))


def covers(line: str, query: str) -> bool:
    """Whether `line` holds at least MIN_COVERAGE of the query's words (its content words when it
    has any); a query with "quoted phrases" already made FTS5 require them, so it always does."""
    if '"' in query:
        return True
    words = set(query_words(query))
    content = words - STOP_WORDS or words
    if not content:
        return False
    have = set(query_words(line))
    return len(content & have) >= MIN_COVERAGE * len(content)


def _clip_of(line: TextHit, clips: list[ClipRecord]) -> ClipRecord | None:
    """The clip whose window holds the line's middle, centred nearest to it (else the nearest clip)."""
    if not clips:
        return None
    mid = (line.start + line.end) / 2

    def key(c: ClipRecord) -> tuple[bool, float]:
        inside = c.start <= mid <= c.end
        return (not inside, abs((c.start + c.end) / 2 - mid))

    return min(clips, key=key)


def fused_search(
    searcher: Searcher,
    query: str | TextSets,
    *,
    text_query: str | None = None,
    sources: Sequence[str] | None = None,
    top_k: int = 10,
    group_by_video: bool = False,
    video_ids: Sequence[int] | None = None,
    min_score: float | None = None,
    moments_per_video: int = 3,
    method: Method = "rrf",
) -> SearchResult:
    """`Searcher.search` over the chosen sources (see the module docstring). text_query: the words
    for the text index when `query` is already encoded. min_score filters on the visual score of
    moments no line matched."""
    srcs = check_sources(sources)
    words = text_query if text_query is not None else query if isinstance(query, str) else ""
    store = searcher.store
    visual = "visual" in srcs
    text_srcs = [s for s in srcs if s in TEXT_SOURCES]
    hits = store.text_search(words, text_srcs, video_ids, TEXT_LIMIT) if text_srcs and words else []
    hits = [h for h in hits if covers(h.text, words)]
    plain = dict(top_k=top_k, group_by_video=group_by_video, video_ids=video_ids, min_score=min_score)
    if not hits:
        res = searcher.search(query, moments_per_video=moments_per_video, **plain)  # type: ignore[arg-type]
        if visual:
            return res
        return replace(res, moments=[], groups=[] if group_by_video else None)
    # the text ranking, per clip: each clip's best line decides its rank
    clips_of: dict[int, list[ClipRecord]] = {}
    lines: dict[int, list[TextHit]] = {}  # clip id -> its matching lines, best first
    records: dict[int, ClipRecord] = {}
    for h in hits:
        if h.video_id not in clips_of:
            clips_of[h.video_id] = store.clips_of(h.video_id)
        clip = _clip_of(h, clips_of[h.video_id])
        if clip is not None:
            lines.setdefault(clip.id, []).append(h)
            records[clip.id] = clip
    text_rank = {cid: r for r, cid in enumerate(lines, 1)}
    # the visual ranking, over its top moments plus every text-matched clip
    res = searcher.search(query, top_k=VISUAL_POOL, group_by_video=False, video_ids=video_ids, min_score=None)
    vis_score: dict[int, float] = {m.clip_id: m.score for m in res.moments}
    meta = {m.clip_id: m for m in res.moments}
    if visual:
        missing = np.array([c for c in lines if c not in vis_score], dtype=np.int64)
        if len(missing):
            text_sets = res.text if res.text is not None else searcher.encode(words)
            for cid, s in zip(missing.tolist(), searcher.rerank(text_sets, missing).tolist(), strict=True):
                vis_score[cid] = float(s)
    vis_rank = (
        {cid: r for r, cid in enumerate(sorted(vis_score, key=lambda c: -vis_score[c]), 1)} if visual else {}
    )
    place = {c: (r.video_id, r.title, r.path, r.start, r.end) for c, r in records.items()}
    place.update({c: (m.video_id, m.title, m.path, m.start, m.end) for c, m in meta.items()})
    fused = _fuse(method, vis_score if visual else {}, vis_rank, text_rank, lines)
    moments: list[ScoredMoment] = []
    for cid, score in sorted(fused.items(), key=lambda kv: -kv[1]):
        matched = lines.get(cid, [])
        v = vis_score.get(cid) if visual else None
        if not matched and min_score is not None and (v is None or v < min_score):
            continue
        vid, title, path, c0, c1 = place[cid]
        shown = tuple(TextMatch(h.source, h.start, h.end, h.text) for h in matched[:LINES_SHOWN])
        start, end = (shown[0].start, shown[0].end) if shown else (c0, c1)
        used = (("visual",) if visual else ()) + tuple(dict.fromkeys(h.source for h in matched))
        moments.append(FusedMoment(vid, cid, title, path, start, end, score, v, used, shown, c0, c1))
    if not visual:
        moments = [m for m in moments if isinstance(m, FusedMoment) and m.matches]
    groups = None
    if group_by_video:
        groups = group_moments(moments, top_k, moments_per_video)
        moments = [m for g in groups for m in g.moments]
    else:
        moments = moments[:top_k]
    return replace(res, query=words, moments=moments, groups=groups)


def _fuse(
    method: Method,
    vis_score: dict[int, float],
    vis_rank: dict[int, int],
    text_rank: dict[int, int],
    lines: dict[int, list[TextHit]],
) -> dict[int, float]:
    """clip id -> fused score. 'rrf': reciprocal ranks; 'score': z-scored visual + BM25 / best BM25."""
    ids = set(vis_rank) | set(text_rank)
    if method == "rrf":
        return {
            c: (1 / (RRF_K + vis_rank[c]) if c in vis_rank else 0.0)
            + (1 / (RRF_K + text_rank[c]) if c in text_rank else 0.0)
            for c in ids
        }
    vals = np.array(list(vis_score.values()), dtype=np.float64)
    mu, sd = (float(vals.mean()), float(vals.std()) or 1.0) if len(vals) else (0.0, 1.0)
    best = max((-ls[0].bm25 for ls in lines.values()), default=1.0) or 1.0  # bm25() is negative
    return {
        c: ((vis_score[c] - mu) / sd if c in vis_score else 0.0)
        + (-lines[c][0].bm25 / best * 3.0 if c in lines else 0.0)  # 3 sd for the best line
        for c in ids
    }
