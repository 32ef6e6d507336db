"""Cost of `explain: true`: plain two-stage search vs search + explanations of the returned moments.

A store of random unit-norm clip sets (the demo model's shapes) so the bench needs no video
decoding; the query side is the real demo model (text tower). Prints a table; ratios are
against plain search measured in the same run.

    python bench/bench_explain.py [--clips 20000] [--repeats 20]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from indexer.search.explain import explain_clip
from indexer.search.searcher import Searcher
from indexer.settings import DEMO_CHECKPOINT
from indexer.store import ClipSpan, NewVideo, Store, store_identity
from model import create_model

CLIPS_PER_VIDEO = 10


def build_store(root: Path, model: object, clips: int, n_v: int, dim: int) -> Store:
    store = Store.open(root, store_identity(model), create=True)
    rng = np.random.default_rng(0)
    batch = []
    for v in range(clips // CLIPS_PER_VIDEO):
        mats = rng.standard_normal((CLIPS_PER_VIDEO, n_v, dim)).astype(np.float32)
        mats /= np.linalg.norm(mats, axis=-1, keepdims=True)
        video = NewVideo(f"/bench/{v}.mp4", f"v{v}", f"hash{v}", 50.0, 25.0, 96, 96, "h264", 1000)
        spans = [ClipSpan(5.0 * i, 5.0 * i + 10.0) for i in range(CLIPS_PER_VIDEO)]
        batch.append((video, spans, mats.astype(np.float16)))
    store.add_videos(batch)
    store.flush()
    return store


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clips", type=int, default=20000)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--top-k", type=int, default=10)
    args = ap.parse_args()
    torch.set_num_threads(1)
    model = create_model(None, checkpoint=DEMO_CHECKPOINT, text_only=True)
    frames = model.config.frames
    queries = ["a red circle moving left", "a blue square moving up on a gray background"]
    with tempfile.TemporaryDirectory() as tmp:
        store = build_store(Path(tmp) / "s", model, args.clips, model.num_video_vectors, model.dim)
        searcher = Searcher(store, model)
        plain, explain = [], []
        for r in range(args.repeats):
            text = searcher.encode(queries[r % 2])
            t0 = time.perf_counter()
            res = searcher.search(text, top_k=args.top_k)
            t1 = time.perf_counter()
            rows = text.vectors[0][text.mask[0]]
            mats = store.matrices(np.array([m.clip_id for m in res.moments], dtype=np.int64))
            for i, m in enumerate(res.moments):
                explain_clip(rows, mats[i], m.start, m.end, frames, store.tau)
            t2 = time.perf_counter()
            plain.append(t1 - t0)
            explain.append(t2 - t1)
        store.close()
    p, e = 1000 * float(np.median(plain)), 1000 * float(np.median(explain))
    print(f"store: {args.clips} clips x {model.num_video_vectors} vectors; top_k {args.top_k}; 1 thread")
    print("| search (median ms) | + explain top_k (median ms) | explain / search |")
    print("|---:|---:|---:|")
    print(f"| {p:.2f} | {e:.2f} | {e / p:.2f} |")


if __name__ == "__main__":
    main()
