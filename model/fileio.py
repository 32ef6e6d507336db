"""Atomic file writes: the one helper every layer uses (checkpoints, manifests, FAISS files, caches).

A reader sees either the old file or the complete new one, never a torn write: the content goes to
a private temporary file beside the target (same file system, so the rename is atomic), is
fsync'ed, renamed over the target, and the directory entry is fsync'ed so the rename survives a
power cut. Temporary names are `.<name>.<random>.tmp`: hidden, unique per writer, and recognisable
as leftovers by crash recovery.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def fsync_dir(path: Path) -> None:
    """Make a rename or a new entry in `path` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: Path, mode: int | None = None) -> Iterator[Path]:
    """Yield a temporary path to write; on a clean exit it replaces `path` durably, else it is removed.

    `mode`: permission bits for the result (mkstemp files are private, 0o600).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb+") as f:  # the writer may have closed its own handle: sync by reopening
            os.fsync(f.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
        fsync_dir(path.parent)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_bytes_atomic(path: Path, data: bytes, mode: int | None = None) -> None:
    with atomic_path(path, mode) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(path: Path, text: str, mode: int | None = None) -> None:
    """`mode`: as for atomic_path (e.g. 0o644 for a file other users read)."""
    with atomic_path(path, mode) as tmp:
        tmp.write_text(text)


def write_json_atomic(path: Path, data: object, indent: int | None = 2, mode: int | None = None) -> None:
    """JSON with sorted keys (stable diffs and hashes) and a final newline."""
    write_text_atomic(path, json.dumps(data, indent=indent, sort_keys=True) + "\n", mode)
