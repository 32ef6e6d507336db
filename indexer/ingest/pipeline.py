"""Ingestion: probe -> cut into clip windows -> sample frames (one decode pass) -> encode -> store.

    ingestor = Ingestor(store, model, window=10.0, stride=5.0, batch_size=32)
    ingestor = Ingestor.from_settings(store, model, settings)      # IndexerSettings
    result = ingestor.ingest_file(path, title=None)  # IngestResult(status 'done'|'duplicate'|'failed')
    store.flush()                                    # after a series of ingest_file calls
    results = ingestor.ingest_many(items, on_progress=callback, stop=threading.Event())

A decoder thread prepares videos (probe, limits, content hash, frames) into a bounded queue while
the calling thread batches clips across videos through `model.encode_videos` and writes each video
to the store as soon as all its clips are encoded, so decoding overlaps encoding and a crash loses
at most the videos not yet committed. A file already stored (same path, size and mtime, or same
content hash) is reported as a duplicate, which is what makes an interrupted run resumable.
"""

from __future__ import annotations

import hashlib
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from indexer.media.sampling import sample_frames_selective
from indexer.media.video import VideoError, probe, segment_times, to_model_input
from indexer.store import ClipSpan, NewVideo, Store, StoreError

Status = Literal["done", "duplicate", "failed"]


@dataclass(frozen=True)
class IngestLimits:
    """What counts as an absurd input (refused before decoding)."""

    max_duration: float = 24 * 3600.0  # seconds
    max_side: int = 8192  # pixels, either dimension
    min_side: int = 8
    max_frame_bytes: int = 1 << 30  # sampled frames (uint8) of one video held in memory at once


@dataclass(frozen=True)
class IngestItem:
    path: Path
    title: str | None = None


@dataclass
class IngestResult:
    path: str
    status: Status
    video_id: int | None = None
    reason: str = ""
    clips: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class IngestProgress:
    files_total: int
    files_done: int = 0
    clips_done: int = 0
    frames_done: int = 0
    elapsed: float = 0.0
    failed: int = 0
    duplicates: int = 0
    last: IngestResult | None = None  # set when this event reports a finished file

    @property
    def frames_per_second(self) -> float:
        return self.frames_done / self.elapsed if self.elapsed > 0 else 0.0


@dataclass
class _Prepared:
    """A decoded video waiting for the encoder."""

    item: IngestItem
    video: NewVideo
    spans: list[ClipSpan]
    frames: np.ndarray  # (U, S, S, 3) uint8, unique sample times
    gather: np.ndarray  # (C, T) index into frames for each clip's T frames
    started: float
    encoded: list[np.ndarray | None] = field(default_factory=list)  # per clip (n_v, D) float16
    remaining: int = 0


def clip_windows(duration: float, window: float, stride: float) -> list[ClipSpan]:
    """Overlapping windows covering [0, duration]; a video no longer than `window` is one clip."""
    if window <= 0 or stride <= 0:
        raise ValueError("window and stride must be > 0")
    if stride > window:
        raise ValueError(f"stride {stride}s > window {window}s would leave parts of videos unsearchable")
    if duration <= window:
        return [ClipSpan(0.0, float(duration))]
    spans = []
    k = 0
    while k * stride + window < duration:
        spans.append(ClipSpan(k * stride, k * stride + window))
        k += 1
    spans.append(ClipSpan(max(0.0, duration - window), float(duration)))  # last window ends at the end
    return spans


def content_hash(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def expand_paths(paths: Iterable[str | Path]) -> Iterator[IngestItem]:
    """Files as given, folders recursively (sorted, hidden files skipped), *.jsonl manifests
    ({"video": path, "title": optional} per line; relative paths against the manifest's folder).
    Missing paths are yielded as-is so that they get an error line."""
    import json

    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            for f in sorted(p.rglob("*")):
                if f.is_file() and not any(part.startswith(".") for part in f.relative_to(p).parts):
                    yield IngestItem(f)
        elif p.suffix == ".jsonl" and p.is_file():
            for n, line in enumerate(p.read_text().splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                    video = Path(rec["video"])
                except (ValueError, KeyError, TypeError) as e:
                    raise ValueError(f"{p}:{n}: not a manifest line {{'video': path}}: {e}") from e
                yield IngestItem(video if video.is_absolute() else p.parent / video, rec.get("title"))
        else:
            yield IngestItem(p)


def prepare_video(
    item: IngestItem,
    pre: Any,
    frames_per_clip: int,
    window: float,
    stride: float,
    limits: IngestLimits,
    check_duplicate: Callable[[Path, str], IngestResult | None],
) -> _Prepared | IngestResult:
    """Probe, check limits, hash, then sample every clip's frames in one decode pass.

    check_duplicate(path, content_hash) returns a 'duplicate' result to skip the file before any
    decoding. Shared by the threaded Ingestor and the Ray pipeline (indexer.ingest.distributed).
    """
    t0 = time.perf_counter()
    path = item.path
    try:
        info = probe(path)
    except VideoError as e:
        return IngestResult(str(path), "failed", reason=e.reason)
    except (OSError, ValueError) as e:
        return IngestResult(str(path), "failed", reason=f"cannot read: {e}")
    lim = limits
    if not (lim.min_side <= info.width <= lim.max_side and lim.min_side <= info.height <= lim.max_side):
        return IngestResult(
            str(path),
            "failed",
            reason=f"absurd resolution {info.width}x{info.height} "
            f"(each side must be {lim.min_side}..{lim.max_side} px)",
        )
    if info.duration > lim.max_duration:
        return IngestResult(
            str(path),
            "failed",
            reason=f"absurd duration {info.duration:.0f}s (limit {lim.max_duration:.0f}s)",
        )
    stat = path.stat()
    digest = content_hash(path)
    dup = check_duplicate(path, digest)
    if dup is not None:
        return dup
    spans = clip_windows(info.duration, window, stride)
    times = [t for s in spans for t in segment_times(s.start, s.end, frames_per_clip)]
    # overlapping windows share sample times: decode each distinct time once
    uniq, inverse = np.unique(np.round(np.asarray(times), 6), return_inverse=True)
    need = len(uniq) * pre.size * pre.size * 3
    if need > lim.max_frame_bytes:
        return IngestResult(
            str(path),
            "failed",
            reason=f"too long to sample at once: {len(uniq)} frames need {need >> 20} MiB "
            f"(limit {lim.max_frame_bytes >> 20} MiB); split the video or use a longer stride",
        )
    try:
        sampled = sample_frames_selective(path, uniq.tolist(), pre, info.fps)
    except VideoError as e:
        return IngestResult(str(path), "failed", reason=e.reason)
    last_pts = max(sampled.pts)
    if last_pts < uniq[-1] - max(1.0, 0.1 * info.duration):
        return IngestResult(
            str(path),
            "failed",
            reason=f"truncated or corrupt: frames end at {last_pts:.1f}s of {info.duration:.1f}s",
        )
    video = NewVideo(
        path=str(path.resolve()),
        title=item.title or path.stem,
        content_hash=digest,
        duration=info.duration,
        fps=info.fps,
        width=info.width,
        height=info.height,
        codec=info.codec,
        size_bytes=info.size_bytes,
        mtime=stat.st_mtime,
    )
    gather = inverse.reshape(len(spans), frames_per_clip)  # (C, T)
    return _Prepared(item, video, spans, sampled.frames, gather, t0, [None] * len(spans), len(spans))


def encode_clips(model: Any, clips: np.ndarray) -> np.ndarray:
    """(B, T, S, S, 3) uint8 frames -> (B, T+K, D) float16 video sets, on the model's device."""
    pre = model.backbone.preprocess
    device = next(model.parameters()).device
    with torch.no_grad():
        if device.type == "cuda":
            # ship uint8 (4x fewer bytes), normalise on the GPU, run the towers in fp16
            u8 = torch.from_numpy(clips).to(device, non_blocking=True)
            x = u8.movedim(-1, -3).float().div_(255.0)  # (B, T, 3, S, S)
            mean = torch.tensor(pre.mean, device=device).view(3, 1, 1)
            std = torch.tensor(pre.std, device=device).view(3, 1, 1)
            with torch.autocast("cuda", dtype=torch.float16):
                vecs = model.encode_videos((x - mean) / std).vectors
        else:
            x = to_model_input(clips, pre)  # (B, T, 3, S, S)
            vecs = model.encode_videos(x).vectors  # (B, T+K, D)
    return vecs.float().cpu().numpy().astype(np.float16)


def check_model_fits(store: Store, model: Any) -> None:
    """The model's video sets must have the store's rows per clip and dimension."""
    if model.num_video_vectors != store.vectors_per_clip or model.dim != store.dim:
        raise StoreError("the model's video sets do not fit this store")


class Ingestor:
    def __init__(
        self,
        store: Store,
        model: Any,
        window: float = 10.0,
        stride: float = 5.0,
        batch_size: int = 32,
        limits: IngestLimits | None = None,
        queue_size: int = 2,
        decode_workers: int | None = None,
    ) -> None:
        check_model_fits(store, model)
        clip_windows(window + stride, window, stride)  # validates window/stride early
        self.store = store
        self.model = model
        self.window = window
        self.stride = stride
        self.batch_size = batch_size
        self.limits = limits or IngestLimits()
        self.queue_size = queue_size
        self.device = next(model.parameters()).device
        # ffmpeg decodes outside the GIL: two files in flight keep a GPU encoder fed; on a CPU host
        # decoding and encoding share the cores, and a second decoder measured slower (BENCHMARKS)
        auto = 2 if self.device.type == "cuda" else 1
        self.decode_workers = max(1, decode_workers if decode_workers is not None else auto)
        self.pre = model.backbone.preprocess
        self.frames_per_clip = model.config.frames

    @classmethod
    def from_settings(cls, store: Store, model: Any, settings: Any) -> Ingestor:
        return cls(store, model, settings.window, settings.stride, settings.batch_size)

    # ------------------------------------------------------------ one file
    def ingest_file(self, path: str | Path, title: str | None = None) -> IngestResult:
        """One file, committed on return; call `store.flush()` once a series of files is done."""
        return self.ingest_many([IngestItem(Path(path), title)], flush=False)[0]

    # ------------------------------------------------------------ decode side (thread)
    def _prepare(self, item: IngestItem) -> _Prepared | IngestResult:
        def check_duplicate(path: Path, digest: str) -> IngestResult | None:
            dup = self.store.find_duplicate(digest)
            if dup is not None:
                return IngestResult(
                    str(path), "duplicate", dup.id, f"same content as video {dup.id} ({dup.path})"
                )
            return None  # duplicates within this run are settled in input order by _producer

        return prepare_video(
            item, self.pre, self.frames_per_clip, self.window, self.stride, self.limits, check_duplicate
        )

    def _producer(
        self,
        items: list[IngestItem],
        out: queue.Queue[_Prepared | IngestResult | None],
        stop: threading.Event,
    ) -> None:
        """Prepare items on `decode_workers` threads, handing results over in input order."""
        claimed: dict[str, str] = {}  # content hash -> first path in this run

        def prepare(item: IngestItem) -> _Prepared | IngestResult:
            try:
                return self._prepare(item)
            except Exception as e:  # one bad file must not stop the run
                return IngestResult(str(item.path), "failed", reason=f"{type(e).__name__}: {e}")

        def hand_over(prepared: _Prepared | IngestResult) -> None:
            if isinstance(prepared, _Prepared):  # the first of identical files (input order) wins
                digest, path = prepared.video.content_hash, str(prepared.item.path)
                if digest in claimed:
                    prepared = IngestResult(path, "duplicate", None, f"same content as {claimed[digest]}")
                else:
                    claimed[digest] = path
            while not stop.is_set():
                try:
                    out.put(prepared, timeout=0.2)
                    return
                except queue.Full:
                    continue

        in_flight: deque[Future[_Prepared | IngestResult]] = deque()
        try:
            with ThreadPoolExecutor(self.decode_workers, thread_name_prefix="t2v-decode") as pool:
                for item in items:
                    if stop.is_set():
                        break
                    in_flight.append(pool.submit(prepare, item))
                    if len(in_flight) >= self.decode_workers:  # bounded: memory stays O(workers)
                        hand_over(in_flight.popleft().result())
                while in_flight and not stop.is_set():
                    hand_over(in_flight.popleft().result())
                for f in in_flight:
                    f.cancel()
        finally:
            # the end marker must arrive however long the consumer's current batch takes (a
            # ViT-B/32 batch on CPU takes seconds); only a consumer that has stopped needs none
            while True:
                try:
                    out.put(None, timeout=0.2)
                    break
                except queue.Full:
                    if stop.is_set():
                        break

    # ------------------------------------------------------------ encode side (caller's thread)
    def _encode(self, batch: list[tuple[_Prepared, int]]) -> None:
        clips = np.stack([p.frames[p.gather[c]] for p, c in batch])  # (B, T, S, S, 3) uint8
        arr = encode_clips(self.model, clips)  # (B, T+K, D) float16
        for (p, c), m in zip(batch, arr, strict=True):
            p.encoded[c] = m
            p.remaining -= 1

    def ingest_many(
        self,
        items: Iterable[IngestItem | str | Path],
        on_progress: Callable[[IngestProgress], None] | None = None,
        stop: threading.Event | None = None,
        flush: bool = True,
    ) -> list[IngestResult]:
        """Index every item; never raises for a bad file (it becomes a 'failed' result).

        `stop` (optional) ends the run after the videos in flight; results only cover what ran.
        flush: persist the FAISS index at the end (committed videos are safe either way).
        """
        todo = [i if isinstance(i, IngestItem) else IngestItem(Path(i)) for i in items]
        stop = stop or threading.Event()
        progress = IngestProgress(files_total=len(todo))
        results: list[IngestResult] = []
        q: queue.Queue[_Prepared | IngestResult | None] = queue.Queue(maxsize=self.queue_size)
        producer = threading.Thread(target=self._producer, args=(todo, q, stop), daemon=True)
        t_start = time.perf_counter()
        last_flush = t_start

        def finish(r: IngestResult) -> None:
            results.append(r)
            progress.files_done += 1
            progress.failed += r.status == "failed"
            progress.duplicates += r.status == "duplicate"
            progress.elapsed = time.perf_counter() - t_start
            if on_progress:
                on_progress(replace(progress, last=r))  # a snapshot per event

        pending: list[_Prepared] = []  # decoded videos not yet stored, in arrival order
        batch: list[tuple[_Prepared, int]] = []

        def run_batch() -> None:
            nonlocal last_flush
            if not batch:
                return
            self._encode(batch)
            progress.clips_done += len(batch)
            progress.frames_done += len(batch) * self.frames_per_clip
            progress.elapsed = time.perf_counter() - t_start
            batch.clear()
            while pending and pending[0].remaining == 0:
                finish(self._store(pending.pop(0)))
            if on_progress:
                on_progress(replace(progress))
            if time.perf_counter() - last_flush > 300:  # bound the FAISS catch-up after a crash
                self.store.flush()
                last_flush = time.perf_counter()

        producer.start()
        try:
            while True:
                got = q.get()
                if got is None:
                    break
                if isinstance(got, IngestResult):
                    finish(got)
                    continue
                pending.append(got)
                for c in range(len(got.spans)):
                    batch.append((got, c))
                    if len(batch) >= self.batch_size:
                        run_batch()
            run_batch()
        finally:
            stop.set()
            producer.join(timeout=30)
            if flush:
                self.store.flush()
        return results

    def _store(self, p: _Prepared) -> IngestResult:
        mats = np.stack([m for m in p.encoded if m is not None])  # (C, n_v, D)
        try:
            video_id = self.store.add_video(p.video, p.spans, mats)
        except StoreError as e:
            dup = self.store.find_duplicate(p.video.content_hash)
            if dup is not None:
                return IngestResult(p.video.path, "duplicate", dup.id, f"same content as video {dup.id}")
            return IngestResult(str(p.item.path), "failed", reason=str(e))
        return IngestResult(
            str(p.item.path), "done", video_id, clips=len(p.spans), seconds=time.perf_counter() - p.started
        )
