"""Speech: the audio track as 16 kHz mono PCM (ffmpeg), transcribed by an ASR engine into timed lines.

    engine = speech_engine(settings)          # SpeechUnavailable with the reason when it cannot run
    lines = engine.transcribe(pcm)            # pcm: (n,) int16 at 16 kHz

Engines: `PocketSphinx` (the default: its English acoustic model, dictionary and language model ship
inside the `pocketsphinx` package) and `FasterWhisper` (a CTranslate2 Whisper model directory the
user provides as `asr_model`; never downloaded).
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from indexer.media.video import ffmpeg_exe
from indexer.text.lines import TextLine, clean
from indexer.text.settings import TextSettings

RATE = 16_000
CHUNK = 30 * RATE  # PocketSphinx decodes one chunk at a time (memory stays flat on long videos)
LINE_GAP = 0.6  # seconds of silence that end a spoken line
LINE_WORDS = 12


class SpeechUnavailable(Exception):
    """The configured ASR engine cannot run (not installed, no weights); the message says why."""


class SpeechEngine(Protocol):
    name: str

    def transcribe(self, pcm: np.ndarray) -> list[TextLine]:
        """(n,) int16 mono PCM at 16 kHz -> timed lines (seconds from the start of `pcm`)."""
        ...


def read_audio(video: str | Path, stream_index: int, fds: Sequence[int] = ()) -> np.ndarray:
    """One audio stream as (n,) int16 mono 16 kHz (fds: descriptors ffmpeg inherits)."""
    proc = subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-i", str(video)]
        + ["-map", f"0:{stream_index}", "-ac", "1", "-ar", str(RATE), "-f", "s16le", "pipe:1"],
        capture_output=True,
        timeout=3600,
        pass_fds=tuple(fds),
    )
    if proc.returncode != 0:
        raise ValueError(proc.stderr.decode(errors="replace").strip()[-300:] or "ffmpeg failed")
    return np.frombuffer(proc.stdout[: len(proc.stdout) // 2 * 2], dtype=np.int16)


def group_words(words: list[tuple[float, float, str]], source_gap: float = LINE_GAP) -> list[TextLine]:
    """(start, end, word) in time order -> lines broken at pauses and every LINE_WORDS words."""
    lines: list[TextLine] = []
    cur: list[tuple[float, float, str]] = []
    for w in words:
        if cur and (w[0] - cur[-1][1] > source_gap or len(cur) >= LINE_WORDS):
            lines.append(TextLine("speech", cur[0][0], cur[-1][1], " ".join(x[2] for x in cur)))
            cur = []
        cur.append(w)
    if cur:
        lines.append(TextLine("speech", cur[0][0], cur[-1][1], " ".join(x[2] for x in cur)))
    return lines


def _cut_points(pcm: np.ndarray) -> list[int]:
    """Chunk boundaries near every CHUNK samples, each at the quietest 0.1 s of the chunk's last 5 s."""
    cuts, pos, frame = [0], 0, RATE // 10
    while len(pcm) - pos > CHUNK:
        lo = pos + CHUNK - 5 * RATE
        tail = pcm[lo : pos + CHUNK].astype(np.float32)
        energy = np.abs(tail[: len(tail) // frame * frame].reshape(-1, frame)).mean(axis=1)
        pos = lo + int(np.argmin(energy)) * frame + frame // 2
        cuts.append(pos)
    return [*cuts, len(pcm)]


_ALT = re.compile(r"\(\d+\)$")  # 'the(2)': an alternative pronunciation of 'the'


class PocketSphinx:
    name = "pocketsphinx"

    def __init__(self) -> None:
        try:
            import pocketsphinx
        except ImportError as e:
            raise SpeechUnavailable("pocketsphinx is not installed (pip install pocketsphinx)") from e
        self._decoder = pocketsphinx.Decoder(samprate=RATE, loglevel="FATAL")

    def transcribe(self, pcm: np.ndarray) -> list[TextLine]:
        words: list[tuple[float, float, str]] = []
        cuts = _cut_points(pcm)
        for a, b in zip(cuts[:-1], cuts[1:], strict=True):
            d = self._decoder
            d.start_utt()
            d.process_raw(pcm[a:b].tobytes(), full_utt=True)
            d.end_utt()
            frate = 100.0  # PocketSphinx frames per second
            for seg in d.seg():
                w = _ALT.sub("", seg.word)
                if w.startswith(("<", "[", "+")) or not w:
                    continue  # silence, noise and sentence markers
                words.append((a / RATE + seg.start_frame / frate, a / RATE + (seg.end_frame + 1) / frate, w))
        return group_words(words)


class FasterWhisper:
    name = "whisper"

    def __init__(self, model_dir: Path | None, language: str | None) -> None:
        if model_dir is None:
            raise SpeechUnavailable(
                "asr_engine=whisper needs T2V_TEXT__ASR_MODEL (a faster-whisper model dir)"
            )
        if not (Path(model_dir) / "model.bin").is_file():
            raise SpeechUnavailable(
                f"no faster-whisper model at {model_dir} (a CTranslate2 directory with model.bin; "
                "convert or copy one there: nothing is downloaded)"
            )
        try:
            from faster_whisper import WhisperModel
        except ImportError as e:
            raise SpeechUnavailable("faster-whisper is not installed (pip install faster-whisper)") from e
        self._model = WhisperModel(
            str(model_dir), device="auto", compute_type="default", local_files_only=True
        )
        self._language = language

    def transcribe(self, pcm: np.ndarray) -> list[TextLine]:
        audio = pcm.astype(np.float32) / 32768.0
        segments, _ = self._model.transcribe(audio, language=self._language, vad_filter=False)
        return [
            TextLine("speech", float(s.start), float(s.end), clean(s.text)) for s in segments if clean(s.text)
        ]


def speech_engine(settings: TextSettings) -> SpeechEngine:
    if settings.asr_engine == "whisper":
        return FasterWhisper(settings.asr_model, settings.asr_language)
    return PocketSphinx()
