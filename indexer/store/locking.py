"""Who may write: one writer at a time, in this process (a thread lock) and across processes (an
exclusive flock on write.lock); and the crash repair a writer does first."""

from __future__ import annotations

import fcntl
import json
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from indexer.store import layout
from indexer.store.metadata import Metadata
from indexer.store.records import StoreBusyError
from indexer.store.segments import Segments
from model.fileio import write_json_atomic


class WriteLock:
    def __init__(self, root: Path) -> None:
        self.root = root
        self._path = root / layout.LOCK
        self._thread_lock = threading.Lock()

    @contextmanager
    def held(self, timeout: float) -> Iterator[None]:
        """Both locks, waiting up to `timeout` seconds for another process (StoreBusyError)."""
        with self._thread_lock:
            fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                deadline = time.monotonic() + timeout
                while not _try_flock(fd):
                    if time.monotonic() > deadline:
                        raise StoreBusyError(
                            f"another process is writing to {self.root} (waited {timeout:.0f}s)"
                        ) from None
                    time.sleep(0.05)
                yield
            finally:
                os.close(fd)  # releases the flock

    @contextmanager
    def if_free(self) -> Iterator[bool]:
        """The flock if no process holds it (True), without waiting; else False."""
        fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            yield _try_flock(fd)
        finally:
            os.close(fd)


def _try_flock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def repair(root: Path, meta: Metadata, segments: Segments) -> None:
    """Under the write lock, after a crash (kill -9 included): cut segment files back to their
    committed clips, delete files no commit references, other generations' index files and
    half-written temporary files."""
    segments.repair(meta.segments())
    layout.remove_leftovers(root, meta.generation())


DAMAGED = "damaged.json"  # videos taken out because their matrices were lost: re-ingest them


def quarantine_damaged(root: Path, meta: Metadata, segments: Segments) -> list[str]:
    """Under the write lock, on open: a segment file missing or cut short lost the matrices of
    some clips. Their videos are deleted (never served with zero or foreign rows) and listed in
    DIR/damaged.json (path, title, content hash) to be ingested again. Returns what was done."""
    short = segments.rows_present(meta.segments())
    if not short:
        return []
    lost = sorted({vid for _, vid, seg, row in meta.clips_after(0) if seg in short and row >= short[seg]})
    listed = _read_damaged(root)
    done = []
    for vid in lost:
        rec = meta.get_video(vid)
        if rec is None:
            continue  # deleted already: nothing is served from its rows
        meta.remove_video(vid, time.time())
        listed.append(
            {"video_id": vid, "path": rec.path, "title": rec.title, "content_hash": rec.content_hash}
        )
        done.append(f"video {vid} ({rec.path}): its matrices were lost; removed, ingest it again")
    if done:
        write_json_atomic(root / DAMAGED, listed)
    return done


def _read_damaged(root: Path) -> list[dict[str, object]]:
    try:
        data = json.loads((root / DAMAGED).read_text())
    except (OSError, ValueError):
        return []
    return list(data) if isinstance(data, list) else []
