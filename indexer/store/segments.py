"""The float16 matrix segments under matrices/: appends, memory-mapped reads, and tail repair.

A segment file holds clip after clip, each a (T+K) x D row-major block; SQLite records how many
clips of each file are committed, so bytes past that are an interrupted append.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np

from indexer.store.layout import MATRIX_DIR, segment_name
from indexer.store.metadata import Batch, SegmentRow
from model.fileio import fsync_dir

# A segment file is closed for appends past this many bytes (new appends start a new file).
SEGMENT_MAX_BYTES = 1 << 30
# Clips read or written per step when a whole store is streamed (compaction, index builds).
CHUNK = 4096


class Segments:
    def __init__(self, root: Path, vectors_per_clip: int, dim: int) -> None:
        self.dir = root / MATRIX_DIR
        self.vectors_per_clip, self.dim = vectors_per_clip, dim
        self.clip_bytes = vectors_per_clip * dim * 2  # float16 rows
        self._files: dict[int, str] = {}  # segment id -> file name
        self._maps: dict[int, np.memmap] = {}

    def forget(self) -> None:
        """Drop the known files and their maps (a new generation replaced them)."""
        self._files = {}
        self._maps = {}

    def know(self, segments: Iterable[SegmentRow]) -> None:
        self._files.update((seg_id, fname) for seg_id, fname, _ in segments)

    # ------------------------------------------------------------ writes
    def rows_of(self, batch: Batch) -> np.ndarray:
        """The batch's matrices checked and stacked as segment rows: (sum C, T+K, D) float16."""
        blocks = []
        for video, clips, matrices in batch:
            mats = np.asarray(matrices)
            if mats.ndim != 3 or mats.shape[1:] != (self.vectors_per_clip, self.dim):
                raise ValueError(
                    f"matrices must be (C, {self.vectors_per_clip}, {self.dim}), got {tuple(mats.shape)}"
                )
            if len(clips) != mats.shape[0] or not clips:
                raise ValueError(f"{video.path}: {len(clips)} clip spans for {mats.shape[0]} matrices")
            if not np.isfinite(mats).all():
                raise ValueError(f"{video.path}: matrices contain NaN or inf")
            blocks.append(np.ascontiguousarray(mats, dtype=np.float16))
        return np.concatenate(blocks)

    def target(
        self, latest: SegmentRow | None, n_clips: int, generation: int, next_id: Callable[[], int]
    ) -> tuple[int | None, str, int]:
        """Where to append n_clips: (segment id, or None for a new file; file name; first row)."""
        if latest is not None and (latest[2] + n_clips) * self.clip_bytes <= SEGMENT_MAX_BYTES:
            if not self.rows_present([latest]):  # a damaged file takes no appends: a new one does
                return latest
        return None, segment_name(generation, next_id()), 0

    def append(self, fname: str, first_row: int, data: np.ndarray) -> None:
        """Write `data` (C, T+K, D) float16 at `first_row`, durably, before anything refers to it
        (bytes an interrupted append left past the committed rows are overwritten)."""
        path = self.dir / fname
        new_file = not path.exists()
        with open(path, "r+b" if not new_file else "w+b") as f:
            f.seek(first_row * self.clip_bytes)
            f.write(data.tobytes())
            f.truncate(f.tell())
            f.flush()
            os.fsync(f.fileno())
        if new_file:  # the directory entry too, or a power cut could lose a committed segment file
            fsync_dir(self.dir)

    def write_generation(
        self, generation: int, clip_ids: np.ndarray, matrices: Callable[[np.ndarray], np.ndarray]
    ) -> tuple[list[tuple[str, int]], list[tuple[int, str, int]]]:
        """New durable segment files holding `clip_ids` in order, referenced by nothing yet.
        Returns the files (name, clips) and each clip's place (clip id, file, row)."""
        per_file = max(1, SEGMENT_MAX_BYTES // self.clip_bytes)
        files: list[tuple[str, int]] = []
        places: list[tuple[int, str, int]] = []
        for n, start in enumerate(range(0, len(clip_ids), per_file)):
            chunk = clip_ids[start : start + per_file]
            fname = segment_name(generation, n + 1)
            with open(self.dir / fname, "wb") as f:
                for s2 in range(0, len(chunk), CHUNK):
                    f.write(np.ascontiguousarray(matrices(chunk[s2 : s2 + CHUNK])).tobytes())
                f.flush()
                os.fsync(f.fileno())
            files.append((fname, len(chunk)))
            places.extend((int(c), fname, i) for i, c in enumerate(chunk.tolist()))
        fsync_dir(self.dir)
        return files, places

    def repair(self, committed: Sequence[SegmentRow]) -> None:
        """Under the write lock: cut files back to their committed clips, delete unreferenced ones."""
        self.dir.mkdir(exist_ok=True)
        for _, fname, clips in committed:
            p = self.dir / fname
            want = clips * self.clip_bytes
            # only ever cut: a file shorter than its committed clips lost data (never pad it with
            # zeros that would be served as vectors); `damaged` reports it, the store quarantines
            if p.exists() and p.stat().st_size > want:
                with open(p, "r+b") as f:
                    f.truncate(want)
                    os.fsync(f.fileno())
        referenced = {fname for _, fname, _ in committed}
        for p in self.dir.iterdir():
            if p.name not in referenced:
                p.unlink()

    # ------------------------------------------------------------ reads
    def gather(self, segs: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """(C, T+K, D) float16 of the clips at (segs[i], rows[i]); FileNotFoundError when a file
        is gone (another process compacted since the caller's view was loaded)."""
        out = np.empty((len(segs), self.vectors_per_clip, self.dim), dtype=np.float16)
        for seg in np.unique(segs):
            sel = np.nonzero(segs == seg)[0]
            mm = self._memmap(int(seg), int(rows[sel].max()) + 1)
            out[sel] = mm[rows[sel]]
        return out

    def _memmap(self, seg_id: int, rows_needed: int) -> np.memmap:
        mm = self._maps.get(seg_id)
        if mm is None or mm.shape[0] < rows_needed:  # appended to since mapped: map it again
            path = self.dir / self._files[seg_id]
            n = path.stat().st_size // self.clip_bytes
            mm = np.memmap(path, dtype=np.float16, mode="r", shape=(n, self.vectors_per_clip, self.dim))
            self._maps[seg_id] = mm
        return mm

    def rows_present(self, committed: Sequence[SegmentRow]) -> dict[int, int]:
        """Segments whose file is missing or shorter than its committed clips: id -> whole clip
        rows still there (0 for a missing file)."""
        short = {}
        for seg_id, fname, n in committed:
            p = self.dir / fname
            size = p.stat().st_size if p.exists() else 0
            if size < n * self.clip_bytes:
                short[seg_id] = size // self.clip_bytes
        return short

    def short_files(self, committed: Sequence[SegmentRow]) -> list[str]:
        """verify: files holding fewer bytes than their committed clips need."""
        problems = []
        for _, fname, n in committed:
            p = self.dir / fname
            size = p.stat().st_size if p.exists() else -1
            if size < n * self.clip_bytes:
                problems.append(f"segment {fname} has {size} bytes, {n * self.clip_bytes} committed")
        return problems
