"""Small test videos from ffmpeg's built-in sources (lavfi): no input files, deterministic.

The one place that renders them, for the rank demo, the tests and the benchmarks.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path

from indexer.media.video import ffmpeg_exe


def render_lavfi(
    path: Path,
    source: str,
    filters: str | None = None,
    extra: Sequence[str] = ("-pix_fmt", "yuv420p"),
) -> Path:
    """Render the lavfi `source` (e.g. "testsrc=s=96x64:d=2:r=8") to `path`.

    `filters`: an optional -vf chain; `extra`: output options placed before the path (codec, pixel
    format, ...). Raises CalledProcessError with ffmpeg's message when the source is invalid.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    cmd = [ffmpeg_exe(), "-y", "-loglevel", "error", "-f", "lavfi", "-i", source]
    if filters:
        cmd += ["-vf", filters]
    subprocess.run([*cmd, *extra, str(path)], check=True, capture_output=True)
    return path


def render_colour_box(path: Path, colour: str, seconds: float = 2.0, size: str = "160x120") -> Path:
    """A white box sliding right over a solid `colour`: the rank demo's and tests' basic video."""
    return render_lavfi(
        path,
        f"color=c={colour}:s={size}:d={seconds}:r=10",
        filters="drawbox=x='mod(t*40,120)':y=40:w=30:h=30:color=white:t=fill",
    )
