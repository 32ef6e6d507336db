"""What runs on the Ray workers of `distributed.RayIngestor`: the decode task and the encoder actor.

    recipe = model_recipe(model, checkpoint)        # how a worker rebuilds the driver's model
    row = decode_row(row, plan, known_hashes(store))  # stage 1 (a Ray task per video)
    out = ClipEncoder(recipe, device, batch_size, shard_dir)(batch)   # stage 2 (a Ray actor)

Rows travel as plain dicts of numpy arrays and JSON strings (what Ray Data blocks hold); encoded
matrices travel as shard files, written atomically, so the driver's merge reads them from disk.
Ray itself is not imported here.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from indexer.settings import process_threads
from indexer.store import Store, store_identity
from model import T2VParser
from model.fileio import atomic_path

from .encode import FrameFeatures, encode_clip_batch
from .prepare import ClipPlan, IngestItem, IngestResult, prepare_video, unexpected_failure


class DistributedError(Exception):
    """Ray is missing, the cluster cannot be reached, or the pipeline failed; the message says why."""


@dataclass(frozen=True)
class ModelRecipe:
    """How a worker rebuilds the driver's model: a checkpoint file, else a (pretrained) config."""

    config: dict[str, Any]
    checkpoint: str | None
    cache_dir: str | None
    weights: str  # store_identity(model)['weights']; a worker's rebuilt model must match it

    def build(self, device: str) -> T2VParser:
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


def model_recipe(
    model: T2VParser, checkpoint: str | Path | None, cache_dir: str | None = None
) -> ModelRecipe:
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
def known_hashes(store: Store) -> dict[str, tuple[int, str]]:
    """content hash -> (video id, path) of every stored video, for skipping before decoding."""
    known: dict[str, tuple[int, str]] = {}
    offset = 0
    while batch := store.list_videos(offset, 1000):
        known.update({v.content_hash: (v.id, v.path) for v in batch})
        offset += len(batch)
    return known


def decode_row(row: dict[str, Any], plan: ClipPlan, known: dict[str, tuple[int, str]]) -> dict[str, Any]:
    """One item -> a row with its frames (status 'ok') or its final result (failed/duplicate)."""
    t0 = time.perf_counter()
    item = IngestItem(Path(row["path"]), row["title"] or None)

    def check_duplicate(path: Path, digest: str) -> IngestResult | None:
        if digest in known:
            vid, vpath = known[digest]
            return IngestResult(str(path), "duplicate", vid, f"same content as video {vid} ({vpath})")
        return None

    try:
        got = prepare_video(item, plan, check_duplicate)
    except Exception as e:  # one bad file must not stop the run
        got = unexpected_failure(item, e)
    empty_frames = np.zeros((0, plan.pre.size, plan.pre.size, 3), np.uint8)
    empty_gather = np.zeros((0, plan.frames_per_clip), np.int64)
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
            torch.set_num_threads(process_threads(default=1))
        self.model = recipe.build(device)
        self.batch_size = batch_size
        self.shard_dir = Path(shard_dir)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        t0 = time.perf_counter()
        metas = [json.loads(m) for m in batch["meta"]]
        # the local path's encoding: the image tower once per distinct frame of a video (overlapping
        # windows share most sample times), each clip's set from the cached frame vectors
        clips: list[tuple[FrameFeatures, np.ndarray]] = []  # (video's frames, (T,) indices), in order
        for meta, frames, gather in zip(metas, batch["frames"], batch["gather"], strict=True):
            if "video" in meta:
                ff = FrameFeatures(frames)
                clips.extend((ff, g) for g in gather)
        shard, first = "", np.zeros(len(metas), np.int64)
        if clips:
            out = [
                encode_clip_batch(self.model, clips[i : i + self.batch_size])
                for i in range(0, len(clips), self.batch_size)
            ]  # each (b, T+K, D) float16
            mats = np.concatenate(out)  # (sum C, T+K, D)
            shard = str(self.shard_dir / f"shard-{uuid.uuid4().hex}.npy")
            # 0o644: the driver may read it as another user on a shared file system
            with atomic_path(Path(shard), mode=0o644) as tmp, open(tmp, "wb") as f:
                np.save(f, mats)  # a file object: np.save would append .npy to a path
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
