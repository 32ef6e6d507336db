"""What both ingestion runners share after decoding: encoding clips, the duplicate rules, the commit.

A file is a duplicate when the store already holds its content, or when an earlier file of the same
run (input order) had it; otherwise its clips are committed in one `store.add_video` (the store's
commit point), and a commit that loses a race with another writer becomes a duplicate after all.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from indexer.media.video import to_model_input
from indexer.store import ClipSpan, NewVideo, Store, StoreError
from indexer.text.lines import VideoText
from model import T2VParser

from .prepare import IngestItem, IngestResult


def encode_clips(model: T2VParser, clips: np.ndarray) -> np.ndarray:
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


def stored_duplicate(store: Store, path: Path | str, digest: str) -> IngestResult | None:
    """A 'duplicate' result when the store already holds this content."""
    dup = store.find_duplicate(digest)
    if dup is None:
        return None
    return IngestResult(str(path), "duplicate", dup.id, f"same content as video {dup.id} ({dup.path})")


class RunClaims:
    """Content hashes seen in this run: the first of identical files (input order) wins."""

    def __init__(self) -> None:
        self._first: dict[str, str] = {}  # content hash -> first path in this run

    def claim(self, digest: str, path: str) -> IngestResult | None:
        """None for the first file with this content, else its 'duplicate' result."""
        if digest in self._first:
            return IngestResult(path, "duplicate", None, f"same content as {self._first[digest]}")
        self._first[digest] = path
        return None


def commit_video(
    store: Store,
    item: IngestItem,
    video: NewVideo,
    spans: list[ClipSpan],
    mats: np.ndarray,
    started: float,
    earlier: float = 0.0,
    text: VideoText | None = None,
) -> IngestResult:
    """One atomic commit of a video's clips (C, n_v, D). The result's seconds: `earlier` (work done
    elsewhere) plus the time since `started` (perf_counter). `text`: its text tracks, in the same commit."""
    try:
        video_id = store.add_video(video, spans, mats, text)
    except StoreError as e:
        # another writer committed the same content first
        dup = store.find_duplicate(video.content_hash)
        if dup is not None:
            return IngestResult(video.path, "duplicate", dup.id, f"same content as video {dup.id}")
        return IngestResult(str(item.path), "failed", reason=str(e))
    except ValueError as e:  # matrices that do not fit (shape, NaN)
        return IngestResult(str(item.path), "failed", reason=str(e))
    seconds = earlier + time.perf_counter() - started
    tracks = text.reports if text is not None else []
    return IngestResult(str(item.path), "done", video_id, clips=len(spans), seconds=seconds, tracks=tracks)
