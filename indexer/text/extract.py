"""One video's text tracks, each source on its own: a missing engine or a broken track becomes that
source's report ('skipped' / 'failed' with the reason), never an error for the video."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from indexer.media.opened import OpenedMedia
from indexer.media.video import probe
from indexer.text.lines import Source, TextLine, TrackReport, VideoText
from indexer.text.ocr import OcrUnavailable, read_on_screen
from indexer.text.settings import TextSettings
from indexer.text.speech import SpeechEngine, SpeechUnavailable, read_audio, speech_engine
from indexer.text.streams import Stream, list_streams
from indexer.text.subtitles import read_subtitles


@dataclass(frozen=True)
class Media:
    """What ffmpeg reads a video's streams from: a name, and the descriptors it must inherit."""

    name: str
    fds: tuple[int, ...] = ()


class TextExtractor:
    """Extracts the enabled sources of each video; holds the ASR engine (loaded once, on first use).
    Safe to share between decode threads (the ASR engine runs one video at a time)."""

    def __init__(self, settings: TextSettings | None = None) -> None:
        self.settings = settings or TextSettings()
        self._engine: SpeechEngine | None = None
        self._engine_error: str | None = None
        self._asr_lock = threading.Lock()

    def extract(
        self,
        video: Path,
        width: int,
        height: int,
        opened: OpenedMedia | None = None,
        roots: Sequence[Path] | None = None,
    ) -> VideoText:
        """The text tracks of `video`. opened: the file as ingestion opened it (every read goes
        through its descriptor, never the name again, as for the frames); roots: sidecar files
        must be real files inside them."""
        s = self.settings
        media = Media(str(video) if opened is None else opened.name, () if opened is None else opened.fds)
        streams = list_streams(media.name, media.fds)
        out = VideoText()
        self._run(out, "subtitles", s.subtitles, lambda: self._subtitles(video, streams, media, roots))
        self._run(out, "speech", s.speech, lambda: self._speech(media, streams))
        self._run(out, "ocr", s.ocr, lambda: self._ocr(media, width, height))
        return out

    @staticmethod
    def _run(
        out: VideoText, source: Source, enabled: bool, fn: Callable[[], tuple[list[TextLine], str]]
    ) -> None:
        if not enabled:
            out.reports.append(
                TrackReport(
                    source, "skipped", reason=f"disabled (T2V_TEXT__{source.upper()}=true enables it)"
                )
            )
            return
        t0 = time.perf_counter()
        try:
            lines, note = fn()
        except (OcrUnavailable, SpeechUnavailable) as e:
            out.reports.append(
                TrackReport(source, "skipped", reason=str(e), seconds=time.perf_counter() - t0)
            )
            return
        except Exception as e:  # a broken track costs that track, not the video
            reason = f"{type(e).__name__}: {e}"[:300]
            out.reports.append(TrackReport(source, "failed", reason=reason, seconds=time.perf_counter() - t0))
            return
        out.lines += lines
        out.reports.append(
            TrackReport(source, "found" if lines else "none", len(lines), note, time.perf_counter() - t0)
        )

    @staticmethod
    def _subtitles(
        video: Path, streams: list[Stream], media: Media, roots: Sequence[Path] | None
    ) -> tuple[list[TextLine], str]:
        lines, notes = read_subtitles(video, streams, media.name, media.fds, roots)
        return lines, "; ".join(notes) if notes else "no subtitle stream or sidecar file"

    def _speech(self, media: Media, streams: list[Stream]) -> tuple[list[TextLine], str]:
        audio = [s for s in streams if s.kind == "audio"]
        if not audio:
            return [], "no audio stream"
        pcm = read_audio(media.name, audio[0].index, media.fds)
        with self._asr_lock:
            if self._engine is None and self._engine_error is None:
                try:
                    self._engine = speech_engine(self.settings)
                except SpeechUnavailable as e:
                    self._engine_error = str(e)
            if self._engine is None:
                raise SpeechUnavailable(self._engine_error or "no ASR engine")
            lines = self._engine.transcribe(pcm)
        return lines, f"{self._engine.name}, {len(pcm) / 16000:.1f}s of audio"

    def _ocr(self, media: Media, width: int, height: int) -> tuple[list[TextLine], str]:
        s = self.settings
        lines, stats = read_on_screen(
            media.name, width, height, s.ocr_interval, s.ocr_lang, s.ocr_min_confidence, media.fds
        )
        return lines, f"{stats.read} of {stats.frames} sampled frames read (the others did not change)"


def extract_text(path: str | Path, settings: TextSettings | None = None) -> VideoText:
    """The text tracks of one file (probes it for its frame size)."""
    info = probe(path)
    return TextExtractor(settings).extract(Path(path), info.width, info.height)
