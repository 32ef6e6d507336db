"""Vector backends in the same run: the store's FAISS index against Qdrant (the real engine,
in-process through qdrant-edge-py) on one store.

    python bench/bench_backends.py [--clips 100000] [--queries 50] [--rows 8] [--out results.json]

One store of clustered random clips in ViT-B/32's shapes (D=512, T+K=20 rows, float16; the
generator of bench_search.py) with the FAISS index the store picks by size, exported to Qdrant
(timed: the upserts, then the flush that builds the HNSW graph), then searched end to end
in-process (after encoding, one thread) through both backends, query by query in alternation.
Per backend: p50/p95, stage-1 and rerank p50, clips reranked, recall@10 against exhaustive
partial-alignment scoring of every clip, and how many queries' top-10 equal FAISS's.
`--keep DIR` keeps (or reuses) the store, its export and the exact reference. Targets (issue 21):
Qdrant recall@10 >= 0.99 and p50 within 3x of FAISS's, measured in the same run.

    python bench/bench_backends.py --demo var/demo      # after `t2v demo --no-serve --workdir var/demo`

compares the two backends on the demo library with the demo model instead: every scene caption
of the demo manifest as a query, top-10 moments (clip ids and scores) of each backend; goal: no
difference.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.bench_search import Corpus, build_store, exact_top10, make_queries, pct  # noqa: E402
from indexer.search.searcher import Searcher  # noqa: E402
from indexer.store import Store  # noqa: E402
from indexer.store.backends import BackendConfig  # noqa: E402
from model import TextSets  # noqa: E402


def measure(
    stores: dict[str, Store], queries: list[TextSets], top: list[set[int]]
) -> dict[str, dict[str, float]]:
    """Every query on every backend, interleaved (the order alternating per query) so that the
    load of a shared machine falls on both alike; one warm-up search each."""
    searchers = {name: Searcher(store) for name, store in stores.items()}
    for searcher in searchers.values():
        searcher.search(queries[0], top_k=10)
    runs: dict[str, dict[str, list[float]]] = {n: {"tot": [], "cand": [], "rr": [], "n": []} for n in stores}
    found = dict.fromkeys(stores, 0)
    tops: dict[str, list[list[int]]] = {n: [] for n in stores}
    names = list(stores)
    for i, (q, want) in enumerate(zip(queries, top, strict=True)):
        for name in names if i % 2 == 0 else names[::-1]:
            r = searchers[name].search(q, top_k=10)
            run = runs[name]
            run["tot"].append(r.timings_ms["total"])
            run["cand"].append(r.timings_ms["candidates"])
            run["rr"].append(r.timings_ms["rerank"])
            run["n"].append(r.candidates)
            got = [m.clip_id for m in r.moments]
            found[name] += len(want & set(got))
            tops[name].append(got)
    out = {}
    for name, run in runs.items():
        out[name] = {
            "p50_ms": pct(run["tot"], 50),
            "p95_ms": pct(run["tot"], 95),
            "cand_ms": pct(run["cand"], 50),
            "rerank_ms": pct(run["rr"], 50),
            "candidates": float(np.mean(run["n"])),
            "recall10": found[name] / (10 * len(queries)),
        }
    first = tops[names[0]]
    for name in names[1:]:
        out[name]["same_top10_as_" + names[0]] = sum(a == b for a, b in zip(tops[name], first, strict=True))
    return out


def demo_differences(workdir: Path) -> dict[str, object]:
    """Every demo scene caption searched through FAISS and through Qdrant (the demo model)."""
    from indexer.settings import DEMO_CHECKPOINT
    from model import create_model

    captions = [
        scene["caption"]
        for line in (workdir / "videos" / "manifest.jsonl").read_text().splitlines()
        for scene in json.loads(line)["scenes"]
    ]
    model = create_model(None, checkpoint=DEMO_CHECKPOINT, device="cpu", text_only=True)
    root = workdir / "index"
    with Store.open(root) as faiss_store, Store.open(root, backend=BackendConfig("qdrant")) as q_store:
        differ = []
        for caption in captions:
            with torch.no_grad():
                text = model.encode_texts([caption])
            a, b = (
                [(m.clip_id, round(m.score, 5)) for m in Searcher(s).search(text, top_k=10).moments]
                for s in (faiss_store, q_store)
            )
            if a != b:
                differ.append(caption)
        clips = len(faiss_store.live_clip_ids())
    return {"demo_clips": clips, "queries": len(captions), "differences": len(differ), "differ": differ}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=50)
    ap.add_argument("--rows", type=int, default=8, help="vectors per query set")
    ap.add_argument("--topics", type=int, default=256)
    ap.add_argument("--rescored", type=int, default=BackendConfig.rescored, help="clips kept after MaxSim")
    ap.add_argument("--prefetch", type=int, default=BackendConfig.prefetch, help="pooled-query prefetch")
    ap.add_argument("--row-prefetch", type=int, default=BackendConfig.row_prefetch, help="per query row")
    ap.add_argument("--hnsw-ef", type=int, default=BackendConfig.hnsw_ef)
    ap.add_argument("--keep", type=Path, help="keep (or reuse) the store, its export and the reference here")
    ap.add_argument("--demo", type=Path, help="compare on the demo library built in this workdir instead")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.demo is not None:
        print(json.dumps(demo_differences(args.demo), indent=2))
        return
    corpus = Corpus("clustered", 512, 20, args.topics)
    result: dict[str, object] = {
        k: getattr(args, k) for k in ("clips", "queries", "rows", "prefetch", "rescored")
    }
    result["row_prefetch"], result["hnsw_ef"] = args.row_prefetch, args.hnsw_ef
    with tempfile.TemporaryDirectory(dir=os.environ.get("T2V_BENCH_TMP")) as tmp:
        work = args.keep or Path(tmp)
        root = work / "store"
        if (root / "manifest.json").is_file():
            store = Store.open(root)
            result["build_s"] = None
        else:
            store, result["build_s"] = build_store(root, corpus, args.clips, None)
        result["clips"] = len(store.live_clip_ids())
        result["faiss_index"] = store.index_spec.type
        queries = make_queries(store, corpus, args.queries, args.rows)
        ref = work / f"reference-{args.queries}x{args.rows}.json"
        if ref.is_file():
            top = [set(t) for t in json.loads(ref.read_text())]
        else:
            top = exact_top10(store, queries)
            ref.write_text(json.dumps([sorted(t) for t in top]))

        config = BackendConfig(
            "qdrant", prefetch=args.prefetch, row_prefetch=args.row_prefetch, rescored=args.rescored
        )
        config = dataclasses.replace(config, hnsw_ef=args.hnsw_ef)
        # wall and CPU seconds (every thread of this process): on a shared machine the wall time
        # is mostly waiting for a core, the CPU time is the export's own cost
        t0, c0 = time.perf_counter(), time.process_time()
        qstore = Store.open(root, backend=config)  # opening exports every clip the engine lacks
        t1, c1 = time.perf_counter(), time.process_time()
        qstore.flush()  # durable, and the pooled vectors' HNSW graph built
        result["export_s"], result["flush_s"] = t1 - t0, time.perf_counter() - t1
        result["export_cpu_s"], result["flush_cpu_s"] = c1 - c0, time.process_time() - c1
        disk = sum(p.stat().st_blocks * 512 for p in (root / "qdrant").rglob("*") if p.is_file())
        result["engine_disk_mb"] = disk / 1e6
        stats = measure({"faiss": store, "qdrant": qstore}, queries, top)
        qstore.close()
        store.close()
    result.update(stats)
    result["p50_ratio"] = stats["qdrant"]["p50_ms"] / stats["faiss"]["p50_ms"]
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
