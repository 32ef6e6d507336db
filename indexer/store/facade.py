"""The on-disk video store: one directory, crash-safe, incremental, shared by the CLI and the service.

Public API (stable; the service builds on it)
---------------------------------------------
    identity = store_identity(model)                  # model identity + weights fingerprint
    store = Store.open(dir, identity, create=True)    # ModelMismatchError if built with another model
    store = Store.open(dir)                           # no model check (stats, verify, rm, compact)

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

Layout: see docs/STORE.md.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from indexer.store import vector_index as vi

FORMAT = "t2v-store"
VERSION = 1
MANIFEST = "manifest.json"
DB = "meta.sqlite"
LOCK = "write.lock"
MATRIX_DIR = "matrices"
# A segment file is closed for appends past this many bytes (new appends start a new file).
SEGMENT_MAX_BYTES = 1 << 30
# Identity fields that do not change what the stored vectors mean.
_INFO_CONFIG_FIELDS = {"name", "diversity_weight"}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS videos (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    path TEXT NOT NULL,
    title TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    duration REAL NOT NULL,
    fps REAL NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    codec TEXT NOT NULL,
    size_bytes INTEGER NOT NULL,
    mtime REAL NOT NULL,
    added_at REAL NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('ready', 'deleted')),
    num_clips INTEGER NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS videos_hash_ready ON videos(content_hash) WHERE state = 'ready';
CREATE INDEX IF NOT EXISTS videos_title ON videos(title);
CREATE TABLE IF NOT EXISTS segments (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    generation INTEGER NOT NULL,
    file TEXT NOT NULL UNIQUE,
    clips INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS clips (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    video_id INTEGER NOT NULL REFERENCES videos(id),
    start REAL NOT NULL,
    end REAL NOT NULL,
    segment INTEGER NOT NULL REFERENCES segments(id),
    row INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS clips_video ON clips(video_id);
CREATE TABLE IF NOT EXISTS tombstones (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    clip_id INTEGER NOT NULL UNIQUE,
    deleted_at REAL NOT NULL
);
"""


class StoreError(Exception):
    """A store cannot be opened or used; the message says what to do."""


class ModelMismatchError(StoreError):
    """The store was built with another model; `t2v index reindex` rebuilds it."""


class StoreBusyError(StoreError):
    """Another process holds the write lock for too long."""


class VideoNotInStoreError(StoreError, KeyError):
    def __init__(self, video_id: int) -> None:
        super().__init__(f"no video with id {video_id} in the store")
        self.video_id = video_id

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


@dataclass(frozen=True)
class NewVideo:
    """What ingestion knows about a file before it is stored."""

    path: str
    title: str
    content_hash: str
    duration: float
    fps: float
    width: int
    height: int
    codec: str
    size_bytes: int
    mtime: float = 0.0


@dataclass(frozen=True)
class ClipSpan:
    start: float  # seconds
    end: float


@dataclass(frozen=True)
class VideoRecord:
    id: int
    path: str
    title: str
    content_hash: str
    duration: float
    fps: float
    width: int
    height: int
    codec: str
    size_bytes: int
    mtime: float
    added_at: float  # unix time
    state: str  # 'ready' | 'deleted'
    num_clips: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ClipRecord:
    id: int
    video_id: int
    start: float
    end: float
    title: str = ""
    path: str = ""


@dataclass
class StoreStats:
    path: str
    format_version: int
    videos: int
    clips: int
    vectors: int  # live clips * vectors per clip
    deleted_clips: int  # tombstoned, removed by compaction
    dim: int
    vectors_per_clip: int
    index: dict[str, Any]
    index_vectors: int  # rows in the FAISS index (includes tombstoned until compaction)
    generation: int
    disk_bytes: int
    model: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class VerifyReport:
    ok: bool
    checked_clips: int
    problems: list[str]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def store_identity(model: Any) -> dict[str, Any]:
    """model.model_identity plus a weights fingerprint (what makes two models' vectors comparable).

    The fingerprint is the checkpoint hash, the open_clip pretrained tag, or (random init) a hash
    of the text-side weights, so a text-only service model gets the same identity as the indexer's.
    """
    from model import model_identity, state_hash

    ident = dict(model_identity(model))
    cfg = model.config
    if ident.get("checkpoint_sha256"):
        weights = f"checkpoint:{ident['checkpoint_sha256']}"
    elif cfg.pretrained:
        weights = f"pretrained:{cfg.pretrained}"
    else:
        skip = ("visual", "frame_mlp", "video_decoder")
        text_side = {k: v for k, v in model.state_dict().items() if not any(s in k for s in skip)}
        weights = f"random:{state_hash(text_side)}"
    ident["weights"] = weights
    return ident


def identity_differences(stored: dict[str, Any], given: dict[str, Any]) -> list[str]:
    """Human-readable differences between two identities (empty when compatible)."""
    diffs: list[str] = []
    for key in ("dim", "vectors_per_clip", "frames", "num_tokens", "weights", "checkpoint_sha256"):
        if key in stored and key in given and stored[key] != given[key]:
            diffs.append(f"{key}: store has {stored[key]!r}, model has {given[key]!r}")
    a, b = stored.get("config", {}), given.get("config", {})
    for key in sorted(set(a) | set(b)):
        if key not in _INFO_CONFIG_FIELDS and a.get(key) != b.get(key):
            diffs.append(f"config.{key}: store has {a.get(key)!r}, model has {b.get(key)!r}")
    return diffs


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as f:
        json.dump(data, f, indent=2, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _swap_paths(root: Path) -> tuple[Path, Path]:
    return root.with_name(root.name + ".reindex-new"), root.with_name(root.name + ".reindex-old")


def swap_in(root: Path, new: Path) -> None:
    """Replace the store at `root` by the complete (closed) store at `new` (used by reindex).

    Two renames; a crash between them leaves `root` missing and `<root>.reindex-old` present,
    which `finish_swap` (run by every open) completes."""
    staged, retired = _swap_paths(root)
    if new != staged:
        new.rename(staged)
    if retired.exists():
        shutil.rmtree(retired)
    root.rename(retired)
    staged.rename(root)
    shutil.rmtree(retired)


def finish_swap(root: Path) -> None:
    """Complete a reindex swap interrupted between its two renames (the new store is complete)."""
    staged, retired = _swap_paths(root)
    if not root.exists() and retired.exists() and (staged / MANIFEST).is_file():
        staged.rename(root)
    if root.exists() and retired.exists():
        shutil.rmtree(retired)


class _ClipTable:
    """In-memory columns of the committed clip rows, in id order, for vectorised gathers.

    Ids only grow (SQLite AUTOINCREMENT, appended in commit order), so lookups are binary searches.
    """

    def __init__(self) -> None:
        self.n = 0
        self._cols = np.zeros((1024, 4), dtype=np.int64)  # id, video_id, segment, row

    def extend(self, rows: Sequence[tuple[int, int, int, int]]) -> None:
        if not rows:
            return
        need = self.n + len(rows)
        if need > len(self._cols):
            grown = np.zeros((max(need, 2 * len(self._cols)), 4), dtype=np.int64)
            grown[: self.n] = self._cols[: self.n]
            self._cols = grown
        self._cols[self.n : need] = np.asarray(rows, dtype=np.int64)
        self.n = need

    @property
    def ids(self) -> np.ndarray:
        return self._cols[: self.n, 0]

    @property
    def video(self) -> np.ndarray:
        return self._cols[: self.n, 1]

    def last_id(self) -> int:
        return int(self._cols[self.n - 1, 0]) if self.n else 0

    def positions(self, clip_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(positions, found mask) of `clip_ids` in the table."""
        ids = self.ids
        pos = np.searchsorted(ids, clip_ids)
        pos_c = np.minimum(pos, max(self.n - 1, 0))
        found = (pos < self.n) & (ids[pos_c] == clip_ids) if self.n else np.zeros(len(clip_ids), bool)
        return pos_c, found

    def locate(self, clip_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(segment, row) of each id; KeyError for an id that is not committed."""
        pos, found = self.positions(clip_ids)
        if not found.all():
            raise KeyError(f"clips not in the store: {clip_ids[~found][:5].tolist()}")
        return self._cols[pos, 2], self._cols[pos, 3]


class Store:
    """See the module docstring. Create with `Store.open`."""

    def __init__(self, root: Path, manifest: dict[str, Any]) -> None:
        self.root = root
        self._manifest = manifest
        self.identity: dict[str, Any] = manifest["model"]
        self.dim = int(manifest["dim"])
        self.vectors_per_clip = int(manifest["vectors_per_clip"])
        self.tau = float(self.identity.get("config", {}).get("tau", 100.0))
        self._clip_bytes = self.vectors_per_clip * self.dim * 2  # float16 rows
        self._lock = threading.RLock()  # in-memory state (index, clip table, memmaps)
        self._write_lock = threading.Lock()  # one writer per process, flock across processes
        self._db = sqlite3.connect(root / DB, check_same_thread=False, isolation_level=None, timeout=60)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.executescript(_SCHEMA)
        self._db_lock = threading.RLock()  # sqlite3 connections are not safe for concurrent use
        self._dirty = False
        self._data_version = -1
        self._generation = -1
        self._index: Any = None
        self._spec = vi.IndexSpec()
        self._clips = _ClipTable()
        self._tombstones: set[int] = set()
        self._dead = np.zeros(0, dtype=np.int64)  # sorted array of self._tombstones
        self._tomb_seq = 0
        self._maps: dict[int, np.memmap] = {}
        self._seg_files: dict[int, str] = {}
        self._closed = False

    # ---------------------------------------------------------------- opening
    @classmethod
    def open(
        cls,
        path: str | Path,
        identity: dict[str, Any] | None = None,
        create: bool = False,
        index_type: str | None = None,
    ) -> Store:
        """Open (or with create=True, create) the store at `path`.

        identity: from `store_identity(model)`; when given it must match the store's model
        (ModelMismatchError otherwise). index_type: pin one of vector_index.INDEX_TYPES for a new
        store (default: chosen by size, `vector_index.auto_kind`, and replaced as the store grows).
        """
        root = Path(path)
        finish_swap(root)
        man_path = root / MANIFEST
        if not man_path.is_file():
            if not create:
                raise StoreError(
                    f"{root} is not a video store (no {MANIFEST}); create it with `t2v index add`"
                )
            if identity is None:
                raise StoreError("creating a store needs the model identity")
            if root.exists() and not root.is_dir():
                raise StoreError(f"{root} exists and is not a directory")
            if root.is_dir() and any(p.name not in (DB, LOCK, MATRIX_DIR) for p in root.iterdir()):
                # a half-created store has only these; anything else is someone's directory
                if not (root / DB).exists():
                    raise StoreError(f"{root} is not empty and is not a video store")
            cls._create(root, identity, index_type)
        manifest = cls._read_manifest(root)
        if identity is not None:
            diffs = identity_differences(manifest["model"], identity)
            if diffs:
                raise ModelMismatchError(
                    f"the store at {root} was built with a different model ("
                    + "; ".join(diffs)
                    + f"). Search it with the model it was built with, or rebuild it for this model "
                    f"with `t2v index reindex --index {root}`."
                )
        store = cls(root, manifest)
        store._recover()
        return store

    @staticmethod
    def _read_manifest(root: Path) -> dict[str, Any]:
        try:
            manifest = json.loads((root / MANIFEST).read_text())
        except (OSError, ValueError) as e:
            raise StoreError(f"{root / MANIFEST} cannot be read: {e}") from e
        if manifest.get("format") != FORMAT:
            raise StoreError(f"{root} is not a video store (format {manifest.get('format')!r})")
        if manifest.get("version") != VERSION:
            raise StoreError(f"{root}: store format version {manifest.get('version')} is not supported")
        return manifest

    @staticmethod
    def _create(root: Path, identity: dict[str, Any], index_type: str | None) -> None:
        root.mkdir(parents=True, exist_ok=True)
        (root / MATRIX_DIR).mkdir(exist_ok=True)
        db = sqlite3.connect(root / DB, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(_SCHEMA)
            db.execute("INSERT OR IGNORE INTO meta VALUES ('generation', '0')")
        finally:
            db.close()
        spec = vi.choose_spec(0, int(identity["vectors_per_clip"]), int(identity["dim"]), index_type)
        now = time.time()
        manifest = {
            "format": FORMAT,
            "version": VERSION,
            "model": identity,
            "dim": int(identity["dim"]),
            "vectors_per_clip": int(identity["vectors_per_clip"]),
            "dtype": "float16",
            "index": spec.to_dict(),
            "index_pinned": index_type is not None,
            "counts": {"videos": 0, "clips": 0, "vectors": 0, "deleted_clips": 0},
            "generation": 0,
            "created_at": now,
            "updated_at": now,
        }
        # the manifest is written last: its presence means the store exists
        _write_json_atomic(root / MANIFEST, manifest)

    # ---------------------------------------------------------------- locking
    @contextmanager
    def _writing(self, timeout: float = 120.0) -> Iterator[None]:
        """One writer at a time, in this process and across processes; catches up first."""
        if self._closed:
            raise StoreError("store is closed")
        with self._write_lock:
            fd = os.open(self.root / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                deadline = time.monotonic() + timeout
                while True:
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        break
                    except BlockingIOError:
                        if time.monotonic() > deadline:
                            raise StoreBusyError(
                                f"another process is writing to {self.root} (waited {timeout:.0f}s)"
                            ) from None
                        time.sleep(0.05)
                self._repair_files()
                self.refresh()
                yield
            finally:
                os.close(fd)  # releases the flock

    def _sql(self, query: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._db_lock:
            return self._db.execute(query, params).fetchall()

    # ---------------------------------------------------------------- recovery
    def _recover(self) -> None:
        """Repair after a crash when no one else is writing; then load the in-memory state."""
        fd = os.open(self.root / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                pass  # a live writer; it repairs under its own lock
            else:
                self._repair_files()
        finally:
            os.close(fd)
        self.refresh()

    def _repair_files(self) -> None:
        """Under the write lock: cut uncommitted tails, drop unreferenced files (crash leftovers)."""
        seg_rows = self._sql("SELECT file, clips FROM segments")
        referenced = set()
        mdir = self.root / MATRIX_DIR
        mdir.mkdir(exist_ok=True)
        for fname, clips in seg_rows:
            referenced.add(fname)
            p = mdir / fname
            want = int(clips) * self._clip_bytes
            if p.exists() and p.stat().st_size != want:
                with open(p, "r+b") as f:
                    f.truncate(want)
                    os.fsync(f.fileno())
        for p in mdir.iterdir():
            if p.name not in referenced:
                p.unlink()
        generation = int(self._sql("SELECT value FROM meta WHERE key='generation'")[0][0])
        for p in self.root.iterdir():
            stale_index = p.name.startswith("faiss-g") and p.name != self._index_file(generation).name
            if stale_index or (p.name.startswith(".") and p.name.endswith(".tmp")):
                p.unlink()

    def _index_file(self, generation: int) -> Path:
        return self.root / f"faiss-g{generation}.index"

    # ---------------------------------------------------------------- in-memory state
    def refresh(self) -> None:
        """Catch up with commits made by other connections (cheap when nothing changed)."""
        with self._lock:
            with self._db_lock:
                version = self._db.execute("PRAGMA data_version").fetchone()[0]
            if version == self._data_version and self._index is not None:
                return
            generation = int(self._sql("SELECT value FROM meta WHERE key='generation'")[0][0])
            if generation != self._generation or self._index is None or self._index_changed_elsewhere():
                self._load_generation(generation)
            self._catch_up()
            self._data_version = version

    def _index_changed_elsewhere(self) -> bool:
        """Another process replaced the index (an automatic upgrade or a rebuild): its manifest is
        newer than ours and names another index. Checked only after someone committed."""
        try:
            disk = self._read_manifest(self.root)
        except StoreError:
            return False
        newer = float(disk.get("updated_at", 0)) > float(self._manifest.get("updated_at", 0))
        return newer and vi.IndexSpec.from_dict(disk["index"]) != self._spec

    def _load_generation(self, generation: int) -> None:
        self._manifest = self._read_manifest(self.root)
        self._spec = vi.IndexSpec.from_dict(self._manifest["index"])
        self._generation = generation
        self._clips = _ClipTable()
        self._tombstones = set()
        self._dead = np.zeros(0, dtype=np.int64)
        self._tomb_seq = 0
        self._maps = {}
        self._seg_files = {}
        path = self._index_file(generation)
        index = None
        if path.exists():
            try:
                index = vi.read(path, self._spec)
            except RuntimeError:
                index = None  # unreadable (torn by a crash): rebuilt below from the matrices
        if index is None or index.d != self.dim or not vi.matches(index, self._spec):
            index = self._fresh_index()
        self._index = index

    def _fresh_index(self, spec: vi.IndexSpec | None = None, train: np.ndarray | None = None) -> Any:
        spec = spec or self._spec
        if train is None and spec.type in ("ivf", "global-ivf"):
            train = self._training_sample(self._training_size(spec), vi.is_pooled(spec))
        return vi.build_index(spec, self.dim, train)

    @staticmethod
    def _training_size(spec: vi.IndexSpec) -> int:
        return max(spec.nlist * 40, 10_000)

    def _training_sample(self, n: int, pooled: bool = False) -> np.ndarray:
        ids = [r[0] for r in self._sql("SELECT id FROM clips ORDER BY id")]
        if not ids:
            raise StoreError("an ivf index needs stored vectors to train on")
        rng = np.random.default_rng(0)
        per_clip = 1 if pooled else self.vectors_per_clip
        pick = rng.choice(len(ids), size=min(len(ids), max(1, n // per_clip)), replace=False)
        self._catch_up_table()
        mats = self.matrices(np.asarray(ids, dtype=np.int64)[np.sort(pick)])
        if pooled:
            return vi.pool(mats)
        return mats.reshape(-1, self.dim).astype(np.float32)

    def _catch_up_table(self) -> None:
        last = self._clips.last_id()
        rows = self._sql("SELECT id, video_id, segment, row FROM clips WHERE id > ? ORDER BY id", (last,))
        self._clips.extend(rows)
        for seg_id, fname in self._sql("SELECT id, file FROM segments"):
            self._seg_files[int(seg_id)] = str(fname)

    def _catch_up(self) -> None:
        self._catch_up_table()
        for seq, clip_id in self._sql(
            "SELECT seq, clip_id FROM tombstones WHERE seq > ? ORDER BY seq", (self._tomb_seq,)
        ):
            self._tombstones.add(int(clip_id))
            self._tomb_seq = int(seq)
        if len(self._tombstones) != len(self._dead):
            self._dead = np.sort(np.fromiter(self._tombstones, dtype=np.int64))
        # FAISS: add every committed clip above the index's largest id, in id order
        top = vi.max_id(self._index)
        ids = self._clips.ids
        missing = ids[ids > top].copy()
        for start in range(0, len(missing), 4096):
            chunk = missing[start : start + 4096]
            vi.add_clips(self._index, chunk, self.matrices(chunk), vi.is_pooled(self._spec))
            self._dirty = True

    def _memmap(self, seg_id: int, rows_needed: int) -> np.memmap:
        mm = self._maps.get(seg_id)
        if mm is None or mm.shape[0] < rows_needed:
            path = self.root / MATRIX_DIR / self._seg_files[seg_id]
            n = path.stat().st_size // self._clip_bytes
            mm = np.memmap(path, dtype=np.float16, mode="r", shape=(n, self.vectors_per_clip, self.dim))
            self._maps[seg_id] = mm
        return mm

    # ---------------------------------------------------------------- search-side reads
    @property
    def index_spec(self) -> vi.IndexSpec:
        """The FAISS index's type and parameters (what stage 1 searches)."""
        self.refresh()
        return self._spec

    def candidates(self, queries: np.ndarray, k: int, threads: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """FAISS top-k rows per query vector: (scores (m, k), clip ids (m, k), -1 = none)."""
        self.refresh()
        with self._lock:
            return vi.search(self._index, queries, k, threads)

    def live_clip_ids(self, video_ids: Sequence[int] | None = None) -> np.ndarray:
        """Ids of clips not deleted, optionally only those of `video_ids`; (n,) int64."""
        self.refresh()
        with self._lock:
            ids = self._clips.ids
            keep = ~np.isin(ids, self._dead) if len(self._dead) else np.ones(len(ids), bool)
            if video_ids is not None:
                keep &= np.isin(self._clips.video, np.asarray(list(video_ids), dtype=np.int64))
            return ids[keep].copy()

    def filter_live(self, clip_ids: np.ndarray, video_ids: Sequence[int] | None = None) -> np.ndarray:
        """Keep committed, non-deleted clips (and only those of `video_ids` when given), in order."""
        with self._lock:
            clip_ids = np.asarray(clip_ids, dtype=np.int64)
            pos, keep = self._clips.positions(clip_ids)
            if len(self._dead):
                keep &= ~np.isin(clip_ids, self._dead)
            if video_ids is not None:
                keep &= np.isin(self._clips.video[pos], np.asarray(list(video_ids), dtype=np.int64))
            return clip_ids[keep]

    def matrices(self, clip_ids: np.ndarray) -> np.ndarray:
        """(C, n_v, D) float16 video sets of `clip_ids`, gathered from the memory-mapped segments."""
        with self._lock:
            clip_ids = np.asarray(clip_ids, dtype=np.int64)
            out = np.empty((len(clip_ids), self.vectors_per_clip, self.dim), dtype=np.float16)
            if len(clip_ids) == 0:
                return out
            for attempt in range(2):
                segs, rows = self._clips.locate(clip_ids)
                try:
                    for seg in np.unique(segs):
                        sel = np.nonzero(segs == seg)[0]
                        mm = self._memmap(int(seg), int(rows[sel].max()) + 1)
                        out[sel] = mm[rows[sel]]
                    break
                except FileNotFoundError:
                    if attempt:
                        raise
                    # another process compacted the store since our last refresh: reload, retry
                    self._generation = -1
                    self._data_version = -1
                    self.refresh()
            return out

    def clip_records(self, clip_ids: Sequence[int]) -> list[ClipRecord]:
        """Clip + video title/path for each id (same order; unknown ids are skipped)."""
        ids = [int(c) for c in clip_ids]
        if not ids:
            return []
        found: dict[int, ClipRecord] = {}
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for cid, vid, s, e, title, path in self._sql(
                "SELECT c.id, c.video_id, c.start, c.end, v.title, v.path FROM clips c "
                f"JOIN videos v ON v.id = c.video_id WHERE c.id IN ({marks})",
                chunk,
            ):
                found[int(cid)] = ClipRecord(int(cid), int(vid), float(s), float(e), str(title), str(path))
        return [found[c] for c in ids if c in found]

    # ---------------------------------------------------------------- metadata reads
    def get_video(self, video_id: int) -> VideoRecord | None:
        rows = self._sql("SELECT * FROM videos WHERE id = ? AND state = 'ready'", (video_id,))
        return VideoRecord(*rows[0]) if rows else None

    def find_duplicate(self, content_hash: str) -> VideoRecord | None:
        rows = self._sql("SELECT * FROM videos WHERE content_hash = ? AND state = 'ready'", (content_hash,))
        return VideoRecord(*rows[0]) if rows else None

    def list_videos(
        self, offset: int = 0, limit: int = 50, title_filter: str | None = None
    ) -> list[VideoRecord]:
        """Live videos by id; title_filter is a case-insensitive substring."""
        where, params = self._title_where(title_filter)
        rows = self._sql(
            f"SELECT * FROM videos WHERE {where} ORDER BY id LIMIT ? OFFSET ?", (*params, limit, offset)
        )
        return [VideoRecord(*r) for r in rows]

    def count_videos(self, title_filter: str | None = None) -> int:
        where, params = self._title_where(title_filter)
        return int(self._sql(f"SELECT COUNT(*) FROM videos WHERE {where}", params)[0][0])

    @staticmethod
    def _title_where(title_filter: str | None) -> tuple[str, tuple[Any, ...]]:
        if not title_filter:
            return "state = 'ready'", ()
        escaped = title_filter.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        return "state = 'ready' AND title LIKE ? ESCAPE '\\'", (f"%{escaped}%",)

    def clips_of(self, video_id: int) -> list[ClipRecord]:
        rows = self._sql(
            "SELECT c.id, c.video_id, c.start, c.end, v.title, v.path FROM clips c JOIN videos v "
            "ON v.id = c.video_id WHERE c.video_id = ? AND v.state = 'ready' ORDER BY c.start",
            (video_id,),
        )
        return [ClipRecord(int(a), int(b), float(s), float(e), str(t), str(p)) for a, b, s, e, t, p in rows]

    # ---------------------------------------------------------------- writes
    def add_video(self, video: NewVideo, clips: Sequence[ClipSpan], matrices: np.ndarray) -> int:
        """Store one video atomically; returns its id. matrices: (C, n_v, D), rows L2-normalised.

        Callers check `find_duplicate` first; a duplicate content hash that slips through (a race
        with another writer) raises StoreError and stores nothing.
        """
        return self.add_videos([(video, clips, matrices)])[0]

    def add_videos(self, batch: Sequence[tuple[NewVideo, Sequence[ClipSpan], np.ndarray]]) -> list[int]:
        """Store several videos in one commit (all or none): one fsync and one transaction."""
        if not batch:
            return []
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
        data = np.concatenate(blocks)  # (sum C, n_v, D)
        with self._writing():
            seg_id, fname, first_row = self._segment_for(len(data))
            path = self.root / MATRIX_DIR / fname
            # 1. rows appended and durable before anything refers to them
            with open(path, "r+b" if path.exists() else "w+b") as f:
                f.seek(first_row * self._clip_bytes)
                f.write(data.tobytes())
                f.truncate(f.tell())
                f.flush()
                os.fsync(f.fileno())
            # 2. the commit point: one transaction
            now = time.time()
            ids: list[int] = []
            try:
                with self._db_lock:
                    cur = self._db.cursor()
                    cur.execute("BEGIN IMMEDIATE")
                    try:
                        if seg_id is None:
                            cur.execute(
                                "INSERT INTO segments (generation, file, clips) VALUES (?, ?, 0)",
                                (self._generation, fname),
                            )
                            seg_id = int(cur.lastrowid or 0)
                        row = first_row
                        for video, clips, _ in batch:
                            cur.execute(
                                "INSERT INTO videos (path, title, content_hash, duration, fps, width, "
                                "height, codec, size_bytes, mtime, added_at, state, num_clips) "
                                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'ready', ?)",
                                (
                                    video.path,
                                    video.title,
                                    video.content_hash,
                                    video.duration,
                                    video.fps,
                                    video.width,
                                    video.height,
                                    video.codec,
                                    video.size_bytes,
                                    video.mtime,
                                    now,
                                    len(clips),
                                ),
                            )
                            video_id = int(cur.lastrowid or 0)
                            cur.executemany(
                                "INSERT INTO clips (video_id, start, end, segment, row) "
                                "VALUES (?, ?, ?, ?, ?)",
                                [
                                    (video_id, float(c.start), float(c.end), seg_id, row + i)
                                    for i, c in enumerate(clips)
                                ],
                            )
                            row += len(clips)
                            ids.append(video_id)
                        cur.execute("UPDATE segments SET clips = ? WHERE id = ?", (row, seg_id))
                        cur.execute("COMMIT")
                    except BaseException:
                        cur.execute("ROLLBACK")
                        raise
            except sqlite3.IntegrityError as e:
                paths = ", ".join(v.path for v, _, _ in batch[:3])
                raise StoreError(f"{paths}: content already indexed ({e})") from e
            # 3. derived state: in-memory index and clip table (persisted by flush); our own
            # commits do not change this connection's data_version, so force the catch-up
            self._dirty = True
            self._data_version = -1
            self.refresh()
            self._maybe_upgrade()
            return ids

    def _segment_for(self, n_clips: int) -> tuple[int | None, str, int]:
        """(segment id or None for a new one, file name, first row) for appending n_clips."""
        rows = self._sql(
            "SELECT id, file, clips FROM segments WHERE generation = ? ORDER BY id DESC LIMIT 1",
            (self._generation,),
        )
        if rows and (int(rows[0][2]) + n_clips) * self._clip_bytes <= SEGMENT_MAX_BYTES:
            return int(rows[0][0]), str(rows[0][1]), int(rows[0][2])
        nxt = int(self._sql("SELECT COALESCE(MAX(id), 0) + 1 FROM segments")[0][0])
        return None, f"seg-g{self._generation}-{nxt:06d}.f16", 0

    def remove_video(self, video_id: int) -> int:
        """Delete a video: its clips are tombstoned (never returned again); returns the clip count."""
        with self._writing():
            now = time.time()
            with self._db_lock:
                cur = self._db.cursor()
                cur.execute("BEGIN IMMEDIATE")
                try:
                    row = cur.execute(
                        "SELECT id FROM videos WHERE id = ? AND state = 'ready'", (video_id,)
                    ).fetchone()
                    if row is None:
                        raise VideoNotInStoreError(video_id)
                    cur.execute("UPDATE videos SET state = 'deleted' WHERE id = ?", (video_id,))
                    clip_ids = [
                        r[0] for r in cur.execute("SELECT id FROM clips WHERE video_id = ?", (video_id,))
                    ]
                    cur.executemany(
                        "INSERT OR IGNORE INTO tombstones (clip_id, deleted_at) VALUES (?, ?)",
                        [(c, now) for c in clip_ids],
                    )
                    cur.execute("COMMIT")
                except BaseException:
                    cur.execute("ROLLBACK")
                    raise
            self._dirty = True
            self._data_version = -1
            self.refresh()
            return len(clip_ids)

    def flush(self) -> None:
        """Persist the FAISS index (atomically) and the manifest's counts.

        Searches keep running meanwhile: the write lock (held here) stops every commit, so the
        index cannot change while it is written outside the in-memory lock."""
        with self._writing():
            self._maybe_upgrade()
            self._persist_index()

    def _persist_index(self) -> None:
        """Under the write lock: the index file (when changed), then the manifest."""
        with self._lock:
            dirty, index, generation = self._dirty, self._index, self._generation
            self._dirty = False
        try:
            if dirty:
                vi.write_atomic(index, self._index_file(generation))
        except BaseException:
            self._dirty = True
            raise
        with self._lock:
            self._write_manifest()

    def _index_over(self, spec: vi.IndexSpec, ids: np.ndarray) -> Any:
        """A new index of type `spec` holding clips `ids` (read back from the matrices, or for a
        pooled -> pooled rebuild from the current index's own vectors)."""
        # 8-bit codes decode approximately: fine to re-encode into another 8-bit index (a stage-1
        # proposal), not to become the vectors of an exact one
        lossless = self._spec.codec != "sq8" or spec.codec == "sq8"
        if vi.is_pooled(spec) and vi.is_pooled(self._spec) and self._index is not None and lossless:
            have, vectors = vi.pooled_vectors(self._index)
            if len(have) == len(ids) and np.array_equal(np.sort(have), np.sort(ids)):
                rng = np.random.default_rng(0)
                n = min(len(have), self._training_size(spec))
                train = vectors[np.sort(rng.choice(len(have), size=n, replace=False))]
                index = self._fresh_index(spec, train if spec.type == "global-ivf" else None)
                index.add_with_ids(vectors, have)
                return index
        index = self._fresh_index(spec)
        for start in range(0, len(ids), 4096):
            chunk = ids[start : start + 4096]
            vi.add_clips(index, chunk, self.matrices(chunk), vi.is_pooled(spec))
        return index

    def _install_index(self, spec: vi.IndexSpec, index: Any, pinned: bool) -> None:
        with self._lock:
            self._spec = spec
            self._manifest["index"] = spec.to_dict()
            self._manifest["index_pinned"] = pinned
            self._index = index
            self._dirty = True

    def _maybe_upgrade(self) -> None:
        """Under the write lock, after a commit: replace an automatically chosen index the store
        has outgrown (flat past its size -> global-ivf; IVF lists trained on under a quarter of
        today's clips), and persist it at once so other processes switch too."""
        if self._manifest.get("index_pinned", False):
            return
        # runs after every commit: count first, copy the id column only for a rebuild
        if not vi.needs_rebuild(self._spec, self._clips.n, self.vectors_per_clip, self.dim):
            return
        with self._lock:
            ids = self._clips.ids.copy()
        spec = vi.choose_spec(len(ids), self.vectors_per_clip, self.dim)
        self._install_index(spec, self._index_over(spec, ids), pinned=False)
        self._persist_index()

    def rebuild_index(self, index_type: str) -> dict[str, Any]:
        """Rebuild the FAISS index as `index_type` from the stored matrices (pinned from then on);
        unlike `compact` the matrices are not rewritten, so this costs only the index build."""
        with self._writing():
            with self._lock:
                ids = self._clips.ids.copy()
            spec = vi.choose_spec(len(ids), self.vectors_per_clip, self.dim, index_type)
            self._install_index(spec, self._index_over(spec, ids), pinned=True)
            self._persist_index()
        return spec.to_dict()

    def _write_manifest(self) -> None:
        s = self._counts()
        self._manifest.update(
            counts=s, generation=self._generation, index=self._spec.to_dict(), updated_at=time.time()
        )
        _write_json_atomic(self.root / MANIFEST, self._manifest)

    def _counts(self) -> dict[str, int]:
        videos = int(self._sql("SELECT COUNT(*) FROM videos WHERE state='ready'")[0][0])
        clips = int(self._sql("SELECT COUNT(*) FROM clips")[0][0])
        dead = int(self._sql("SELECT COUNT(*) FROM tombstones")[0][0])
        live = clips - dead
        return {
            "videos": videos,
            "clips": live,
            "vectors": live * self.vectors_per_clip,
            "deleted_clips": dead,
        }

    def compact(self, index_type: str | None = None) -> dict[str, Any]:
        """Rewrite the matrices without deleted clips into a new generation and rebuild FAISS
        (choosing the index type by size unless `index_type` is given)."""
        with self._writing():
            with self._lock:
                old_gen = self._generation
                new_gen = old_gen + 1
                dead = set(self._tombstones)
                ids = self._clips.ids
                live = ids[~np.isin(ids, self._dead)].copy() if dead else ids.copy()
                # 1. new segment files, durable, referenced by nothing yet
                per_seg = max(1, SEGMENT_MAX_BYTES // self._clip_bytes)
                placements: list[tuple[int, str, int]] = []  # (clip id, file, row)
                files: list[tuple[str, int]] = []
                mdir = self.root / MATRIX_DIR
                for n, start in enumerate(range(0, len(live), per_seg)):
                    chunk = live[start : start + per_seg]
                    fname = f"seg-g{new_gen}-{n + 1:06d}.f16"
                    with open(mdir / fname, "wb") as f:
                        for s2 in range(0, len(chunk), 4096):
                            f.write(np.ascontiguousarray(self.matrices(chunk[s2 : s2 + 4096])).tobytes())
                        f.flush()
                        os.fsync(f.fileno())
                    files.append((fname, len(chunk)))
                    placements.extend((int(c), fname, i) for i, c in enumerate(chunk.tolist()))
                _fsync_dir(mdir)
                # 2. commit point: swap every clip to its new place in one transaction
                with self._db_lock:
                    cur = self._db.cursor()
                    cur.execute("BEGIN IMMEDIATE")
                    try:
                        file_ids: dict[str, int] = {}
                        for fname, count in files:
                            cur.execute(
                                "INSERT INTO segments (generation, file, clips) VALUES (?, ?, ?)",
                                (new_gen, fname, count),
                            )
                            file_ids[fname] = int(cur.lastrowid or 0)
                        cur.executemany(
                            "UPDATE clips SET segment = ?, row = ? WHERE id = ?",
                            [(file_ids[f], r, c) for c, f, r in placements],
                        )
                        cur.execute("DELETE FROM clips WHERE id IN (SELECT clip_id FROM tombstones)")
                        cur.execute("DELETE FROM tombstones")
                        cur.execute("DELETE FROM videos WHERE state = 'deleted'")
                        cur.execute("DELETE FROM segments WHERE generation = ?", (old_gen,))
                        cur.execute("UPDATE meta SET value = ? WHERE key = 'generation'", (str(new_gen),))
                        cur.execute("COMMIT")
                    except BaseException:
                        cur.execute("ROLLBACK")
                        raise
                # 3. derived: new index for the new generation, then drop the old files
                self._manifest["index"] = vi.choose_spec(
                    len(live), self.vectors_per_clip, self.dim, index_type
                ).to_dict()
                if index_type is not None:
                    self._manifest["index_pinned"] = True
                _write_json_atomic(self.root / MANIFEST, self._manifest)
                self._index = None
                self.refresh()
                vi.write_atomic(self._index, self._index_file(new_gen))
                self._dirty = False
                self._write_manifest()
                self._repair_files()
                return {
                    "removed_clips": len(dead),
                    "live_clips": len(live),
                    "generation": new_gen,
                    "index": self._spec.to_dict(),
                }

    # ---------------------------------------------------------------- reports
    def stats(self) -> StoreStats:
        self.refresh()
        counts = self._counts()
        disk = sum(p.stat().st_size for p in self.root.rglob("*") if p.is_file())
        with self._lock:
            return StoreStats(
                path=str(self.root),
                format_version=VERSION,
                videos=counts["videos"],
                clips=counts["clips"],
                vectors=counts["vectors"],
                deleted_clips=counts["deleted_clips"],
                dim=self.dim,
                vectors_per_clip=self.vectors_per_clip,
                index=self._spec.to_dict(),
                index_vectors=int(self._index.ntotal),
                generation=self._generation,
                disk_bytes=disk,
                model=self.identity,
            )

    def verify(self) -> VerifyReport:
        """Check that FAISS ids, the matrices and SQLite agree (read-only)."""
        self.refresh()
        problems: list[str] = []
        with self._lock:
            clip_rows = self._sql("SELECT id, video_id, segment, row FROM clips ORDER BY id")
            videos = {int(v): (int(n), s) for v, n, s in self._sql("SELECT id, num_clips, state FROM videos")}
            segs = {int(i): (str(f), int(n)) for i, f, n in self._sql("SELECT id, file, clips FROM segments")}
            per_video: dict[int, int] = {}
            seen_slots: set[tuple[int, int]] = set()
            for cid, vid, seg, row in clip_rows:
                per_video[vid] = per_video.get(vid, 0) + 1
                if vid not in videos:
                    problems.append(f"clip {cid} belongs to missing video {vid}")
                if seg not in segs:
                    problems.append(f"clip {cid} points to missing segment {seg}")
                elif not 0 <= row < segs[seg][1]:
                    problems.append(f"clip {cid} row {row} outside segment {segs[seg][0]}")
                if (seg, row) in seen_slots:
                    problems.append(f"clip {cid} shares matrix row {row} of segment {seg}")
                seen_slots.add((seg, row))
            for vid, (n, state) in videos.items():
                if per_video.get(vid, 0) != n:
                    problems.append(
                        f"video {vid} ({state}) records {n} clips, {per_video.get(vid, 0)} stored"
                    )
            for fname, n in segs.values():
                p = self.root / MATRIX_DIR / fname
                size = p.stat().st_size if p.exists() else -1
                if size < n * self._clip_bytes:
                    problems.append(f"segment {fname} has {size} bytes, {n * self._clip_bytes} committed")
            # FAISS: exactly n_v rows per committed clip, no unknown ids
            counts = np.bincount(vi.index_ids(self._index)) if self._index.ntotal else np.zeros(1, np.int64)
            ids = np.asarray([r[0] for r in clip_rows], dtype=np.int64)
            have = np.zeros(len(ids), dtype=np.int64)
            inside = ids < len(counts)
            have[inside] = counts[ids[inside]]
            per_clip = 1 if vi.is_pooled(self._spec) else self.vectors_per_clip
            for cid in ids[have != per_clip][:20].tolist():
                problems.append(f"clip {cid} has {int(counts[cid]) if cid < len(counts) else 0} FAISS rows")
            known = np.zeros(len(counts), dtype=bool)
            known[ids[inside]] = True
            strays = np.nonzero((counts > 0) & ~known)[0]
            for cid in strays[:20].tolist():
                problems.append(f"FAISS holds rows for unknown clip {cid}")
            # matrices: finite, unit-norm rows (catches torn or zeroed writes)
            for start in range(0, len(ids), 4096):
                chunk = ids[start : start + 4096]
                try:
                    mats = self.matrices(chunk).astype(np.float32)
                except (KeyError, OSError, ValueError) as e:
                    problems.append(f"matrices of clips {chunk[0]}..{chunk[-1]} unreadable: {e}")
                    continue
                norms = np.linalg.norm(mats, axis=-1)  # (C, n_v)
                bad = ~np.isfinite(norms).all(axis=1) | (np.abs(norms - 1).max(axis=1) > 0.02)
                for cid in chunk[bad][:20].tolist():
                    problems.append(f"clip {cid} matrix rows are not unit vectors")
        return VerifyReport(ok=not problems, checked_clips=len(clip_rows), problems=problems)

    # ---------------------------------------------------------------- lifetime
    def close(self) -> None:
        if self._closed:
            return
        if self._dirty:
            self.flush()
        self._closed = True
        with self._db_lock:
            self._db.close()
        self._maps.clear()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
