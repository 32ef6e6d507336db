"""The store's text part: timed lines from subtitles, speech and on-screen text in `meta.sqlite`,
full-text indexed (SQLite FTS5, ranked by BM25).

Tables (in the same database, so the video's commit transaction covers them; docs/STORE.md):
- `text_lines` (video_id, source, start, end, text): the source of truth;
- `text_fts`: an external-content FTS5 index over `text_lines.text` (rowid = line id);
- `text_tracks` (video_id, source, status, lines, reason, seconds): what each source gave.

Lines are written in the video's own commit (`Metadata.insert_videos`), so a video's text is
present exactly when the video is. Removing a video hides its lines (searches join live videos);
compaction deletes them with the video. `verify` checks the FTS index against the lines.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from indexer.text.lines import TEXT_SOURCES, TrackReport, VideoText

SCHEMA = """
CREATE TABLE IF NOT EXISTS text_lines (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    video_id INTEGER NOT NULL REFERENCES videos(id),
    source TEXT NOT NULL,
    start REAL NOT NULL,
    end REAL NOT NULL,
    text TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS text_lines_video ON text_lines(video_id);
CREATE VIRTUAL TABLE IF NOT EXISTS text_fts USING fts5(
    text, content='text_lines', content_rowid='id', tokenize='unicode61 remove_diacritics 2'
);
CREATE TABLE IF NOT EXISTS text_tracks (
    video_id INTEGER NOT NULL REFERENCES videos(id),
    source TEXT NOT NULL,
    status TEXT NOT NULL,
    lines INTEGER NOT NULL,
    reason TEXT NOT NULL,
    seconds REAL NOT NULL,
    PRIMARY KEY (video_id, source)
);
"""

Read = Callable[[str, Sequence[Any]], list[tuple[Any, ...]]]
_MAX_LISTED = 20


@dataclass(frozen=True)
class TextHit:
    """One stored line that matched a query; bm25 is FTS5's rank (lower is better)."""

    line_id: int
    video_id: int
    source: str
    start: float
    end: float
    text: str
    bm25: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ------------------------------------------------------------------ queries
_WORD = re.compile(r"\w+", re.UNICODE)


def match_expression(query: str) -> str | None:
    """A user query -> an FTS5 MATCH expression: "quoted phrases" must appear as phrases, the other
    words are alternatives ranked by BM25. Every token is quoted, so no FTS5 syntax gets through.
    None when the query has no words."""
    phrases: list[str] = []
    rest = query
    for m in re.finditer(r'"([^"]*)"', query):
        words = _WORD.findall(m.group(1))
        if words:
            phrases.append('"' + " ".join(words) + '"')
    rest = re.sub(r'"[^"]*"', " ", query)
    loose = [f'"{w}"' for w in _WORD.findall(rest)]
    if phrases:
        required = " AND ".join(phrases)
        return f"{required} AND ({' OR '.join(loose)})" if loose else required
    return " OR ".join(loose) if loose else None


def query_words(query: str) -> list[str]:
    """The words a result's line is highlighted with (lower case, in query order, no repeats)."""
    return list(dict.fromkeys(w.lower() for w in _WORD.findall(query)))


# ------------------------------------------------------------------ writes (inside the caller's transaction)
def insert(cur: sqlite3.Cursor, video_id: int, text: VideoText) -> None:
    """A video's lines, their FTS rows and its track reports."""
    first = None
    for line in text.lines:
        cur.execute(
            "INSERT INTO text_lines (video_id, source, start, end, text) VALUES (?, ?, ?, ?, ?)",
            (video_id, line.source, float(line.start), float(line.end), line.text),
        )
        first = first if first is not None else int(cur.lastrowid or 0)
    if first is not None:
        cur.execute(
            "INSERT INTO text_fts (rowid, text) "
            "SELECT id, text FROM text_lines WHERE video_id = ? AND id >= ?",
            (video_id, first),
        )
    cur.executemany(
        "INSERT OR REPLACE INTO text_tracks VALUES (?, ?, ?, ?, ?, ?)",
        [(video_id, r.source, r.status, r.lines, r.reason, float(r.seconds)) for r in text.reports],
    )


def purge_deleted(cur: sqlite3.Cursor) -> None:
    """Compaction: drop the lines, FTS rows and reports of deleted videos (before the videos go)."""
    dead = "SELECT id FROM videos WHERE state = 'deleted'"
    cur.execute(
        "INSERT INTO text_fts (text_fts, rowid, text) "
        f"SELECT 'delete', id, text FROM text_lines WHERE video_id IN ({dead})"
    )
    cur.execute(f"DELETE FROM text_lines WHERE video_id IN ({dead})")
    cur.execute(f"DELETE FROM text_tracks WHERE video_id IN ({dead})")


# ------------------------------------------------------------------ reads
class TextIndex:
    """Reads over the text tables through the store's connection (`Metadata.read`)."""

    def __init__(self, read: Read) -> None:
        self._read = read

    def has_lines(self) -> bool:
        rows = self._read(
            "SELECT EXISTS (SELECT 1 FROM text_lines l JOIN videos v ON v.id = l.video_id "
            "WHERE v.state = 'ready')",
            (),
        )
        return bool(rows[0][0])

    def search(
        self,
        query: str,
        sources: Sequence[str] = TEXT_SOURCES,
        video_ids: Sequence[int] | None = None,
        limit: int = 200,
    ) -> list[TextHit]:
        """Lines of live videos matching `query`, best BM25 first."""
        expr = match_expression(query)
        srcs = [s for s in sources if s in TEXT_SOURCES]
        if expr is None or not srcs or (video_ids is not None and not video_ids):
            return []
        where = f"l.source IN ({','.join('?' * len(srcs))})"
        params: list[Any] = [expr, *srcs]
        if video_ids is not None:
            ids = [int(v) for v in video_ids][:500]  # SQLite's bound-parameter cap; filters are small
            where += f" AND l.video_id IN ({','.join('?' * len(ids))})"
            params += ids
        rows = self._read(
            "SELECT l.id, l.video_id, l.source, l.start, l.end, l.text, bm25(text_fts) AS rank "
            "FROM text_fts JOIN text_lines l ON l.id = text_fts.rowid JOIN videos v ON v.id = l.video_id "
            f"WHERE text_fts MATCH ? AND v.state = 'ready' AND {where} ORDER BY rank, l.id LIMIT ?",
            [*params, int(limit)],
        )
        return [
            TextHit(int(i), int(v), str(s), float(a), float(b), str(t), float(r))
            for i, v, s, a, b, t, r in rows
        ]

    def tracks_of(self, video_id: int) -> list[TrackReport]:
        rows = self._read(
            "SELECT source, status, lines, reason, seconds FROM text_tracks "
            "WHERE video_id = ? ORDER BY source",
            (video_id,),
        )
        return [TrackReport(s, st, int(n), str(r), float(sec)) for s, st, n, r, sec in rows]  # type: ignore[arg-type]

    def lines_of(self, video_id: int) -> list[tuple[str, float, float, str]]:
        """(source, start, end, text) of one video, in time order."""
        rows = self._read(
            "SELECT source, start, end, text FROM text_lines WHERE video_id = ? ORDER BY start, id",
            (video_id,),
        )
        return [(str(s), float(a), float(b), str(t)) for s, a, b, t in rows]


def verify(read: Read, check_fts: Callable[[], None]) -> list[str]:
    """Lines belong to stored videos, have sane times and a known source; the FTS index matches them."""
    problems = [
        f"text line {i} belongs to missing video {v}"
        for i, v in read(
            "SELECT l.id, l.video_id FROM text_lines l LEFT JOIN videos v ON v.id = l.video_id "
            f"WHERE v.id IS NULL LIMIT {_MAX_LISTED}",
            (),
        )
    ]
    marks = ",".join("?" * len(TEXT_SOURCES))
    problems += [
        f"text line {i} has bad times or source"
        for (i,) in read(
            "SELECT id FROM text_lines WHERE NOT (end >= start AND start >= 0) "
            f"OR source NOT IN ({marks}) LIMIT {_MAX_LISTED}",
            TEXT_SOURCES,
        )
    ]
    try:
        check_fts()
    except sqlite3.DatabaseError as e:
        problems.append(f"the text index (text_fts) does not match text_lines: {e}")
    return problems
