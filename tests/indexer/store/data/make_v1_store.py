"""Writes the store that test_format_compat.py opens, with the store code of commit 1e5c9f1 (the
single-file facade, before the store was split into parts), plus what that code read back from it.

    mkdir /tmp/oldtree && git archive 1e5c9f1 | tar -x -C /tmp/oldtree
    PYTHONPATH=/tmp/oldtree python tests/indexer/store/data/make_v1_store.py tests/indexer/store/data

The store: six videos of D=16, 6 vectors per clip; one removed and compacted away (generation 1),
then two added and one more removed (a tombstone the new code must honour).
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np

from indexer.store import ClipSpan, NewVideo, Store

D, NV = 16, 6


def identity() -> dict[str, Any]:
    return {
        "config": {"backbone": "x", "tau": 100.0, "frames": 4, "num_tokens": 2, "name": "t"},
        "checkpoint_sha256": "abc",
        "dim": D,
        "frames": 4,
        "num_tokens": 2,
        "vectors_per_clip": NV,
        "weights": "checkpoint:abc",
    }


def unit(rng: np.random.Generator, *shape: int) -> np.ndarray:
    x = rng.normal(size=(*shape, D))
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def main(out: Path) -> None:
    root = out / "v1-store"
    shutil.rmtree(root, ignore_errors=True)
    rng = np.random.default_rng(2024)
    store = Store.open(root, identity(), create=True)

    def add(i: int, clips: int) -> int:
        video = NewVideo(f"/v/{i}.mp4", f"video {i}", f"hash{i}", 10.0, 25.0, 64, 48, "h264", 1000, 1.5 * i)
        spans = [ClipSpan(5.0 * c, 5.0 * c + 5) for c in range(clips)]
        return store.add_video(video, spans, unit(rng, clips, NV))

    ids = [add(i, 2 + i % 2) for i in range(4)]
    store.remove_video(ids[1])
    store.compact()
    ids += [add(i, 2) for i in (4, 5)]
    store.remove_video(ids[4])
    store.flush()

    live = store.live_clip_ids()
    queries = unit(rng, 4)
    scores, cand = store.candidates(queries, 8)
    np.savez(
        out / "v1-expected.npz",
        live_clip_ids=live,
        matrices=store.matrices(live),
        queries=queries,
        candidate_scores=scores,
        candidate_ids=cand,
    )
    expected = {
        "videos": [v.to_dict() for v in store.list_videos(limit=100)],
        "clips": {
            str(v.id): [c.__dict__ for c in store.clips_of(v.id)] for v in store.list_videos(limit=100)
        },
        "stats": {k: v for k, v in store.stats().to_dict().items() if k not in ("path", "disk_bytes")},
        "removed_video_ids": [ids[1], ids[4]],
    }
    (out / "v1-expected.json").write_text(json.dumps(expected, indent=1, sort_keys=True) + "\n")
    store.close()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
