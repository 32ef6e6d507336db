"""The default backend: the store's own FAISS index file (`IndexLifecycle`, unchanged), behind the
backend interface. Deleted clips stay in FAISS until compaction; searches drop them afterwards."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from indexer.store import maintenance
from indexer.store import vector_index as vi
from indexer.store.backends.base import BackendKind
from indexer.store.index_lifecycle import IndexLifecycle

if TYPE_CHECKING:
    from indexer.store.metadata import Metadata
    from indexer.store.records import VerifyReport
    from indexer.store.segments import Segments


class FaissBackend(IndexLifecycle):
    kind: BackendKind = "faiss"

    def bury(self, dead: np.ndarray) -> None:
        """FAISS keeps deleted clips' rows (removing ids from IVF lists is slow); search filters them."""

    def search(self, queries: np.ndarray, k: int, threads: int) -> tuple[np.ndarray, np.ndarray]:
        return vi.search(self.index, queries, k, threads)

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
