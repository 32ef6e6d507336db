"""Distributed ingestion on Ray Data: the same results as `indexer.ingest.pipeline.Ingestor`, on a cluster.

    ingestor = RayIngestor(store, model, window=10.0, stride=5.0, batch_size=32,
                           options=RayOptions(address=None))        # None: a local Ray instance
    results = ingestor.ingest_many(items, on_progress=callback)      # list[IngestResult], input order

Pipeline (one Ray Data dataset, streamed, input order preserved):
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
import os
import shutil
import socket
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from indexer.ingest.pipeline import (
    IngestItem,
    IngestLimits,
    IngestProgress,
    IngestResult,
    check_model_fits,
    clip_windows,
    encode_clips,
    prepare_video,
)
from indexer.store import ClipSpan, NewVideo, Store, StoreError, store_identity

SHARD_DIR = "ray-shards"


class DistributedError(Exception):
    """Ray is missing, the cluster cannot be reached, or the pipeline failed; the message says why."""


@dataclass(frozen=True)
class RayOptions:
    address: str | None = None  # None or 'local': start a local instance; else 'auto', host:port, ray://
    num_cpus: int | None = None  # CPUs of a local instance (default: all)
    encoders: int | None = None  # encoder actors (default: one per GPU, else 1)
    videos_per_task: int = 4  # videos per encoder call, i.e. per shard file
    max_restarts: int = -1  # restarts of a crashed encoder actor (-1: unlimited, 0: fail the run)
    shard_dir: Path | None = None  # scratch for shard files (default: <store>/ray-shards)


@dataclass(frozen=True)
class ModelRecipe:
    """How a worker rebuilds the driver's model: a checkpoint file, else a (pretrained) config."""

    config: dict[str, Any]
    checkpoint: str | None
    cache_dir: str | None
    weights: str  # store_identity(model)['weights']; a worker's rebuilt model must match it

    def build(self, device: str) -> Any:
        from model import T2VConfig, create_model

        if self.checkpoint is not None:
            model = create_model(None, checkpoint=self.checkpoint, device=device, cache_dir=self.cache_dir)
        else:
            cfg = T2VConfig.from_dict(self.config)
            model = create_model(cfg, device=device, cache_dir=self.cache_dir)
        got = store_identity(model)["weights"]
        if got != self.weights:
            raise DistributedError(f"a worker rebuilt the model with weights {got}, expected {self.weights}")
        return model


def model_recipe(model: Any, checkpoint: str | Path | None, cache_dir: str | None = None) -> ModelRecipe:
    weights = store_identity(model)["weights"]
    if weights.startswith("checkpoint:") and checkpoint is None:
        raise DistributedError("the model came from a checkpoint: pass its path so that workers can load it")
    if weights.startswith("random:"):
        raise DistributedError(
            "workers cannot rebuild a model with random weights: use a checkpoint or pretrained weights"
        )
    ckpt = str(Path(checkpoint).resolve()) if weights.startswith("checkpoint:") and checkpoint else None
    return ModelRecipe(model.config.to_dict(), ckpt, cache_dir, weights)


# ---------------------------------------------------------------- stage 1: decode (Ray tasks)
def _known_hashes(store: Store) -> dict[str, tuple[int, str]]:
    """content hash -> (video id, path) of every stored video, for skipping before decoding."""
    known: dict[str, tuple[int, str]] = {}
    offset = 0
    while batch := store.list_videos(offset, 1000):
        known.update({v.content_hash: (v.id, v.path) for v in batch})
        offset += len(batch)
    return known


def _decode_row(
    row: dict[str, Any],
    pre: Any,
    frames_per_clip: int,
    window: float,
    stride: float,
    limits: IngestLimits,
    known: dict[str, tuple[int, str]],
) -> dict[str, Any]:
    """One item -> a row with its frames (status 'ok') or its final result (failed/duplicate)."""
    t0 = time.perf_counter()
    item = IngestItem(Path(row["path"]), row["title"] or None)

    def check_duplicate(path: Path, digest: str) -> IngestResult | None:
        if digest in known:
            vid, vpath = known[digest]
            return IngestResult(str(path), "duplicate", vid, f"same content as video {vid} ({vpath})")
        return None

    try:
        got = prepare_video(item, pre, frames_per_clip, window, stride, limits, check_duplicate)
    except Exception as e:  # one bad file must not stop the run
        got = IngestResult(str(item.path), "failed", reason=f"{type(e).__name__}: {e}")
    empty_frames = np.zeros((0, pre.size, pre.size, 3), np.uint8)
    empty_gather = np.zeros((0, frames_per_clip), np.int64)
    if isinstance(got, IngestResult):
        failed = json.dumps({"result": got.to_dict()})
        return {"idx": row["idx"], "meta": failed, "frames": empty_frames, "gather": empty_gather}
    meta: dict[str, Any] = {
        "video": asdict(got.video),
        "spans": [[s.start, s.end] for s in got.spans],
        "decode_s": time.perf_counter() - t0,
    }
    gather = np.asarray(got.gather, np.int64)  # (C, T)
    return {"idx": row["idx"], "meta": json.dumps(meta), "frames": got.frames, "gather": gather}


# ---------------------------------------------------------------- stage 2: encode (actor pool)
class ClipEncoder:
    """A Ray Data actor: holds the model, encodes a batch of decoded videos, writes one shard."""

    def __init__(self, recipe: ModelRecipe, device: str, batch_size: int, shard_dir: str) -> None:
        import torch

        if device == "cpu":
            # one thread per CPU the actor was given: the decode tasks need the others
            torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", "1"))))
        self.model = recipe.build(device)
        self.batch_size = batch_size
        self.shard_dir = Path(shard_dir)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        t0 = time.perf_counter()
        metas = [json.loads(m) for m in batch["meta"]]
        clips: list[np.ndarray] = []  # (T, S, S, 3) uint8 per clip, videos in batch order
        for meta, frames, gather in zip(metas, batch["frames"], batch["gather"], strict=True):
            if "video" in meta:
                clips.extend(frames[g] for g in gather)
        shard, first = "", np.zeros(len(metas), np.int64)
        if clips:
            out = [
                encode_clips(self.model, np.stack(clips[i : i + self.batch_size]))
                for i in range(0, len(clips), self.batch_size)
            ]  # each (b, T+K, D) float16
            mats = np.concatenate(out)  # (sum C, T+K, D)
            shard = str(self.shard_dir / f"shard-{uuid.uuid4().hex}.npy")
            _save_atomic(Path(shard), mats)
            row = 0
            for i, meta in enumerate(metas):
                if "video" in meta:
                    first[i] = row
                    row += len(meta["spans"])
            # per-video share of the encode time, for the result's seconds
            share = (time.perf_counter() - t0) / max(1, len(clips))
            for meta in metas:
                if "video" in meta:
                    meta["encode_s"] = share * len(meta["spans"])
        return {
            "idx": batch["idx"],
            "meta": np.array([json.dumps(m) for m in metas], dtype=object),
            "shard": np.array([shard if "video" in m else "" for m in metas], dtype=object),
            "first": first,
        }


def _save_atomic(path: Path, array: np.ndarray) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        np.save(f, array)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


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
        model: Any,
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
        check_model_fits(store, model)
        clip_windows(window + stride, window, stride)  # validates window/stride early
        if checkpoint is None:
            checkpoint = store.identity.get("checkpoint_path")
        self.store = store
        self.recipe = model_recipe(model, checkpoint, cache_dir)
        self.pre = model.backbone.preprocess
        self.frames_per_clip = int(model.config.frames)
        self.window = window
        self.stride = stride
        self.batch_size = batch_size
        self.limits = limits or IngestLimits()
        self.options = options or RayOptions()
        self.encoder_cls = encoder_cls or ClipEncoder
        if self.options.videos_per_task < 1:
            raise ValueError("videos_per_task must be >= 1")

    @classmethod
    def from_settings(
        cls,
        store: Store,
        model: Any,
        settings: Any,
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
        todo = [i if isinstance(i, IngestItem) else IngestItem(Path(i)) for i in items]
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
        decode_kwargs = {
            "pre": self.pre,
            "frames_per_clip": self.frames_per_clip,
            "window": self.window,
            "stride": self.stride,
            "limits": self.limits,
            "known": _known_hashes(self.store),
        }
        # one item per block so that files decode in parallel tasks, not one after another
        ds = ray.data.from_items(rows, override_num_blocks=len(rows))
        ds = ds.map(_decode_row, fn_kwargs=decode_kwargs, num_cpus=1)
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
        claimed: dict[str, str] = {}  # content hash -> first path in this run
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
                    r = self._merge(item, NewVideo(**meta["video"]), spans, mats, claimed, meta)
                    progress.clips_done += len(spans) if r.status == "done" else 0
                    progress.frames_done += len(spans) * self.frames_per_clip if r.status == "done" else 0
                results.append(r)
                progress.files_done += 1
                progress.failed += r.status == "failed"
                progress.duplicates += r.status == "duplicate"
                progress.elapsed = time.perf_counter() - t_start
                if on_progress:
                    on_progress(replace(progress, last=r))
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
        claimed: dict[str, str],
        meta: dict[str, Any],
    ) -> IngestResult:
        """The single-process path's duplicate rules, then one atomic commit for the video."""
        t0 = time.perf_counter()
        digest = video.content_hash
        dup = self.store.find_duplicate(digest)
        if dup is not None:
            return IngestResult(
                str(item.path), "duplicate", dup.id, f"same content as video {dup.id} ({dup.path})"
            )
        if digest in claimed:
            return IngestResult(str(item.path), "duplicate", None, f"same content as {claimed[digest]}")
        claimed[digest] = str(item.path)
        try:
            video_id = self.store.add_video(video, spans, mats)
        except StoreError as e:
            again = self.store.find_duplicate(digest)
            if again is not None:
                return IngestResult(video.path, "duplicate", again.id, f"same content as video {again.id}")
            return IngestResult(str(item.path), "failed", reason=str(e))
        except ValueError as e:
            return IngestResult(str(item.path), "failed", reason=str(e))
        secs = float(meta.get("decode_s", 0.0)) + float(meta.get("encode_s", 0.0)) + time.perf_counter() - t0
        return IngestResult(str(item.path), "done", video_id, clips=len(spans), seconds=secs)
