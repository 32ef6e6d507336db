"""PNG explainers: a query's cosine matrix against a video, and what each decomposition token sees.

matplotlib with the Agg backend (no display); figures have a fixed size in pixels (FIG_W x FIG_H
at DPI), so callers and tests know what they get.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from indexer.media.video import probe, sample_frames, segment_times, to_model_input
from model import T2VParser
from model.fileio import atomic_path

DPI = 100
FIG_W, FIG_H = 12.0, 8.0  # inches: 1200 x 800 pixels


class FigureError(Exception):
    """The model cannot produce this figure (for instance: no decomposition tokens)."""


@dataclass(frozen=True)
class VideoFrames:
    frames: np.ndarray  # (T, S, S, 3) uint8, what the model saw
    times: list[float]  # (T,) seconds
    inputs: torch.Tensor  # (1, T, 3, S, S) preprocessed


def load_frames(model: T2VParser, video: Path) -> VideoFrames:
    """The T frames of the whole video as one clip (middle of T equal segments)."""
    info = probe(video)
    times = segment_times(0.0, info.duration, model.config.frames)
    sampled = sample_frames(video, times, model.backbone.preprocess)
    inputs = to_model_input(sampled.frames, model.backbone.preprocess).unsqueeze(0)
    return VideoFrames(sampled.frames, list(sampled.times), inputs)


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # files only; never a display
    import matplotlib.pyplot as plt

    return plt


def _frame_row(fig: Any, grid: Any, frames: VideoFrames) -> None:
    n = len(frames.times)
    sub = grid.subgridspec(1, n, wspace=0.05)
    for i in range(n):
        ax = fig.add_subplot(sub[0, i])
        ax.imshow(frames.frames[i])
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"{frames.times[i]:.1f}s", fontsize=7)


def _token_labels(model: T2VParser, query: str, n_valid: int, views: int) -> list[str]:
    ids = model.tokenize([query])[0].tolist()
    tok = model.backbone.tokenizer
    words = []
    for i in ids[: n_valid - views]:
        text = tok.decode([i]).strip() if hasattr(tok, "decode") else str(i)
        words.append(text.replace("<start_of_text>", "<sot>").replace("<end_of_text>", "<eot>") or str(i))
    return words + [f"view {k}" for k in range(views)]


def explain_png(model: T2VParser, query: str, video: Path, out: Path) -> dict[str, Any]:
    """Frames along the top, the cosine heat map (text vectors x video vectors) below."""
    from model.scoring import score_matrix_components

    frames = load_frames(model, video)
    with torch.no_grad():
        vsets = model.encode_videos(frames.inputs.to(next(model.parameters()).device))
        tsets = model.encode_texts([query])
    rows = tsets.vectors[0][tsets.mask[0]].float().cpu()  # (n_t, D)
    cols = vsets.vectors[0].float().cpu()  # (n_v, D)
    parts = score_matrix_components(rows, cols, float(model.config.tau))
    sim = parts["sim"].numpy()  # (n_t, n_v)
    t = len(frames.times)
    k_text = tsets.views.shape[1] if tsets.views is not None else 0
    ylabels = _token_labels(model, query, rows.shape[0], k_text)
    xlabels = [f"{s:.1f}s" for s in frames.times] + [f"view {k}" for k in range(cols.shape[0] - t)]

    plt = _pyplot()
    fig = plt.figure(figsize=(FIG_W, FIG_H), dpi=DPI)
    grid = fig.add_gridspec(2, 1, height_ratios=[1, 4], hspace=0.25)
    _frame_row(fig, grid[0], frames)
    ax = fig.add_subplot(grid[1])
    im = ax.imshow(sim, aspect="auto", cmap="magma")
    ax.set_xticks(range(len(xlabels)), xlabels, rotation=90, fontsize=7)
    ax.set_yticks(range(len(ylabels)), ylabels, fontsize=7)
    ax.set_xlabel("video vectors (frames, then views)")
    ax.set_ylabel("text vectors (tokens, then views)")
    fig.colorbar(im, ax=ax, label="cosine")
    score = float(parts["score"])
    fig.suptitle(f"{query!r} vs {video.name}: score {score:.4f}", fontsize=10)
    _save(fig, out)
    plt.close(fig)
    return {"score": score, "shape": list(sim.shape), "frames": t}


def inspect_tokens_png(model: T2VParser, video: Path, out: Path) -> dict[str, Any]:
    """K rows x T frames: the video decoder's cross-attention of each token, averaged over layers."""
    decoder, tokens, frame_mlp = model.video_decoder, model.query_tokens, model.frame_mlp
    if decoder is None or tokens is None or frame_mlp is None:
        raise FigureError(
            f"model {model.config.name or model.config.backbone} has no decomposition tokens "
            "(zero-shot or meanP): use a trained T2VParser checkpoint"
        )
    frames = load_frames(model, video)
    with torch.no_grad():
        feats = model.backbone.encode_frames(frames.inputs.to(tokens.device)).float()  # (1, T, D)
        memory = frame_mlp(model.frame_vectors(feats))  # (1, T, D): through the temporal branch if any
        maps = decoder.attention_maps(tokens, memory)  # (layers, 1, K, T)
    attn = maps[:, 0].mean(0).cpu().numpy()  # (K, T)

    plt = _pyplot()
    fig = plt.figure(figsize=(FIG_W, FIG_H), dpi=DPI)
    grid = fig.add_gridspec(2, 1, height_ratios=[1, 3], hspace=0.25)
    _frame_row(fig, grid[0], frames)
    ax = fig.add_subplot(grid[1])
    im = ax.imshow(attn, aspect="auto", cmap="viridis")  # auto range: the weights sit near 1/T
    ax.set_xticks(range(attn.shape[1]), [f"{s:.1f}s" for s in frames.times], rotation=90, fontsize=7)
    ax.set_yticks(range(attn.shape[0]), [f"token {k}" for k in range(attn.shape[0])], fontsize=8)
    ax.set_xlabel("frame")
    fig.colorbar(im, ax=ax, label="cross-attention (mean over layers)")
    fig.suptitle(f"what each decomposition token attends to in {video.name}", fontsize=10)
    _save(fig, out)
    plt.close(fig)
    return {"tokens": int(attn.shape[0]), "frames": int(attn.shape[1]), "attention": attn.tolist()}


def _save(fig: Any, out: Path) -> None:
    """Atomic: a reader never sees half a PNG."""
    with atomic_path(out, mode=0o644) as tmp:  # 0o644: a figure is for reading, as before
        fig.savefig(tmp, dpi=DPI, format="png")
