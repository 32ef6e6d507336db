"""Subtitles: embedded text streams (mov_text, subrip, webvtt, ass) converted to SRT by ffmpeg, and
sidecar files next to the video (`name.srt`, `name.vtt`, `name.<lang>.srt|vtt`)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from indexer.media.video import ffmpeg_exe
from indexer.text.lines import TextLine, clean
from indexer.text.streams import Stream

TEXT_CODECS = {"mov_text", "subrip", "srt", "webvtt", "ass", "ssa", "text"}
SIDECAR_SUFFIXES = (".srt", ".vtt")
MAX_SIDECAR_BYTES = 20 << 20  # a subtitle file larger than this is not a subtitle file

# 00:01:02,500 or 01:02.500 (WebVTT may omit the hours)
_TIME = r"(?:(\d+):)?(\d{1,2}):(\d{1,2})[,.](\d{1,3})"
_CUE = re.compile(_TIME + r"\s*-->\s*" + _TIME)
_TAGS = re.compile(r"<[^>]*>|\{[^}]*\}")  # <i>, <c.yellow>, {\an8}


def _seconds(h: str | None, m: str, s: str, frac: str) -> float:
    return int(h or 0) * 3600 + int(m) * 60 + int(s) + int(frac.ljust(3, "0")) / 1000


def parse_cues(text: str) -> list[TextLine]:
    """SRT or WebVTT text -> subtitle lines (one per cue, markup removed, empty cues dropped)."""
    out: list[TextLine] = []
    for block in re.split(r"\n\s*\n", text.replace("\r\n", "\n").replace("\r", "\n")):
        rows = block.strip("\n").split("\n")
        for i, row in enumerate(rows):
            m = _CUE.search(row)
            if m is None:
                continue
            start = _seconds(*m.groups()[:4])
            end = _seconds(*m.groups()[4:])
            words = clean(_TAGS.sub(" ", " ".join(rows[i + 1 :])).replace("\\N", " "))
            if words and end >= start:
                out.append(TextLine("subtitles", start, end, words))
            break
    return sorted(out, key=lambda ln: (ln.start, ln.end))


def sidecars(video: Path) -> list[Path]:
    """`name.srt`, `name.vtt` and `name.<lang>.srt|vtt` beside the video, sorted."""
    found = []
    try:
        siblings = list(video.parent.iterdir())
    except OSError:
        return []
    for p in siblings:
        if p.suffix.lower() not in SIDECAR_SUFFIXES or not p.is_file():
            continue
        stem = p.name[: -len(p.suffix)]
        if stem == video.stem or (
            stem.startswith(video.stem + ".") and "." not in stem[len(video.stem) + 1 :]
        ):
            found.append(p)
    return sorted(found)


def read_sidecar(path: Path) -> list[TextLine]:
    if path.stat().st_size > MAX_SIDECAR_BYTES:
        raise ValueError(f"{path.name} is larger than {MAX_SIDECAR_BYTES >> 20} MiB")
    return parse_cues(path.read_bytes().decode("utf-8-sig", errors="replace"))


def read_stream(video: Path, stream: Stream) -> list[TextLine]:
    """One embedded text subtitle stream, converted to SRT by ffmpeg."""
    proc = subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-i", str(video)]
        + ["-map", f"0:{stream.index}", "-f", "srt", "pipe:1"],
        capture_output=True,
        timeout=300,
    )
    if proc.returncode != 0:
        msg = proc.stderr.decode(errors="replace").strip().splitlines()
        raise ValueError(f"stream {stream.index} ({stream.codec}): {msg[-1] if msg else 'ffmpeg failed'}")
    return parse_cues(proc.stdout.decode("utf-8", errors="replace"))


def read_subtitles(video: Path, streams: list[Stream]) -> tuple[list[TextLine], list[str]]:
    """Every embedded text stream and sidecar file: (lines, notes on what was read or passed over).

    Identical cues from two tracks (the same subtitles embedded and beside the file) are kept once.
    """
    lines: list[TextLine] = []
    notes: list[str] = []
    for s in streams:
        if s.kind != "subtitle":
            continue
        if s.codec not in TEXT_CODECS:
            notes.append(f"stream {s.index} is {s.codec} (bitmap subtitles are not read)")
            continue
        got = read_stream(video, s)
        lines += got
        notes.append(f"stream {s.index} {s.codec}{'/' + s.language if s.language else ''}: {len(got)} cues")
    for p in sidecars(video):
        got = read_sidecar(p)
        lines += got
        notes.append(f"{p.name}: {len(got)} cues")
    unique = sorted(set(lines), key=lambda ln: (ln.start, ln.end, ln.text))
    return unique, notes
