"""What the store takes and gives: the video and clip records, reports, and the errors it raises."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


class StoreError(Exception):
    """A store cannot be opened or used; the message says what to do."""


class ModelMismatchError(StoreError):
    """The store was built with another model; `t2v index reindex` rebuilds it."""


class StoreBusyError(StoreError):
    """Another process holds the write lock for too long."""


class VideoNotInStoreError(StoreError, KeyError):
    def __init__(self, video_id: int) -> None:
        super().__init__(f"no video with id {video_id} in the store")
        self.video_id = video_id

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


@dataclass(frozen=True)
class NewVideo:
    """What ingestion knows about a file before it is stored."""

    path: str
    title: str
    content_hash: str
    duration: float
    fps: float
    width: int
    height: int
    codec: str
    size_bytes: int
    mtime: float = 0.0


# kw_only: the stored fields follow NewVideo's (one with a default) without defaults of their own
@dataclass(frozen=True, kw_only=True)
class VideoRecord(NewVideo):
    """A stored video: what ingestion knew plus what the store assigned."""

    id: int
    added_at: float  # unix time
    state: str  # 'ready' | 'deleted'
    num_clips: int

    @classmethod
    def from_row(cls, row: tuple[Any, ...]) -> VideoRecord:
        """From a `SELECT * FROM videos` row (columns: id, the NewVideo fields, added_at, state,
        num_clips)."""
        vid, *facts, added_at, state, num_clips = row
        return cls(*facts, id=vid, added_at=added_at, state=state, num_clips=num_clips)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, **asdict(self)}  # id first, as the videos table has it


@dataclass(frozen=True)
class ClipSpan:
    start: float  # seconds
    end: float


@dataclass(frozen=True)
class ClipRecord:
    id: int
    video_id: int
    start: float
    end: float
    title: str = ""
    path: str = ""


@dataclass
class StoreStats:
    path: str
    format_version: int
    videos: int
    clips: int
    vectors: int  # live clips * vectors per clip
    deleted_clips: int  # tombstoned, removed by compaction
    dim: int
    vectors_per_clip: int
    index: dict[str, Any]
    index_vectors: int  # rows in the FAISS index (includes tombstoned until compaction)
    generation: int
    disk_bytes: int
    model: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class VerifyReport:
    ok: bool
    checked_clips: int
    problems: list[str]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
