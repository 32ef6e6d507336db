"""The records text extraction gives: timed lines, and a report per source."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Source = Literal["subtitles", "ocr", "speech"]
TEXT_SOURCES: tuple[Source, ...] = ("subtitles", "speech", "ocr")
SOURCES = ("visual", *TEXT_SOURCES)  # what a search may fuse
TrackStatus = Literal["found", "none", "skipped", "failed"]


@dataclass(frozen=True)
class TextLine:
    source: Source
    start: float  # seconds
    end: float
    text: str


@dataclass(frozen=True)
class TrackReport:
    """What one source gave for one video: 'found' (lines), 'none' (ran, nothing there),
    'skipped' (disabled, or its engine is missing) or 'failed' (the engine raised)."""

    source: Source
    status: TrackStatus
    lines: int = 0
    reason: str = ""
    seconds: float = 0.0  # wall time spent on this source

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class VideoText:
    lines: list[TextLine] = field(default_factory=list)
    reports: list[TrackReport] = field(default_factory=list)

    def summary(self) -> str:
        """One line for logs and CLI output: 'subtitles 3 lines, ocr skipped (...)'."""
        parts = []
        for r in self.reports:
            if r.status == "found":
                parts.append(f"{r.source} {r.lines} lines")
            else:
                parts.append(f"{r.source} {r.status}" + (f" ({r.reason})" if r.reason else ""))
        return ", ".join(parts)


def clean(text: str) -> str:
    """One line of display text: whitespace collapsed."""
    return " ".join(text.split())
