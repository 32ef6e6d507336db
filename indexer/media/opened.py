"""Open a media file once and check what was opened, not the name it was asked by.

    with open_media(path, roots=[Path("/srv/videos")]) as f:   # MediaRefused when not acceptable
        probe(f.name, fds=f.fds); sha = f.sha256(); sample_frames(f.name, ..., fds=f.fds)

A path checked when a job is queued can be swapped before the worker reads it (a symlink to a file
outside the allowed roots, a FIFO that blocks the reader forever). So the file is opened with no
following of a final symlink and without blocking, the descriptor is `fstat`ed (a regular file
only), its real location is read back from the descriptor and confined to the roots, and every
later read goes through that descriptor: `name` is `/proc/self/fd/N`, which names the opened
file itself (in this process, and in a child that inherits fd N through `fds`).
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType


class MediaRefused(Exception):
    """The file may not be read; `reason` is short and user-facing."""

    def __init__(self, path: str | Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


@dataclass
class OpenedMedia:
    fd: int
    real_path: Path  # where the opened file actually lives (read back from the descriptor)
    st: os.stat_result  # fstat of the descriptor

    @property
    def name(self) -> str:
        """A name that opens this very file (same inode), not whatever the path names now."""
        return f"/proc/self/fd/{self.fd}"

    @property
    def fds(self) -> tuple[int, ...]:
        """Descriptors a child process must inherit for `name` to work there."""
        return (self.fd,)

    @property
    def size(self) -> int:
        return self.st.st_size

    def sha256(self, chunk: int = 1 << 20) -> str:
        h = hashlib.sha256()
        offset = 0
        while block := os.pread(self.fd, chunk, offset):
            h.update(block)
            offset += len(block)
        return h.hexdigest()

    def head(self, n: int = 512) -> bytes:
        return os.pread(self.fd, n, 0)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> OpenedMedia:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _real_path_of(fd: int, fallback: str) -> Path:
    try:
        return Path(os.readlink(f"/proc/self/fd/{fd}"))
    except OSError:  # no /proc (not Linux): the resolved name, checked again against the inode
        real = Path(os.path.realpath(fallback))
        st, now = os.fstat(fd), os.stat(real)
        if (st.st_dev, st.st_ino) != (now.st_dev, now.st_ino):
            raise MediaRefused(fallback, "file changed while it was opened") from None
        return real


def is_under(path: Path, roots: Sequence[Path]) -> bool:
    for root in roots:
        real_root = Path(os.path.realpath(root))
        if path == real_root or path.is_relative_to(real_root):
            return True
    return False


def open_media(path: str | Path, roots: Sequence[Path] | None = None, exact: bool = False) -> OpenedMedia:
    """Open `path` for reading as a regular file (inside one of `roots` when given), or refuse.

    Never blocks: a FIFO or device is refused from its fstat before anything reads it. With
    `roots` the path must be the real one (a final symlink is refused: the server resolved it when
    the job was queued); without, symlinks are followed (a local user's own command line).
    `exact`: the opened file must live at `path` itself (a stored real path: nothing swapped since)."""
    no_follow = roots is not None or exact
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | (os.O_NOFOLLOW if no_follow else 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise MediaRefused(path, "file not found") from None
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise MediaRefused(
                path, "is a symbolic link (refused: only real files under the allowed roots are read)"
            ) from None
        raise MediaRefused(path, f"cannot open: {e.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            kind = (
                "a FIFO"
                if stat.S_ISFIFO(st.st_mode)
                else "a directory"
                if stat.S_ISDIR(st.st_mode)
                else "special"
            )
            raise MediaRefused(path, f"not a regular file ({kind})")
        real = _real_path_of(fd, str(path))
        if roots is not None and not is_under(real, roots):
            raise MediaRefused(path, f"resolves outside the allowed roots (to {real})")
        if exact and real != Path(path):
            raise MediaRefused(path, f"a directory on the way was replaced (the file is at {real} now)")
        # a regular file never blocks; clear the flag so readers see ordinary semantics
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
    except BaseException:
        os.close(fd)
        raise
    return OpenedMedia(fd, real, st)


def container_type(head: bytes) -> str | None:
    """The video/* media type of a container from its first bytes (its signature), or None.

    Served files get this type, never one guessed from a (client-chosen) name."""
    if head[4:8] == b"ftyp":
        return "video/quicktime" if head[8:12] == b"qt  " else "video/mp4"
    if head[4:8] in (b"moov", b"mdat", b"wide", b"free", b"skip"):  # QuickTime without ftyp
        return "video/quicktime"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "video/webm" if b"webm" in head[:64] else "video/x-matroska"
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "video/x-msvideo"
    if head[:4] == b"OggS":
        return "video/ogg"
    if head[:3] == b"FLV":
        return "video/x-flv"
    if len(head) > 188 and head[0] == 0x47 and head[188] == 0x47:
        return "video/mp2t"
    if head[:4] in (b"\x00\x00\x01\xba", b"\x00\x00\x01\xb3"):
        return "video/mpeg"
    return None
