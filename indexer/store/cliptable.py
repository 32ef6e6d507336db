"""The in-memory mirror of the committed clip rows and their tombstones, for vectorised lookups."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


class ClipTable:
    """Columns of the committed clip rows in id order, plus the set of tombstoned ids.

    Ids only grow (SQLite AUTOINCREMENT, appended in commit order), so lookups are binary searches.
    Rows and tombstones are only ever added, until compaction resets the table.
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Forget every row and tombstone (a new generation renumbered the rows)."""
        self.n = 0
        self._cols = np.zeros((1024, 4), dtype=np.int64)  # id, video_id, segment, row
        self.tombstones: set[int] = set()
        self.dead = np.zeros(0, dtype=np.int64)  # sorted array of self.tombstones
        self.tomb_seq = 0  # the last tombstone row seen

    def extend(self, rows: Sequence[tuple[int, int, int, int]]) -> None:
        """Append committed rows (id, video_id, segment, row), in id order."""
        if not rows:
            return
        need = self.n + len(rows)
        if need > len(self._cols):
            grown = np.zeros((max(need, 2 * len(self._cols)), 4), dtype=np.int64)
            grown[: self.n] = self._cols[: self.n]
            self._cols = grown
        self._cols[self.n : need] = np.asarray(rows, dtype=np.int64)
        self.n = need

    def bury(self, rows: Sequence[tuple[int, int]]) -> None:
        """Add tombstone rows (seq, clip id), in seq order."""
        for seq, clip_id in rows:
            self.tombstones.add(int(clip_id))
            self.tomb_seq = int(seq)
        if len(self.tombstones) != len(self.dead):
            self.dead = np.sort(np.fromiter(self.tombstones, dtype=np.int64))

    @property
    def ids(self) -> np.ndarray:
        return self._cols[: self.n, 0]

    @property
    def video(self) -> np.ndarray:
        return self._cols[: self.n, 1]

    def last_id(self) -> int:
        return int(self._cols[self.n - 1, 0]) if self.n else 0

    def live(self, video_ids: Sequence[int] | None = None) -> np.ndarray:
        """Ids of clips not deleted, optionally only those of `video_ids`; (n,) int64 copy."""
        ids = self.ids
        keep = ~np.isin(ids, self.dead) if len(self.dead) else np.ones(len(ids), bool)
        if video_ids is not None:
            keep &= np.isin(self.video, np.asarray(list(video_ids), dtype=np.int64))
        return ids[keep].copy()

    def filter_live(self, clip_ids: np.ndarray, video_ids: Sequence[int] | None = None) -> np.ndarray:
        """Keep committed, non-deleted clips (and only those of `video_ids` when given), in order."""
        clip_ids = np.asarray(clip_ids, dtype=np.int64)
        pos, keep = self.positions(clip_ids)
        if len(self.dead):
            keep &= ~np.isin(clip_ids, self.dead)
        if video_ids is not None:
            keep &= np.isin(self.video[pos], np.asarray(list(video_ids), dtype=np.int64))
        return clip_ids[keep]

    def positions(self, clip_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(positions, found mask) of `clip_ids` in the table."""
        ids = self.ids
        pos = np.searchsorted(ids, clip_ids)
        pos_c = np.minimum(pos, max(self.n - 1, 0))
        found = (pos < self.n) & (ids[pos_c] == clip_ids) if self.n else np.zeros(len(clip_ids), bool)
        return pos_c, found

    def videos_of(self, clip_ids: np.ndarray) -> np.ndarray:
        """The video id of each clip (-1 for an id that is not committed); (n,) int64."""
        pos, found = self.positions(np.asarray(clip_ids, dtype=np.int64))
        return np.where(found, self.video[pos] if self.n else -1, -1)

    def locate(self, clip_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(segment, row) of each id; KeyError for an id that is not committed."""
        pos, found = self.positions(clip_ids)
        if not found.all():
            raise KeyError(f"clips not in the store: {clip_ids[~found][:5].tolist()}")
        return self._cols[pos, 2], self._cols[pos, 3]
