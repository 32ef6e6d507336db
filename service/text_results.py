"""The text side of a search result: which sources placed a moment and the lines that matched."""

from __future__ import annotations

from typing import Any

from indexer.search.fusion import FusedMoment
from indexer.search.searcher import ScoredMoment

from .schemas import TextMatch


def text_fields(m: ScoredMoment) -> dict[str, Any]:
    """The REST Moment's visual_score / sources / matches of an indexer moment (a plain visual
    moment: its score is the visual score, its only source 'visual')."""
    if not isinstance(m, FusedMoment):
        return {"visual_score": m.score, "sources": ["visual"], "matches": []}
    return {
        "visual_score": m.visual_score,
        "sources": list(m.sources),
        "matches": [
            TextMatch(source=t.source, start=round(t.start, 3), end=round(t.end, 3), text=t.text)
            for t in m.matches
        ],
    }


def is_weak(m: ScoredMoment, weak_below: float | None) -> bool:
    """Below the library's weak-match line: a moment placed by matching words never is; a fused
    moment without words is judged by its visual score (its fused score is on another scale)."""
    if weak_below is None:
        return False
    if isinstance(m, FusedMoment):
        return not m.matches and (m.visual_score is None or m.visual_score < weak_below)
    return m.score < weak_below
