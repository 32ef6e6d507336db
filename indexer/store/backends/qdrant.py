"""Stage 1 on Qdrant: one point per clip (id = clip id) holding the clip's (T+K) x D rows as a
multi-vector ('set', MaxSim, float16, no HNSW graph of its own) and its pooled vector ('pooled',
HNSW). A query prefetches clips by the pooled query vector and by each query row against the
pooled vectors (the same proposals as the FAISS pooled index), rescoring their union with MaxSim
over the whole query set; the store's exact partial-alignment rerank then scores what it keeps.

Two engines speak to Qdrant: `EdgeEngine` runs the real Qdrant engine in-process
(`qdrant-edge-py`, one process per directory), `ClientEngine` a server or cluster
(`qdrant-client`, sharded and replicated collections). SQLite stays the source of truth: the
engine is caught up from the committed clips (ids above the last exported one, recorded in
`<store>/qdrant-sync.json` only after the engine made them durable), and deleted clips are
deleted from it, so after a crash the next open completes the export and the deletions.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Protocol

import numpy as np

from indexer.store import layout, maintenance
from indexer.store import vector_index as vi
from indexer.store.backends.base import BackendConfig, BackendKind
from indexer.store.records import StoreBusyError, StoreError, VerifyReport
from indexer.store.segments import CHUNK
from model.fileio import atomic_path

if TYPE_CHECKING:
    import threading

    from indexer.store.index_lifecycle import Clips
    from indexer.store.metadata import Metadata
    from indexer.store.segments import Segments

SYNC_FILE = "qdrant-sync.json"
SET, POOLED = "set", "pooled"  # the two named vectors of a point
UPSERT_BATCH = 256  # points per upsert call
_VERIFY_SAMPLE = 256  # clips whose stored vectors verify compares with the matrices
_MAX_LISTED = 20
# points upserted since the last optimisation above which the shard's files are read into the
# page cache first (the optimiser copies them page by page: see EdgeEngine._warm)
_WARM_POINTS = 10_000


class Engine(Protocol):
    """What the backend asks of Qdrant (one collection of clip points)."""

    target: str  # where the points live (a directory or url + collection): the sync file's key
    fresh: bool  # the collection was created empty when this engine opened

    def upsert(self, ids: np.ndarray, sets: np.ndarray, pooled: np.ndarray) -> None:
        """ids (C,), sets (C, n_v, D) float16, pooled (C, D) float32."""

    def delete(self, ids: Sequence[int]) -> None: ...

    def query(
        self, rows: np.ndarray, pooled: np.ndarray, per_row: int, prefetch: int, limit: int, ef: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """rows (m, D), pooled (D,) -> (MaxSim scores (n,), clip ids (n,)), best first."""

    def ids(self) -> np.ndarray:
        """Every point id, sorted (n,) int64."""

    def sets(self, ids: Sequence[int]) -> dict[int, np.ndarray]:
        """The stored multi-vectors of `ids` ((n_v, D) float32 each; missing ids absent)."""

    def durable(self) -> None:
        """Make every update durable."""

    def flush(self) -> None:
        """Make every update durable and build the indexes the updates need."""

    def clear(self) -> None:
        """Remove every point (a rebuild follows)."""

    def close(self) -> None: ...


# ---------------------------------------------------------------- the in-process engine
class EdgeEngine:
    """The real Qdrant engine in this process (`qdrant_edge.EdgeShard` at `path`)."""

    def __init__(self, path: Path, dim: int) -> None:
        try:
            import qdrant_edge as qe
        except ImportError as e:
            raise StoreError("the qdrant backend needs qdrant-edge-py: pip install -e '.[qdrant]'") from e
        self._qe = qe
        self.path = path
        self.target = f"edge:{path.resolve()}"
        self.dim = dim
        self._held = self._hold()
        self._shard = self._open()
        self._pending = 0  # points upserted since the last optimisation

    def _hold(self) -> IO[bytes]:
        """An flock on the directory for as long as the engine is open: two openers of one shard
        would overwrite each other's segments (without a WAL the engine takes no lock itself). A
        file object, so that an engine dropped without `close` still releases it."""
        self.path.mkdir(parents=True, exist_ok=True)
        held = open(self.path.parent / f".{self.path.name}.lock", "ab")  # held open
        try:
            fcntl.flock(held.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            held.close()
            raise StoreBusyError(
                f"the in-process Qdrant engine at {self.path} is open in another process or Store "
                "(one at a time; a Qdrant server has no such limit: T2V_VECTORS__QDRANT_URL)"
            ) from None
        return held

    def _config(self) -> Any:
        qe = self._qe
        return qe.EdgeConfig(
            vectors={
                # rescoring only: a graph over 20 rows per clip would cost most of the build time
                SET: qe.EdgeVectorParams(
                    size=self.dim,
                    distance=qe.Distance.Dot,  # rows are L2-normalised: dot = cosine
                    multivector_config=qe.MultiVectorConfig(qe.MultiVectorComparator.MaxSim),
                    datatype=qe.VectorStorageDatatype.Float16,
                    hnsw_config=qe.HnswIndexConfig(m=0, ef_construct=100, full_scan_threshold=10_000),
                ),
                POOLED: qe.EdgeVectorParams(size=self.dim, distance=qe.Distance.Dot),
            },
            # the store re-exports what a crash lost (its sync file names the last flushed clip),
            # so the engine's own write-ahead log would only double every write
            wal_enabled=False,
        )

    def _open(self) -> Any:
        """Load the shard; one a crash left unreadable is derived data: it is started again empty
        (`fresh`), and the store exports every clip into it."""
        qe = self._qe
        self.fresh = True
        if (self.path / "edge_config.json").is_file():
            try:
                shard = qe.EdgeShard.load(str(self.path))
                self.fresh = False
                return shard
            except Exception:  # the bindings raise a bare Exception
                shutil.rmtree(self.path)
                self.path.mkdir()
        try:
            return qe.EdgeShard.create(str(self.path), self._config())
        except Exception as e:
            self._held.close()
            raise StoreError(f"cannot create the Qdrant engine at {self.path}: {e}") from e

    def upsert(self, ids: np.ndarray, sets: np.ndarray, pooled: np.ndarray) -> None:
        qe = self._qe
        points = [
            qe.Point(int(cid), {SET: sets[i].astype(np.float32), POOLED: pooled[i]})
            for i, cid in enumerate(ids.tolist())
        ]
        self._shard.update(qe.UpdateOperation.upsert_points(points))
        self._pending += len(points)

    def delete(self, ids: Sequence[int]) -> None:
        self._shard.update(self._qe.UpdateOperation.delete_points([int(i) for i in ids]))

    def query(
        self, rows: np.ndarray, pooled: np.ndarray, per_row: int, prefetch: int, limit: int, ef: int
    ) -> tuple[np.ndarray, np.ndarray]:
        qe = self._qe
        params = qe.SearchParams(hnsw_ef=ef)
        proposals = [qe.Prefetch(limit=prefetch, query=qe.Query.Nearest(pooled, using=POOLED), params=params)]
        proposals += [
            qe.Prefetch(limit=per_row, query=qe.Query.Nearest(r, using=POOLED), params=params)
            for r in (rows if per_row > 0 else [])
        ]
        hits = self._shard.query(
            qe.QueryRequest(
                limit=limit,
                query=qe.Query.Nearest(rows, using=SET),
                prefetches=proposals,
                with_vector=False,
                with_payload=False,
            )
        )
        return _scored(hits)

    def ids(self) -> np.ndarray:
        qe = self._qe
        out: list[int] = []
        offset: Any = None
        while True:
            recs, offset = self._shard.scroll(
                qe.ScrollRequest(offset=offset, limit=10_000, with_payload=False, with_vector=False)
            )
            out += [int(r.id) for r in recs]
            if offset is None:
                return np.sort(np.asarray(out, dtype=np.int64))

    def sets(self, ids: Sequence[int]) -> dict[int, np.ndarray]:
        recs = self._shard.retrieve([int(i) for i in ids], with_payload=False, with_vector=[SET])
        return {int(r.id): np.asarray(r.vector[SET], dtype=np.float32) for r in recs}

    def durable(self) -> None:
        self._shard.flush()

    def flush(self) -> None:
        self._shard.flush()
        if self._pending >= _WARM_POINTS:
            self._warm()
        self._shard.optimize()  # no background optimiser in-process: build the HNSW graph now
        self._shard.flush()
        self._pending = 0

    def _warm(self) -> None:
        """Read the shard's files once, in order, when they fit in half the RAM. After a bulk export
        the optimiser copies the new segment into an indexed one by faulting its memory-mapped
        vectors in one 4 KB page at a time: on a shared disk with few IOPS that ran at ~1.6 MB/s
        (100k clips: minutes stalled), where one sequential read took 13 s for 4.3 GB."""
        files = [f for f in (self.path / "segments").rglob("*") if f.is_file()]
        ram = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        if sum(f.stat().st_size for f in files) > ram // 2:
            return  # would only evict itself
        for f in files:
            with open(f, "rb", buffering=0) as fh:
                while fh.read(1 << 22):
                    pass

    def clear(self) -> None:
        self._shard.close()
        shutil.rmtree(self.path)
        self.path.mkdir()
        self._shard = self._open()

    def close(self) -> None:
        self._shard.close()
        self._held.close()  # releases the flock


# ---------------------------------------------------------------- a server or cluster
class ClientEngine:
    """A Qdrant server or cluster through `qdrant_client.QdrantClient` (or any object with its
    interface: tests pass its local mode, wrapped to record the calls)."""

    def __init__(
        self,
        client: Any,
        collection: str,
        dim: int,
        shards: int,
        replicas: int,
        target: str,
        write: bool = True,
    ) -> None:
        """write=False (a read-only replica): never create the collection, only read it."""
        from qdrant_client import models

        self._m = models
        self._client = client
        self.collection = collection
        self.target = f"{target}#{collection}"
        self.dim = dim
        self.shards, self.replicas = shards, replicas
        self.write = write
        self._ensure()

    @classmethod
    def connect(cls, config: BackendConfig, dim: int) -> ClientEngine:
        try:
            from qdrant_client import QdrantClient
        except ImportError as e:
            raise StoreError("a Qdrant server needs qdrant-client: pip install -e '.[qdrant]'") from e
        url = config.qdrant_url or ""
        client = QdrantClient(url=url, api_key=config.qdrant_api_key)
        return cls(client, config.collection, dim, config.shards, config.replicas, url, config.write)

    def _ensure(self) -> None:
        m = self._m
        self.fresh = not self._client.collection_exists(self.collection)
        if not self.fresh:
            return
        if not self.write:  # the writer creates it: a replica cannot know its shards or content
            self._client.close()
            raise StoreError(
                f"the Qdrant collection {self.collection!r} does not exist at {self.target} "
                "(a read-only replica, T2V_VECTORS__WRITE=false, never creates it: open the writer first)"
            )
        self._client.create_collection(
            self.collection,
            vectors_config={
                SET: m.VectorParams(
                    size=self.dim,
                    distance=m.Distance.DOT,
                    multivector_config=m.MultiVectorConfig(comparator=m.MultiVectorComparator.MAX_SIM),
                    datatype=m.Datatype.FLOAT16,
                    hnsw_config=m.HnswConfigDiff(m=0),
                ),
                POOLED: m.VectorParams(size=self.dim, distance=m.Distance.DOT),
            },
            shard_number=self.shards,
            replication_factor=self.replicas,
        )

    def upsert(self, ids: np.ndarray, sets: np.ndarray, pooled: np.ndarray) -> None:
        m = self._m
        points = [
            m.PointStruct(
                id=int(cid), vector={SET: sets[i].astype(np.float32).tolist(), POOLED: pooled[i].tolist()}
            )
            for i, cid in enumerate(ids.tolist())
        ]
        self._client.upsert(self.collection, points=points, wait=True)

    def delete(self, ids: Sequence[int]) -> None:
        m = self._m
        self._client.delete(
            self.collection, points_selector=m.PointIdsList(points=[int(i) for i in ids]), wait=True
        )

    def query(
        self, rows: np.ndarray, pooled: np.ndarray, per_row: int, prefetch: int, limit: int, ef: int
    ) -> tuple[np.ndarray, np.ndarray]:
        m = self._m
        params = m.SearchParams(hnsw_ef=ef)
        proposals = [m.Prefetch(query=pooled.tolist(), using=POOLED, limit=prefetch, params=params)]
        proposals += [
            m.Prefetch(query=r.tolist(), using=POOLED, limit=per_row, params=params)
            for r in (rows if per_row > 0 else [])
        ]
        res = self._client.query_points(
            self.collection,
            query=rows.tolist(),
            using=SET,
            prefetch=proposals,
            limit=limit,
            with_payload=False,
            with_vectors=False,
        )
        return _scored(res.points)

    def ids(self) -> np.ndarray:
        out: list[int] = []
        offset: Any = None
        while True:
            recs, offset = self._client.scroll(
                self.collection, limit=10_000, offset=offset, with_payload=False, with_vectors=False
            )
            out += [int(r.id) for r in recs]
            if offset is None:
                return np.sort(np.asarray(out, dtype=np.int64))

    def sets(self, ids: Sequence[int]) -> dict[int, np.ndarray]:
        recs = self._client.retrieve(self.collection, [int(i) for i in ids], with_vectors=[SET])
        return {int(r.id): np.asarray(r.vector[SET], dtype=np.float32) for r in recs}

    def durable(self) -> None:
        """Every write waited for the server's acknowledgement (wait=True): nothing to do."""

    def flush(self) -> None:
        """The server indexes in the background: nothing to do."""

    def clear(self) -> None:
        self._client.delete_collection(self.collection)
        self._ensure()

    def close(self) -> None:
        self._client.close()


def _scored(hits: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
    ids = np.asarray([int(h.id) for h in hits], dtype=np.int64)
    scores = np.asarray([float(h.score) for h in hits], dtype=np.float32)
    return scores, ids


# ---------------------------------------------------------------- the backend
class QdrantBackend:
    """The store's stage 1 on a Qdrant engine (see the module docstring)."""

    kind: BackendKind = "qdrant"

    def __init__(
        self,
        root: Path,
        manifest: dict[str, Any],
        lock: threading.RLock,
        config: BackendConfig,
        engine: Callable[[], Engine] | None = None,
    ) -> None:
        """engine: builds the engine (default: from `config`); opened at the first load."""
        self.root = root
        self.manifest = manifest
        self.dim = int(manifest["dim"])
        self.vectors_per_clip = int(manifest["vectors_per_clip"])
        self.config = config
        self._lock = lock
        self._engine_factory = engine  # not a bound method of self: no cycle keeps an engine open
        self._engine: Engine | None = None
        self.spec = vi.IndexSpec(type="qdrant")
        self.generation = -1
        self.dirty = False
        self.exported = 0  # every committed clip up to this id has been upserted
        self._buried: set[int] = set()  # tombstoned ids deleted from the engine by this process
        self._dead = np.zeros(0, dtype=np.int64)

    def _default_engine(self) -> Engine:
        if self.config.qdrant_url:
            return ClientEngine.connect(self.config, self.dim)
        return EdgeEngine(self.config.qdrant_path or self.root / "qdrant", self.dim)

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            raise StoreError("the Qdrant engine is not open")  # a bug: every read refreshes first
        return self._engine

    @property
    def loaded(self) -> bool:
        return self._engine is not None and self.generation >= 0

    # ------------------------------------------------------------ following the commits
    def outdated(self, generation: int) -> bool:
        return generation != self.generation or not self.loaded

    def load(self, generation: int, clips: Clips) -> None:
        """Open the engine and read how far it was exported. Without a sync record naming this
        engine its content is unknown to the store (new, or filled for another store): it is
        emptied and exported from the start. Tombstones are all deleted again at the next `bury`."""
        self.generation = generation
        if self._engine is not None:
            return  # a new generation (compaction) keeps clip ids: the engine stays as it is
        self._engine = self._engine_factory() if self._engine_factory else self._default_engine()
        sync = self._read_sync()
        if sync.get("target") == self.engine.target and not self.engine.fresh:
            self.exported = int(sync.get("clip_id", 0))
        else:
            if self.config.write and not self.engine.fresh:
                self.engine.clear()
            self.exported = 0
        self._buried = set()

    def bury(self, dead: np.ndarray) -> None:
        self._dead = dead
        if not self.config.write:
            return
        new = [int(c) for c in dead.tolist() if int(c) not in self._buried]
        if new:
            for start in range(0, len(new), 10_000):
                self.engine.delete(new[start : start + 10_000])
            # durable at once: a point resurrected by a crash could outlive its tombstone (compaction)
            self.engine.durable()
            self._buried.update(new)
            self.dirty = True

    def catch_up(self, committed: np.ndarray, matrices: Callable[[np.ndarray], np.ndarray]) -> None:
        """Upsert every committed, live clip above the last exported id."""
        if not self.config.write:
            return
        missing = committed[committed > self.exported]
        if len(missing) == 0:
            return
        live = missing[~np.isin(missing, self._dead)] if len(self._dead) else missing
        for start in range(0, len(live), UPSERT_BATCH):
            chunk = live[start : start + UPSERT_BATCH]
            sets = matrices(chunk)  # (C, n_v, D) float16
            self.engine.upsert(chunk, sets, vi.pool(sets))
        self.exported = int(missing[-1])
        self.dirty = True

    # ------------------------------------------------------------ reads
    def search(
        self, queries: np.ndarray, k: int, threads: int, probes: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """One merged row: the MaxSim top `rescored` clips of the prefetched union (`k`, FAISS's
        hits per query row, and `probes` are not used: the sizes are the backend's settings)."""
        rows = np.ascontiguousarray(queries, dtype=np.float32)  # (m, D)
        pooled = vi.pool(rows[None])[0]  # (D,)
        c = self.config
        scores, ids = self.engine.query(rows, pooled, c.row_prefetch, c.prefetch, c.rescored, c.hnsw_ef)
        return scores[None], ids[None]

    def vector_count(self) -> int:
        return int(len(self.engine.ids()))

    # ------------------------------------------------------------ persisting
    def persist(self, counts: dict[str, int], force: bool = False) -> None:
        """Under the write lock: the engine durable first, then the sync file, then the manifest."""
        if self.config.write and (self.dirty or force):
            self.engine.flush()
            with atomic_path(self.root / SYNC_FILE, layout.file_mode(self.root)) as tmp:
                tmp.write_text(json.dumps({"target": self.engine.target, "clip_id": self.exported}) + "\n")
        self.dirty = False
        with self._lock:
            self.manifest = layout.read_manifest(self.root)  # the FAISS entries stay as they are
            self.manifest.update(counts=counts, generation=self.generation, updated_at=time.time())
            layout.write_manifest(self.root, self.manifest)

    def _read_sync(self) -> dict[str, Any]:
        try:
            data = json.loads((self.root / SYNC_FILE).read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def start_generation(self, clips: int, index_type: str | None) -> None:
        """Compaction keeps clip ids, and deleted clips left the engine when they were buried."""

    def outgrown(self, clips: int) -> bool:
        return False  # the engine indexes as it grows

    def pinned_type(self) -> str | None:
        return None  # the engine's own index: nothing to pin

    def rebuild(self, clips: Clips, index_type: str | None = None) -> vi.IndexSpec:
        """Every live clip exported again into an emptied collection."""
        if not self.config.write:
            raise StoreError("a read-only replica (T2V_VECTORS__WRITE=false) never rebuilds the collection")
        self.engine.clear()
        self.exported, self._buried = 0, set()
        self.catch_up(clips.ids(), clips.matrices)
        self.bury(self._dead)
        self.dirty = True
        return self.spec

    # ------------------------------------------------------------ checks
    def verify(
        self,
        meta: Metadata,
        segments: Segments,
        matrices: Callable[[np.ndarray], np.ndarray],
        live: np.ndarray,
    ) -> VerifyReport:
        """The store's own checks, then: the engine holds exactly the live clips, and a sample of
        their stored vectors equals the matrices."""
        base = maintenance.verify(meta, segments, None, self.spec, matrices)
        have = self.engine.ids()
        missing = np.setdiff1d(live, have)
        extra = np.setdiff1d(have, live)
        problems = [f"clip {c} is missing from Qdrant" for c in missing[:_MAX_LISTED].tolist()]
        problems += [
            f"Qdrant holds clip {c}, which is deleted or unknown" for c in extra[:_MAX_LISTED].tolist()
        ]
        problems += self._vector_problems(np.intersect1d(live, have), matrices)
        return VerifyReport(
            ok=base.ok and not problems, checked_clips=base.checked_clips, problems=base.problems + problems
        )

    def _vector_problems(self, ids: np.ndarray, matrices: Callable[[np.ndarray], np.ndarray]) -> list[str]:
        if len(ids) > _VERIFY_SAMPLE:
            ids = np.sort(np.random.default_rng(0).choice(ids, size=_VERIFY_SAMPLE, replace=False))
        problems = []
        for start in range(0, len(ids), CHUNK):
            chunk = ids[start : start + CHUNK]
            stored = self.engine.sets(chunk.tolist())
            mats = matrices(chunk).astype(np.float32)
            for cid, mat in zip(chunk.tolist(), mats, strict=True):
                got = stored.get(cid)
                if got is None or got.shape != mat.shape or np.abs(got - mat).max() > 1e-3:
                    problems.append(f"clip {cid}: Qdrant's vectors differ from the matrices")
        return problems[:_MAX_LISTED]

    def close(self) -> None:
        if self._engine is not None:
            self._engine.close()
            self._engine = None
