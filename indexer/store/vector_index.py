"""FAISS index over the token-level vectors: every row of every clip set, id = the clip's id.

A clip contributes n_v = T+K rows that all carry the clip id, so a hit on any of its vectors
names the clip. The index is derived data: the float16 matrices + SQLite are the source of
truth, so the index can always be rebuilt (or caught up) from them.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import torch

from model.fileio import atomic_path

# Up to this many stored floats (rows x D, 4 MiB as float32: ~100 ViT-B/32 clips, ~800 clips of
# the D=64 demo model) an exact flat scan takes ~1 ms; beyond it token-level IVF with 8-bit codes
# (`ivf-sq8`) proposes the same candidates faster: flat at 400 ViT-B/32 clips was slower than
# ivf-sq8 at 1,600 (issue 17, docs/BENCHMARKS.md).
FLAT_MAX_ELEMENTS = 1 << 20
# Up to this many stored floats (512 MiB as float32, 128 MiB of 8-bit codes: ~13k ViT-B/32 clips)
# the token-level ivf-sq8 is the automatic choice; beyond it the pooled global-ivf, whose RAM and
# scan grow with clips, not rows (every row at 1M ViT-B/32 clips: 10 GB of codes; at 1M clips of the
# D=64 demo model 1.3 GB and 48.6 ms of stage 1, past the 40 ms goal for the whole search, issue 17).
TOKEN_IVF_MAX_ELEMENTS = 1 << 27
# A trained model with views (`identity.searched_views`) is searched views first on a token-level
# index (indexer/search/searcher.py: 8 of a demo query's ~19 vectors, and only its views' few
# hundred clips reranked), so every-row keys stay affordable further for it: past 2^27 while a clip
# holds at most 2,048 stored floats (the demo model's 20 rows of D=64: 1.25 KiB of codes a clip),
# up to 2^31 (2 GiB of codes, 1.6M demo clips). The pooled index kept 0.15-0.84 of the exact top-10
# on 9.8k-200k trained demo clips, the token-level one views first 0.995-0.998 (issue 17,
# docs/BENCHMARKS.md). Wider clips (ViT-B/32: 20 x 512, 10 KiB a clip) would scan 8x more a clip
# than the demo model: the pooled index past 2^27.
VIEWS_TOKEN_MAX_ELEMENTS = 1 << 31
VIEWS_TOKEN_MAX_CLIP_ELEMENTS = 2048
INDEX_TYPES = ("flat", "ivf", "ivf-sq8", "ivf-pq", "hnsw", "global", "global-ivf")
IVF_TYPES = ("ivf", "ivf-sq8", "ivf-pq", "global-ivf")
# 'global*' index one pooled vector per clip (normalised mean of its rows) instead of every row:
# n_v times fewer FAISS rows, the first stage that fits 1M clips of D=512 in RAM.
GLOBAL_TYPES = ("global", "global-ivf")


@dataclass(frozen=True)
class IndexSpec:
    type: str = "flat"  # one of INDEX_TYPES: 'flat' (exact, every row), 'ivf', 'hnsw', 'global', 'global-ivf'
    nlist: int = 0  # ivf: number of inverted lists
    nprobe: int = 0  # ivf: lists visited per query vector
    hnsw_m: int = 0  # hnsw: graph degree
    ef_search: int = 0  # hnsw: search beam width
    trained_clips: int = 0  # ivf: clips stored when the lists were trained (retrain after growth)
    codec: str = "flat"  # ivf: how list entries are stored: 'flat' float32, 'sq8' 8-bit per dimension
    # (ivf-sq8, global-ivf), 'pq4' product quantiser of D/2 4-bit codes read with SIMD fast scan (ivf-pq)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> IndexSpec:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


def is_pooled(spec: IndexSpec) -> bool:
    """True when the index holds one pooled vector per clip (not every row)."""
    return spec.type in GLOBAL_TYPES


def rows_per_clip(spec: IndexSpec, vectors_per_clip: int) -> int:
    """FAISS rows one clip adds to an index of `spec`: its pooled vector, or every row."""
    return 1 if is_pooled(spec) else vectors_per_clip


def pool(matrices: np.ndarray) -> np.ndarray:
    """(C, n_v, D) clip sets -> (C, D) float32 global vectors: the normalised mean of the rows."""
    g = matrices.astype(np.float32).mean(axis=1)  # (C, D)
    return g / np.maximum(np.linalg.norm(g, axis=1, keepdims=True), 1e-12)


def auto_kind(clips: int, vectors_per_clip: int, dim: int, views: int = 0) -> str:
    """The index type a store picks by itself: the exact token-level scan while it is tiny, then
    token-level IVF with 8-bit codes (every row, so a clip is found by the one row that matches:
    the recall of the flat scan on the trained demo model, where the pooled index lost a quarter
    of the top-10), then the pooled IVF once every row costs too much RAM (later for a model with
    `views` K > 0 and narrow clips, searched views first). Float32 every-row IVF is not automatic
    (41 GB at 1M ViT-B/32 clips), nor is `ivf-pq` (issue 17: 4-bit codes found 0.59-0.76 of the
    exact top-10 on 4.5k trained demo clips)."""
    elements = clips * vectors_per_clip * dim
    if elements <= FLAT_MAX_ELEMENTS:
        return "flat"
    if elements <= TOKEN_IVF_MAX_ELEMENTS:
        return "ivf-sq8"
    narrow = vectors_per_clip * dim <= VIEWS_TOKEN_MAX_CLIP_ELEMENTS
    return "ivf-sq8" if views > 0 and narrow and elements <= VIEWS_TOKEN_MAX_ELEMENTS else "global-ivf"


def check_type(kind: str) -> None:
    if kind not in INDEX_TYPES:
        raise ValueError(f"unknown index type {kind!r} (choose from {', '.join(INDEX_TYPES)})")


def _row_lists(rows: int) -> int:
    """Inverted lists of a token-level IVF (ivf-pq, ivf-sq8): ~4 sqrt(rows), at least 39 rows each."""
    return int(min(16384, 4 * math.sqrt(max(rows, 1)), max(16, rows // 39)))


def probes(kind: str, nlist: int) -> int:
    """Lists an IVF index of `kind` with `nlist` lists visits per query vector (see choose_spec)."""
    if kind == "ivf-sq8":
        return min(nlist, max(32, nlist // 64))
    if kind == "global-ivf":
        return min(nlist, max(8, nlist // 128))
    if kind == "ivf-pq":
        return min(nlist, max(8, nlist // 32))
    return min(nlist, max(8, nlist // 8))  # float32 every-row "ivf"


def with_current_probes(spec: IndexSpec) -> IndexSpec:
    """`spec` searched with today's probe count for its lists: the count is a search setting, so a
    store indexed before the rule changed takes it when loaded, without a rebuild."""
    if spec.type not in IVF_TYPES or spec.nlist <= 0:
        return spec
    return replace(spec, nprobe=probes(spec.type, spec.nlist))


def choose_spec(
    clips: int, vectors_per_clip: int, dim: int, kind: str | None = None, views: int = 0
) -> IndexSpec:
    """The index for `clips` clips of `vectors_per_clip` rows (K = `views` of them the model's
    views): `kind`, or `auto_kind` by size."""
    kind = kind or auto_kind(clips, vectors_per_clip, dim, views)
    check_type(kind)
    if kind in ("flat", "global"):
        return IndexSpec(kind)
    if kind == "global-ivf":
        # one vector per clip: ~4 sqrt(n) lists, at least 39 clips each (FAISS's k-means minimum),
        # and few probes since clips cluster by topic
        nlist = int(min(8192, 4 * math.sqrt(max(clips, 1)), max(16, clips // 39)))
        # 8-bit codes: a quarter of the RAM and ~1.9x faster list scans (memory-bound) than
        # float32, and stage 1 only proposes candidates the exact rerank then scores. 1/128 of the
        # lists: on clustered ViT-B/32 stores of 52k-1M clips the same recall as 1/32 (1.000 at
        # 52k/100k, 0.995 at 1M with 128 hits per query vector) at a third of the scan (1M: 8 vs 25 ms)
        return IndexSpec(kind, nlist=nlist, nprobe=probes(kind, nlist), trained_clips=clips, codec="sq8")
    if kind == "hnsw":
        return IndexSpec("hnsw", hnsw_m=32, ef_search=128)
    rows = clips * vectors_per_clip
    if kind == "ivf-pq":
        # 1/32 of the row lists probed (pinned only: see auto_kind)
        nlist = _row_lists(rows)
        return IndexSpec(kind, nlist=nlist, nprobe=probes(kind, nlist), trained_clips=clips, codec="pq4")
    if kind == "ivf-sq8":
        # the same lists with 8-bit codes, which order near-duplicate trained rows (recall 0.996 on
        # the demo model, 4-bit PQ 0.756). At least 32 lists probed: in a small store a topic's rows
        # spread over more lists than 1/32 of them (8 of 205 lists found 0.82 of the top-10 at 400
        # clustered ViT-B/32 clips). Past 2048 lists 1/64 of them: with 1/32 the scan grew with the
        # store and 13k ViT-B/32 clips (1788 lists, 55 probes: 7.8 ms) answered slower than 52k in
        # the pooled index (6.0 ms); 32 probes there: 5.7 ms at the same recall (1.000 clustered;
        # 1/64 of the lists kept 0.994 of the top-10 on 4.5k trained demo clips, 1/32 0.996)
        nlist = _row_lists(rows)
        return IndexSpec(kind, nlist=nlist, nprobe=probes(kind, nlist), trained_clips=clips, codec="sq8")
    # ~4 sqrt(n) lists over every row, capped so training stays cheap; 1/8 of the lists probed
    nlist = int(min(4096, max(16, 4 * math.sqrt(max(rows, 1)))))
    return IndexSpec("ivf", nlist=nlist, nprobe=probes("ivf", nlist), trained_clips=clips)


def trainable(spec: IndexSpec, clips: int, vectors_per_clip: int) -> bool:
    """Can `spec`'s inverted lists be trained on `clips` stored clips (a vector per list at least)?"""
    if spec.type not in IVF_TYPES:
        return True
    vectors = clips * rows_per_clip(spec, vectors_per_clip)
    return clips > 0 and vectors >= spec.nlist


def exact_fallback(spec: IndexSpec) -> IndexSpec:
    """The exact index of the same keys as `spec` (every row, or one pooled row per clip): what a
    store serves while a pinned IVF type has too few clips to train its lists on."""
    return IndexSpec("global" if is_pooled(spec) else "flat")


def needs_rebuild(spec: IndexSpec, clips: int, vectors_per_clip: int, dim: int, views: int = 0) -> bool:
    """For an automatically chosen index: has the store outgrown it? An index past its size range
    (flat -> ivf-sq8 -> global-ivf), or IVF lists trained on a quarter of today's clips (too few
    lists, stale centroids)."""
    if spec.type in ("flat", "ivf-sq8") and auto_kind(clips, vectors_per_clip, dim, views) != spec.type:
        return True
    if (
        spec.type == "global-ivf"
        and auto_kind(clips, vectors_per_clip, dim, views) == "ivf-sq8"
        and auto_kind(clips, vectors_per_clip, dim) == "global-ivf"
    ):
        # pooled under the rule before views first (a store of a model with views that grew past
        # 2^27 then): every row again, for the recall the pooled index lost (issue 17)
        return True
    if spec.type in ("ivf-sq8", "global-ivf") and spec.trained_clips > 0:
        return clips > 4 * spec.trained_clips
    return False


def matches(index: faiss.Index, spec: IndexSpec) -> bool:
    """Is a loaded index of the structure `spec` describes (a file written before a type change)?"""
    base = _base(index)
    if spec.type in ("flat", "global"):
        return isinstance(base, faiss.IndexFlat)
    if spec.type in IVF_TYPES:
        sq = isinstance(base, faiss.IndexIVFScalarQuantizer)
        pq = isinstance(base, faiss.IndexIVFPQFastScan)
        same_codec = sq == (spec.codec == "sq8") and pq == (spec.codec == "pq4")
        return isinstance(base, faiss.IndexIVF) and base.nlist == spec.nlist and same_codec
    return isinstance(base, faiss.IndexHNSW)


def _base(index: faiss.Index) -> Any:
    """The index inside an IndexIDMap (or the index itself), as its concrete FAISS class."""
    return faiss.downcast_index(index.index) if hasattr(index, "index") else index


def build_index(spec: IndexSpec, dim: int, train: np.ndarray | None = None) -> faiss.IndexIDMap:
    """An empty id-mapped inner-product index; IVF is trained on `train` (n, dim) float32."""
    if spec.type in ("flat", "global"):
        base: faiss.Index = faiss.IndexFlatIP(dim)
    elif spec.type == "hnsw":
        base = faiss.IndexHNSWFlat(dim, spec.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        base.hnsw.efSearch = spec.ef_search
    elif spec.type in IVF_TYPES:
        quantizer = faiss.IndexFlatIP(dim)
        if spec.codec == "pq4":
            # D/2 sub-vectors of 2 dims, 16 centroids each: 4 bits per 2 floats (D/4 bytes a row),
            # scanned 32 codes at a time with SIMD lookup tables; stage 2 rescores exactly. The
            # factory owns its quantiser.
            base = faiss.index_factory(dim, f"IVF{spec.nlist},PQ{dim // 2}x4fs", faiss.METRIC_INNER_PRODUCT)
        elif spec.codec == "sq8":
            qt = faiss.ScalarQuantizer.QT_8bit
            base = faiss.IndexIVFScalarQuantizer(quantizer, dim, spec.nlist, qt, faiss.METRIC_INNER_PRODUCT)
        else:
            base = faiss.IndexIVFFlat(quantizer, dim, spec.nlist, faiss.METRIC_INNER_PRODUCT)
        if train is None or len(train) < spec.nlist:
            raise ValueError(f"an ivf index with {spec.nlist} lists needs at least that many training rows")
        # PQ training runs D/2 tiny k-means, each parallelised inside: OpenMP threads spin-wait
        # between them (10.8 s with 2 threads vs 0.5 s with 1 on the shared 2-core box)
        before = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(1 if spec.codec == "pq4" else before)
        try:
            base.train(np.ascontiguousarray(train, dtype=np.float32))
        finally:
            faiss.omp_set_num_threads(before)
        faiss.extract_index_ivf(base).nprobe = spec.nprobe
    else:
        raise ValueError(f"unknown index type {spec.type!r}")
    return faiss.IndexIDMap(base)


def apply_search_params(index: faiss.Index, spec: IndexSpec) -> None:
    """Search-time knobs are not always kept by write/read: set them after loading."""
    base = _base(index)
    if spec.type in IVF_TYPES and hasattr(base, "nprobe"):
        base.nprobe = spec.nprobe
    if spec.type == "hnsw" and hasattr(base, "hnsw"):
        base.hnsw.efSearch = spec.ef_search


def add_clips(index: faiss.Index, clip_ids: np.ndarray, matrices: np.ndarray, pooled: bool = False) -> None:
    """matrices: (C, n_v, D) -> C * n_v rows (pooled: C global rows), each carrying its clip id."""
    c, n_v, d = matrices.shape
    if c == 0:
        return
    if pooled:
        index.add_with_ids(pool(matrices), np.asarray(clip_ids, dtype=np.int64))
        return
    rows = np.ascontiguousarray(matrices.reshape(c * n_v, d), dtype=np.float32)  # (C*n_v, D)
    ids = np.repeat(np.asarray(clip_ids, dtype=np.int64), n_v)  # (C*n_v,)
    index.add_with_ids(rows, ids)


def max_id(index: faiss.Index) -> int:
    """Largest clip id in the index (0 when empty): clips with larger ids still need adding."""
    if index.ntotal == 0:
        return 0
    ids = faiss.vector_to_array(index.id_map)  # type: ignore[attr-defined]
    return int(ids.max())


def index_ids(index: faiss.Index) -> np.ndarray:
    """Every row's clip id, (ntotal,) int64."""
    if index.ntotal == 0:
        return np.zeros(0, dtype=np.int64)
    ids = faiss.vector_to_array(index.id_map)  # type: ignore[attr-defined]
    return np.asarray(ids, dtype=np.int64)


def pooled_vectors(index: faiss.Index) -> tuple[np.ndarray, np.ndarray]:
    """(clip ids (n,), vectors (n, D) float32) held by a pooled index, read back from FAISS so a
    rebuild of a large store does not re-read and re-pool every matrix (20 GB at 1M clips)."""
    base = _base(index)
    if isinstance(base, faiss.IndexIVF):
        base.make_direct_map()
    vectors = base.reconstruct_n(0, base.ntotal) if base.ntotal else np.zeros((0, base.d), np.float32)
    return index_ids(index), vectors


# ivf-sq8 probes the lists with the best bound q.c + RADIUS_WEIGHT * r (r: the largest distance of a
# list's rows from its centroid) rather than q.c alone: a query row's best rows often sit in wide
# lists whose centroid is not among its nearest. On 81k trained demo clips (1.6M rows, 5,093 lists)
# the same 79 probes found 0.995 of the exact top-10 against 0.984 by q.c (q.c needed 159 probes);
# weights 0.1-0.25 all gained, 0.35 lost (issue 17, docs/BENCHMARKS.md). 0: plain FAISS probing.
RADIUS_WEIGHT = 0.25


class ListRadii:
    """Per inverted list of an ivf-sq8 index: its centroid and the largest residual norm of its rows,
    kept up to date incrementally (lists only grow: deleted rows stay until a rebuild, which makes
    a new index and a new ListRadii). Derived from the index itself, so nothing extra is stored."""

    def __init__(self, index: faiss.Index) -> None:
        self.index = index
        self.ivf = _base(index)  # the IndexIVFScalarQuantizer inside the IndexIDMap
        nlist = self.ivf.nlist
        self.centroids = self.ivf.quantizer.reconstruct_n(0, nlist)  # (nlist, D) float32
        # the product q.c runs in torch, on the search's own torch threads: numpy's BLAS would
        # start a thread pool of its own beside the query encoder's and the rerank's
        self._centroids_t = torch.from_numpy(self.centroids).T  # (D, nlist) view
        self.radius = np.zeros(nlist, dtype=np.float32)  # (nlist,)
        self.seen = np.zeros(nlist, dtype=np.int64)  # rows of each list already measured
        self.ntotal = 0

    def update(self) -> np.ndarray:
        """The radii (nlist,), after measuring rows added since the last call."""
        if self.index.ntotal == self.ntotal:
            return self.radius
        ivf, lists = self.ivf, self.ivf.invlists
        size = np.array([lists.list_size(i) for i in range(ivf.nlist)], dtype=np.int64)
        for i in np.flatnonzero(size != self.seen):
            start, end = int(self.seen[i]), int(size[i])
            if end < start:  # a list shrank (removed rows): measure it again from the start
                start, self.radius[i] = 0, 0.0
            if end == start:
                continue
            ptr = lists.get_codes(int(i))
            try:
                codes = faiss.rev_swig_ptr(ptr, end * lists.code_size).reshape(end, lists.code_size)
                decoded = ivf.sq.decode(np.ascontiguousarray(codes[start:]))  # (new rows, D)
            finally:
                lists.release_codes(int(i), ptr)
            residual = decoded if ivf.by_residual else decoded - self.centroids[i]
            self.radius[i] = max(float(self.radius[i]), float(np.linalg.norm(residual, axis=1).max()))
        self.seen, self.ntotal = size, self.index.ntotal
        return self.radius


def search_bounded(
    radii: ListRadii,
    queries: np.ndarray,
    k: int,
    threads: int = 1,
    weight: float | None = None,
    probes: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """`search` of an ivf-sq8 index (inside an IndexIDMap) that probes each query vector's nprobe
    lists (`probes` when given) with the best q.c + weight * radius. queries: (m, D) -> (scores
    (m, k), clip ids (m, k))."""
    index, ivf = radii.index, radii.ivf
    weight = RADIUS_WEIGHT if weight is None else weight
    m = len(queries)
    if index.ntotal == 0:
        return np.zeros((m, 0), np.float32), np.zeros((m, 0), np.int64)
    k = max(1, min(k, index.ntotal))
    if m == 0:
        return np.zeros((0, k), np.float32), np.zeros((0, k), np.int64)
    q = np.ascontiguousarray(queries, dtype=np.float32)
    near = torch.mm(torch.from_numpy(q), radii._centroids_t).numpy()  # (m, nlist): q.c of every list
    bound = near + weight * radii.update()[None]  # (m, nlist)
    p = max(1, min(int(probes or ivf.nprobe), ivf.nlist))
    lists = np.argpartition(-bound, p - 1, axis=1)[:, :p].astype(np.int64)  # (m, p)
    coarse = np.take_along_axis(near, lists, axis=1).astype(np.float32)  # (m, p): q.c, not the bound
    before, nprobe = faiss.omp_get_max_threads(), ivf.nprobe
    faiss.omp_set_num_threads(max(1, threads))
    if p != nprobe:  # FAISS reads nprobe columns (more than nlist: every list, as its own search does)
        ivf.nprobe = p
    try:
        scores, rows = ivf.search_preassigned(q, k, lists, coarse)
    finally:
        ivf.nprobe = nprobe
        faiss.omp_set_num_threads(before)
    # FAISS answers row numbers; the IndexIDMap's id_map names each row's clip (viewed, not copied)
    id_map = faiss.rev_swig_ptr(index.id_map.data(), index.ntotal)  # type: ignore[attr-defined]
    ids = np.where(rows >= 0, id_map[np.maximum(rows, 0)], -1)
    return scores, ids


def write_atomic(index: faiss.Index, path: Path, mode: int | None = None) -> None:
    """Replace `path` by `index` durably (readers see the old file or the new one, never a torn
    one); `mode`: the file's permission bits (default: private, as mkstemp makes it)."""
    with atomic_path(path, mode) as tmp:
        faiss.write_index(index, str(tmp))


def read(path: Path, spec: IndexSpec) -> faiss.Index:
    index = faiss.read_index(str(path))
    apply_search_params(index, spec)
    return index


def search(
    index: faiss.Index, queries: np.ndarray, k: int, threads: int = 1, probes: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """queries: (m, D) float32 -> (scores (m, k), clip ids (m, k); -1 where fewer hits).

    threads: OpenMP threads for this call (the setting is per calling thread). One query set is a
    few dozen vectors: one thread avoids OpenMP spin-waits on busy machines and lets concurrent
    requests use the other cores. probes: lists an IVF index visits in this call instead of its
    nprobe (the caller holds the lock that serialises searches of `index`); ignored by others.
    """
    if index.ntotal == 0:
        m = len(queries)
        return np.zeros((m, 0), np.float32), np.zeros((m, 0), np.int64)
    k = max(1, min(k, index.ntotal))
    # a query set is only a few dozen vectors, below FAISS's default BLAS threshold (20), but the
    # BLAS path scans a flat index ~4x faster than the per-query loop even for one vector
    faiss.cvar.distance_compute_blas_threshold = 1
    ivf = _ivf_of(index) if probes else None
    nprobe = ivf.nprobe if ivf is not None else 0
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(max(1, threads))
    if ivf is not None:
        ivf.nprobe = max(1, min(int(probes or nprobe), ivf.nlist))
    try:
        scores, ids = index.search(np.ascontiguousarray(queries, dtype=np.float32), k)
    finally:
        faiss.omp_set_num_threads(before)
        if ivf is not None:
            ivf.nprobe = nprobe
    return scores, ids


def _ivf_of(index: faiss.Index) -> faiss.IndexIVF | None:
    """The inverted-list index inside `index` (an IndexIDMap around it), or None (flat, HNSW)."""
    try:
        return faiss.extract_index_ivf(index)
    except RuntimeError:  # not an IVF index
        return None
