"""Videos with known words at known times, for the tests and bench/bench_text.py: a subtitle track
(embedded mov_text and/or a sidecar file), text drawn into the frames, or espeak-ng speech muxed in.

    subtitle_video(path, [(1.0, 2.5, "hello world")], seconds=6, sidecar=".en.srt")
    ocr_video(path, [(2.0, 4.0, "GRAND OPENING")], seconds=6)
    speech_video(path, [(1.0, "welcome to the kitchen")], seconds=6)      # needs espeak-ng
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

from indexer.media.video import ffmpeg_exe

Cue = tuple[float, float, str]  # start, end (seconds), text


def _stamp(t: float, sep: str = ",") -> str:
    ms = int(round(t * 1000))
    return f"{ms // 3600000:02d}:{ms // 60000 % 60:02d}:{ms // 1000 % 60:02d}{sep}{ms % 1000:03d}"


def write_srt(path: Path, cues: Sequence[Cue]) -> Path:
    blocks = [f"{i}\n{_stamp(a)} --> {_stamp(b)}\n{t}\n" for i, (a, b, t) in enumerate(cues, 1)]
    path.write_text("\n".join(blocks))
    return path


def write_vtt(path: Path, cues: Sequence[Cue]) -> Path:
    blocks = [f"{_stamp(a, '.')} --> {_stamp(b, '.')}\n{t}\n" for a, b, t in cues]
    path.write_text("WEBVTT\n\n" + "\n".join(blocks))
    return path


def _run(cmd: list[str]) -> None:
    subprocess.run(cmd, check=True, capture_output=True, timeout=300)


def _colour(colour: str, seconds: float, size: str) -> list[str]:
    return ["-f", "lavfi", "-i", f"color=c={colour}:s={size}:d={seconds}:r=8"]


def subtitle_video(
    path: Path,
    cues: Sequence[Cue],
    seconds: float,
    colour: str = "navy",
    size: str = "160x120",
    embed: bool = True,
    sidecar: str | None = None,
) -> Path:
    """A colour video with `cues` as an embedded mov_text track (embed) and/or a sidecar file named
    `<stem><sidecar>` (e.g. '.srt', '.en.srt', '.vtt')."""
    path.parent.mkdir(parents=True, exist_ok=True)
    cmd = [ffmpeg_exe(), "-y", "-loglevel", "error", *_colour(colour, seconds, size)]
    with tempfile.TemporaryDirectory(prefix="t2v-subs-") as tmp:
        if embed:
            srt = write_srt(Path(tmp) / "cues.srt", cues)
            cmd += ["-i", str(srt), "-map", "0:v", "-map", "1:s", "-c:s", "mov_text"]
        _run([*cmd, "-pix_fmt", "yuv420p", str(path)])
    if sidecar:
        side = path.with_name(path.stem + sidecar)
        (write_vtt if sidecar.endswith(".vtt") else write_srt)(side, cues)
    return path


def ocr_video(
    path: Path, shows: Sequence[Cue], seconds: float, colour: str = "black", size: str = "320x240"
) -> Path:
    """A colour video with each text drawn (large, white) while it is shown. Text: letters, digits, spaces."""
    path.parent.mkdir(parents=True, exist_ok=True)
    draws = [
        f"drawtext=text='{t}':fontsize=28:fontcolor=white:x=(w-text_w)/2:y=(h-text_h)/2"
        f":enable='between(t,{a:g},{b:g})'"
        for a, b, t in shows
    ]
    _run(
        [ffmpeg_exe(), "-y", "-loglevel", "error", *_colour(colour, seconds, size)]
        + ["-vf", ",".join(draws) or "null", "-pix_fmt", "yuv420p", str(path)]
    )
    return path


def espeak_exe() -> str | None:
    return shutil.which("espeak-ng")


def speech_video(
    path: Path, says: Sequence[tuple[float, str]], seconds: float, colour: str = "teal", size: str = "160x120"
) -> Path:
    """A colour video whose audio track speaks each text (espeak-ng, US English) from its start time."""
    exe = espeak_exe()
    if exe is None:
        raise RuntimeError("espeak-ng is not installed (Debian: apt-get install espeak-ng)")
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="t2v-speech-") as tmp:
        inputs: list[str] = []
        chains = []
        for i, (start, text) in enumerate(says):
            wav = Path(tmp) / f"s{i}.wav"
            _run([exe, "-v", "en-us", "-s", "140", "-w", str(wav), text])
            inputs += ["-i", str(wav)]
            chains.append(f"[{i + 1}:a]adelay=delays={int(start * 1000)}:all=1[a{i}]")
        mix = "".join(f"[a{i}]" for i in range(len(says)))
        graph = ";".join(chains) + f";{mix}amix=inputs={len(says)}:normalize=0,apad[aout]"
        _run(
            [ffmpeg_exe(), "-y", "-loglevel", "error", *_colour(colour, seconds, size), *inputs]
            + ["-filter_complex", graph, "-map", "0:v", "-map", "[aout]", "-t", f"{seconds:g}"]
            + ["-c:a", "aac", "-pix_fmt", "yuv420p", str(path)]
        )
    return path
