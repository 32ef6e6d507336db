"""Ingestion encodes each distinct sampled frame once; stored matrices are the per-clip path's bytes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from indexer.ingest.pipeline import Ingestor
from indexer.store import Store, store_identity
from model import create_model
from tests.support import colour_video


@pytest.mark.slow  # two ingestions with the tiny model (~4 s)
def test_shared_frames_store_the_same_bytes_with_fewer_tower_images(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = create_model("t2v-tiny")
    videos = [
        colour_video(tmp_path / "a.mp4", "red", 13, speed=7),
        colour_video(tmp_path / "b.mp4", "blue", 9),
    ]
    images: list[int] = []  # images per image-tower call
    hook = model.backbone.clip.visual.register_forward_hook(lambda _m, args, _o: images.append(len(args[0])))
    stored: dict[bool, list[np.ndarray]] = {}
    tower: dict[bool, int] = {}
    for share in (False, True):
        images.clear()
        store = Store.open(tmp_path / f"idx-{share}", store_identity(model), create=True)
        # 3 clips per batch: batches split a video and mix the two videos
        ing = Ingestor(store, model, window=6, stride=3, batch_size=3, share_frames=share)
        results = ing.ingest_many(videos)
        assert [r.status for r in results] == ["done", "done"] and [r.clips for r in results] == [4, 2]
        ids = store.live_clip_ids(None)
        stored[share] = [store.matrices(ids)]
        tower[share] = sum(images)
        assert store.verify().ok
        store.close()
    hook.remove()
    assert stored[True][0].shape == (6, model.num_video_vectors, model.dim)
    assert stored[True][0].tobytes() == stored[False][0].tobytes()
    frames = model.config.frames
    assert tower[False] == 6 * frames  # every clip's frames
    # distinct sample times: a 26 of 48, b 18 of 24 (window 6 s, stride 3 s, 12 frames per clip)
    assert tower[True] < tower[False] and tower[True] <= 26 + 18 + 15  # + padding of a small call
