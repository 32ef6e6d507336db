"""Vector backends in the same run: the store's FAISS index against Qdrant (the real engine,
in-process through qdrant-edge-py) on one store.

    python bench/bench_backends.py [--clips 100000] [--queries 50] [--rows 8] [--out results.json]

One store of clustered random clips in ViT-B/32's shapes (D=512, T+K=20 rows, float16; the
generator of bench_search.py), searched end to end in-process (after encoding, one thread) first
with the FAISS backend (the store's own choice by size), then exported to Qdrant (timed: upserts,
then the flush that builds the HNSW graph) and searched again. Per backend: p50/p95, stage-1 and
rerank p50, clips reranked, recall@10 against exhaustive partial-alignment scoring of every clip,
and how many queries' top-10 equal FAISS's. Targets (issue 21): Qdrant recall@10 >= 0.99 and
p50 within 3x of FAISS's, measured in the same run.
"""

from __future__ import annotations

import argparse
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
    store: Store, queries: list[TextSets], top: list[set[int]]
) -> tuple[dict[str, float], list[list[int]]]:
    """Every query timed (after one warm-up); the top-10 clip ids of each, best first."""
    searcher = Searcher(store)
    searcher.search(queries[0], top_k=10)
    tot, cand, rr, n_c, found, tops = [], [], [], [], 0, []
    for q, want in zip(queries, top, strict=True):
        r = searcher.search(q, top_k=10)
        tot.append(r.timings_ms["total"])
        cand.append(r.timings_ms["candidates"])
        rr.append(r.timings_ms["rerank"])
        n_c.append(r.candidates)
        got = [m.clip_id for m in r.moments]
        found += len(want & set(got))
        tops.append(got)
    stats = {
        "p50_ms": pct(tot, 50),
        "p95_ms": pct(tot, 95),
        "cand_ms": pct(cand, 50),
        "rerank_ms": pct(rr, 50),
        "candidates": float(np.mean(n_c)),
        "recall10": found / (10 * len(queries)),
    }
    return stats, tops


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=50)
    ap.add_argument("--rows", type=int, default=8, help="vectors per query set")
    ap.add_argument("--topics", type=int, default=256)
    ap.add_argument("--rescored", type=int, default=BackendConfig.rescored, help="clips kept after MaxSim")
    ap.add_argument("--prefetch", type=int, default=BackendConfig.prefetch, help="pooled-query prefetch")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(1)
    corpus = Corpus("clustered", 512, 20, args.topics)
    result: dict[str, object] = {
        "clips": args.clips,
        "queries": args.queries,
        "rows": args.rows,
        "prefetch": args.prefetch,
        "rescored": args.rescored,
    }
    with tempfile.TemporaryDirectory(dir=os.environ.get("T2V_BENCH_TMP")) as tmp:
        root = Path(tmp) / "store"
        store, build_s = build_store(root, corpus, args.clips, None)
        queries = make_queries(store, corpus, args.queries, args.rows)
        top = exact_top10(store, queries)
        faiss_stats, faiss_tops = measure(store, queries, top)
        faiss_stats["build_s"] = build_s
        faiss_stats["index"] = store.index_spec.type  # type: ignore[assignment]
        store.close()

        t0 = time.perf_counter()
        config = BackendConfig("qdrant", prefetch=args.prefetch, rescored=args.rescored)
        qstore = Store.open(root, backend=config)  # opening exports every clip
        t1 = time.perf_counter()
        qstore.flush()  # durable, and the pooled vectors' HNSW graph built
        t2 = time.perf_counter()
        q_stats, q_tops = measure(qstore, queries, top)
        q_stats.update(export_s=t1 - t0, flush_s=t2 - t1)
        q_stats["same_top10_as_faiss"] = sum(a == b for a, b in zip(q_tops, faiss_tops, strict=True))
        disk = sum(p.stat().st_blocks * 512 for p in (root / "qdrant").rglob("*") if p.is_file())
        q_stats["engine_disk_mb"] = disk / 1e6
        qstore.close()
    result["faiss"] = faiss_stats
    result["qdrant"] = q_stats
    result["p50_ratio"] = q_stats["p50_ms"] / faiss_stats["p50_ms"]
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
