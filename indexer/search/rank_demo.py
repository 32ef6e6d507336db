"""A minimal end-to-end ranking with no store: render three small synthetic videos (the demo
library's kind of content), encode them into video sets, rank a few captions against them.

Each caption is written for one of the videos (a whole-video caption with "then", or one scene
of a video), so the output shows at a glance whether the model finds the right one.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import torch

from indexer.corpora.synthetic import Scene, full_caption, render_video
from indexer.media.video import probe, sample_frames, segment_times, to_model_input
from model import create_model

# (file name, scenes): distinct (colour, shape, motion) triples, 2 s per scene
_VIDEOS: tuple[tuple[str, tuple[Scene, ...]], ...] = (
    (
        "red-then-blue.mp4",
        (
            Scene("red", "circle", "left", "black", 2.0, 0.5),
            Scene("blue", "square", "up", "black", 2.0, 0.5),
        ),
    ),
    (
        "green-then-yellow.mp4",
        (
            Scene("green", "triangle", "right", "gray", 2.0, 0.4),
            Scene("yellow", "circle", "down", "gray", 2.0, 0.6),
        ),
    ),
    (
        "purple-then-red.mp4",
        (
            Scene("purple", "square", "down", "white", 2.0, 0.5),
            Scene("red", "triangle", "right", "white", 2.0, 0.5),
        ),
    ),
)


def demo_queries() -> list[tuple[str, str]]:
    """(caption, the video it describes): each video's whole caption, then one scene of each."""
    whole = [(full_caption(scenes), name) for name, scenes in _VIDEOS]
    parts = [(scenes[i % 2].phrase(), name) for i, (name, scenes) in enumerate(_VIDEOS)]
    return whole + parts


def run_rank_demo(config: str, checkpoint: Path | None, workdir: Path) -> Iterator[str]:
    model = create_model(None if checkpoint else config, checkpoint=checkpoint)
    pre = model.backbone.preprocess
    t = model.config.frames
    names, clips = [], []
    for name, scenes in _VIDEOS:
        path = render_video(workdir / name, scenes)
        info = probe(path)
        frames = sample_frames(path, segment_times(0.0, info.duration, t), pre).frames
        clips.append(to_model_input(frames, pre))  # (T, 3, S, S)
        names.append(name)
    queries = demo_queries()
    with torch.no_grad():
        videos = model.encode_videos(torch.stack(clips)).vectors  # (N, T+K, D)
        text = model.encode_texts([q for q, _ in queries])
        scores = model.score(text, videos)  # (Q, N)
    source = f"checkpoint {checkpoint}" if checkpoint else f"config {config} ({model.config.mode})"
    name = model.config.name or model.config.backbone
    yield f"model: {name} from {source}, {model.num_video_vectors} vectors per clip, D={model.dim}"
    right = 0
    for qi, (text_q, want) in enumerate(queries):
        ranked = torch.argsort(scores[qi], descending=True).tolist()
        ok = names[ranked[0]] == want
        right += ok
        ranking = ", ".join(f"{names[j]} {scores[qi, j]:.4f}" for j in ranked)
        yield f"[{'right' if ok else 'WRONG'}] {text_q!r}: {ranking}"
    yield f"{right} of {len(queries)} queries rank their video first"
