"""A minimal end-to-end ranking: synthetic colour videos -> video sets; texts -> query sets -> scores."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import torch

from indexer.corpora.lavfi import render_colour_box
from indexer.media.video import probe, sample_frames, segment_times, to_model_input
from model import create_model

_SCENES = {"red": "red", "green": "green", "blue": "blue"}


def render_colour_video(path: Path, colour: str, seconds: float = 2.0) -> Path:
    """A small mp4 of a moving white box over a solid colour (lavfi, no input files)."""
    return render_colour_box(path, colour, seconds)


def run_rank_demo(config: str, checkpoint: Path | None, workdir: Path) -> Iterator[str]:
    model = create_model(None if checkpoint else config, checkpoint=checkpoint)
    pre = model.backbone.preprocess
    t = model.config.frames
    names, clips = [], []
    for colour in _SCENES:
        path = render_colour_video(workdir / f"{colour}.mp4", colour)
        info = probe(path)
        frames = sample_frames(path, segment_times(0.0, info.duration, t), pre).frames
        clips.append(to_model_input(frames, pre))  # (T, 3, S, S)
        names.append(path.name)
    texts = [f"a white square moving over a {c} background" for c in _SCENES]
    with torch.no_grad():
        videos = model.encode_videos(torch.stack(clips)).vectors  # (N, T+K, D)
        queries = model.encode_texts(texts)
        scores = model.score(queries, videos)  # (Q, N)
    yield (
        f"model: {model.config.name or model.config.backbone} ({model.config.mode}), "
        f"{model.num_video_vectors} vectors per clip, D={model.dim}"
    )
    for qi, text in enumerate(texts):
        ranked = torch.argsort(scores[qi], descending=True).tolist()
        ranking = ", ".join(f"{names[j]} {scores[qi, j]:.4f}" for j in ranked)
        yield f"{text!r}: {ranking}"
