"""meta.sqlite, the source of truth: its schema, and every SQL read and write the store makes.

`Metadata` owns the one connection of a Store (WAL, synchronous=FULL) and serialises its use
across threads. Each write is one `BEGIN IMMEDIATE` transaction: the store's commit points.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import fields
from pathlib import Path

import numpy as np

from indexer.store import texttracks
from indexer.store.records import (
    ClipRecord,
    ClipSpan,
    NewVideo,
    StoreError,
    VideoNotInStoreError,
    VideoRecord,
)
from indexer.text.lines import VideoText


@contextmanager
def immediate_transaction(db: sqlite3.Connection) -> Iterator[sqlite3.Cursor]:
    """One `BEGIN IMMEDIATE` ... `COMMIT` on `db` (opened with isolation_level=None; the caller holds
    its lock). On an error it rolls back only if SQLite has not already: after SQLITE_FULL/IOERR
    SQLite rolls back by itself, and a second ROLLBACK would raise 'cannot rollback' and hide the
    real error. Also the job database's (service/jobs.py)."""
    cur = db.cursor()
    cur.execute("BEGIN IMMEDIATE")
    try:
        yield cur
        cur.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            cur.execute("ROLLBACK")
        raise


SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS videos (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    path TEXT NOT NULL,
    title TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    duration REAL NOT NULL,
    fps REAL NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    codec TEXT NOT NULL,
    size_bytes INTEGER NOT NULL,
    mtime REAL NOT NULL,
    added_at REAL NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('ready', 'deleted')),
    num_clips INTEGER NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS videos_hash_ready ON videos(content_hash) WHERE state = 'ready';
CREATE INDEX IF NOT EXISTS videos_title ON videos(title);
CREATE TABLE IF NOT EXISTS segments (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    generation INTEGER NOT NULL,
    file TEXT NOT NULL UNIQUE,
    clips INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS clips (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    video_id INTEGER NOT NULL REFERENCES videos(id),
    start REAL NOT NULL,
    end REAL NOT NULL,
    segment INTEGER NOT NULL REFERENCES segments(id),
    row INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS clips_video ON clips(video_id);
CREATE TABLE IF NOT EXISTS tombstones (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    clip_id INTEGER NOT NULL UNIQUE,
    deleted_at REAL NOT NULL
);
"""
SCHEMA += texttracks.SCHEMA  # the text part's tables: same database, same commits

# SQL values the store binds and reads back
Value = int | float | str
Row = tuple[Value, ...]
ClipRow = tuple[int, int, int, int]  # id, video_id, segment, row
SegmentRow = tuple[int, str, int]  # id, file, committed clips
Batch = Sequence[tuple[NewVideo, Sequence[ClipSpan], np.ndarray]]

_CLIP_RECORD = (
    "SELECT c.id, c.video_id, c.start, c.end, v.title, v.path FROM clips c JOIN videos v ON v.id = c.video_id"
)
_NEW_VIDEO_COLUMNS = [f.name for f in fields(NewVideo)]  # the videos columns ingestion fills
_INSERT_VIDEO = (
    f"INSERT INTO videos ({', '.join(_NEW_VIDEO_COLUMNS)}, added_at, state, num_clips) "
    f"VALUES ({', '.join('?' * len(_NEW_VIDEO_COLUMNS))}, ?, 'ready', ?)"
)


def _clip_record(row: Row) -> ClipRecord:
    cid, vid, start, end, title, path = row
    return ClipRecord(int(cid), int(vid), float(start), float(end), str(title), str(path))


def _title_where(title_filter: str | None) -> tuple[str, tuple[str, ...]]:
    if not title_filter:
        return "state = 'ready'", ()
    escaped = title_filter.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return "state = 'ready' AND title LIKE ? ESCAPE '\\'", (f"%{escaped}%",)


class Metadata:
    def __init__(self, path: Path) -> None:
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=60)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.executescript(SCHEMA)
        self._lock = threading.RLock()  # sqlite3 connections are not safe for concurrent use

    @staticmethod
    def initialise(path: Path) -> None:
        """Create the database of a new store (generation 0)."""
        db = sqlite3.connect(path, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(SCHEMA)
            db.execute("INSERT OR IGNORE INTO meta VALUES ('generation', '0')")
        finally:
            db.close()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def read(self, query: str, params: Sequence[Value] = ()) -> list[Row]:
        """A read on this connection for the store's other parts (texttracks)."""
        return self._rows(query, params)

    def check_text_index(self) -> None:
        """FTS5's check of text_fts against text_lines (rank 1: contents too); raises DatabaseError."""
        with self._lock:
            self._db.execute("INSERT INTO text_fts (text_fts, rank) VALUES ('integrity-check', 1)")

    def _rows(self, query: str, params: Sequence[Value] = ()) -> list[Row]:
        with self._lock:
            return self._db.execute(query, params).fetchall()

    def _count(self, query: str, params: Sequence[Value] = ()) -> int:
        return int(self._rows(query, params)[0][0])

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Cursor]:
        with self._lock, immediate_transaction(self._db) as cur:
            yield cur

    # ------------------------------------------------------------ what the in-memory view follows
    def data_version(self) -> int:
        """Changes whenever another connection commits (not on this connection's own commits)."""
        return self._count("PRAGMA data_version")

    def generation(self) -> int:
        return self._count("SELECT value FROM meta WHERE key='generation'")

    def segments(self) -> list[SegmentRow]:
        return [(int(i), str(f), int(n)) for i, f, n in self._rows("SELECT id, file, clips FROM segments")]

    def last_segment(self, generation: int) -> SegmentRow | None:
        rows = self._rows(
            "SELECT id, file, clips FROM segments WHERE generation = ? ORDER BY id DESC LIMIT 1",
            (generation,),
        )
        return (int(rows[0][0]), str(rows[0][1]), int(rows[0][2])) if rows else None

    def next_segment_id(self) -> int:
        return self._count("SELECT COALESCE(MAX(id), 0) + 1 FROM segments")

    def clips_after(self, last_id: int) -> list[ClipRow]:
        """Committed clip rows with ids above `last_id`, in id order."""
        rows = self._rows("SELECT id, video_id, segment, row FROM clips WHERE id > ? ORDER BY id", (last_id,))
        return [(int(c), int(v), int(s), int(r)) for c, v, s, r in rows]

    def tombstones_after(self, seq: int) -> list[tuple[int, int]]:
        """(seq, clip id) of tombstones written after `seq`, in order."""
        rows = self._rows("SELECT seq, clip_id FROM tombstones WHERE seq > ? ORDER BY seq", (seq,))
        return [(int(s), int(c)) for s, c in rows]

    def counts(self) -> tuple[int, int, int]:
        """(live videos, committed clips, tombstoned clips)."""
        return (
            self._count("SELECT COUNT(*) FROM videos WHERE state='ready'"),
            self._count("SELECT COUNT(*) FROM clips"),
            self._count("SELECT COUNT(*) FROM tombstones"),
        )

    def video_clip_counts(self) -> dict[int, tuple[int, str]]:
        """Every video (deleted ones too): id -> (recorded clip count, state)."""
        rows = self._rows("SELECT id, num_clips, state FROM videos")
        return {int(v): (int(n), str(s)) for v, n, s in rows}

    # ------------------------------------------------------------ metadata reads
    def get_video(self, video_id: int) -> VideoRecord | None:
        rows = self._rows("SELECT * FROM videos WHERE id = ? AND state = 'ready'", (video_id,))
        return VideoRecord.from_row(rows[0]) if rows else None

    def find_duplicate(self, content_hash: str) -> VideoRecord | None:
        rows = self._rows("SELECT * FROM videos WHERE content_hash = ? AND state = 'ready'", (content_hash,))
        return VideoRecord.from_row(rows[0]) if rows else None

    def list_videos(self, offset: int, limit: int, title_filter: str | None) -> list[VideoRecord]:
        where, params = _title_where(title_filter)
        rows = self._rows(
            f"SELECT * FROM videos WHERE {where} ORDER BY id LIMIT ? OFFSET ?", (*params, limit, offset)
        )
        return [VideoRecord.from_row(r) for r in rows]

    def count_videos(self, title_filter: str | None) -> int:
        where, params = _title_where(title_filter)
        return self._count(f"SELECT COUNT(*) FROM videos WHERE {where}", params)

    def clips_of(self, video_id: int) -> list[ClipRecord]:
        rows = self._rows(
            f"{_CLIP_RECORD} WHERE c.video_id = ? AND v.state = 'ready' ORDER BY c.start", (video_id,)
        )
        return [_clip_record(r) for r in rows]

    def clip_records(self, clip_ids: Sequence[int]) -> list[ClipRecord]:
        """Clip + video title/path for each id (same order; unknown ids are skipped)."""
        ids = [int(c) for c in clip_ids]
        found: dict[int, ClipRecord] = {}
        for start in range(0, len(ids), 500):  # SQLite caps the bound parameters of one statement
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for row in self._rows(f"{_CLIP_RECORD} WHERE c.id IN ({marks})", chunk):
                found[int(row[0])] = _clip_record(row)
        return [found[c] for c in ids if c in found]

    # ------------------------------------------------------------ writes (commit points)
    def insert_videos(
        self,
        batch: Batch,
        generation: int,
        segment: int | None,
        fname: str,
        first_row: int,
        now: float,
        texts: Sequence[VideoText | None] = (),
    ) -> list[int]:
        """One transaction: the videos, their clips at rows `first_row`... of segment `segment`
        (None: register `fname` as a new segment), and the segment's new committed length.
        A content hash already stored raises StoreError and stores nothing."""
        ids: list[int] = []
        try:
            with self._transaction() as cur:
                if segment is None:
                    cur.execute(
                        "INSERT INTO segments (generation, file, clips) VALUES (?, ?, 0)", (generation, fname)
                    )
                    segment = int(cur.lastrowid or 0)
                row = first_row
                for n, (video, clips, _) in enumerate(batch):
                    facts = [getattr(video, name) for name in _NEW_VIDEO_COLUMNS]
                    cur.execute(_INSERT_VIDEO, (*facts, now, len(clips)))
                    video_id = int(cur.lastrowid or 0)
                    cur.executemany(
                        "INSERT INTO clips (video_id, start, end, segment, row) VALUES (?, ?, ?, ?, ?)",
                        [
                            (video_id, float(c.start), float(c.end), segment, row + i)
                            for i, c in enumerate(clips)
                        ],
                    )
                    row += len(clips)
                    ids.append(video_id)
                    if n < len(texts) and (text := texts[n]) is not None:
                        texttracks.insert(cur, video_id, text)  # in the video's own commit
                cur.execute("UPDATE segments SET clips = ? WHERE id = ?", (row, segment))
        except sqlite3.IntegrityError as e:
            paths = ", ".join(v.path for v, _, _ in batch[:3])
            raise StoreError(f"{paths}: content already indexed ({e})") from e
        return ids

    def remove_video(self, video_id: int, now: float) -> int:
        """One transaction: mark the video deleted and tombstone its clips; returns the clip count."""
        with self._transaction() as cur:
            row = cur.execute(
                "SELECT id FROM videos WHERE id = ? AND state = 'ready'", (video_id,)
            ).fetchone()
            if row is None:
                raise VideoNotInStoreError(video_id)
            cur.execute("UPDATE videos SET state = 'deleted' WHERE id = ?", (video_id,))
            clip_ids = [r[0] for r in cur.execute("SELECT id FROM clips WHERE video_id = ?", (video_id,))]
            cur.executemany(
                "INSERT OR IGNORE INTO tombstones (clip_id, deleted_at) VALUES (?, ?)",
                [(c, now) for c in clip_ids],
            )
        return len(clip_ids)

    def switch_generation(
        self, old: int, new: int, files: Sequence[tuple[str, int]], placements: Sequence[tuple[int, str, int]]
    ) -> None:
        """Compaction's commit point, one transaction: register the new generation's segment files
        (name, clips), move every live clip to its (clip id, file, row), drop the deleted clips and
        videos and the old generation's segments."""
        with self._transaction() as cur:
            file_ids: dict[str, int] = {}
            for fname, count in files:
                cur.execute(
                    "INSERT INTO segments (generation, file, clips) VALUES (?, ?, ?)", (new, fname, count)
                )
                file_ids[fname] = int(cur.lastrowid or 0)
            cur.executemany(
                "UPDATE clips SET segment = ?, row = ? WHERE id = ?",
                [(file_ids[f], r, c) for c, f, r in placements],
            )
            cur.execute("DELETE FROM clips WHERE id IN (SELECT clip_id FROM tombstones)")
            cur.execute("DELETE FROM tombstones")
            texttracks.purge_deleted(cur)
            cur.execute("DELETE FROM videos WHERE state = 'deleted'")
            cur.execute("DELETE FROM segments WHERE generation = ?", (old,))
            cur.execute("UPDATE meta SET value = ? WHERE key = 'generation'", (str(new),))
