"""The streams of a file as `ffmpeg -i` lists them (there is no ffprobe in imageio-ffmpeg)."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from indexer.media.video import ffmpeg_exe

# "  Stream #0:2(eng): Subtitle: mov_text (tx3g / 0x67337874), 0 kb/s (default)"
_STREAM = re.compile(r"Stream #\d+:(\d+)(?:\[\w+\])?(?:\((\w+)\))?: (Video|Audio|Subtitle|Data): (\w+)")


@dataclass(frozen=True)
class Stream:
    index: int  # the file's stream number
    kind: str  # 'video' | 'audio' | 'subtitle' | 'data'
    codec: str
    language: str  # '' when the container names none


def list_streams(path: str | Path, fds: Sequence[int] = ()) -> list[Stream]:
    """fds: descriptors ffmpeg inherits (`path` may be an `OpenedMedia.name`)."""
    proc = subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path)],
        capture_output=True,
        text=True,
        errors="replace",
        timeout=60,
        pass_fds=tuple(fds),
    )
    return [
        Stream(int(m.group(1)), m.group(3).lower(), m.group(4), m.group(2) or "")
        for m in _STREAM.finditer(proc.stderr)
    ]
