"""The FAISS index of the store's current generation: its file and its entry in the manifest;
loading, catching up with commits, persisting, the automatic upgrade as the store grows, rebuilds.

The index is derived data: whatever it lacks or gets wrong is rebuilt from the matrices, which
this part reads through the store's view (a `Clips` per call: holding the view would make a cycle
that keeps a dropped store's index in memory until the garbage collector runs).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from indexer.store import layout
from indexer.store import vector_index as vi
from indexer.store.identity import searched_views
from indexer.store.records import StoreError
from indexer.store.segments import CHUNK

log = logging.getLogger("t2v.store")


def _spec_of(manifest: dict[str, Any]) -> vi.IndexSpec:
    """The manifest's index, searched with today's probe count (`vi.with_current_probes`)."""
    return vi.with_current_probes(vi.IndexSpec.from_dict(manifest["index"]))


def _training_size(spec: vi.IndexSpec) -> int:
    # token-level IVF-PQ / IVF-SQ8 have ~4 sqrt(rows) lists over 20x the rows of the pooled IVF:
    # 16 rows a list keeps their k-means (D=512) at seconds to a few minutes
    return max(spec.nlist * (16 if spec.type in ("ivf-pq", "ivf-sq8") else 40), 10_000)


@dataclass(frozen=True)
class Clips:
    """What the index is derived from, read through the store."""

    ids: Callable[[], np.ndarray]  # every committed clip id, in order (a copy)
    matrices: Callable[[np.ndarray], np.ndarray]  # clip ids -> (C, T+K, D) float16


class IndexLifecycle:
    def __init__(self, root: Path, manifest: dict[str, Any], lock: threading.RLock) -> None:
        """lock: the store's in-memory lock (the index is searched under it)."""
        self.root = root
        self.manifest = manifest
        self.dim = int(manifest["dim"])
        self.vectors_per_clip = int(manifest["vectors_per_clip"])
        self.views = searched_views(manifest["model"])  # K searched first (auto_kind), or 0
        self._lock = lock
        self._index: faiss.Index | None = None  # None until loaded, and between generations
        self.spec = vi.IndexSpec()
        self.generation = -1
        self.dirty = False  # the index file or the manifest's counts lag behind this process's writes
        self.rebuilt_on_load: str | None = None  # why the saved index was not used (repairs report it)

    @property
    def index(self) -> faiss.Index:
        if self._index is None:
            raise StoreError("the FAISS index is not loaded")  # a bug: every read refreshes first
        return self._index

    @property
    def loaded(self) -> bool:
        return self._index is not None

    # ------------------------------------------------------------ loading
    def outdated(self, generation: int) -> bool:
        """Must the index be loaded again (after someone committed)?"""
        return generation != self.generation or self._index is None or self._changed_elsewhere()

    def _changed_elsewhere(self) -> bool:
        """Another process replaced the index (an automatic upgrade or a rebuild): its manifest is
        newer than ours and names another index."""
        try:
            disk = layout.read_manifest(self.root)
        except StoreError:
            return False  # unreadable for a moment (a reindex swapping directories): keep ours
        newer = float(disk.get("updated_at", 0)) > float(self.manifest.get("updated_at", 0))
        pin = bool(disk.get("index_pinned", False)) != bool(self.manifest.get("index_pinned", False))
        return newer and (_spec_of(disk) != self.spec or pin)

    def load(self, generation: int, clips: Clips) -> None:
        """The saved index of `generation`, or a fresh empty one when it is missing, torn or not
        of the manifest's type (the caller's catch-up then fills it)."""
        self.manifest = layout.read_manifest(self.root)
        self.spec = _spec_of(self.manifest)
        self.generation = generation
        path = layout.index_path(self.root, generation)
        index = None
        if path.exists():
            try:
                index = vi.read(path, self.spec)
            except RuntimeError:
                index = None  # unreadable (torn by a crash): rebuilt from the matrices
        committed = len(clips.ids())
        if index is not None and not self._plausible(index, committed):
            # rows of other keys (a token-level file where pooled rows belong, or back), or of clips
            # a lost commit took away: built again from the matrices, and said so
            self.rebuilt_on_load = f"{index.ntotal} rows saved for {committed} committed clips"
            log.warning("store %s: FAISS index of other rows (%s): rebuilt", self.root, self.rebuilt_on_load)
            index = None
        if index is None or index.d != self.dim or not vi.matches(index, self.spec):
            spec = self.spec
            if not vi.trainable(spec, committed, self.vectors_per_clip):
                # a pinned IVF type with too few clips for its lists (a store pinned before this
                # was checked): searched exactly, never unopenable; the lists train once it grows
                spec = vi.exact_fallback(spec)
            index = self._fresh(spec, clips)
        self._index = index

    def _plausible(self, index: faiss.Index, committed: int) -> bool:
        """Can a saved index hold this store's keys? Never more rows than the committed clips have
        (it may lag behind them: catch_up adds the rest), and whole clips of rows. The structure
        check (`vi.matches`) cannot tell pooled from token-level rows in lists of the same count."""
        per_clip = vi.rows_per_clip(self.spec, self.vectors_per_clip)
        return index.ntotal <= committed * per_clip and index.ntotal % per_clip == 0

    def catch_up(self, committed: np.ndarray, matrices: Callable[[np.ndarray], np.ndarray]) -> None:
        """Add every committed clip (ids in order) above the index's largest id.

        Not `dirty`: the clips are other processes' commits (this process's own mark it when they
        commit), so a reader's close does not wait for the write lock to save an index it only read."""
        missing = committed[committed > vi.max_id(self.index)].copy()
        for start in range(0, len(missing), CHUNK):
            chunk = missing[start : start + CHUNK]
            vi.add_clips(self.index, chunk, matrices(chunk), vi.is_pooled(self.spec))

    def _fresh(self, spec: vi.IndexSpec, clips: Clips, train: np.ndarray | None = None) -> faiss.Index:
        if train is None and spec.type in vi.IVF_TYPES:
            train = self._training_sample(clips, _training_size(spec), vi.is_pooled(spec))
        return vi.build_index(spec, self.dim, train)

    def _training_sample(self, clips: Clips, n: int, pooled: bool) -> np.ndarray:
        ids = clips.ids()
        if not len(ids):
            raise StoreError("an ivf index needs stored vectors to train on")
        rng = np.random.default_rng(0)
        per_clip = 1 if pooled else self.vectors_per_clip
        pick = rng.choice(len(ids), size=min(len(ids), max(1, n // per_clip)), replace=False)
        mats = clips.matrices(ids[np.sort(pick)])
        return vi.pool(mats) if pooled else mats.reshape(-1, self.dim).astype(np.float32)

    # ------------------------------------------------------------ persisting
    def persist(self, counts: dict[str, int], force: bool = False) -> None:
        """Under the write lock: the index file (when changed, or `force`), then the manifest.

        Searches keep running meanwhile: the write lock stops every commit, so the index cannot
        change while it is written outside the in-memory lock."""
        with self._lock:
            dirty, index, generation = self.dirty or force, self.index, self.generation
            self.dirty = False
        try:
            if dirty:
                vi.write_atomic(index, layout.index_path(self.root, generation), layout.file_mode(self.root))
        except BaseException:
            self.dirty = True
            raise
        with self._lock:
            self.manifest.update(
                counts=counts, generation=generation, index=self.spec.to_dict(), updated_at=time.time()
            )
            layout.write_manifest(self.root, self.manifest)

    def start_generation(self, clips: int, index_type: str | None) -> None:
        """Compaction committed a new generation of `clips` clips: record its index type (given:
        pinned from then on; else a pinned store keeps its type, an unpinned one is chosen by
        size) and drop the old index; the next load builds it."""
        disk = layout.read_manifest(self.root)  # under the write lock: another opener may have pinned
        if index_type is None and disk.get("index_pinned", False):
            index_type = str(disk["index"]["type"])
        spec = vi.choose_spec(clips, self.vectors_per_clip, self.dim, index_type, self.views)
        self.manifest["index"] = spec.to_dict()
        self.manifest["index_pinned"] = index_type is not None
        layout.write_manifest(self.root, self.manifest)
        self._index = None

    # ------------------------------------------------------------ replacing the index
    def outgrown(self, clips: int) -> bool:
        """Has the store outgrown an automatically chosen index? (flat past its size -> global-ivf;
        IVF lists trained on under a quarter of today's clips)."""
        if self.manifest.get("index_pinned", False):
            # a pinned IVF type served exactly while it had too few clips: train it once it can
            waiting = self._index is not None and not vi.matches(self._index, self.spec)
            spec = vi.choose_spec(clips, self.vectors_per_clip, self.dim, self.spec.type)
            return waiting and vi.trainable(spec, clips, self.vectors_per_clip)
        return vi.needs_rebuild(self.spec, clips, self.vectors_per_clip, self.dim, self.views)

    def pinned_type(self) -> str | None:
        """The index type the store was pinned to (None: chosen by size)."""
        return self.spec.type if self.manifest.get("index_pinned", False) else None

    def rebuild(self, clips: Clips, index_type: str | None = None, fresh: bool = False) -> vi.IndexSpec:
        """Replace the index by one of `index_type` (pinned from then on; None: chosen by size and
        not pinned) over every committed clip. The caller persists it."""
        ids = clips.ids()
        spec = vi.choose_spec(len(ids), self.vectors_per_clip, self.dim, index_type, self.views)
        index = self._index_over(spec, ids, clips, fresh)
        with self._lock:
            self.spec = spec
            self.manifest["index"] = spec.to_dict()
            self.manifest["index_pinned"] = index_type is not None
            self._index = index
            self.dirty = True
        return spec

    def _index_over(
        self, spec: vi.IndexSpec, ids: np.ndarray, clips: Clips, fresh: bool = False
    ) -> faiss.Index:
        """A new index of type `spec` holding clips `ids` (read back from the matrices, or for a
        pooled -> pooled rebuild from the current index's own vectors)."""
        # 8-bit codes decode approximately: fine to re-encode into another 8-bit index (a stage-1
        # proposal), not to become the vectors of an exact one
        lossless = self.spec.codec != "sq8" or spec.codec == "sq8"
        # fresh: the current index is suspect (an integrity check failed): read the matrices
        current = None if fresh else self._index
        if vi.is_pooled(spec) and vi.is_pooled(self.spec) and current is not None and lossless:
            have, vectors = vi.pooled_vectors(current)
            if len(have) == len(ids) and np.array_equal(np.sort(have), np.sort(ids)):
                rng = np.random.default_rng(0)
                n = min(len(have), _training_size(spec))
                train = vectors[np.sort(rng.choice(len(have), size=n, replace=False))]
                index = self._fresh(spec, clips, train if spec.type == "global-ivf" else None)
                index.add_with_ids(vectors, have)
                return index
        index = self._fresh(spec, clips)
        for start in range(0, len(ids), CHUNK):
            chunk = ids[start : start + CHUNK]
            vi.add_clips(index, chunk, clips.matrices(chunk), vi.is_pooled(spec))
        return index
