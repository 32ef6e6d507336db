"""A queue fed one file at a time (the service's ingestion worker): the next file decodes while the
current one encodes, results come in queue order, a bad file fails alone, a copy is a duplicate."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

from indexer.ingest.pipeline import IngestItem, Ingestor, Prefetcher
from indexer.store import Store, store_identity
from model import create_model
from tests.support import colour_video


def test_next_file_decodes_while_the_current_one_encodes(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = create_model("t2v-tiny")
    red = colour_video(tmp_path / "red.mp4", "red", 7, speed=7)
    bad = tmp_path / "notes.mp4"
    bad.write_text("not a video\n" * 20)
    green = colour_video(tmp_path / "green.mp4", "green", 4)
    copy = shutil.copy(green, tmp_path / "green-copy.mp4")  # decoded ahead before green is committed
    blue = colour_video(tmp_path / "blue.mp4", "blue", 3)
    items = [IngestItem(Path(p)) for p in (red, bad, green, copy, blue)]

    store = Store.open(tmp_path / "idx", store_identity(model), create=True)
    pre = Prefetcher(Ingestor(store, model, window=4, stride=2, batch_size=2))
    ahead_at_tower: list[IngestItem | None] = []  # what was decoding ahead at each image-tower call
    model.backbone.clip.visual.register_forward_hook(lambda *_: ahead_at_tower.append(pre.ahead))
    results, ahead_per_item = [], []
    for i, item in enumerate(items):
        start = len(ahead_at_tower)
        results.append(pre.ingest(item, upcoming=items[i + 1] if i + 1 < len(items) else None))
        ahead_per_item.append(set(ahead_at_tower[start:]))
    pre.close()

    assert [r.status for r in results] == ["done", "failed", "done", "duplicate", "done"], results
    assert results[0].clips == 3 and results[2].clips == 1
    assert results[3].video_id == results[2].video_id  # the copy: found when its turn came
    ids = [r.video_id for r in results if r.status == "done"]
    assert ids == sorted(ids)  # committed in queue order
    # while red encoded the bad file was being prepared, while green encoded its copy, while blue
    # encoded nothing; the failed and the duplicate file ran no tower
    assert ahead_per_item == [{items[1]}, set(), {items[3]}, set(), {None}]
    assert store.verify().ok
    store.close()
