"""Thumbnails: one JPEG frame at a time through the bundled ffmpeg (blocking; call from the pool)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from indexer.media.video import ffmpeg_exe


class ThumbnailError(RuntimeError):
    pass


def jpeg_at(path: Path, t: float, width: int, timeout: float = 20.0) -> bytes:
    """The frame at `t` seconds (input seeking, so fast on long files) scaled to `width`, as JPEG."""
    cmd = [
        ffmpeg_exe(),
        "-nostdin",
        "-loglevel",
        "error",
        "-ss",
        f"{max(t, 0.0):.3f}",
        "-i",
        str(path),
        "-frames:v",
        "1",
        "-vf",
        f"scale={width}:-2",
        "-f",
        "image2pipe",
        "-vcodec",
        "mjpeg",
        "-q:v",
        "4",
        "pipe:1",
    ]
    try:
        out = subprocess.run(cmd, capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as e:
        raise ThumbnailError("thumbnail extraction timed out") from e
    if out.returncode != 0 or not out.stdout:
        # seeking past the last frame yields nothing: callers clamp t, this is the last resort
        msg = out.stderr.decode("utf-8", "replace").strip().splitlines()
        raise ThumbnailError(msg[-1] if msg else "no frame at that time")
    return out.stdout
