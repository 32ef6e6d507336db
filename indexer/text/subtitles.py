"""Subtitles: embedded text streams (mov_text, subrip, webvtt, ass) converted to SRT by ffmpeg, and
sidecar files next to the video (`name.srt`, `name.vtt`, `name.<lang>.srt|vtt`)."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Sequence
from pathlib import Path

from indexer.media.opened import MediaRefused, open_media
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


def read_sidecar(path: Path, roots: Sequence[Path] | None = None) -> list[TextLine]:
    """A sidecar file's cues, read as the video is (`open_media`): with `roots`, a symlink, a FIFO
    or a file outside them is refused (MediaRefused), never followed."""
    with open_media(path, roots) as f:
        if f.size > MAX_SIDECAR_BYTES:
            raise ValueError(f"{path.name} is larger than {MAX_SIDECAR_BYTES >> 20} MiB")
        data = os.pread(f.fd, f.size, 0)
    return parse_cues(data.decode("utf-8-sig", errors="replace"))


def read_stream(video: str | Path, stream: Stream, fds: Sequence[int] = ()) -> list[TextLine]:
    """One embedded text subtitle stream, converted to SRT by ffmpeg (fds: descriptors it inherits)."""
    proc = subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-i", str(video)]
        + ["-map", f"0:{stream.index}", "-f", "srt", "pipe:1"],
        capture_output=True,
        timeout=300,
        pass_fds=tuple(fds),
    )
    if proc.returncode != 0:
        msg = proc.stderr.decode(errors="replace").strip().splitlines()
        raise ValueError(f"stream {stream.index} ({stream.codec}): {msg[-1] if msg else 'ffmpeg failed'}")
    return parse_cues(proc.stdout.decode("utf-8", errors="replace"))


def read_subtitles(
    video: Path,
    streams: list[Stream],
    source: str | None = None,
    fds: Sequence[int] = (),
    roots: Sequence[Path] | None = None,
) -> tuple[list[TextLine], list[str]]:
    """Every embedded text stream and sidecar file: (lines, notes on what was read or passed over).

    video: where the file lives (its sidecars are beside it); source, fds: what ffmpeg reads the
    streams from (an `OpenedMedia`'s name and descriptors; default: `video`); roots: sidecars must
    be real files inside them. Identical cues from two tracks (the same subtitles embedded and
    beside the file) are kept once.
    """
    lines: list[TextLine] = []
    notes: list[str] = []
    for s in streams:
        if s.kind != "subtitle":
            continue
        if s.codec not in TEXT_CODECS:
            notes.append(f"stream {s.index} is {s.codec} (bitmap subtitles are not read)")
            continue
        got = read_stream(source or video, s, fds)
        lines += got
        notes.append(f"stream {s.index} {s.codec}{'/' + s.language if s.language else ''}: {len(got)} cues")
    for p in sidecars(video):
        try:
            got = read_sidecar(p, roots)
        except MediaRefused as e:
            notes.append(f"{p.name} passed over: {e.reason}")
            continue
        lines += got
        notes.append(f"{p.name}: {len(got)} cues")
    unique = sorted(set(lines), key=lambda ln: (ln.start, ln.end, ln.text))
    return unique, notes
