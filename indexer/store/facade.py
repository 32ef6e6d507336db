"""The on-disk video store: one directory, crash-safe, incremental, shared by the CLI and the service.

Public API (stable; the service builds on it)
---------------------------------------------
    identity = store_identity(model)                  # model identity + weights fingerprint
    store = Store.open(dir, identity, create=True)    # ModelMismatchError if built with another model
    store = Store.open(dir)                           # no model check (stats, verify, rm, compact)
    store = Store.open(dir, backend=BackendConfig("qdrant"))  # stage 1 on Qdrant (backends/)

    video_id = store.add_video(NewVideo(...), clips=[ClipSpan(start, end), ...],
                               matrices=(C, T+K, D) array)   # atomic: fully present or absent
    store.add_videos([(video, clips, matrices), ...]) -> ids  # bulk: one commit, all or none
    store.find_duplicate(content_hash) -> VideoRecord | None
    store.remove_video(video_id) -> int               # clips tombstoned, never returned again
    store.get_video(video_id) -> VideoRecord | None
    store.list_videos(offset=0, limit=50, title_filter=None) -> list[VideoRecord]
    store.count_videos(title_filter=None) -> int
    store.clips_of(video_id) -> list[ClipRecord]
    store.stats() -> StoreStats; store.verify() -> VerifyReport; store.compact() -> dict
    store.flush()                                     # persist the FAISS index + manifest counts
    store.close()                                     # flush (when this process wrote) + release

Search-side primitives (used by indexer.search.searcher.Searcher): `candidates(queries, k)`,
`live_clip_ids(video_ids)`, `matrices(clip_ids)`, `clip_records(clip_ids)`, `refresh()`.

Thread safety and processes
---------------------------
A Store object may be shared by threads: reads (search, listing) run concurrently with one
write at a time. Writers are serialised by a thread lock plus an exclusive `flock` on
`DIR/write.lock` taken per write operation, so the CLI and the service can both write to the same
store (one at a time). A video becomes visible to readers as soon as its SQLite transaction
commits: every read first calls `refresh()`, which notices other connections' commits
(`PRAGMA data_version`) and catches the in-memory FAISS index and clip table up.

Crash safety
------------
The commit point of a video is one SQLite (WAL) transaction that inserts the video, its clips and
the segment's new committed length. The float16 rows are appended and fsync'ed *before* it, and
the FAISS index is updated (in memory) and persisted *after* it, as derived data. After kill -9 at
any point the next open (or write) truncates segment files to their committed length, deletes
files that no committed row references, and re-adds to FAISS every committed clip whose id is
above the largest id the saved index holds. So a video is either fully present or absent.

The parts, one job each: layout (files, manifest), identity, metadata (SQLite), segments (the
matrices), cliptable (the in-memory clip rows), index_lifecycle (FAISS), view (the in-memory
parts following commits), locking (the writer, crash repair), maintenance (verify, stats).
Layout: see docs/STORE.md.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from indexer.store import layout, locking, maintenance
from indexer.store import vector_index as vi
from indexer.store.backends import BackendConfig
from indexer.store.backends.faiss_local import FaissBackend
from indexer.store.identity import check_identity
from indexer.store.index_lifecycle import IndexLifecycle
from indexer.store.metadata import Batch, Metadata
from indexer.store.records import (
    ClipRecord,
    ClipSpan,
    NewVideo,
    StoreError,
    StoreStats,
    VerifyReport,
    VideoRecord,
)
from indexer.store.texttracks import TextHit, TextIndex
from indexer.store.view import View
from indexer.text.lines import TEXT_SOURCES, TrackReport, VideoText

log = logging.getLogger("t2v.store")


class Store:
    """See the module docstring. Create with `Store.open`."""

    def __init__(self, root: Path, manifest: dict[str, Any], backend: BackendConfig | None = None) -> None:
        self.root = root
        self.identity: dict[str, Any] = manifest["model"]
        self.dim = int(manifest["dim"])
        self.vectors_per_clip = int(manifest["vectors_per_clip"])
        self.tau = float(self.identity.get("config", {}).get("tau", 100.0))
        self._writer = locking.WriteLock(root)
        self._meta = Metadata(root / layout.DB)
        self._text = TextIndex(self._meta.read)
        self._view = View(root, manifest, self._meta, backend)
        # the view's parts, for short names (each lives as long as the view)
        self._lock, self._table = self._view.lock, self._view.table
        self._segments, self._faiss = self._view.segments, self._view.faiss
        self._closed = False
        self.repairs: list[str] = []  # what the integrity check on open found and repaired

    @classmethod
    def open(
        cls,
        path: str | Path,
        identity: dict[str, Any] | None = None,
        create: bool = False,
        index_type: str | None = None,
        backend: BackendConfig | None = None,
        check: bool = True,
    ) -> Store:
        """Open (or with create=True, create) the store at `path`.

        identity: from `store_identity(model)`; when given it must match the store's model
        (ModelMismatchError otherwise). index_type: pin one of vector_index.INDEX_TYPES for a new
        store (default: chosen by size, `vector_index.auto_kind`, and replaced as the store grows).
        backend: where stage 1 runs (default: the store's FAISS index; see indexer/store/backends).
        check: the integrity check on open and its repairs (False: `verify` reports, never repairs;
        uncommitted rows a crash left are still dropped).
        """
        root = Path(path)
        manifest = layout.open_manifest(root, identity, create, index_type)
        if identity is not None:
            check_identity(root, manifest["model"], identity)
        store = cls(root, manifest, backend)
        quarantined: list[str] = []
        with store._writer.if_free() as free:
            if free:  # else a live writer: it repairs under its own lock
                locking.repair(root, store._meta, store._segments)
                if check:
                    quarantined = locking.quarantine_damaged(root, store._meta, store._segments)
        store.refresh()
        if free and check:
            store._check_on_open(quarantined)
        return store

    def _check_on_open(self, quarantined: list[str]) -> None:
        """Integrity on open (fast): videos whose matrices were lost were taken out (their dead
        rows are dropped by a compaction now); a FAISS index that disagrees with the matrices
        (row counts, unknown clip ids, a sample of rows read back) is rebuilt from them.
        `repairs` says what was done (the service's /readyz reports it)."""
        if quarantined:
            log.warning("store %s: %s", self.root, "; ".join(quarantined))
            self.compact()
            self.repairs += quarantined
        backend = self._faiss
        if not isinstance(backend, FaissBackend):
            return  # other engines check their own vectors (`verify`)
        if backend.rebuilt_on_load is not None:  # the load refused the saved index: save the new one
            with self._writing():
                self._persist(force=True)
            self.repairs.append(f"FAISS index rebuilt from the matrices ({backend.rebuilt_on_load})")
            backend.rebuilt_on_load = None
        per_clip = vi.rows_per_clip(backend.spec, self.vectors_per_clip)
        with self._lock:
            found = maintenance.index_problems(
                backend.index, backend.spec, self._table.ids.copy(), per_clip, self.matrices, 256
            )
        if found:
            log.warning("store %s: FAISS index rebuilt from the matrices: %s", self.root, "; ".join(found))
            with self._writing():
                pinned = backend.manifest.get("index_pinned", False)
                backend.rebuild(self._view.clips(), backend.spec.type if pinned else None, fresh=True)
                self._persist()
            self.repairs.append(f"FAISS index rebuilt from the matrices ({found[0]})")

    @contextmanager
    def _writing(self, timeout: float = 120.0) -> Iterator[None]:
        """One writer at a time, in this process and across processes; repairs and catches up first."""
        if self._closed:
            raise StoreError("store is closed")
        with self._writer.held(timeout):
            locking.repair(self.root, self._meta, self._segments)
            self._view.recheck()  # what this writer saves must start from the other openers' index
            self.refresh()
            yield

    @property
    def _index(self) -> faiss.Index:
        if not isinstance(self._faiss, IndexLifecycle):
            raise StoreError(f"this store searches with the {self._faiss.kind} backend, not FAISS")
        return self._faiss.index

    # ---------------------------------------------------------------- search-side reads
    def refresh(self) -> None:
        """Catch up with commits made by other connections (cheap when nothing changed)."""
        self._view.refresh()

    @property
    def index_spec(self) -> vi.IndexSpec:
        """The FAISS index's type and parameters (what stage 1 searches)."""
        self.refresh()
        return self._faiss.spec

    def candidates(
        self, queries: np.ndarray, k: int, threads: int = 1, probes: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """FAISS top-k rows per query vector: (scores (m, k), clip ids (m, k), -1 = none); another
        backend may answer one merged row of clips, best first. probes: inverted lists an IVF index
        visits per query vector in this call (default: its own count)."""
        self.refresh()
        with self._lock:
            return self._faiss.search(queries, k, threads, probes)

    def live_clip_ids(self, video_ids: Sequence[int] | None = None) -> np.ndarray:
        """Ids of clips not deleted, optionally only those of `video_ids`; (n,) int64."""
        self.refresh()
        with self._lock:
            return self._table.live(video_ids)

    def filter_live(self, clip_ids: np.ndarray, video_ids: Sequence[int] | None = None) -> np.ndarray:
        """Keep committed, non-deleted clips (and only those of `video_ids` when given), in order."""
        with self._lock:
            return self._table.filter_live(clip_ids, video_ids)

    def clip_videos(self, clip_ids: np.ndarray) -> np.ndarray:
        """The video id of each clip (-1 for an id not committed), from memory; (n,) int64."""
        with self._lock:
            return self._table.videos_of(clip_ids)

    def matrices(self, clip_ids: np.ndarray) -> np.ndarray:
        """(C, n_v, D) float16 video sets of `clip_ids`, gathered from the memory-mapped segments."""
        return self._view.matrices(clip_ids)

    def clip_records(self, clip_ids: Sequence[int]) -> list[ClipRecord]:
        """Clip + video title/path for each id (same order; unknown ids are skipped)."""
        return self._meta.clip_records(clip_ids)

    # ---------------------------------------------------------------- metadata reads
    def get_video(self, video_id: int) -> VideoRecord | None:
        return self._meta.get_video(video_id)

    def find_duplicate(self, content_hash: str) -> VideoRecord | None:
        return self._meta.find_duplicate(content_hash)

    def list_videos(
        self, offset: int = 0, limit: int = 50, title_filter: str | None = None
    ) -> list[VideoRecord]:
        """Live videos by id; title_filter is a case-insensitive substring."""
        return self._meta.list_videos(offset, limit, title_filter)

    def count_videos(self, title_filter: str | None = None) -> int:
        return self._meta.count_videos(title_filter)

    def clips_of(self, video_id: int) -> list[ClipRecord]:
        return self._meta.clips_of(video_id)

    # ---------------------------------------------------------------- text tracks (texttracks.py)
    def has_text(self) -> bool:
        """Whether any live video has stored text lines (subtitles, speech, on-screen text)."""
        return self._text.has_lines()

    def text_search(
        self,
        query: str,
        sources: Sequence[str] = TEXT_SOURCES,
        video_ids: Sequence[int] | None = None,
        limit: int = 200,
    ) -> list[TextHit]:
        """Stored lines of live videos matching `query` (FTS5, best BM25 first)."""
        return self._text.search(query, sources, video_ids, limit)

    def text_tracks(self, video_id: int) -> list[TrackReport]:
        """What each text source gave for one video at ingestion."""
        return self._text.tracks_of(video_id)

    def text_lines(self, video_id: int) -> list[tuple[str, float, float, str]]:
        return self._text.lines_of(video_id)

    # ---------------------------------------------------------------- writes
    def add_video(
        self, video: NewVideo, clips: Sequence[ClipSpan], matrices: np.ndarray, text: VideoText | None = None
    ) -> int:
        """Store one video atomically; returns its id. matrices: (C, n_v, D), rows L2-normalised.

        Callers check `find_duplicate` first; a duplicate content hash that slips through (a race
        with another writer) raises StoreError and stores nothing.
        """
        return self.add_videos([(video, clips, matrices)], [text])[0]

    def add_videos(self, batch: Batch, texts: Sequence[VideoText | None] = ()) -> list[int]:
        """Store several videos in one commit (all or none): one fsync and one transaction.
        texts: each video's text lines (aligned with `batch`), committed with it."""
        if not batch:
            return []
        data = self._segments.rows_of(batch)  # checked before taking the lock
        with self._writing():
            gen = self._faiss.generation
            latest = self._meta.last_segment(gen)
            seg_id, fname, first_row = self._segments.target(
                latest, len(data), gen, self._meta.next_segment_id
            )
            # 1. rows appended and durable before anything refers to them
            self._segments.append(fname, first_row, data)
            # 2. the commit point: one transaction
            ids = self._meta.insert_videos(batch, gen, seg_id, fname, first_row, time.time(), texts)
            # 3. derived state: in-memory index and clip table (persisted by flush)
            self._view.committed()
            self._maybe_upgrade()
            return ids

    def remove_video(self, video_id: int) -> int:
        """Delete a video: its clips are tombstoned (never returned again); returns the clip count."""
        with self._writing():
            removed = self._meta.remove_video(video_id, time.time())
            self._view.committed()
            return removed

    def flush(self) -> None:
        """Persist the FAISS index (atomically) and the manifest's counts."""
        with self._writing():
            self._maybe_upgrade()
            self._persist()

    def _persist(self, force: bool = False) -> None:
        self._faiss.persist(maintenance.counts(self._meta, self.vectors_per_clip), force)

    def _maybe_upgrade(self) -> None:
        """Under the write lock, after a commit: replace an automatically chosen index the store
        has outgrown, and persist it at once so other processes switch too."""
        if self._faiss.outgrown(self._table.n):  # runs after every commit: counts, copies nothing
            self._faiss.rebuild(self._view.clips(), self._faiss.pinned_type())
            self._persist()

    def rebuild_index(self, index_type: str) -> dict[str, Any]:
        """Rebuild the FAISS index as `index_type` from the stored matrices (pinned from then on);
        unlike `compact` the matrices are not rewritten, so this costs only the index build."""
        with self._writing():
            spec = self._faiss.rebuild(self._view.clips(), index_type)
            self._persist()
        return spec.to_dict()

    def compact(self, index_type: str | None = None) -> dict[str, Any]:
        """Rewrite the matrices without deleted clips into a new generation and rebuild FAISS
        (choosing the index type by size unless `index_type` is given)."""
        if index_type is not None:
            vi.check_type(index_type)  # before anything is rewritten
        with self._writing(), self._lock:
            old = self._faiss.generation
            removed, live = len(self._table.tombstones), self._table.live()
            if index_type is not None:  # checked before anything is rewritten
                spec = vi.choose_spec(len(live), self.vectors_per_clip, self.dim, index_type)
                if not vi.trainable(spec, len(live), self.vectors_per_clip):
                    raise StoreError(
                        f"{len(live)} live clips are too few to train a {index_type!r} index "
                        f"({spec.nlist} lists); compact without --index-type, or add videos first"
                    )
            # 1. new segment files, durable, referenced by nothing yet
            files, places = self._segments.write_generation(old + 1, live, self._view.matrices)
            # 2. commit point: every clip moves to its new place in one transaction
            self._meta.switch_generation(old, old + 1, files, places)
            # 3. derived: a new index for the new generation, then drop the old files
            self._faiss.start_generation(len(live), index_type)
            self.refresh()
            self._persist(force=True)
            locking.repair(self.root, self._meta, self._segments)
            return {
                "removed_clips": removed,
                "live_clips": len(live),
                "generation": old + 1,
                "index": self._faiss.spec.to_dict(),
            }

    # ---------------------------------------------------------------- reports
    def stats(self) -> StoreStats:
        self.refresh()
        counted = maintenance.counts(self._meta, self.vectors_per_clip)
        disk = maintenance.disk_bytes(self.root)  # outside the lock: searches go on meanwhile
        with self._lock:
            return maintenance.stats(self.root, counted, disk, self._faiss, self.identity)

    def verify(self, fast: bool = False) -> VerifyReport:
        """Check that the vector backend (FAISS ids), the matrices and SQLite agree (read-only).
        fast: the sampled check a store runs on open (segment sizes, FAISS row counts and ids, 256
        FAISS rows read back) instead of every row of everything."""
        self.refresh()
        with self._lock:
            if not fast:
                return self._faiss.verify(self._meta, self._segments, self.matrices, self._table.live())
            backend = self._faiss
            index = backend.index if isinstance(backend, FaissBackend) else None
            per_clip = vi.rows_per_clip(backend.spec, self.vectors_per_clip)
            committed = self._table.ids.copy()
            return maintenance.verify_fast(
                self._meta, self._segments, index, backend.spec, committed, per_clip, self.matrices
            )

    # ---------------------------------------------------------------- lifetime
    def close(self) -> None:
        if self._closed:
            return
        if self._faiss.dirty:
            self.flush()
        self._closed = True
        self._meta.close()
        self._segments.forget()
        self._faiss.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
