"""On-screen text: frames sampled every `interval` seconds (one ffmpeg pass, grey), frames that did
not change since the last one read are skipped, the rest go to Debian's `tesseract` in one process
(a list of images, TSV out: page = frame). Words below a confidence are dropped; a line seen on
consecutive frames becomes one timed line."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from indexer.media.video import ffmpeg_exe
from indexer.text.lines import TextLine, clean

# tesseract reads text of ~20-40 px best: small videos are scaled up, large ones down
MIN_WIDTH, MAX_WIDTH = 640, 1280
CHANGED = 2.0  # mean absolute grey difference (0..255) on a 1/8 thumbnail that counts as a change


class OcrUnavailable(Exception):
    """Tesseract (or the language asked for) is not installed."""


@dataclass
class OcrStats:
    frames: int = 0  # sampled
    read: int = 0  # sent to tesseract (the others did not change)


def tesseract_exe() -> str:
    exe = shutil.which("tesseract")
    if exe is None:
        raise OcrUnavailable("tesseract is not installed (Debian: apt-get install tesseract-ocr)")
    return exe


def _scaled(width: int, height: int) -> tuple[int, int]:
    w = min(max(width, MIN_WIDTH), MAX_WIDTH)
    h = max(2, int(round(height * w / width / 2)) * 2)
    return w, h


def sample_grey(
    video: str | Path, width: int, height: int, interval: float, fds: Sequence[int] = ()
) -> tuple[np.ndarray, list[float]]:
    """(n, h, w) uint8 grey frames at 0, interval, 2*interval, ... and their times (fds:
    descriptors ffmpeg inherits)."""
    w, h = _scaled(width, height)
    proc = subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-i", str(video), "-an", "-sn"]
        + ["-vf", f"fps=1/{interval:g}:round=down,scale={w}:{h},format=gray", "-f", "rawvideo", "pipe:1"],
        capture_output=True,
        timeout=3600,
        pass_fds=tuple(fds),
    )
    if proc.returncode != 0:
        raise ValueError(proc.stderr.decode(errors="replace").strip()[-300:] or "ffmpeg failed")
    n = len(proc.stdout) // (w * h)
    frames = np.frombuffer(proc.stdout[: n * w * h], dtype=np.uint8).reshape(n, h, w)
    return frames, [i * interval for i in range(n)]


def changed_frames(frames: np.ndarray) -> list[int]:
    """Indices of frames that differ from the last kept one (the first is always kept)."""
    keep: list[int] = []
    last: np.ndarray | None = None
    for i, f in enumerate(frames):
        thumb = f[::8, ::8].astype(np.float32)
        if last is None or float(np.abs(thumb - last).mean()) >= CHANGED:
            keep.append(i)
            last = thumb
    return keep


def _write_pgm(path: Path, frame: np.ndarray) -> None:
    h, w = frame.shape
    path.write_bytes(f"P5 {w} {h} 255\n".encode() + frame.tobytes())


def read_text(frames: list[np.ndarray], lang: str, min_conf: float) -> list[list[str]]:
    """The text lines tesseract reads on each frame (one tesseract process for all of them)."""
    if not frames:
        return []
    exe = tesseract_exe()
    with tempfile.TemporaryDirectory(prefix="t2v-ocr-") as tmp:
        names = []
        for i, f in enumerate(frames):
            p = Path(tmp) / f"f{i:06d}.pgm"
            _write_pgm(p, f)
            names.append(str(p))
        listing = Path(tmp) / "frames.txt"
        listing.write_text("\n".join(names) + "\n")
        proc = subprocess.run(
            [exe, str(listing), "stdout", "-l", lang, "--psm", "11", "tsv"],
            capture_output=True,
            text=True,
            errors="replace",
            timeout=60 + 10 * len(frames),
        )
    if proc.returncode != 0:
        err = proc.stderr.strip().splitlines()
        raise OcrUnavailable(f"tesseract failed: {err[-1] if err else proc.returncode}")
    # level page block par line word left top width height conf text; page = frame number (1-based)
    words: dict[tuple[int, int, int, int], list[str]] = {}
    for row in proc.stdout.splitlines()[1:]:
        cols = row.split("\t")
        if len(cols) < 12 or cols[0] != "5" or not cols[11].strip():
            continue
        try:
            conf = float(cols[10])
        except ValueError:
            continue
        if conf < min_conf:
            continue
        key = (int(cols[1]), int(cols[2]), int(cols[3]), int(cols[4]))
        words.setdefault(key, []).append(cols[11].strip())
    per_frame: list[list[str]] = [[] for _ in frames]
    for (page, *_), ws in sorted(words.items()):
        line = clean(" ".join(ws))
        if 1 <= page <= len(frames) and sum(ch.isalnum() for ch in line) >= 2:
            per_frame[page - 1].append(line)
    return per_frame


def timed_lines(times: list[float], texts: list[list[str]], interval: float) -> list[TextLine]:
    """Per-frame lines -> timed lines: a line present on consecutive frames is one line."""
    out: list[TextLine] = []
    open_: dict[str, float] = {}
    for t, lines in zip(times, texts, strict=True):
        now = set(lines)
        for text in [x for x in open_ if x not in now]:
            out.append(TextLine("ocr", open_.pop(text), t, text))
        for text in lines:
            open_.setdefault(text, t)
    end = times[-1] + interval if times else 0.0
    out += [TextLine("ocr", start, end, text) for text, start in open_.items()]
    return sorted(out, key=lambda ln: (ln.start, ln.text))


def read_on_screen(
    video: str | Path,
    width: int,
    height: int,
    interval: float,
    lang: str,
    min_conf: float,
    fds: Sequence[int] = (),
) -> tuple[list[TextLine], OcrStats]:
    tesseract_exe()  # before decoding anything
    frames, times = sample_grey(video, width, height, interval, fds)
    keep = changed_frames(frames)
    texts = read_text([frames[i] for i in keep], lang, min_conf)
    # an unchanged frame shows what the last read frame showed
    per_frame: list[list[str]] = []
    k = -1
    for i in range(len(frames)):
        if k + 1 < len(keep) and keep[k + 1] == i:
            k += 1
        per_frame.append(texts[k] if k >= 0 else [])
    return timed_lines(times, per_frame, interval), OcrStats(len(frames), len(keep))
