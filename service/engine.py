"""The engine: owns the query-side model, the store (through `Library`) and the ingestion queue.

Routes only call the async methods here. Everything blocking (torch, FAISS, SQLite of the store,
ffmpeg) runs in a bounded thread pool; ingestion has its own single thread so a long video never
holds up searches, and each video becomes searchable as soon as the store commits it.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from fastapi import Request
from prometheus_client import Gauge

from indexer.media.opened import MediaRefused, OpenedMedia, container_type, open_media
from indexer.settings import process_threads
from indexer.store import VideoRecord

from .errors import InvalidInput, NotFound, NotReady, RangeNotSatisfiable, TooManyJobs, TooManySearches
from .jobs import JobStore, WorkItem, is_storage_error
from .library import Hit, IngestFailed, Library, open_library
from .media import Thumbnail, ThumbnailCache, ThumbnailError, jpeg_at, thumbnail_key
from .metrics import Metrics
from .schemas import (
    IngestRequest,
    Job,
    JobPage,
    Moment,
    Ready,
    SearchRequest,
    SearchResponse,
    TextTrack,
    Video,
    VideoPage,
)
from .security import expand_confined
from .settings import ServiceSettings
from .text_results import is_weak, text_fields
from .uploads import clean_uploads, receive_uploads

log = logging.getLogger("t2v.service")
R = TypeVar("R")

_THUMB_CACHE = 512  # JPEGs kept per engine (a few MB)
STUCK_AFTER = 1800.0  # seconds one item may run before /readyz calls the worker stuck


class Engine:
    def __init__(self, settings: ServiceSettings, metrics: Metrics) -> None:
        self.settings = settings
        self.metrics = metrics
        init = partial(_init_worker_thread, settings.torch_threads, metrics.torch_threads.labels("search"))
        self._pool = ThreadPoolExecutor(settings.workers, thread_name_prefix="t2v-work", initializer=init)
        # ingestion is throughput work: it gets an indexing process's threads (measured 1.47x slower
        # than the CLI on the query setting); searches keep theirs (per-thread torch setting)
        # set even when the default: a thread that sets none takes the last value any thread set
        ingest_threads = settings.ingest_threads or process_threads()
        ingest_init = partial(_init_worker_thread, ingest_threads, metrics.torch_threads.labels("ingest"))
        self._ingest_pool = ThreadPoolExecutor(1, thread_name_prefix="t2v-ingest", initializer=ingest_init)
        self._lib: Library | None = None
        self._jobs: JobStore | None = None
        self._load_error: str | None = None
        self._wake = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None
        self._thumbs = ThumbnailCache(settings.var_dir / "thumbs", capacity=_THUMB_CACHE)
        self._ingesting = False  # an item is in the ingest thread right now
        self._item_started: tuple[str, float] | None = None  # (path, monotonic start) of that item
        self._dirty = False  # committed videos the FAISS file does not hold yet
        self._problems: dict[str, str] = {}  # worker trouble by kind ('record', 'flush'), while it lasts
        self._searches = 0  # searches in flight (the event loop is the only writer: no lock)

    # --- life cycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the job database, load model + store (in the pool), then start the ingest worker."""
        try:
            self.settings.var_dir.mkdir(parents=True, exist_ok=True)
            self.settings.uploads.mkdir(parents=True, exist_ok=True)
            self._jobs = JobStore(self.settings.jobs_db)
            resumed = self._jobs.recover()
            if resumed:
                log.info("resuming %d interrupted ingestion item(s)", resumed)
            lib = await self._run(open_library, self.settings)
            try:
                # before anyone can upload: what no job and no video refers to is a leftover
                await self._run(clean_uploads, self.settings.uploads, self._jobs, lib)
                await self._run(lib.weak_below)  # calibrated before ready: no first search pays for it
            except BaseException:
                await self._run(lib.close)  # the engine will not serve it: nothing keeps it open
                raise
            self._lib = lib
            await self._run(self._refresh_gauges)
        except Exception as e:  # readiness reports it; the process stays up for /healthz
            self._load_error = f"{type(e).__name__}: {e}"
            log.exception("engine failed to start")
            return
        self._worker = asyncio.create_task(self._ingest_loop(), name="t2v-ingest-loop")
        log.info("engine ready: %s", self._lib.describe())

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            try:
                await self._worker
            except asyncio.CancelledError:
                pass
        # an item still running stays 'running' in the job DB and is resumed on the next start
        self._ingest_pool.shutdown(wait=False, cancel_futures=True)
        self._pool.shutdown(wait=False, cancel_futures=True)
        if self._lib is not None:
            if self._ingesting:
                # closing under a writer would race it; the store recovers on open, as after a crash
                log.warning("stopping during an ingestion: the store is left for recovery on next start")
            else:
                self._lib.close()
        if self._jobs is not None:
            self._jobs.close()

    async def _run(self, fn: Callable[..., R], *args: Any, **kwargs: Any) -> R:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, partial(fn, *args, **kwargs))

    @property
    def load_error(self) -> str | None:
        """Why the model or store could not be loaded (None while loading or once loaded)."""
        return self._load_error

    @property
    def lib(self) -> Library:
        if self._lib is None:
            raise NotReady(self._load_error or "the model and store are still loading")
        return self._lib

    @property
    def jobs(self) -> JobStore:
        if self._jobs is None:
            raise NotReady(self._load_error or "the job database is not open yet")
        return self._jobs

    async def readiness(self) -> Ready:
        lib = self.lib  # 503 until loaded
        videos, clips, _ = await self._run(lib.counts)
        problems = self.worker_problems() + lib.store.repairs  # repairs: what the open fixed
        return Ready(
            status="degraded" if problems else "ready",
            model=lib.describe(),
            videos=videos,
            clips=clips,
            problems=problems,
        )

    async def metrics_text(self) -> bytes:
        # store stats take the store's locks: off the loop, like every store call
        await self._run(self._refresh_gauges)
        return self.metrics.render()

    def _refresh_gauges(self) -> None:
        if self._lib is not None:
            videos, clips, vectors = self._lib.counts()
            self.metrics.index_videos.set(videos)
            self.metrics.index_clips.set(clips)
            self.metrics.index_vectors.set(vectors)
        if self._jobs is not None:
            self.metrics.queue_depth.set(self._jobs.queue_depth())

    # --- search -----------------------------------------------------------------------------

    async def search(self, req: SearchRequest) -> SearchResponse:
        limits = self.settings.limits
        query = req.query.strip()
        if not query:
            raise InvalidInput("query is empty")
        if len(req.query) > limits.max_query_chars:  # as sent: the schema's maxLength
            raise InvalidInput(f"query is {len(req.query)} characters; the limit is {limits.max_query_chars}")
        if req.top_k > limits.max_top_k:
            raise InvalidInput(f"top_k {req.top_k} exceeds the limit of {limits.max_top_k}")
        lib = self.lib
        # admission: refuse at once over the limit rather than queue without bound on the pool
        if self._searches >= limits.max_concurrent_searches:
            raise TooManySearches(
                f"{self._searches} searches in flight (limit {limits.max_concurrent_searches}); retry soon",
                headers={"Retry-After": "1"},
            )
        self._searches += 1
        start = time.perf_counter()
        try:
            found, weak_below, stages = await self._run(
                lib.search,
                query,
                req.top_k,
                req.group_by_video,
                req.video_ids,
                req.min_score,
                req.explain,
                req.moments_per_video if req.group_by_video else 1,
                sources=req.sources,
            )
        finally:
            self._searches -= 1
        took = time.perf_counter() - start
        for stage, seconds in stages.items():
            self.metrics.search_stage_seconds.labels(stage).observe(seconds)
        self.metrics.search_stage_seconds.labels("total").observe(took)
        results = [_moment(h, weak_below) for h in found]
        return SearchResponse(
            query=query,
            results=results,
            took_ms=round(took * 1000, 3),
            stages_ms={k: round(v * 1000, 3) for k, v in stages.items()},
            weak_below=weak_below,
        )

    # --- library ----------------------------------------------------------------------------

    def _check_page_size(self, limit: int) -> None:
        most = self.settings.limits.max_page_size
        if limit > most:
            raise InvalidInput(f"limit {limit} exceeds the page size limit of {most}")

    async def list_videos(self, offset: int, limit: int, title: str | None) -> VideoPage:
        self._check_page_size(limit)
        records, total = await self._run(self.lib.list_videos, offset, limit, title)
        return VideoPage(items=[_video(r) for r in records], total=total, offset=offset, limit=limit)

    async def _record(self, video_id: int) -> VideoRecord:
        rec = await self._run(self.lib.get_video, video_id)
        if rec is None:
            raise NotFound(f"no video with id {video_id!r}")
        return rec

    async def get_video(self, video_id: int) -> Video:
        video = _video(await self._record(video_id))
        tracks = await self._run(self.lib.store.text_tracks, video_id)
        video.text_tracks = [TextTrack.model_validate(t.to_dict()) for t in tracks]
        return video

    async def delete_video(self, video_id: int) -> None:
        rec = await self._record(video_id)
        if not await self._run(self.lib.delete_video, video_id):
            raise NotFound(f"no video with id {video_id!r}")
        # a file we received as an upload belongs to us: remove it (and its emptied job dir) too
        if rec.path:
            self._drop_upload(Path(rec.path))

    async def open_video(self, video_id: int) -> tuple[OpenedMedia, str | None]:
        """The video's file opened once (it must still be the regular file stored at its recorded
        real path: a symlink or a swapped directory is refused) and its video/* type from the
        container's signature (None: not a known container)."""
        rec = await self._record(video_id)
        if not rec.path:
            raise NotFound(f"the file of video {video_id!r} is no longer available")
        try:
            opened = await self._run(open_media, rec.path, None, True)
        except MediaRefused as e:
            log.warning("not serving video %s: %s", video_id, e)
            raise NotFound(f"the file of video {video_id!r} is no longer available") from None
        try:
            head = await self._run(opened.head, 512)
        except OSError:
            opened.close()
            raise
        return opened, container_type(head)

    @staticmethod
    def check_range(header: str | None, size: int) -> None:
        """A JSON 416 for a range that starts past the end (the file response handles the rest)."""
        if not header or not header.startswith("bytes="):
            return
        for part in header[6:].split(","):
            first = part.strip().split("-", 1)[0]
            if first.isdigit() and int(first) >= size:
                raise RangeNotSatisfiable(
                    f"range {part.strip()!r} starts beyond the end of the {size}-byte file",
                    headers={"Content-Range": f"bytes */{size}"},
                )

    async def thumbnail(self, video_id: int, t: float, if_none_match: str | None = None) -> Thumbnail:
        """The frame at `t` (cached); no data when `if_none_match` already names it (HTTP 304)."""
        rec = await self._record(video_id)
        t = round(min(max(t, 0.0), max(rec.duration - 0.1, 0.0)), 1)  # clamp inside the video
        key = thumbnail_key(rec.content_hash, t, self.settings.thumbnail_width)
        etag = f'"{key}"'
        if if_none_match and etag in [e.strip() for e in if_none_match.split(",")]:
            return Thumbnail(etag, None)
        data = await self._run(self._thumbs.get, key)
        if data is None:
            # ffmpeg reads the checked descriptor (inherited), never the name: a swap after the
            # check cannot make it read another file
            opened, _ = await self.open_video(video_id)
            width = self.settings.thumbnail_width
            try:
                try:
                    data = await self._run(jpeg_at, opened.name, t, width, opened.fds)
                except ThumbnailError:
                    data = await self._run(jpeg_at, opened.name, 0.0, width, opened.fds)
            finally:
                opened.close()
            await self._run(self._thumbs.put, key, data)
        return Thumbnail(etag, data)

    # --- ingestion --------------------------------------------------------------------------

    def _check_job_capacity(self, items: int) -> None:
        limits = self.settings.limits
        if items > limits.max_items_per_job:
            raise InvalidInput(f"{items} items in one job; the limit is {limits.max_items_per_job}")
        active = self.jobs.active_jobs()
        if active >= limits.max_active_jobs:
            raise TooManyJobs(
                f"{active} ingestion jobs are still running (limit {limits.max_active_jobs}); retry later",
                headers={"Retry-After": "5"},
            )

    async def submit_paths(self, body: IngestRequest) -> Job:
        self.lib  # noqa: B018 - 503 before the store is loaded
        roots = self.settings.allowed_roots
        if len(body.paths) > self.settings.limits.max_items_per_job:  # refuse before a stat per path
            self._check_job_capacity(len(body.paths))
        # folders expand to their files, each confined the same way (off the loop: a walk)
        limit = self.settings.limits.max_items_per_job
        resolved = await self._run(expand_confined, body.paths, roots, limit)
        if not resolved:
            raise InvalidInput("no files found under the given folder(s)")
        self._check_job_capacity(len(resolved))
        # titles[i] names the file paths[i] names; no entry there (a shorter list), a folder's
        # files and entries past the paths: no title (each item shows the title it got). A length
        # rule JSON Schema cannot state would be a schema-valid request refused.
        titles = body.titles or []
        items = [
            (str(p), p.name, titles[i] if i is not None and i < len(titles) else None) for p, i in resolved
        ]
        return self._created(self.jobs.create("paths", items))

    async def submit_uploads(self, request: Request) -> Job:
        self.lib  # noqa: B018
        limits = self.settings.limits
        self._check_job_capacity(1)
        dest = self.settings.uploads / uuid.uuid4().hex[:16]
        uploads = await receive_uploads(request, dest, limits.max_upload_bytes, limits.max_items_per_job)
        items: list[tuple[str, str, str | None]] = [
            (str(u.path), u.filename, Path(u.filename).stem) for u in uploads
        ]
        try:
            job_id = self.jobs.create("upload", items)
        except BaseException:
            shutil.rmtree(dest, ignore_errors=True)  # no job refers to these files
            raise
        return self._created(job_id)

    def _created(self, job_id: str) -> Job:
        self._wake.set()
        self.metrics.queue_depth.set(self.jobs.queue_depth())
        return self._job(job_id)

    def _job(self, job_id: str) -> Job:
        view = self.jobs.get(job_id)
        if view is None:
            raise NotFound(f"no job with id {job_id!r}")
        return Job.model_validate(view)

    async def get_job(self, job_id: str) -> Job:
        return self._job(job_id)

    async def list_jobs(self, offset: int, limit: int) -> JobPage:
        self._check_page_size(limit)
        views, total = self.jobs.list(limit, offset)
        return JobPage(items=[Job.model_validate(v) for v in views], total=total, offset=offset, limit=limit)

    async def _ingest_loop(self) -> None:
        """The supervised worker: only an item's own failure ends that item, nothing ends the loop.

        A failure outside one item (the job database or the FAISS flush on a full disk) is logged
        and counted, reported by /readyz and /metrics while it lasts, and retried with a backoff;
        the queue resumes by itself once space is back."""
        loop = asyncio.get_running_loop()
        backoff = 0.5
        while True:
            try:
                item = self.jobs.claim_next()
            except Exception as e:  # noqa: BLE001 - the job database is unusable for now
                self._trouble("record", f"cannot read the job queue: {e}", e)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)
                continue
            if item is None:
                if self._dirty:  # the queue drained: persist the index once, not after every video
                    await self._flush(loop)
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout=2.0)
                except TimeoutError:
                    pass
                continue
            self.metrics.queue_depth.set(self.jobs.queue_depth())
            self._item_started = (item.path, time.monotonic())
            self._ingesting = True
            try:
                state, reason, video_id = await loop.run_in_executor(
                    self._ingest_pool, self._ingest_one, item
                )
            except asyncio.CancelledError:
                raise
            except Exception as e:  # never let one item stop the queue
                log.exception("ingestion of %s failed", item.path)
                kind = "storage error" if is_storage_error(e) else "internal error"
                state, reason, video_id = "failed", f"{kind}: {type(e).__name__}: {e}", None
                self._drop_upload(Path(item.path))
            self._ingesting = False
            self._item_started = None
            await self._record_outcome(item, state, reason, video_id)
            backoff = 0.5
            self._dirty = self._dirty or state == "done"
            self.metrics.ingested.labels(state).inc()
            try:
                await self._run(self._refresh_gauges)
            except Exception as e:  # noqa: BLE001 - gauges are best effort
                log.warning("cannot refresh gauges: %s", e)

    async def _record_outcome(
        self, item: WorkItem, state: str, reason: str | None, video_id: int | None
    ) -> None:
        """Record an item's outcome, retrying until the job database takes it (a full var dir)."""
        delay = 0.5
        while True:
            try:
                self.jobs.finish(item, state, reason, video_id)
            except Exception as e:  # noqa: BLE001 - retried below; reported meanwhile
                self._trouble("record", f"cannot record job progress: {e}", e)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
                continue
            self._clear_trouble("record")
            return

    async def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        """Persist the FAISS index; a failure surfaces at once and is retried on the next drain."""
        try:
            await loop.run_in_executor(self._ingest_pool, self.lib.flush)
        except Exception as e:  # noqa: BLE001 - committed videos are safe; the index is derived
            self._trouble("flush", f"persisting the FAISS index failed: {e}", e)
            return
        self._dirty = False
        self._clear_trouble("flush")

    def _trouble(self, kind: str, message: str, exc: BaseException) -> None:
        if self._problems.get(kind) != message:  # log a problem once, not at every retry
            log.error("ingestion worker: %s", message, exc_info=exc)
        self._problems[kind] = message
        self.metrics.worker_errors.labels(kind).inc()
        self.metrics.worker_degraded.set(1)

    def _clear_trouble(self, kind: str) -> None:
        if self._problems.pop(kind, None) is not None:
            log.info("ingestion worker: %s problem cleared", kind)
        self.metrics.worker_degraded.set(1 if self._problems else 0)

    def worker_problems(self) -> list[str]:
        """What /readyz reports about the ingestion worker (empty: healthy)."""
        problems = list(self._problems.values())
        if self._worker is not None and self._worker.done():
            problems.append("the ingestion worker stopped")
        if self._item_started is not None:
            path, since = self._item_started
            took = time.monotonic() - since
            if took > STUCK_AFTER:
                problems.append(f"one item has been running for {took:.0f}s: {Path(path).name}")
        return problems

    def _drop_upload(self, path: Path) -> None:
        """Remove a file we received as an upload, and its job directory once empty."""
        if not _is_under(path, self.settings.uploads):
            return
        path.unlink(missing_ok=True)
        parent = path.parent
        if parent != self.settings.uploads and _is_under(parent, self.settings.uploads):
            try:
                parent.rmdir()
            except OSError:
                pass  # other files of the job are still queued

    def _read_roots(self) -> tuple[Path, ...]:
        """Where the worker may read files: the allowed roots and our own upload directory."""
        return (*self.settings.allowed_roots, self.settings.uploads)

    def _ingest_one(self, item: WorkItem) -> tuple[str, str | None, int | None]:
        """Runs in the ingest thread: (state, reason, video_id)."""
        nxt = self.jobs.peek_next()  # decoded while this item encodes (acknowledged in queue order)
        upcoming = (Path(nxt.path), nxt.title) if nxt is not None else None
        try:
            outcome = self.lib.ingest(Path(item.path), item.title, self._read_roots(), upcoming)
        except IngestFailed as e:
            self._drop_upload(Path(item.path))
            return "failed", e.reason, None
        if outcome.duplicate:
            # committed just before a crash: the duplicate is this very item, so it is done
            if item.resumed and outcome.source == str(Path(item.path).resolve()):
                return "done", None, outcome.video_id
            self._drop_upload(Path(item.path))
            return "duplicate", f"same content as video {outcome.video_id}", outcome.video_id
        return "done", None, outcome.video_id


def _init_worker_thread(torch_threads: int, gauge: Gauge) -> None:
    # measured: a 2-thread text tower on 2 busy shared cores took 400-900 ms per query, 1 thread 10 ms
    import torch

    if torch_threads > 0:
        torch.set_num_threads(torch_threads)
    gauge.set(torch.get_num_threads())  # what this pool's threads run with (per thread in torch)


def _thumb_url(video_id: int, t: float) -> str:
    return f"/v1/videos/{video_id}/thumbnail?t={t:.2f}"


def _moment(h: Hit, weak_below: float | None) -> Moment:
    m = h.moment
    return Moment(
        video_id=m.video_id,
        title=m.title,
        start=round(m.start, 3),
        end=round(m.end, 3),
        score=m.score,
        weak=is_weak(m, weak_below),
        best_frame_s=h.best_frame_s,
        thumbnail_url=_thumb_url(m.video_id, h.best_frame_s),
        stream_url=f"/v1/videos/{m.video_id}/stream#t={m.start:.2f}",
        **text_fields(m),
        explanation=None if h.explanation is None else h.explanation.to_dict(),
        more=[_moment(o, weak_below) for o in h.more],
    )


def _video(r: VideoRecord) -> Video:
    return Video(
        id=r.id,
        title=r.title,
        duration=r.duration,
        clips=r.num_clips,
        width=r.width,
        height=r.height,
        size_bytes=r.size_bytes,
        filename=Path(r.path).name if r.path else None,
        thumbnail_url=_thumb_url(r.id, min(1.0, r.duration / 2)),
        stream_url=f"/v1/videos/{r.id}/stream",
    )


def _is_under(path: Path, root: Path) -> bool:
    try:
        return path.resolve().is_relative_to(root.resolve())
    except OSError:
        return False
