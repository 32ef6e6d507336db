"""What one process holds of a store in memory, kept caught up with the commits.

The clip table, the memory-mapped segments and the FAISS index are all derived from SQLite.
`refresh` notices commits by other connections (`PRAGMA data_version`; a writer calls
`committed` after its own, which do not change it), reloads everything when the generation or the
index type changed elsewhere (a compaction, an upgrade), and otherwise adds only what is new.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np

from indexer.store.backends import BackendConfig, create_backend
from indexer.store.cliptable import ClipTable
from indexer.store.index_lifecycle import Clips
from indexer.store.metadata import Metadata
from indexer.store.segments import Segments


class View:
    def __init__(
        self, root: Path, manifest: dict[str, Any], meta: Metadata, backend: BackendConfig | None = None
    ) -> None:
        self.lock = threading.RLock()  # guards the three parts below; searches hold it
        self.table = ClipTable()
        self.segments = Segments(root, int(manifest["vectors_per_clip"]), int(manifest["dim"]))
        # the vector backend (FAISS by default; the attribute keeps its historical name)
        self.faiss = create_backend(backend or BackendConfig(), root, manifest, self.lock)
        self._meta = meta
        self._data_version = -1  # the commits caught up with

    def refresh(self) -> None:
        """Catch up with commits made by other connections (cheap when nothing changed)."""
        with self.lock:
            version = self._meta.data_version()
            if version == self._data_version and self.faiss.loaded:
                return
            generation = self._meta.generation()
            if self.faiss.outdated(generation):
                self.table.reset()
                self.segments.forget()
                self.faiss.load(generation, self.clips())
            self._catch_up_table()
            self.table.bury(self._meta.tombstones_after(self.table.tomb_seq))
            self.faiss.bury(self.table.dead)  # before catch_up: a deleted clip is never exported
            self.faiss.catch_up(self.table.ids, self.matrices)
            self._data_version = version

    def recheck(self) -> None:
        """The next refresh looks at the index too, not only at SQLite: another opener may have
        replaced or pinned it (a rebuild, an upgrade at flush) without committing anything."""
        with self.lock:
            self._data_version = -1

    def committed(self) -> None:
        """After this process's own commit: catch up, and remember the files now lag behind."""
        self.faiss.dirty = True
        self._data_version = -1
        self.refresh()

    def _catch_up_table(self) -> None:
        self.table.extend(self._meta.clips_after(self.table.last_id()))
        self.segments.know(self._meta.segments())

    def _committed_ids(self) -> np.ndarray:
        with self.lock:
            self._catch_up_table()
            return self.table.ids.copy()

    def clips(self) -> Clips:
        """The committed clips, as FAISS builds read them."""
        return Clips(self._committed_ids, self.matrices)

    def matrices(self, clip_ids: np.ndarray) -> np.ndarray:
        """(C, T+K, D) float16 video sets of committed `clip_ids`, from the memory-mapped segments."""
        with self.lock:
            clip_ids = np.asarray(clip_ids, dtype=np.int64)
            if len(clip_ids) == 0:
                return np.empty((0, self.segments.vectors_per_clip, self.segments.dim), dtype=np.float16)
            try:
                return self.segments.gather(*self.table.locate(clip_ids))
            except FileNotFoundError:
                # another process compacted the store since our last refresh: reload, retry once
                self.faiss.generation = -1
                self._data_version = -1
                self.refresh()
                return self.segments.gather(*self.table.locate(clip_ids))
