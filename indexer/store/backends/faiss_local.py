"""The default backend: the store's own FAISS index file (`IndexLifecycle`, unchanged), behind the
backend interface. Deleted clips stay in FAISS until compaction; searches drop them afterwards."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from indexer.store import maintenance
from indexer.store import vector_index as vi
from indexer.store.backends.base import BackendKind
from indexer.store.index_lifecycle import Clips, IndexLifecycle

if TYPE_CHECKING:
    from indexer.store.metadata import Metadata
    from indexer.store.records import VerifyReport
    from indexer.store.segments import Segments


class FaissBackend(IndexLifecycle):
    kind: BackendKind = "faiss"
    _radii: vi.ListRadii | None = None  # of the current ivf-sq8 index (a new index measures anew)

    def bury(self, dead: np.ndarray) -> None:
        """FAISS keeps deleted clips' rows (removing ids from IVF lists is slow); search filters them."""

    # the radii hold their index: dropped whenever the index is replaced, so an outgrown index
    # (hundreds of MB) is not kept alive by them
    def load(self, generation: int, clips: Clips) -> None:
        self._radii = None
        super().load(generation, clips)

    def start_generation(self, clips: int, index_type: str | None) -> None:
        self._radii = None
        super().start_generation(clips, index_type)

    def rebuild(self, clips: Clips, index_type: str | None = None, fresh: bool = False) -> vi.IndexSpec:
        spec = super().rebuild(clips, index_type, fresh)
        # a rebuild holds only the write lock, so searches run meanwhile: drop the radii under the
        # searches' lock, and only the old index's (a search may already have measured the new one)
        with self._lock:
            if self._radii is not None and self._radii.index is not self._index:
                self._radii = None
        return spec

    def search(
        self, queries: np.ndarray, k: int, threads: int, probes: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Called under the store's in-memory lock (the radii are updated in place)."""
        index = self.index
        if self.spec.type != "ivf-sq8" or vi.RADIUS_WEIGHT <= 0:
            return vi.search(index, queries, k, threads, probes)
        radii = self._radii  # read once: the radii of the index searched, whatever else resets them
        if radii is None or radii.index is not index:
            if not vi.matches(index, self.spec):  # the exact stand-in of lists too few clips can train
                return vi.search(index, queries, k, threads)
            radii = self._radii = vi.ListRadii(index)
        return vi.search_bounded(radii, queries, k, threads, probes=probes)

    def vector_count(self) -> int:
        return int(self.index.ntotal)

    def verify(
        self,
        meta: Metadata,
        segments: Segments,
        matrices: Callable[[np.ndarray], np.ndarray],
        live: np.ndarray,
    ) -> VerifyReport:
        return maintenance.verify(meta, segments, self.index, self.spec, matrices)

    def close(self) -> None:
        """Nothing held beyond memory."""
