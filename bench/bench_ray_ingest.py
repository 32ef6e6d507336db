"""Ray ingestion (indexer.ingest.distributed) against the single-process Ingestor on the same corpus.

    python bench/bench_ray_ingest.py --videos 6 --seconds 20 --config t2v-tiny --cpus 2

Generates the corpus with ffmpeg (testsrc), saves a random-weight checkpoint of the config, then
indexes the corpus into two fresh stores in the same run: the single-process Ingestor (baseline)
and RayIngestor on a local Ray instance. Prints a table (wall s, clips/s, ratio to the baseline)
and checks that both stores hold the same matrices.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np


def make_corpus(root: Path, videos: int, seconds: float) -> list[Path]:
    from indexer.corpora.lavfi import render_lavfi

    src = "testsrc=s=320x240:d={seconds}:r=25,hue=h={hue}"
    return [render_lavfi(root / f"v{i}.mp4", src.format(seconds=seconds, hue=i * 40)) for i in range(videos)]


def matrices_by_path(path: Path) -> dict[str, bytes]:
    from indexer.store import Store

    with Store.open(path) as store:
        out = {}
        for v in store.list_videos(0, 10_000):
            ids = np.array([c.id for c in store.clips_of(v.id)], dtype=np.int64)
            out[v.path] = store.matrices(ids).tobytes()
        return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--videos", type=int, default=6)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--config", default="t2v-tiny")
    ap.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray instance")
    ap.add_argument("--window", type=float, default=10.0)
    ap.add_argument("--stride", type=float, default=5.0)
    ap.add_argument("--batch-size", type=int, default=16)
    args = ap.parse_args()

    import ray
    import torch

    from indexer.ingest.distributed import RayIngestor, RayOptions
    from indexer.ingest.pipeline import Ingestor
    from indexer.store import Store, store_identity
    from model import create_model, save_checkpoint

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        videos = make_corpus(root / "videos", args.videos, args.seconds)
        torch.manual_seed(0)
        m = create_model(args.config)
        ckpt = root / "model.pt"
        save_checkpoint(ckpt, m.config, m.state_dict())
        model = create_model(None, checkpoint=ckpt)
        ident = store_identity(model)
        ident["checkpoint_path"] = str(ckpt)
        rows = []

        t0 = time.perf_counter()
        with Store.open(root / "single", ident, create=True) as store:
            res = Ingestor(store, model, args.window, args.stride, args.batch_size).ingest_many(videos)
        single = time.perf_counter() - t0
        clips = sum(r.clips for r in res)
        rows.append(("single-process Ingestor (baseline)", single, clips))

        t0 = time.perf_counter()
        ray.init(num_cpus=args.cpus, include_dashboard=False, logging_level="WARNING")
        start = time.perf_counter() - t0
        for label in ("RayIngestor, first run (actor start + model load)", "RayIngestor, second run"):
            out = root / ("ray1" if "first" in label else "ray2")
            t0 = time.perf_counter()
            with Store.open(out, ident, create=True) as store:
                opts = RayOptions(videos_per_task=2)
                res = RayIngestor(
                    store, model, args.window, args.stride, args.batch_size, options=opts
                ).ingest_many(videos)
            rows.append((label, time.perf_counter() - t0, sum(r.clips for r in res)))
        ray.shutdown()
        same = matrices_by_path(root / "single") == matrices_by_path(root / "ray2")

    print(
        f"\n{args.videos} videos x {args.seconds:.0f} s 320x240, {args.config}, window {args.window} s "
        f"stride {args.stride} s, Ray local instance with {args.cpus} CPUs (started in {start:.1f} s)\n"
    )
    print("| path | clips | wall s | clips/s | wall / baseline |")
    print("|---|---|---|---|---|")
    for label, secs, n in rows:
        print(f"| {label} | {n} | {secs:.1f} | {n / secs:.2f} | {secs / single:.2f} |")
    print(f"\nsame matrices in both stores: {same}")


if __name__ == "__main__":
    main()
