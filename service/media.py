"""Thumbnails: one JPEG frame at a time through the bundled ffmpeg (blocking; call from the pool),
and the cache that keeps them (memory + disk, keyed by the video's content, so ETags never lie)."""

from __future__ import annotations

import os
import subprocess
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from indexer.media.video import ffmpeg_exe


class ThumbnailError(RuntimeError):
    pass


def jpeg_at(path: str, t: float, width: int, fds: Sequence[int] = (), timeout: float = 20.0) -> bytes:
    """The frame at `t` seconds (input seeking, so fast on long files) scaled to `width`, as JPEG.
    `fds`: descriptors ffmpeg inherits (an opened file's `/proc/self/fd/N` as `path`)."""
    cmd = [
        ffmpeg_exe(),
        "-nostdin",
        "-loglevel",
        "error",
        # one decoding thread: the service's pool runs several thumbnails side by side already
        "-threads",
        "1",
        "-ss",
        f"{max(t, 0.0):.3f}",
        "-i",
        str(path),
        "-an",
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
        out = subprocess.run(cmd, capture_output=True, timeout=timeout, check=False, pass_fds=fds)
    except subprocess.TimeoutExpired as e:
        raise ThumbnailError("thumbnail extraction timed out") from e
    if out.returncode != 0 or not out.stdout:
        # seeking past the last frame yields nothing: callers clamp t, this is the last resort
        msg = out.stderr.decode("utf-8", "replace").strip().splitlines()
        raise ThumbnailError(msg[-1] if msg else "no frame at that time")
    return out.stdout


@dataclass(frozen=True)
class Thumbnail:
    etag: str  # quoted, as HTTP sends it
    data: bytes | None  # None: the client already holds this one (answer 304)


def thumbnail_key(content_hash: str, t: float, width: int) -> str:
    """Names one thumbnail: the video's content (not its id, which a later video may reuse), the time
    rounded to 0.1 s and the width."""
    return f"{content_hash[:24]}-{t:.1f}-{width}"


class ThumbnailCache:
    """JPEGs by `thumbnail_key`: the last `capacity` in memory, up to `disk_capacity` files under
    `directory` (they survive restarts; the oldest go first). Thread-safe."""

    def __init__(self, directory: Path | None, capacity: int = 512, disk_capacity: int = 20_000) -> None:
        self.directory = directory
        self.capacity = capacity
        self.disk_capacity = disk_capacity
        self._mem: OrderedDict[str, bytes] = OrderedDict()
        self._lock = threading.Lock()
        self._writes = 0

    def get(self, key: str) -> bytes | None:
        with self._lock:
            if key in self._mem:
                self._mem.move_to_end(key)
                return self._mem[key]
        if self.directory is None:
            return None
        try:
            data = (self.directory / f"{key}.jpg").read_bytes()
        except OSError:
            return None
        self._remember(key, data)
        return data

    def put(self, key: str, data: bytes) -> None:
        self._remember(key, data)
        if self.directory is None:
            return
        try:  # a cache: a full or read-only disk only costs the next request an ffmpeg run
            self.directory.mkdir(parents=True, exist_ok=True)
            tmp = self.directory / f".{key}.{threading.get_ident()}.tmp"
            tmp.write_bytes(data)
            os.replace(tmp, self.directory / f"{key}.jpg")
        except OSError:
            return
        self._writes += 1
        if self._writes % 256 == 0:
            self._prune()

    def _remember(self, key: str, data: bytes) -> None:
        with self._lock:
            self._mem[key] = data
            self._mem.move_to_end(key)
            while len(self._mem) > self.capacity:
                self._mem.popitem(last=False)

    def _prune(self) -> None:
        assert self.directory is not None
        try:
            files = sorted(self.directory.glob("*.jpg"), key=lambda p: p.stat().st_mtime)
        except OSError:
            return
        for old in files[: max(0, len(files) - self.disk_capacity)]:
            old.unlink(missing_ok=True)
