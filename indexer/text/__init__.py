"""Words in videos: timed text lines from subtitles, on-screen text (OCR) and speech (ASR).

    text = extract_text(path, TextSettings())   # VideoText: lines + one TrackReport per source
    text.lines   -> [TextLine(source, start, end, text), ...]
    text.reports -> [TrackReport(source, status 'found'|'none'|'skipped'|'failed', lines, reason, seconds)]

Every engine runs offline: ffmpeg (imageio-ffmpeg's binary) for subtitle streams and audio,
Debian's `tesseract` for OCR, PocketSphinx's bundled English model or a user-provided
faster-whisper model for speech. A missing engine skips its source with a reason; it never fails
the ingestion of the video. The store keeps the lines (indexer/store/texttracks.py).
"""

from typing import TYPE_CHECKING

from indexer.text.lines import SOURCES, TEXT_SOURCES, TextLine, TrackReport, VideoText
from indexer.text.settings import TextSettings

if TYPE_CHECKING:
    from indexer.text.extract import extract_text


def __getattr__(name: str) -> object:
    # the engines (ffmpeg, torch via the media code) load on first use: `indexer.settings` imports
    # TextSettings from here, and `t2v settings` / `t2v --help` must not pay for them (issue 18)
    if name == "extract_text":
        from indexer.text.extract import extract_text

        return extract_text
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["SOURCES", "TEXT_SOURCES", "TextLine", "TextSettings", "TrackReport", "VideoText", "extract_text"]
