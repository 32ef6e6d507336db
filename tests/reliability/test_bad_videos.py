"""A corpus of broken and odd videos through a live server's ingest job: each item ends `done` or
`failed` with a reason, and the server stays up and searchable."""

from __future__ import annotations

import os
import struct
import subprocess
from pathlib import Path

import httpx
import pytest

from indexer.corpora.lavfi import render_lavfi
from indexer.media.video import ffmpeg_exe
from tests.support import wait_job

from .conftest import Forks, kill9, tiny_settings

pytestmark = pytest.mark.slow  # a live server through a corpus of broken videos


def rotated(src: Path, path: Path) -> Path:
    """`src` with a 90-degree display-rotation tag (the stream copied, not re-encoded)."""
    cmd = [ffmpeg_exe(), "-y", "-loglevel", "error", "-display_rotation", "90", "-i", str(src), "-c", "copy"]
    subprocess.run([*cmd, str(path)], check=True, timeout=60)
    return path


def make_corpus(root: Path, good: Path) -> dict[str, Path]:
    """name -> file; which of them must index and which must fail is asserted by the test."""
    out: dict[str, Path] = {}
    out["zero"] = root / "zero.mp4"
    out["zero"].write_bytes(b"")
    out["random"] = root / "random.mp4"
    out["random"].write_bytes(os.urandom(50_000))
    data = good.read_bytes()
    out["truncated"] = root / "truncated.mp4"
    out["truncated"].write_bytes(data[: len(data) // 3])
    moov = data.find(b"moov")
    assert moov > data.find(b"mdat") > 0, "expected the moov atom after the media data"
    out["no_moov"] = root / "no_moov.mp4"  # a recording cut before its moov atom was written
    out["no_moov"].write_bytes(data[: moov - 4])
    out["audio_only"] = render_lavfi(root / "audio_only.mp4", "sine=d=2", extra=("-c:a", "aac"))
    out["tiny_0.1s"] = render_lavfi(root / "tiny_0.1s.mp4", "color=c=red:s=64x64:d=0.1:r=10")
    out["one_pixel"] = render_lavfi(root / "one_pixel.mp4", "color=c=blue:s=2x2:d=1:r=5", extra=())
    out["vfr"] = render_lavfi(
        root / "vfr.mkv",
        "testsrc=s=96x64:d=3:r=10",
        filters="select='not(between(t,1,2))'",
        extra=("-fps_mode", "vfr", "-pix_fmt", "yuv420p"),
    )
    out["rotated"] = rotated(good, root / "rotated.mp4")
    out["unicode"] = root / "vidéo ünïcode 日本 spaces.mp4"
    out["unicode"].write_bytes(render_lavfi(root / "u.mp4", "testsrc=s=96x64:d=2:r=8").read_bytes())
    (root / "u.mp4").unlink()
    out["8k"] = render_lavfi(
        root / "8k.mp4",
        "testsrc=s=7680x4320:d=1:r=2",
        extra=("-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"),
    )
    small = render_lavfi(root / "s.mp4", "color=c=red:s=64x64:d=1:r=4")
    out["ten_hours"] = claim_ten_hours(small, root / "ten_hours.mp4")
    small.unlink()
    return out


def claim_ten_hours(src: Path, dst: Path) -> Path:
    """A 2 kB mp4 whose sample table spreads its 4 frames over 10 hours (ffmpeg reports 10:00:00)."""
    data = bytearray(src.read_bytes())
    at = data.find(b"stts") + 4  # full box: version/flags, entry count, (sample count, delta)...
    assert struct.unpack_from(">I", data, at + 4)[0] == 1, "expected one stts entry"
    count = struct.unpack_from(">I", data, at + 8)[0]
    md = data.find(b"mdhd") + 4
    assert data[md] == 0, "expected a version-0 mdhd"
    timescale = struct.unpack_from(">I", data, md + 12)[0]
    struct.pack_into(">I", data, at + 12, 36_000 * timescale // count)
    mv = data.find(b"mvhd") + 4  # the movie, track, media and edit-list durations claim it too
    movie_scale = struct.unpack_from(">I", data, mv + 12)[0]
    struct.pack_into(">I", data, mv + 16, 36_000 * movie_scale)
    struct.pack_into(">I", data, data.find(b"tkhd") + 4 + 20, 36_000 * movie_scale)
    struct.pack_into(">I", data, md + 16, 36_000 * timescale)
    if data.find(b"elst") > 0:
        struct.pack_into(">I", data, data.find(b"elst") + 4 + 8, 36_000 * movie_scale)
    dst.write_bytes(data)
    return dst


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def test_bad_videos_each_get_a_clear_outcome(
    forks: Forks, corpus: list[Path], tiny_ckpt: Path, tmp_path: Path
) -> None:
    root = tmp_path / "bad"
    root.mkdir()
    files = make_corpus(root, corpus[0])
    url, proc = forks.start_server(tiny_settings(tmp_path, root, tiny_ckpt), tmp_path / "server.log")
    try:
        with httpx.Client(base_url=url, timeout=60) as c:
            names = list(files)
            r = c.post("/v1/ingest", json={"paths": [str(files[n]) for n in names]})
            assert r.status_code == 202, r.text
            job = wait_job(c, r.json()["id"], timeout=180)
            outcome = {n: it for n, it in zip(names, job["items"], strict=True)}
            for n in ("zero", "random", "no_moov", "audio_only"):
                assert outcome[n]["state"] == "failed", outcome[n]
                assert outcome[n]["reason"], outcome[n]
            for n in ("vfr", "rotated", "unicode"):
                assert outcome[n]["state"] == "done", outcome[n]
            for n in ("truncated", "tiny_0.1s", "one_pixel", "8k", "ten_hours"):  # indexed or a reason
                assert outcome[n]["state"] == "done" or outcome[n]["reason"], outcome[n]
            assert c.get("/healthz").status_code == 200
            assert c.post("/v1/search", json={"query": "a test pattern"}).status_code == 200
            summary = {n: (it["state"], (it["reason"] or "")[:90]) for n, it in outcome.items()}
            for n in ("8k", "ten_hours"):  # what an odd video that indexes is stored as
                if outcome[n]["state"] == "done":
                    v = c.get(f"/v1/videos/{outcome[n]['video_id']}").json()
                    summary[n] = (
                        "done",
                        f"{v['width']}x{v['height']}, {v['duration']:.0f} s, {v['clips']} clips",
                    )
            # decode never buffers a whole video: the 8K frames and the 10-hour claim stay cheap
            peak = peak_rss_mib(proc.pid)
    finally:
        kill9(proc)
    print("\nbad videos:", "\n".join(f"  {n}: {s}" for n, s in summary.items()), sep="\n")
    print(f"  server peak RSS {peak:.0f} MiB")
    assert peak < 2048, peak
