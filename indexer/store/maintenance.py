"""Reports over a whole store: `verify` (do FAISS, the matrices and SQLite agree?), `stats` and
the counts the manifest records. Compaction is the facade's (it moves every part at once)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from indexer.store import layout, texttracks
from indexer.store import vector_index as vi
from indexer.store.backends.base import VectorBackend
from indexer.store.metadata import ClipRow, Metadata, SegmentRow
from indexer.store.records import StoreStats, VerifyReport
from indexer.store.segments import CHUNK, Segments

_MAX_LISTED = 20  # problems of one kind listed per check


def counts(meta: Metadata, vectors_per_clip: int) -> dict[str, int]:
    """The manifest's counts: live videos, live clips and vectors, tombstoned clips."""
    videos, clips, dead = meta.counts()
    live = clips - dead
    return {"videos": videos, "clips": live, "vectors": live * vectors_per_clip, "deleted_clips": dead}


def disk_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def stats(
    root: Path, counted: dict[str, int], disk: int, faiss_index: VectorBackend, identity: dict[str, Any]
) -> StoreStats:
    """The report of `Store.stats`; the caller holds the in-memory lock (`faiss_index` is read)."""
    return StoreStats(
        path=str(root),
        format_version=layout.VERSION,
        videos=counted["videos"],
        clips=counted["clips"],
        vectors=counted["vectors"],
        deleted_clips=counted["deleted_clips"],
        dim=faiss_index.dim,
        vectors_per_clip=faiss_index.vectors_per_clip,
        index=faiss_index.spec.to_dict(),
        index_vectors=faiss_index.vector_count(),
        generation=faiss_index.generation,
        disk_bytes=disk,
        model=identity,
    )


def verify(
    meta: Metadata,
    segments: Segments,
    index: faiss.Index | None,
    spec: vi.IndexSpec,
    matrices: Callable[[np.ndarray], np.ndarray],
) -> VerifyReport:
    """Check that FAISS ids, the matrices and SQLite agree (read-only), step by step (index None:
    a backend other than FAISS, which checks its own vectors)."""
    clips = meta.clips_after(0)
    videos = meta.video_clip_counts()
    segs = meta.segments()
    ids = np.asarray([c[0] for c in clips], dtype=np.int64)
    per_clip = vi.rows_per_clip(spec, segments.vectors_per_clip)
    problems = [
        *_clip_rows(clips, videos, segs),
        *_video_clip_counts(clips, videos),
        *segments.short_files(segs),
        *(_faiss_rows(index, ids, per_clip) if index is not None else []),
        *_unit_rows(ids, matrices),
        *(faiss_content(index, spec, matrices, sample=None) if index is not None else []),
        *texttracks.verify(meta.read, meta.check_text_index),
    ]
    return VerifyReport(ok=not problems, checked_clips=len(clips), problems=problems)


def verify_fast(
    meta: Metadata,
    segments: Segments,
    index: faiss.Index | None,
    spec: vi.IndexSpec,
    committed: np.ndarray,
    per_clip: int,
    matrices: Callable[[np.ndarray], np.ndarray],
    sample: int = 256,
) -> VerifyReport:
    """The sampled check (what a store runs on open): segment files hold their committed rows;
    FAISS (index None: another backend, not checked here) holds a block of rows per committed clip,
    none for unknown ids, and `sample` random rows equal the matrices."""
    problems = segments.short_files(meta.segments())
    if index is not None and not problems:  # short segments: the matrices cannot be read back
        problems += index_problems(index, spec, committed, per_clip, matrices, sample)
    return VerifyReport(ok=not problems, checked_clips=len(committed), problems=problems)


def _clip_rows(
    clips: Sequence[ClipRow], videos: dict[int, tuple[int, str]], segs: Sequence[SegmentRow]
) -> list[str]:
    """Every clip belongs to a video and sits in its own committed row of a known segment."""
    files = {seg_id: (fname, n) for seg_id, fname, n in segs}
    problems = []
    seen: set[tuple[int, int]] = set()
    for cid, vid, seg, row in clips:
        if vid not in videos:
            problems.append(f"clip {cid} belongs to missing video {vid}")
        if seg not in files:
            problems.append(f"clip {cid} points to missing segment {seg}")
        elif not 0 <= row < files[seg][1]:
            problems.append(f"clip {cid} row {row} outside segment {files[seg][0]}")
        if (seg, row) in seen:
            problems.append(f"clip {cid} shares matrix row {row} of segment {seg}")
        seen.add((seg, row))
    return problems


def _video_clip_counts(clips: Sequence[ClipRow], videos: dict[int, tuple[int, str]]) -> list[str]:
    """Each video records as many clips as are stored for it."""
    per_video: dict[int, int] = {}
    for _, vid, _, _ in clips:
        per_video[vid] = per_video.get(vid, 0) + 1
    return [
        f"video {vid} ({state}) records {n} clips, {per_video.get(vid, 0)} stored"
        for vid, (n, state) in videos.items()
        if per_video.get(vid, 0) != n
    ]


def _faiss_rows(index: faiss.Index, ids: np.ndarray, per_clip: int) -> list[str]:
    """FAISS holds exactly `per_clip` rows for each committed clip and none for unknown ids."""
    counts = np.bincount(vi.index_ids(index)) if index.ntotal else np.zeros(1, np.int64)
    have = np.zeros(len(ids), dtype=np.int64)
    inside = ids < len(counts)
    have[inside] = counts[ids[inside]]
    problems = [
        f"clip {cid} has {int(counts[cid]) if cid < len(counts) else 0} FAISS rows"
        for cid in ids[have != per_clip][:_MAX_LISTED].tolist()
    ]
    known = np.zeros(len(counts), dtype=bool)
    known[ids[inside]] = True
    strays = np.nonzero((counts > 0) & ~known)[0]
    problems += [f"FAISS holds rows for unknown clip {cid}" for cid in strays[:_MAX_LISTED].tolist()]
    return problems


def _unit_rows(ids: np.ndarray, matrices: Callable[[np.ndarray], np.ndarray]) -> list[str]:
    """The matrices are readable, finite, unit-norm rows (catches torn or zeroed writes)."""
    problems = []
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start : start + CHUNK]
        try:
            mats = matrices(chunk).astype(np.float32)
        except (KeyError, OSError, ValueError) as e:
            problems.append(f"matrices of clips {chunk[0]}..{chunk[-1]} unreadable: {e}")
            continue
        norms = np.linalg.norm(mats, axis=-1)  # (C, n_v)
        bad = ~np.isfinite(norms).all(axis=1) | (np.abs(norms - 1).max(axis=1) > 0.02)
        problems += [
            f"clip {cid} matrix rows are not unit vectors" for cid in chunk[bad][:_MAX_LISTED].tolist()
        ]
    return problems


# FAISS rows read back must equal the matrices they came from: float32 copies of float16 rows
# (flat, hnsw) are exact; 8-bit IVF codes are approximate and not read back here
_CONTENT_TOL = 1e-3


def index_problems(
    index: faiss.Index,
    spec: vi.IndexSpec,
    committed: np.ndarray,
    per_clip: int,
    matrices: Callable[[np.ndarray], np.ndarray],
    sample: int | None,
) -> list[str]:
    """The fast check a store runs on open: FAISS holds one block of rows per committed clip and
    nothing for ids SQLite does not know (e.g. clips a lost WAL took away), and `sample` of its
    rows read back equal the matrices (None: every row)."""
    problems = []
    expected = len(committed) * per_clip
    if index.ntotal != expected:
        problems.append(f"FAISS holds {index.ntotal} rows, {expected} expected for {len(committed)} clips")
    if index.ntotal:
        top = vi.max_id(index)
        last = int(committed.max()) if len(committed) else 0
        if top > last:
            problems.append(f"FAISS holds rows for clip ids up to {top}, SQLite's last clip is {last}")
    if not problems:
        problems += faiss_content(index, spec, matrices, sample)
    return problems


def faiss_content(
    index: faiss.Index, spec: vi.IndexSpec, matrices: Callable[[np.ndarray], np.ndarray], sample: int | None
) -> list[str]:
    """Rows of a flat or HNSW index (every row, or `sample` random ones) equal the matrix rows they
    were built from (a pooled index: the pooled vector). Catches overwritten index bytes."""
    base = vi._base(index)
    if index.ntotal == 0 or not isinstance(base, faiss.IndexFlat | faiss.IndexHNSWFlat):
        return []
    ids = vi.index_ids(index)
    n = len(ids)
    if not np.all(np.diff(ids) >= 0):
        return ["FAISS rows are not in clip order"]
    if sample is None or sample >= n:
        pos = np.arange(n)
    else:
        pos = np.sort(np.random.default_rng().choice(n, size=sample, replace=False))
    # a clip's rows were added together, in order: a row's place in its clip is its distance
    # from the clip's first row
    first = np.searchsorted(ids, ids[pos])
    problems: list[str] = []
    bad = 0
    for start in range(0, len(pos), CHUNK):
        p = pos[start : start + CHUNK]
        got = np.stack([base.reconstruct(int(i)) for i in p])  # (m, D) float32
        clip_ids = ids[p]
        try:
            mats = matrices(clip_ids)  # (m, n_v, D) float16
        except (KeyError, OSError, ValueError, IndexError) as e:
            return [f"FAISS rows point at clips whose matrices cannot be read: {e}"]
        if vi.is_pooled(spec):
            want = vi.pool(mats)
        else:
            within = p - first[start : start + CHUNK]
            if np.any(within >= mats.shape[1]):
                return [f"FAISS holds more than {mats.shape[1]} rows for a clip"]
            want = mats[np.arange(len(p)), within].astype(np.float32)
        off = np.abs(got - want).max(axis=1) > _CONTENT_TOL
        bad += int(off.sum())
        for i, c in zip(p[off][:_MAX_LISTED], clip_ids[off][:_MAX_LISTED], strict=True):
            problems.append(f"FAISS row {int(i)} (clip {int(c)}) differs from its matrix row")
    if bad:
        problems.insert(0, f"{bad} of {len(pos)} FAISS rows checked differ from the matrices")
    return problems[:_MAX_LISTED]
