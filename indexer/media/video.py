"""Video probing and frame sampling through ffmpeg, one decode pass per video.

ffmpeg comes from imageio-ffmpeg's bundled binary (or IMAGEIO_FFMPEG_EXE); no system ffmpeg is
assumed and there is no ffprobe, so probing parses `ffmpeg -i`. Frame timestamps come from the
`showinfo` filter (the container's time base), so nothing is rounded to a nominal fps.
"""

from __future__ import annotations

import os
import random
import re
import subprocess
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache, partial
from pathlib import Path

import ffmpeg
import numpy as np
import torch

from model.backbone import PreprocessCfg


class VideoError(Exception):
    """A video cannot be used; `reason` is short and user-facing."""

    def __init__(self, path: str | Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


class VideoNotFoundError(VideoError):
    pass


class UnreadableVideoError(VideoError):
    pass


class NoVideoStreamError(VideoError):
    pass


class EmptyVideoError(VideoError):
    pass


class FfmpegMissingError(VideoError):
    """The ffmpeg binary cannot be run: every video would fail the same way."""


_FFMPEG_HELP = (
    "reinstall imageio-ffmpeg (`pip install imageio-ffmpeg`) or point IMAGEIO_FFMPEG_EXE at an ffmpeg binary"
)


def ffmpeg_exe() -> str:
    """The ffmpeg binary; FfmpegMissingError (naming ffmpeg and the fix) when it cannot be run,
    rather than a bare `[Errno 2] No such file or directory` from the first subprocess."""
    exe = _ffmpeg_path()
    if not os.access(exe, os.X_OK):
        raise FfmpegMissingError(exe, f"the ffmpeg binary is missing or not executable: {_FFMPEG_HELP}")
    return exe


@lru_cache(maxsize=1)
def _ffmpeg_path() -> str:
    import imageio_ffmpeg

    try:
        return str(imageio_ffmpeg.get_ffmpeg_exe())
    except RuntimeError as e:  # no bundled binary for this platform and none on the PATH
        raise FfmpegMissingError("ffmpeg", f"no ffmpeg binary found ({e}): {_FFMPEG_HELP}") from None


@dataclass(frozen=True)
class VideoInfo:
    path: str
    duration: float  # seconds, from the container
    fps: float  # average frame rate reported by the stream (informational only)
    width: int
    height: int
    codec: str
    size_bytes: int


_DURATION = re.compile(r"Duration:\s*(\d+):(\d+):(\d+(?:\.\d+)?)")
_VIDEO = re.compile(r"Stream #\S+.*?: Video: (\w+)(.*)")
_DIMS = re.compile(r"[ ,](\d{1,6})x(\d{1,6})[ ,\[]")
_FPS = re.compile(r"([\d.]+)(k?) (?:fps|tbr)")


def probe(path: str | Path, fds: Sequence[int] = ()) -> VideoInfo:
    """Container and first video stream facts. Raises a VideoError subclass.

    fds: descriptors ffmpeg inherits (`path` may be an `OpenedMedia.name`)."""
    p = Path(path)
    if not p.exists():
        raise VideoNotFoundError(p, "file not found")
    if not p.is_file():
        raise UnreadableVideoError(p, "not a regular file")
    size = p.stat().st_size
    if size == 0:
        raise EmptyVideoError(p, "file is empty (0 bytes)")
    err = _ffmpeg_text(["-i", str(p)], fds, timeout=60).stderr
    if (
        "Invalid data found" in err
        or "could not find codec parameters" in err.lower()
        or "moov atom not found" in err
    ):
        raise UnreadableVideoError(p, "not a readable video (invalid or truncated container)")
    m = _VIDEO.search(err)
    if not m:
        if "Stream #" in err:
            raise NoVideoStreamError(p, "file has no video stream")
        raise UnreadableVideoError(p, "not a readable video")
    codec, rest = m.group(1), m.group(2)
    dims = _DIMS.search(rest + " ")
    if not dims:
        raise UnreadableVideoError(p, "video stream has no frame size")
    fps_m = _FPS.search(rest)
    fps = float(fps_m.group(1)) * (1000 if fps_m and fps_m.group(2) else 1) if fps_m else 0.0
    d = _DURATION.search(err)
    duration = _seconds(*d.groups()) if d else 0.0
    if duration <= 0:
        raise EmptyVideoError(p, "video has no duration")
    return VideoInfo(str(p), duration, fps, int(dims.group(1)), int(dims.group(2)), codec, size)


_TIME = re.compile(r"time=\s*(\d+):(\d+):(\d+(?:\.\d+)?)")
# what ffmpeg says when a stream's packets are cut off or damaged (not when a stream just ends)
_DAMAGE = ("partial file", "corrupt", "Invalid data", "error", "truncat")


def video_stream_end(path: str | Path, fds: Sequence[int] = (), fps: float = 0.0) -> float | None:
    """Where the first video stream's packets end (seconds, the last one's time plus a frame), read
    by copying them without decoding; None when ffmpeg reports cut-off or damaged packets.

    The container's duration (what `probe` reads) is its longest stream's: a recording whose sound
    outlasts its picture ends its frames early without being damaged."""
    proc = _ffmpeg_text(["-i", str(path), "-map", "0:v:0", "-c", "copy", "-f", "null", "-"], fds, timeout=600)
    err = proc.stderr
    lowered = err.lower()
    times = _TIME.findall(err)
    if proc.returncode != 0 or not times or any(word.lower() in lowered for word in _DAMAGE):
        return None
    return _seconds(*times[-1]) + (1.0 / fps if fps > 0 else 0.0)


def _ffmpeg_text(args: list[str], fds: Sequence[int], timeout: float) -> subprocess.CompletedProcess[str]:
    """ffmpeg run for what it prints (stderr as text), inheriting `fds`."""
    return subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-nostdin", *args],
        capture_output=True,
        text=True,
        errors="replace",
        timeout=timeout,
        pass_fds=tuple(fds),
    )


def _seconds(hours: str, minutes: str, seconds: str) -> float:
    """ffmpeg's HH:MM:SS.ss, as matched, in seconds."""
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def segment_times(
    start: float, end: float, frames: int, mode: str = "middle", rng: random.Random | None = None
) -> list[float]:
    """T sample times: the middle of each of T equal segments (eval) or a random time in each (train)."""
    if end <= start:
        raise ValueError(f"empty window [{start}, {end}]")
    seg = (end - start) / frames
    if mode == "middle":
        return [start + (i + 0.5) * seg for i in range(frames)]
    if mode == "random":
        r = rng or random.Random()
        return [start + (i + r.random()) * seg for i in range(frames)]
    raise ValueError(f"unknown sampling mode {mode!r}")


def _scale_filter(pre: PreprocessCfg) -> str:
    s = pre.size
    flags = "bicubic" if pre.interpolation == "bicubic" else "bilinear"
    if pre.resize_mode == "squash":
        return f"scale={s}:{s}:flags={flags}"
    # shortest side to s, then centre crop s x s (open_clip's 'shortest' mode)
    return f"scale='if(gt(iw,ih),-2,{s})':'if(gt(iw,ih),{s},-2)':flags={flags},crop={s}:{s}"


_PTS = re.compile(r"pts_time:\s*(-?[\d.]+(?:e-?\d+)?)")


@dataclass
class SampledFrames:
    frames: np.ndarray  # (n, S, S, 3) uint8 RGB, in the order of the requested times
    times: list[float]  # requested times
    pts: list[float]  # timestamp of the frame actually used for each requested time


def sample_frames(
    path: str | Path,
    times: Sequence[float],
    pre: PreprocessCfg,
    timeout: float = 600.0,
    fds: Sequence[int] = (),
) -> SampledFrames:
    """The frames shown at `times` (seconds), decoded in ONE pass, resized/cropped to pre.size.

    For each requested time the frame used is the last one whose timestamp is <= that time
    (the first frame when the time precedes it).
    """
    if not times:
        raise ValueError("no sample times")
    s = pre.size
    frame_bytes = s * s * 3
    order = sorted(range(len(times)), key=lambda i: times[i])
    last_t = max(times)
    cmd = (
        ffmpeg.input(str(path))
        .output(
            "pipe:",
            format="rawvideo",
            pix_fmt="rgb24",
            vf=f"{_scale_filter(pre)},showinfo",
            an=None,
            sn=None,
            **{"fps_mode": "passthrough"},
        )
        .global_args("-hide_banner", "-nostdin", "-loglevel", "info")
        .compile(cmd=ffmpeg_exe())
    )
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, pass_fds=tuple(fds))
    pts_list: list[float] = []
    err_tail: list[str] = []
    got_pts = threading.Condition()

    def read_stderr() -> None:
        assert proc.stderr is not None
        for raw in proc.stderr:
            line = raw.decode("utf-8", "replace")
            m = _PTS.search(line) if "showinfo" in line and "pts_time" in line else None
            if m:
                with got_pts:
                    pts_list.append(float(m.group(1)))
                    got_pts.notify_all()
            else:
                err_tail.append(line)
                del err_tail[:-20]
        with got_pts:
            pts_list.append(float("nan"))  # end marker
            got_pts.notify_all()

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    out = np.zeros((len(times), s, s, 3), dtype=np.uint8)
    used = [0.0] * len(times)
    filled = 0
    prev: np.ndarray | None = None
    prev_pts = 0.0
    idx = 0
    assert proc.stdout is not None
    try:
        while filled < len(order):
            buf = proc.stdout.read(frame_bytes)
            if len(buf) < frame_bytes:
                break
            with got_pts:
                got_pts.wait_for(partial(_has_at_least, pts_list, idx + 1), timeout=timeout)
                pts = pts_list[idx] if len(pts_list) > idx else float("nan")
            idx += 1
            frame = np.frombuffer(buf, dtype=np.uint8).reshape(s, s, 3)
            # every pending time earlier than this frame is served by the previous frame
            while filled < len(order) and times[order[filled]] < pts:
                src, src_pts = (prev, prev_pts) if prev is not None else (frame, pts)
                out[order[filled]] = src
                used[order[filled]] = src_pts
                filled += 1
            prev, prev_pts = frame, pts
            if pts > last_t and filled == len(order):
                break
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        reader.join(timeout=5)
    if prev is None:
        raise UnreadableVideoError(path, "no frame could be decoded: " + "".join(err_tail[-3:]).strip())
    while filled < len(order):  # times at/after the last frame: the last frame is what is shown
        out[order[filled]] = prev
        used[order[filled]] = prev_pts
        filled += 1
    return SampledFrames(out, list(times), used)


def _has_at_least(items: list[float], n: int) -> bool:
    return len(items) >= n


def to_model_input(frames: np.ndarray, pre: PreprocessCfg) -> torch.Tensor:
    """(..., S, S, 3) uint8 -> (..., 3, S, S) float normalised with the weights' mean/std."""
    x = torch.from_numpy(np.ascontiguousarray(frames)).float().div_(255.0)
    x = x.movedim(-1, -3)
    mean = torch.tensor(pre.mean).view(3, 1, 1)
    std = torch.tensor(pre.std).view(3, 1, 1)
    return (x - mean) / std
