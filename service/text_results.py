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
