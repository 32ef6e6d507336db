"""Encoding sampled frames once: the image tower per distinct frame, then the video sets per clip.

Overlapping windows (10 s window, 5 s stride) share most of their sample times, so encoding every
clip's T frames runs the image tower about twice per distinct frame. Here the tower runs once per
distinct frame of a video (`FrameFeatures`), and each clip's set is built from the cached frame
features (`sets_from_features`: temporal branch, memory MLP, ADT decoder, "plus").

Identical bytes: a CPU GEMM's result for one row can depend on how many rows it is computed with
(measured: fewer than 12 images per tower call change the last bits; 12 and more did not). Tower
calls therefore get at least `MIN_TOWER_BATCH` images (padded with repeats), as the clip path
always had (T >= 12 frames per call), and clip batches stay the same, so stored matrices are the
bytes the per-clip path (`commit.encode_clips`) writes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from indexer.media.video import to_model_input
from indexer.settings import IndexerSettings
from model import T2VParser

log = logging.getLogger("t2v.ingest")

MIN_TOWER_BATCH = 16  # images per image-tower call (padding): see the module docstring

# Runs the image tower on a CPU instead of torch: (N, 3, S, S) preprocessed -> (N, D) float32
# (`model.onnx_frames.OnnxFrameEncoder`, chosen by the `frame_encoder` setting).
FrameTower = Callable[[Tensor], Tensor]


def frame_tower(model: T2VParser, settings: IndexerSettings, threads: int) -> FrameTower | None:
    """The image tower `settings.frame_encoder` chooses for `model`: None for torch (the default,
    and always on an accelerator); for 'onnx-fp32' on a CPU the ONNX Runtime graph (exported into
    `settings.frame_graphs` once per model), or None with the reason logged when it cannot be
    exported or loaded: ingestion then runs on torch (the same vectors up to 4e-6, slower)."""
    if settings.frame_encoder == "torch":
        return None
    device = next(model.parameters()).device
    if device.type != "cpu":
        log.info("frame_encoder %s runs on the CPU only: using torch on %s", settings.frame_encoder, device)
        return None
    from model.onnx_frames import OnnxFrameEncoder

    try:
        tower = OnnxFrameEncoder.for_model(model, settings.frame_graphs, threads=threads)
        log.info("frame encoder: %s (%d threads)", settings.frame_encoder, threads)
        return tower
    except Exception as e:  # noqa: BLE001 - any export/runtime failure: torch still encodes
        log.warning(
            "frame_encoder %s unavailable (%s): frames are encoded with torch", settings.frame_encoder, e
        )
        return None


def encode_frames(model: T2VParser, frames: np.ndarray, tower: FrameTower | None = None) -> Tensor:
    """(N, S, S, 3) uint8 frames -> (N, D) float32 image-tower vectors (through autocast on CUDA;
    through `tower` on a CPU when given)."""
    n = len(frames)
    if n < MIN_TOWER_BATCH:
        pad = np.repeat(frames[-1:], MIN_TOWER_BATCH - n, axis=0)
        frames = np.concatenate([frames, pad])  # (MIN_TOWER_BATCH, S, S, 3)
    pre = model.backbone.preprocess
    device = next(model.parameters()).device
    with torch.no_grad():
        if device.type == "cuda":
            # ship uint8 (4x fewer bytes), normalise on the GPU, run the tower in fp16
            u8 = torch.from_numpy(frames).to(device, non_blocking=True)
            x = u8.movedim(-1, -3).float().div_(255.0)  # (N, 3, S, S)
            mean = torch.tensor(pre.mean, device=device).view(3, 1, 1)
            std = torch.tensor(pre.std, device=device).view(3, 1, 1)
            with torch.autocast("cuda", dtype=torch.float16):
                feats = model.backbone.encode_frames(((x - mean) / std)[None])[0]
        else:
            x = to_model_input(frames, pre)  # (N, 3, S, S)
            feats = tower(x) if tower is not None else model.backbone.encode_frames(x[None])[0]  # (N, D)
    return feats[:n].float()


def sets_from_features(model: T2VParser, feats: Tensor) -> np.ndarray:
    """(B, T, D) frame vectors of B clips -> (B, T+K, D) float16 video sets."""
    with torch.no_grad():
        if feats.device.type == "cuda":
            with torch.autocast("cuda", dtype=torch.float16):
                vecs = model.video_sets_from_features(feats).vectors
        else:
            vecs = model.video_sets_from_features(feats).vectors  # (B, T+K, D)
    return vecs.float().cpu().numpy().astype(np.float16)


class FrameFeatures:
    """One video's distinct frames and the tower vectors of those encoded so far."""

    def __init__(self, frames: np.ndarray) -> None:
        self.frames = frames  # (U, S, S, 3) uint8
        self.feats: Tensor | None = None  # (U, D) float32, rows valid where `done`
        self.done = np.zeros(len(frames), dtype=bool)
        self.encoded = 0  # tower images run for this video (without padding)

    def missing(self, idx: np.ndarray) -> np.ndarray:
        """The distinct frame indices among `idx` not encoded yet, sorted."""
        u = np.unique(idx)
        return u[~self.done[u]]

    def put(self, idx: np.ndarray, feats: Tensor) -> None:
        if self.feats is None:
            self.feats = feats.new_zeros((len(self.frames), feats.shape[1]))  # (U, D)
        self.feats[torch.from_numpy(idx).to(feats.device)] = feats
        self.done[idx] = True
        self.encoded += len(idx)

    def gather(self, idx: np.ndarray) -> Tensor:
        """(T,) frame indices of one clip -> (T, D)."""
        assert self.feats is not None and self.done[idx].all()
        return self.feats[torch.from_numpy(idx).to(self.feats.device)]


def encode_clip_batch(
    model: T2VParser, batch: list[tuple[FrameFeatures, np.ndarray]], tower: FrameTower | None = None
) -> np.ndarray:
    """Clips as (their video's frames, their (T,) frame indices) -> (B, T+K, D) float16 video sets.

    One tower call encodes the frames no earlier batch encoded (across the batch's videos); the
    clips' sets are built from the cached vectors.
    """
    todo: dict[int, tuple[FrameFeatures, np.ndarray]] = {}
    for ff, idx in batch:
        prev = todo.get(id(ff), (ff, np.zeros(0, dtype=np.int64)))[1]
        todo[id(ff)] = (ff, np.union1d(prev, ff.missing(idx)))
    parts = [(ff, idx) for ff, idx in todo.values() if len(idx)]
    if parts:
        feats = encode_frames(model, np.concatenate([ff.frames[idx] for ff, idx in parts]), tower)  # (n, D)
        start = 0
        for ff, idx in parts:
            ff.put(idx, feats[start : start + len(idx)])
            start += len(idx)
    clips = torch.stack([ff.gather(idx) for ff, idx in batch])  # (B, T, D)
    return sets_from_features(model, clips)
