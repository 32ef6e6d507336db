"""Distributed ingestion on Ray Data: the same results as `indexer.ingest.pipeline.Ingestor`, on a cluster.

    ingestor = RayIngestor(store, model, window=10.0, stride=5.0, batch_size=32,
                           options=RayOptions(address=None))        # None: a local Ray instance
    results = ingestor.ingest_many(items, on_progress=callback)      # list[IngestResult], input order

Pipeline (one Ray Data dataset, streamed, input order preserved; the stages are in `ray_stages`):
  items --map (CPU tasks)--> probe + limits + content hash + one-pass frame sampling
        --map_batches (actor pool: GPU actors when the cluster has GPUs, CPU actors otherwise)-->
          encode every clip, write the batch's float16 matrices to one shard file (atomic rename)
        --driver--> merge: duplicate check, `store.add_video` per video (the store's commit point)

The driver is the only store writer, so crash safety is the store's: a killed encoder actor is
restarted by Ray and its batch retried (`RayOptions.max_restarts`); a killed driver leaves every
committed video in place and a rerun skips them as duplicates (workers get the store's content
hashes before decoding). Shard files are scratch data under `RayOptions.shard_dir` (default
`<store>/ray-shards`), deleted after the run and at the start of the next one. Videos, the
checkpoint and the shard folder must be visible at the same paths on every node.

Ray is an optional extra (`pip install 't2v-search[distributed]'`); it is imported only here,
and this module is imported only when `--ray` is used.
"""

from __future__ import annotations

import fcntl
import json
import logging
import shutil
import socket
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from indexer.settings import IndexerSettings
from indexer.store import ClipSpan, NewVideo, Store, StoreError
from model import T2VParser

from .commit import RunClaims, commit_video, stored_duplicate
from .prepare import ClipPlan, IngestItem, IngestLimits, IngestProgress, IngestResult, as_items
from .ray_stages import ClipEncoder, DistributedError, decode_row, known_hashes, model_recipe

# the worker side lives in ray_stages; callers import these from here
__all__ = ["ClipEncoder", "DistributedError", "RayIngestor", "RayOptions"]

SHARD_DIR = "ray-shards"


@dataclass(frozen=True)
class RayOptions:
    address: str | None = None  # None or 'local': start a local instance; else 'auto', host:port, ray://
    num_cpus: int | None = None  # CPUs of a local instance (default: all)
    encoders: int | None = None  # encoder actors (default: one per GPU, else 1)
    videos_per_task: int = 4  # videos per encoder call, i.e. per shard file
    max_restarts: int = -1  # restarts of a crashed encoder actor (-1: unlimited, 0: fail the run)
    shard_dir: Path | None = None  # scratch for shard files (default: <store>/ray-shards)


# ---------------------------------------------------------------- driver
def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """Fail fast on an unreachable head node: ray.init would retry for minutes."""
    if address == "auto":
        return
    hostport = address.removeprefix("ray://")
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise DistributedError(f"{address!r} is not a Ray address (host:port, ray://host:port or 'auto')")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as e:
        raise DistributedError(f"cannot reach the Ray cluster at {address}: {e}") from None


def _import_ray() -> Any:
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as e:
        raise DistributedError(
            "Ray is not installed: install the extra with `pip install 't2v-search[distributed]'` "
            f"(or `pip install 'ray[data]'`) ({e})"
        ) from None
    return ray


class RayIngestor:
    """`Ingestor.ingest_many` on a Ray cluster; the calling process merges into the store."""

    def __init__(
        self,
        store: Store,
        model: T2VParser,
        window: float = 10.0,
        stride: float = 5.0,
        batch_size: int = 32,
        limits: IngestLimits | None = None,
        options: RayOptions | None = None,
        checkpoint: str | Path | None = None,
        cache_dir: str | None = None,
        encoder_cls: type[ClipEncoder] | None = None,
    ) -> None:
        """checkpoint: the model's file (default: the one the store records); workers load it.
        encoder_cls: a ClipEncoder subclass to run instead (another runtime; fault injection)."""
        self.plan = ClipPlan.for_store(store, model, window, stride, limits)
        if checkpoint is None:
            checkpoint = store.identity.get("checkpoint_path")
        self.store = store
        self.recipe = model_recipe(model, checkpoint, cache_dir)
        self.batch_size = batch_size
        self.options = options or RayOptions()
        self.encoder_cls = encoder_cls or ClipEncoder
        if self.options.videos_per_task < 1:
            raise ValueError("videos_per_task must be >= 1")

    @classmethod
    def from_settings(
        cls,
        store: Store,
        model: T2VParser,
        settings: IndexerSettings,
        options: RayOptions | None = None,
        checkpoint: str | Path | None = None,
    ) -> RayIngestor:
        cache = settings.model.cache_dir
        return cls(
            store,
            model,
            settings.window,
            settings.stride,
            settings.batch_size,
            options=options,
            checkpoint=checkpoint,
            cache_dir=str(cache) if cache else None,
        )

    # ------------------------------------------------------------ cluster
    def _connect(self, ray: Any) -> bool:
        """Join or start a cluster; True when this call started it (and should shut it down)."""
        if ray.is_initialized():
            return False
        addr = self.options.address
        try:
            if addr in (None, "", "local"):
                ray.init(
                    num_cpus=self.options.num_cpus,
                    include_dashboard=False,
                    logging_level=logging.WARNING,
                )
            else:
                _check_reachable(addr)
                ray.init(address=addr, logging_level=logging.WARNING)
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise DistributedError(f"cannot connect to the Ray cluster at {addr}: {e}") from None
        return True

    def _shard_root(self) -> Path:
        return self.options.shard_dir or self.store.root / SHARD_DIR

    # ------------------------------------------------------------ run
    def ingest_many(
        self,
        items: Iterable[IngestItem | str | Path],
        on_progress: Callable[[IngestProgress], None] | None = None,
        stop: threading.Event | None = None,
        flush: bool = True,
    ) -> list[IngestResult]:
        """Index every item (results in input order); a bad file becomes a 'failed' result.

        Raises DistributedError when the cluster fails (e.g. an encoder died with no restarts
        left): videos committed before that stay, a rerun completes the rest.
        """
        todo = as_items(items)
        stop = stop or threading.Event()
        progress = IngestProgress(files_total=len(todo))
        if not todo:
            return []
        ray = _import_ray()
        started = self._connect(ray)
        root = self._shard_root()
        root.mkdir(parents=True, exist_ok=True)
        lock = open(root / ".lock", "a+")  # noqa: SIM115 - held for the whole run
        try:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise DistributedError(f"another Ray ingestion is using {root}") from None
            for old in root.glob("run-*"):  # a killed run's scratch
                shutil.rmtree(old, ignore_errors=True)
            run_dir = root / f"run-{uuid.uuid4().hex[:12]}"
            run_dir.mkdir()
            try:
                return self._run(ray, todo, run_dir, progress, on_progress, stop)
            finally:
                shutil.rmtree(run_dir, ignore_errors=True)
                if flush:
                    self.store.flush()
        finally:
            lock.close()
            if started:
                ray.shutdown()

    def _dataset(self, ray: Any, todo: list[IngestItem], run_dir: Path) -> Any:
        ctx = ray.data.DataContext.get_current()
        ctx.execution_options.preserve_order = True  # merge (and ids) in input order
        ctx.enable_progress_bars = False
        logging.getLogger("ray.data").setLevel(logging.WARNING)  # per-run execution-plan chatter
        gpus = int(ray.cluster_resources().get("GPU", 0))
        encoders = self.options.encoders or max(1, gpus)
        rows = [{"idx": i, "path": str(it.path), "title": it.title or ""} for i, it in enumerate(todo)]
        decode_kwargs = {"plan": self.plan, "known": known_hashes(self.store)}
        # one item per block so that files decode in parallel tasks, not one after another
        ds = ray.data.from_items(rows, override_num_blocks=len(rows))
        ds = ds.map(decode_row, fn_kwargs=decode_kwargs, num_cpus=1)
        with warnings.catch_warnings():
            # max_restarts as a plain remote arg is what Ray's docs show; 2.60 warns about the form
            warnings.simplefilter("ignore", DeprecationWarning)
            return self._encode_stage(ray, ds, run_dir, gpus, encoders)

    def _encode_stage(self, ray: Any, ds: Any, run_dir: Path, gpus: int, encoders: int) -> Any:
        return ds.map_batches(
            self.encoder_cls,
            fn_constructor_kwargs={
                "recipe": self.recipe,
                "device": "cuda" if gpus else "cpu",
                "batch_size": self.batch_size,
                "shard_dir": str(run_dir),
            },
            batch_size=self.options.videos_per_task,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=encoders),
            num_gpus=1 if gpus else 0,
            num_cpus=1,
            # explicit (differs from the decode stage's args): keeps decoding out of the actors
            max_restarts=self.options.max_restarts,
        )

    def _run(
        self,
        ray: Any,
        todo: list[IngestItem],
        run_dir: Path,
        progress: IngestProgress,
        on_progress: Callable[[IngestProgress], None] | None,
        stop: threading.Event,
    ) -> list[IngestResult]:
        t_start = time.perf_counter()
        results: list[IngestResult] = []
        claims = RunClaims()
        shard_path, shard = "", np.zeros(0)
        try:
            for row in self._dataset(ray, todo, run_dir).iter_rows():
                if stop.is_set():
                    break
                meta = json.loads(row["meta"])
                item = todo[int(row["idx"])]
                if "result" in meta:
                    r = IngestResult(**meta["result"])
                else:
                    if row["shard"] != shard_path:
                        if shard_path:
                            Path(shard_path).unlink(missing_ok=True)  # merged
                        shard_path, shard = row["shard"], np.load(row["shard"], mmap_mode="r")
                    spans = [ClipSpan(float(a), float(b)) for a, b in meta["spans"]]
                    first = int(row["first"])
                    mats = np.asarray(shard[first : first + len(spans)])  # (C, T+K, D) float16
                    r = self._merge(item, NewVideo(**meta["video"]), spans, mats, claims, meta)
                    progress.clips_done += len(spans) if r.status == "done" else 0
                    progress.frames_done += (
                        len(spans) * self.plan.frames_per_clip if r.status == "done" else 0
                    )
                results.append(r)
                event = progress.finished(r, time.perf_counter() - t_start)
                if on_progress:
                    on_progress(event)
        except Exception as e:
            if isinstance(e, (DistributedError, StoreError)):
                raise
            raise DistributedError(
                f"the Ray pipeline failed after {len(results)} of {len(todo)} files "
                f"(committed videos stay; rerun to complete): {type(e).__name__}: {str(e)[:2000]}"
            ) from e
        return results

    def _merge(
        self,
        item: IngestItem,
        video: NewVideo,
        spans: list[ClipSpan],
        mats: np.ndarray,
        claims: RunClaims,
        meta: dict[str, Any],
    ) -> IngestResult:
        """The single-process path's duplicate rules, then one atomic commit for the video."""
        t0 = time.perf_counter()
        dup = stored_duplicate(self.store, item.path, video.content_hash)
        dup = dup or claims.claim(video.content_hash, str(item.path))
        if dup is not None:
            return dup
        earlier = float(meta.get("decode_s", 0.0)) + float(meta.get("encode_s", 0.0))
        return commit_video(self.store, item, video, spans, mats, t0, earlier)
