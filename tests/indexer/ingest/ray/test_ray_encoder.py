"""The Ray encoder actor encodes each distinct sampled frame once, as the single-process indexer does.

`ClipEncoder` is a plain class (Ray only runs it): called here in-process on the rows the decode
task makes, with a forward hook counting the image tower's images.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from indexer.ingest.prepare import ClipPlan
from indexer.ingest.ray_stages import ClipEncoder, decode_row, model_recipe
from indexer.store import Store

from .conftest import STRIDE, WINDOW


def object_array(values: list[Any]) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


@pytest.mark.slow  # renders the corpus and builds the reference store (~6 s)
def test_encoder_actor_shares_frames_across_overlapping_windows(
    corpus: dict[str, Any], model: Any, tiny_ckpt: Path, reference: Path, tmp_path: Path
) -> None:
    paths = [corpus["good"] / "c_pattern.mp4", corpus["good"] / "b_blue.mp4"]
    with Store.open(reference) as store:
        plan = ClipPlan.for_store(store, model, WINDOW, STRIDE)
        want = {}
        for v in store.list_videos(0, 100):
            ids = np.array([c.id for c in store.clips_of(v.id)], dtype=np.int64)
            want[Path(v.path).name] = store.matrices(ids)  # (C, n_v, D) float16
    rows = [decode_row({"idx": i, "path": str(p), "title": ""}, plan, {}) for i, p in enumerate(paths)]
    batch = {
        "idx": np.array([r["idx"] for r in rows]),
        "meta": object_array([r["meta"] for r in rows]),
        "frames": object_array([r["frames"] for r in rows]),
        "gather": object_array([r["gather"] for r in rows]),
    }
    encoder = ClipEncoder(model_recipe(model, tiny_ckpt), "cpu", batch_size=8, shard_dir=str(tmp_path))
    images: list[int] = []  # images per image-tower call
    encoder.model.backbone.clip.visual.register_forward_hook(lambda _m, a, _o: images.append(len(a[0])))
    out = encoder(batch)

    distinct = sum(len(r["frames"]) for r in rows)
    clip_frames = sum(r["gather"].size for r in rows)
    assert [len(json.loads(m)["spans"]) for m in out["meta"]] == [5, 1]
    # 5 overlapping windows of the 12 s video + 1 clip: 72 clip frames, 48 distinct sample times
    assert distinct < clip_frames
    assert sum(images) == distinct  # one tower call per batch of 8 clips, >= 16 images: no padding
    shard = np.load(out["shard"][0])  # (6, n_v, D): both videos' clips in batch order
    first = out["first"]
    assert shard[first[0] : first[0] + 5].tobytes() == want["c_pattern.mp4"].tobytes()
    assert shard[first[1] : first[1] + 1].tobytes() == want["b_blue.mp4"].tobytes()
