"""Ingestion jobs persisted in SQLite, so a restart resumes them where they stopped.

Every item moves queued -> running -> done | duplicate | failed. A job's state is derived from
its items. Items left `running` by a crash go back to `queued` on start-up, flagged `resumed`, so
the worker can recognise a video that was committed just before the crash.
"""

from __future__ import annotations

import errno
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from indexer.store.metadata import immediate_transaction

from .errors import InsufficientStorage

TERMINAL = ("done", "duplicate", "failed")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    created REAL NOT NULL,
    updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS items (
    job_id TEXT NOT NULL REFERENCES jobs(id),
    idx INTEGER NOT NULL,
    path TEXT NOT NULL,
    name TEXT NOT NULL,
    title TEXT,
    state TEXT NOT NULL,
    reason TEXT,
    video_id INTEGER,
    resumed INTEGER NOT NULL DEFAULT 0,
    started REAL,
    finished REAL,
    PRIMARY KEY (job_id, idx)
);
CREATE INDEX IF NOT EXISTS items_state ON items(state);
"""

# the queue's order: jobs by creation, items by index
_NEXT_QUEUED = (
    "SELECT i.* FROM items i JOIN jobs j ON j.id = i.job_id WHERE i.state='queued' "
    "ORDER BY j.created, i.job_id, i.idx LIMIT 1"
)


def is_storage_error(e: BaseException) -> bool:
    """A full or failing disk (as opposed to a bug): ENOSPC/EDQUOT/EIO, or SQLite's FULL/IOERR."""
    if isinstance(e, OSError):
        return e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS)
    text = str(e).lower()
    return isinstance(e, sqlite3.Error) and (
        "disk is full" in text or "disk i/o" in text or "readonly" in text
    )


@dataclass(frozen=True)
class WorkItem:
    job_id: str
    idx: int
    path: str
    title: str | None
    resumed: bool  # was running when the process stopped


class JobStore:
    """Thread-safe: one connection, one lock; each change is one transaction."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _tx(self, sql: str, params: tuple[Any, ...] = ()) -> sqlite3.Cursor:
        return self._db.execute(sql, params)

    def recover(self) -> int:
        """Items interrupted by a stop go back to the queue; returns how many."""
        with self._lock:
            cur = self._tx("UPDATE items SET state='queued', resumed=1, started=NULL WHERE state='running'")
            return cur.rowcount

    def create(self, kind: str, items: list[tuple[str, str, str | None]]) -> str:
        """items: (path, display name, title). Returns the new job id."""
        job_id = uuid.uuid4().hex[:16]
        now = time.time()
        with self._lock:
            try:
                with immediate_transaction(self._db) as cur:
                    cur.execute("INSERT INTO jobs VALUES (?,?,?,?)", (job_id, kind, now, now))
                    cur.executemany(
                        "INSERT INTO items(job_id, idx, path, name, title, state) "
                        "VALUES (?,?,?,?,?,'queued')",
                        [(job_id, i, p, n, t) for i, (p, n, t) in enumerate(items)],
                    )
            except sqlite3.Error as e:
                if is_storage_error(e):
                    raise InsufficientStorage(
                        f"cannot record the job: {e} (free space in the var dir)"
                    ) from e
                raise
        return job_id

    def claim_next(self) -> WorkItem | None:
        """The oldest queued item, marked running."""
        with self._lock:
            row = self._tx(_NEXT_QUEUED).fetchone()
            if row is None:
                return None
            now = time.time()
            self._tx(
                "UPDATE items SET state='running', started=? WHERE job_id=? AND idx=?",
                (now, row["job_id"], row["idx"]),
            )
            self._tx("UPDATE jobs SET updated=? WHERE id=?", (now, row["job_id"]))
            return WorkItem(row["job_id"], row["idx"], row["path"], row["title"], bool(row["resumed"]))

    def peek_next(self) -> WorkItem | None:
        """The item `claim_next` would return now, left queued (what the worker may decode ahead)."""
        with self._lock:
            row = self._tx(_NEXT_QUEUED).fetchone()
        if row is None:
            return None
        return WorkItem(row["job_id"], row["idx"], row["path"], row["title"], bool(row["resumed"]))

    def finish(
        self, item: WorkItem, state: str, reason: str | None = None, video_id: int | None = None
    ) -> None:
        assert state in TERMINAL
        now = time.time()
        with self._lock:
            self._tx(
                "UPDATE items SET state=?, reason=?, video_id=?, finished=? WHERE job_id=? AND idx=?",
                (state, reason, video_id, now, item.job_id, item.idx),
            )
            self._tx("UPDATE jobs SET updated=? WHERE id=?", (now, item.job_id))

    def pending_paths(self) -> list[str]:
        """Files of items still to do (queued or running)."""
        with self._lock:
            rows = self._tx("SELECT path FROM items WHERE state IN ('queued','running')").fetchall()
        return [str(r[0]) for r in rows]

    def queue_depth(self) -> int:
        with self._lock:
            return int(
                self._tx("SELECT COUNT(*) FROM items WHERE state IN ('queued','running')").fetchone()[0]
            )

    def active_jobs(self) -> int:
        with self._lock:
            row = self._tx(
                "SELECT COUNT(DISTINCT job_id) FROM items WHERE state IN ('queued','running')"
            ).fetchone()
            return int(row[0])

    def get(self, job_id: str) -> dict[str, Any] | None:
        with self._lock:
            job = self._tx("SELECT * FROM jobs WHERE id=?", (job_id,)).fetchone()
            if job is None:
                return None
            items = self._tx("SELECT * FROM items WHERE job_id=? ORDER BY idx", (job_id,)).fetchall()
        return _job_view(job, items)

    def list(self, limit: int, offset: int) -> tuple[list[dict[str, Any]], int]:
        with self._lock:
            total = int(self._tx("SELECT COUNT(*) FROM jobs").fetchone()[0])
            jobs = self._tx(
                "SELECT * FROM jobs ORDER BY created DESC LIMIT ? OFFSET ?", (limit, offset)
            ).fetchall()
            out = []
            for job in jobs:
                items = self._tx("SELECT * FROM items WHERE job_id=? ORDER BY idx", (job["id"],)).fetchall()
                out.append(_job_view(job, items))
        return out, total


def _job_view(job: sqlite3.Row, items: list[sqlite3.Row]) -> dict[str, Any]:
    counts = {s: 0 for s in ("queued", "running", *TERMINAL)}
    for it in items:
        counts[it["state"]] += 1
    finished = sum(counts[s] for s in TERMINAL)
    if finished == len(items):
        state = "done"
    elif counts["running"] or finished:
        state = "running"
    else:
        state = "queued"
    return {
        "id": job["id"],
        "kind": job["kind"],
        "state": state,
        "created": job["created"],
        "updated": job["updated"],
        "total": len(items),
        "finished": finished,
        "progress": finished / len(items) if items else 1.0,
        "counts": counts,
        "items": [
            {
                "index": it["idx"],
                "name": it["name"],
                "title": it["title"],
                "state": it["state"],
                "reason": it["reason"],
                "video_id": it["video_id"],
            }
            for it in items
        ],
    }
