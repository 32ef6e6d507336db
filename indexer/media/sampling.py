"""Frame sampling for ingestion: one decode pass that scales and transfers only the frames needed.

`indexer.media.video.sample_frames` scales and pipes every decoded frame; for a 30 fps video sampled
at ~1 frame/s that is 30x more scaling and copying than needed. Here a `select` filter placed
before the scaler keeps only frames within `guard` seconds before each requested time (plus the
first frame), evaluated as a balanced if-tree so the per-frame cost is O(log n).

Exactness: the frame for time T is the last frame whose timestamp is <= T. Every frame in
[T - guard, T] is kept, so when the kept frame for T lies within guard of T no dropped frame can be
closer; otherwise (variable frame rate with a long gap) we fall back to the full pass.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from indexer.media.video import SampledFrames, UnreadableVideoError, _scale_filter, ffmpeg_exe, sample_frames
from model.backbone import PreprocessCfg

_PTS = re.compile(r"pts_time:\s*(-?[\d.]+(?:e-?\d+)?)")


def _intervals(times: Sequence[float], guard: float) -> list[tuple[float, float]]:
    """Merged [T - guard, T] intervals, sorted."""
    out: list[tuple[float, float]] = []
    for t in sorted(times):
        # +1e-5: showinfo prints 6 decimals, and a frame stamped T after rounding counts as <= T
        a, b = t - guard, t + 1e-5
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def _tree(iv: list[tuple[float, float]]) -> str:
    """An ffmpeg expression true when t falls in one of the sorted intervals (binary search)."""
    if len(iv) == 1:
        return f"between(t,{iv[0][0]:.6f},{iv[0][1]:.6f})"
    mid = len(iv) // 2
    return f"if(lt(t,{iv[mid][0]:.6f}),{_tree(iv[:mid])},{_tree(iv[mid:])})"


def select_expression(times: Sequence[float], guard: float) -> str:
    return f"eq(n,0)+{_tree(_intervals(times, guard))}"


def sample_frames_selective(
    path: str | Path,
    times: Sequence[float],
    pre: PreprocessCfg,
    fps: float,
    timeout: float = 600.0,
    fds: Sequence[int] = (),
) -> SampledFrames:
    """The same result as `indexer.media.video.sample_frames(path, times, pre)`, faster when fps is known."""
    if not times:
        raise ValueError("no sample times")
    if fps <= 0:
        return sample_frames(path, times, pre, timeout, fds)
    guard = 1.5 / fps  # one frame interval plus timestamp jitter
    s = pre.size
    frame_bytes = s * s * 3
    with tempfile.TemporaryDirectory(prefix="t2v-sample-") as tmp:
        script = Path(tmp) / "vf.txt"
        # the expression can be long (thousands of times): a filter script, not a command argument
        script.write_text(f"select='{select_expression(times, guard)}',{_scale_filter(pre)},showinfo")
        err_path = Path(tmp) / "stderr.txt"
        cmd = [
            ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "info", "-i", str(path),
            "-/vf", str(script), "-fps_mode", "passthrough", "-an", "-sn",
            "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:",
        ]  # fmt: skip
        with open(err_path, "wb") as err:
            try:
                proc = subprocess.run(
                    cmd, stdout=subprocess.PIPE, stderr=err, timeout=timeout, pass_fds=tuple(fds)
                )
            except subprocess.TimeoutExpired as e:
                raise UnreadableVideoError(path, f"decoding took longer than {timeout:.0f}s") from e
        log = err_path.read_text(errors="replace")
    pts = [float(m.group(1)) for line in log.splitlines() if "pts_time" in line if (m := _PTS.search(line))]
    n = min(len(proc.stdout) // frame_bytes, len(pts))
    if n == 0:
        tail = " ".join(log.strip().splitlines()[-3:])
        raise UnreadableVideoError(path, f"no frame could be decoded: {tail}")
    frames = np.frombuffer(proc.stdout[: n * frame_bytes], dtype=np.uint8).reshape(n, s, s, 3)
    kept = np.asarray(pts[:n])
    # for each time: the last kept frame at or before it (the first frame when none)
    req = np.asarray(times, dtype=np.float64)
    idx = np.searchsorted(kept, req, side="right") - 1
    exact = (idx < 0) | (req - kept[np.maximum(idx, 0)] <= guard)
    if not exact.all() or not np.all(np.diff(kept) >= 0):
        return sample_frames(path, times, pre, timeout, fds)  # long gaps or reordered stamps: the full pass
    idx = np.maximum(idx, 0)
    out = np.ascontiguousarray(frames[idx])  # (len(times), S, S, 3)
    return SampledFrames(out, list(times), kept[idx].tolist())
