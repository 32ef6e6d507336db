"""Multipart uploads streamed straight to disk with a per-file size limit (never whole in memory)."""

from __future__ import annotations

import errno
import logging
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from fastapi import Request
from python_multipart.multipart import MultipartParser, parse_options_header

from indexer.store import VideoRecord

from .errors import BadRequest, InsufficientStorage, PayloadTooLarge

log = logging.getLogger("t2v.service")

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class Upload:
    path: Path  # where the bytes landed (a generated name)
    filename: str  # the client's name, sanitised (a display name only)


def safe_filename(name: str) -> str:
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    base = _UNSAFE.sub("_", base).strip("._") or "upload"
    return base[-120:]


class _Sink:
    """Parser callbacks: headers of the current part, then its data into a file."""

    def __init__(self, dest: Path, max_bytes: int, max_files: int) -> None:
        self.dest, self.max_bytes, self.max_files = dest, max_bytes, max_files
        self.uploads: list[Upload] = []
        self._field, self._value, self._headers = b"", b"", dict[bytes, bytes]()
        self._file: BinaryIO | None = None
        self._size = 0
        self.error: Exception | None = None

    def on_part_begin(self) -> None:
        self._headers = {}

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._field += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def on_header_end(self) -> None:
        self._headers[self._field.lower()] = self._value
        self._field, self._value = b"", b""

    def on_headers_finished(self) -> None:
        _, params = parse_options_header(self._headers.get(b"content-disposition", b""))
        filename = params.get(b"filename")
        if filename is None:
            self._file = None  # a plain form field: ignored
            return
        if len(self.uploads) >= self.max_files:
            raise PayloadTooLarge(f"too many files in one upload (limit {self.max_files})")
        name = safe_filename(filename.decode("utf-8", "replace"))
        # stored under a generated name: the client's name (and its extension) decides nothing
        path = self.dest / f"{len(self.uploads):04d}.upload"
        self._file = path.open("wb")
        self._size = 0
        self.uploads.append(Upload(path, name))

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._file is None:
            return
        self._size += end - start
        if self._size > self.max_bytes:
            raise PayloadTooLarge(f"uploaded file is larger than the limit of {self.max_bytes} bytes")
        # a local disk write of one network chunk: cheap enough to do on the loop
        self._file.write(data[start:end])

    def on_part_end(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


async def receive_uploads(request: Request, dest: Path, max_bytes: int, max_files: int) -> list[Upload]:
    """Parse a multipart/form-data body into files under `dest` (created; removed on any error)."""
    ctype, params = parse_options_header(request.headers.get("content-type", ""))
    boundary = params.get(b"boundary")
    if ctype != b"multipart/form-data" or not boundary:
        raise BadRequest("expected multipart/form-data with a boundary")
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes * max_files + 1024 * 1024:
        raise PayloadTooLarge(f"request body of {declared} bytes exceeds the upload limit")
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise InsufficientStorage(f"no space left for the upload: {e.strerror}") from e
        raise
    sink = _Sink(dest, max_bytes, max_files)
    callbacks = {name: getattr(sink, name) for name in dir(sink) if name.startswith("on_")}
    parser = MultipartParser(boundary, callbacks)  # type: ignore[arg-type]
    try:
        async for chunk in request.stream():
            parser.write(chunk)
        parser.finalize()
        sink.close()
    except (PayloadTooLarge, BadRequest):
        _discard(sink, dest)
        raise
    except OSError as e:  # our disk, not the client's body: 507 for a full one
        _discard(sink, dest)
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise InsufficientStorage(f"no space left for the upload: {e.strerror}") from e
        raise
    except Exception as e:
        _discard(sink, dest)
        raise BadRequest(f"malformed multipart body: {e}") from e
    if not sink.uploads:
        shutil.rmtree(dest, ignore_errors=True)
        raise BadRequest("no files in the upload (use form field 'files')")
    return sink.uploads


def _discard(sink: _Sink, dest: Path) -> None:
    try:
        sink.close()
    except OSError:
        pass  # the close of a file on a full disk: it is deleted anyway
    shutil.rmtree(dest, ignore_errors=True)


class _Referrers(Protocol):
    def pending_paths(self) -> list[str]: ...


class _Videos(Protocol):
    def list_videos(self, offset: int, limit: int, title: str | None) -> tuple[list[VideoRecord], int]: ...


def clean_uploads(root: Path, jobs: _Referrers, videos: _Videos) -> int:
    """At start-up: delete what a crash left under the upload directory (a body cut by kill -9,
    the file of a video deleted just before one, emptied job directories). Kept: files a queued
    or running job item or a stored video refers to. Returns the files removed."""
    if not root.is_dir():
        return 0
    keep = {str(Path(p).resolve()) for p in jobs.pending_paths()}
    offset = 0
    while True:
        page, total = videos.list_videos(offset, 1000, None)
        keep.update(str(Path(v.path).resolve()) for v in page if v.path)
        offset += len(page)
        if not page or offset >= total:
            break
    removed = 0
    for p in sorted(root.rglob("*"), key=lambda q: len(q.parts), reverse=True):  # files before dirs
        if p.is_dir() and not p.is_symlink():
            try:
                p.rmdir()  # only when empty
            except OSError:
                pass
        elif str(p.resolve()) not in keep:
            p.unlink(missing_ok=True)
            removed += 1
    if removed:
        log.info("removed %d leftover upload file(s) under %s", removed, root)
    return removed
