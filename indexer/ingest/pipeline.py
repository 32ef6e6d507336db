"""Ingestion on threads: decode (probe, hash, frames) overlapped with encoding, each video committed alone.

    ingestor = Ingestor(store, model, window=10.0, stride=5.0, batch_size=32)
    ingestor = Ingestor.from_settings(store, model, settings)      # IndexerSettings
    result = ingestor.ingest_file(path, title=None)  # IngestResult(status 'done'|'duplicate'|'failed')
    store.flush()                                    # after a series of ingest_file calls
    results = ingestor.ingest_many(items, on_progress=callback, stop=threading.Event())
    result = Prefetcher(ingestor).ingest(item, upcoming=next_item)  # a queue fed one file at a time

A decoder thread prepares videos (`prepare.prepare_video`) into a bounded queue while the calling
thread batches clips across videos through `model.encode_videos` and writes each video to the
store as soon as all its clips are encoded, so decoding overlaps encoding and a crash loses at most
the videos not yet committed. A file already stored (same path, size and mtime, or same content
hash) is reported as a duplicate, which is what makes an interrupted run resumable.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from functools import partial
from pathlib import Path

import numpy as np

from indexer.settings import IndexerSettings, process_threads
from indexer.store import Store
from indexer.text.extract import TextExtractor
from indexer.text.settings import TextSettings
from model import T2VParser

from .commit import RunClaims, commit_video, encode_clips, stored_duplicate
from .encode import FrameFeatures, FrameTower, encode_clip_batch, frame_tower
from .prepare import (
    ClipPlan,
    IngestItem,
    IngestLimits,
    IngestProgress,
    IngestResult,
    Prepared,
    as_items,
    clip_windows,
    expand_paths,
    prepare_video,
    unexpected_failure,
)

# the records and helpers callers have always imported from here
__all__ = [
    "IngestItem",
    "IngestLimits",
    "IngestProgress",
    "IngestResult",
    "Ingestor",
    "Prefetcher",
    "clip_windows",
    "expand_paths",
]


class Ingestor:
    def __init__(
        self,
        store: Store,
        model: T2VParser,
        window: float = 10.0,
        stride: float = 5.0,
        batch_size: int = 32,
        limits: IngestLimits | None = None,
        queue_size: int = 2,
        decode_workers: int | None = None,
        text: TextSettings | None = None,
        share_frames: bool = True,
        tower: FrameTower | None = None,
    ) -> None:
        self.plan = ClipPlan.for_store(store, model, window, stride, limits)
        # text tracks (subtitles, speech, OCR) are read on the decode side; None: pixels only
        self.text = TextExtractor(text) if text is not None else None
        self.store = store
        self.model = model
        self.batch_size = batch_size
        self.queue_size = queue_size
        self.device = next(model.parameters()).device
        # ffmpeg decodes outside the GIL: two files in flight keep a GPU encoder fed; on a CPU host
        # decoding and encoding share the cores, and a second decoder measured slower (BENCHMARKS)
        auto = 2 if self.device.type == "cuda" else 1
        self.decode_workers = max(1, decode_workers if decode_workers is not None else auto)
        # the image tower once per distinct frame (clips built from cached frame vectors); False:
        # once per clip frame, as before (same stored bytes, kept for the benchmark's baseline)
        self.share_frames = share_frames
        self.tower = tower  # the shared path's image tower when not torch's (settings.frame_encoder)

    @classmethod
    def from_settings(
        cls, store: Store, model: T2VParser, settings: IndexerSettings, threads: int | None = None
    ) -> Ingestor:
        """threads: of the image tower when it runs on ONNX Runtime (None: `process_threads()`)."""
        tower = frame_tower(model, settings, threads or process_threads())
        window, stride = settings.window, settings.stride
        return cls(store, model, window, stride, settings.batch_size, text=settings.text, tower=tower)

    # ------------------------------------------------------------ one file
    def ingest_file(
        self, path: str | Path, title: str | None = None, roots: tuple[Path, ...] | None = None
    ) -> IngestResult:
        """One file, committed on return; call `store.flush()` once a series of files is done.
        roots: the opened file must lie inside one of them (None: anywhere)."""
        return self.ingest_many([IngestItem(Path(path), title, roots)], flush=False)[0]

    # ------------------------------------------------------------ decode side (thread)
    def _prepare(self, item: IngestItem) -> Prepared | IngestResult:
        # duplicates within this run are settled in input order by _producer
        return prepare_video(item, self.plan, partial(stored_duplicate, self.store), self.text)

    def _producer(
        self,
        items: list[IngestItem],
        out: queue.Queue[Prepared | IngestResult | None],
        stop: threading.Event,
    ) -> None:
        """Prepare items on `decode_workers` threads, handing results over in input order."""
        claims = RunClaims()

        def prepare(item: IngestItem) -> Prepared | IngestResult:
            try:
                return self._prepare(item)
            except Exception as e:  # one bad file must not stop the run
                return unexpected_failure(item, e)

        def hand_over(prepared: Prepared | IngestResult) -> None:
            if isinstance(prepared, Prepared):
                dup = claims.claim(prepared.video.content_hash, str(prepared.item.path))
                prepared = dup or prepared
            while not stop.is_set():
                try:
                    out.put(prepared, timeout=0.2)
                    return
                except queue.Full:
                    continue

        in_flight: deque[Future[Prepared | IngestResult]] = deque()
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
            # ViT-B/32 batch on CPU takes seconds); once stopped, the consumer ends when this
            # thread has and the queue is empty
            while True:
                try:
                    out.put(None, timeout=0.2)
                    break
                except queue.Full:
                    if stop.is_set():
                        break

    # ------------------------------------------------------------ encode side (caller's thread)
    def _encode(self, batch: list[tuple[Prepared, int]], features: dict[int, FrameFeatures]) -> None:
        if self.share_frames:
            for p, _ in batch:
                if id(p) not in features:
                    features[id(p)] = FrameFeatures(p.frames)
            clip_frames = [(features[id(p)], p.gather[c]) for p, c in batch]
            arr = encode_clip_batch(self.model, clip_frames, self.tower)  # (B, T+K, D) float16
        else:
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
        todo = as_items(items)
        stop = stop or threading.Event()
        progress = IngestProgress(files_total=len(todo))
        results: list[IngestResult] = []
        q: queue.Queue[Prepared | IngestResult | None] = queue.Queue(maxsize=self.queue_size)
        producer = threading.Thread(target=self._producer, args=(todo, q, stop), daemon=True)
        t_start = time.perf_counter()
        last_flush = t_start

        def finish(r: IngestResult) -> None:
            results.append(r)
            event = progress.finished(r, time.perf_counter() - t_start)
            if on_progress:
                on_progress(event)

        pending: list[Prepared] = []  # decoded videos not yet stored, in arrival order
        batch: list[tuple[Prepared, int]] = []
        features: dict[int, FrameFeatures] = {}  # id(Prepared) -> its encoded distinct frames

        def run_batch() -> None:
            nonlocal last_flush
            if not batch:
                return
            self._encode(batch, features)
            progress.clips_done += len(batch)
            progress.frames_done += len(batch) * self.plan.frames_per_clip
            progress.elapsed = time.perf_counter() - t_start
            batch.clear()
            while pending and pending[0].remaining == 0:
                done = pending.pop(0)
                features.pop(id(done), None)
                finish(self._store(done))
            if on_progress:
                on_progress(replace(progress))
            if time.perf_counter() - last_flush > 300:  # bound the FAISS catch-up after a crash
                self.store.flush()
                last_flush = time.perf_counter()

        producer.start()
        try:
            while True:
                try:
                    got = q.get(timeout=0.2)
                except queue.Empty:
                    # a producer that `stop` ended while the queue was full sent no end marker:
                    # what it queued is still taken, then the run ends
                    if producer.is_alive() or not q.empty():
                        continue
                    break
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

    # ------------------------------------------------------------ one file at a time (Prefetcher)
    def prepare(self, item: IngestItem) -> Prepared | IngestResult:
        """The decode side of one file (any thread); never raises for a bad file."""
        try:
            return self._prepare(item)
        except Exception as e:  # one bad file must not stop the caller's queue
            return unexpected_failure(item, e)

    def finish(self, got: Prepared | IngestResult) -> IngestResult:
        """Encode and commit one prepared file (the caller's thread); committed on return."""
        if isinstance(got, IngestResult):
            return got
        # decoded ahead: an earlier file may have committed the same content since
        dup = stored_duplicate(self.store, got.item.path, got.video.content_hash)
        if dup is not None:
            return dup
        features: dict[int, FrameFeatures] = {}
        for start in range(0, len(got.spans), self.batch_size):  # the batches ingest_many makes
            self._encode(
                [(got, c) for c in range(start, min(start + self.batch_size, len(got.spans)))], features
            )
        return self._store(got)

    def _store(self, p: Prepared) -> IngestResult:
        mats = np.stack([m for m in p.encoded if m is not None])  # (C, n_v, D)
        return commit_video(self.store, p.item, p.video, p.spans, mats, p.started, text=p.text)


class Prefetcher:
    """Files handed over one at a time (a service's job queue), the next one decoding ahead.

        pre = Prefetcher(ingestor)
        result = pre.ingest(item, upcoming=next_item)   # committed on return; next_item decodes meanwhile
        pre.close()

    While `item` encodes, `upcoming` is prepared (probe, hash, frames, text) on one thread, so that
    a queue of files runs as `ingest_many` does. Bounded: one file ahead. A prefetched 'duplicate'
    is checked again when its turn comes (the store may have changed), a prefetched file is checked
    against what was committed since, and a prefetch nobody asks for is dropped.
    """

    def __init__(self, ingestor: Ingestor) -> None:
        self.ingestor = ingestor
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="t2v-prefetch")
        self._ahead: tuple[IngestItem, Future[Prepared | IngestResult]] | None = None

    @property
    def ahead(self) -> IngestItem | None:
        """The file being prepared ahead, if any."""
        return self._ahead[0] if self._ahead is not None else None

    def ingest(self, item: IngestItem, upcoming: IngestItem | None = None) -> IngestResult:
        got = self._take(item)
        if upcoming is not None and upcoming != item:
            self._ahead = (upcoming, self._pool.submit(self.ingestor.prepare, upcoming))
        return self.ingestor.finish(got)

    def _take(self, item: IngestItem) -> Prepared | IngestResult:
        ahead, self._ahead = self._ahead, None
        if ahead is not None and ahead[0] == item:
            got = ahead[1].result()
            if not (isinstance(got, IngestResult) and got.status == "duplicate"):
                return got
        elif ahead is not None:
            ahead[1].cancel()  # not the next file after all (its decode, if running, just ends)
        return self.ingestor.prepare(item)

    def close(self) -> None:
        self._ahead = None
        self._pool.shutdown(wait=False, cancel_futures=True)
