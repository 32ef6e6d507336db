"""What the store needs from a vector backend (stage 1 of search), and how one is chosen.

The SQLite metadata and the float16 matrices stay the source of truth in every backend: a backend
holds derived vectors, is caught up from the committed clips after every commit (and on open), and
can always be rebuilt from them. The exact partial-alignment rerank reads the store's matrices.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol

import numpy as np

from indexer.store import vector_index as vi

if TYPE_CHECKING:
    from indexer.store.index_lifecycle import Clips
    from indexer.store.metadata import Metadata
    from indexer.store.records import VerifyReport
    from indexer.store.segments import Segments

BackendKind = Literal["faiss", "qdrant"]
BACKENDS: tuple[BackendKind, ...] = ("faiss", "qdrant")


@dataclass(frozen=True)
class BackendConfig:
    """Which backend a Store opens, and its options (from `IndexerSettings.vectors`)."""

    kind: BackendKind = "faiss"  # 'faiss': the store's own index file; 'qdrant': a Qdrant engine
    qdrant_url: str | None = None  # a Qdrant server or cluster (qdrant-client); None: in-process engine
    qdrant_path: Path | None = None  # in-process engine's directory; None: <store>/qdrant
    qdrant_api_key: str | None = None  # sent to a server when given
    collection: str = "t2v_clips"  # collection name on a server (one per store)
    shards: int = 1  # a new server collection's shard_number
    replicas: int = 1  # a new server collection's replication_factor
    # prefetch and rescored: recall@10 1.000 at 100k clips (0.82 at 256 / 128; docs/BENCHMARKS.md)
    prefetch: int = 512  # clips the pooled query vector proposes before MaxSim rescoring
    row_prefetch: int = 32  # clips each query row proposes (against the pooled vectors); 0: none
    rescored: int = 384  # clips kept after MaxSim rescoring (then reranked exactly)
    hnsw_ef: int = 64  # HNSW beam width of the prefetch searches
    write: bool = True  # False: never write the engine (read-only replicas of a served cluster)


class VectorBackend(Protocol):
    """The derived vector index of a store's current generation (`IndexLifecycle` is the FAISS one).

    Called under the store's in-memory lock (searches) or its write lock (writes)."""

    kind: BackendKind
    dim: int
    vectors_per_clip: int
    generation: int
    dirty: bool  # what this process wrote is not persisted yet
    spec: vi.IndexSpec  # FAISS: the index type; other backends: IndexSpec(type=<kind>)

    @property
    def loaded(self) -> bool: ...

    def outdated(self, generation: int) -> bool: ...

    def load(self, generation: int, clips: Clips) -> None: ...

    def catch_up(self, committed: np.ndarray, matrices: Callable[[np.ndarray], np.ndarray]) -> None:
        """Hold every committed clip (ids in order)."""

    def bury(self, dead: np.ndarray) -> None:
        """Tombstoned clip ids (sorted): a backend that can delete drops them."""

    def search(
        self, queries: np.ndarray, k: int, threads: int, probes: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(m, D) query rows -> (scores (r, n), clip ids (r, n); -1 = none), best first per row;
        probes: inverted lists an IVF index visits per row in this call (others ignore it)."""

    def vector_count(self) -> int: ...

    def persist(self, counts: dict[str, int], force: bool = False) -> None: ...

    def start_generation(self, clips: int, index_type: str | None) -> None: ...

    def outgrown(self, clips: int) -> bool: ...

    def pinned_type(self) -> str | None: ...

    def rebuild(self, clips: Clips, index_type: str | None = None) -> vi.IndexSpec: ...

    def verify(
        self,
        meta: Metadata,
        segments: Segments,
        matrices: Callable[[np.ndarray], np.ndarray],
        live: np.ndarray,
    ) -> VerifyReport:
        """Do the backend, the matrices and SQLite agree? `live`: the committed, non-deleted ids."""

    def close(self) -> None: ...
