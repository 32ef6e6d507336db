"""Issue 17: how the token-level `ivf-sq8` first stage picks the lists it scans, on a kept store of
trained embeddings. Plain FAISS probing takes each query vector's nprobe lists by q.c (its centroid
score); the store probes by q.c + w * radius (the list's largest row-to-centroid distance), so wide
lists holding a close row are not skipped. Same store, queries and reference for every row.

    python bench/bench_index.py synthetic --also data/synth/val.jsonl data/synth/train.jsonl \\
        --k 128 --keep /tmp/trained                     # a trained demo store (4,532 clips)
    python bench/bench_probing.py /tmp/trained [--data data/synth/test.jsonl ...] \\
        [--weights 0 0.25] [--probes 0 32 64] [--hits 128]

Per (weight, probes, hits): clips reranked, recall@10 against exhaustive scoring of every clip,
stage 1 / rerank / total p50 ms in-process (after encoding). `--probes 0` is the store's own count.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import faiss
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_search import exact_top10  # noqa: E402
from bench.trained_store import add_store_args, captions  # noqa: E402
from indexer.search.searcher import Searcher  # noqa: E402
from indexer.store import Store  # noqa: E402
from indexer.store import vector_index as vi  # noqa: E402
from model import TextSets, create_model  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_store_args(p, "a store kept by `bench_index.py synthetic --keep` (its index: ivf-sq8)")
    p.add_argument("--weights", type=float, nargs="+", default=[0.0, vi.RADIUS_WEIGHT])
    p.add_argument("--probes", type=int, nargs="+", default=[0], help="lists per query vector (0: store's)")
    p.add_argument("--hits", type=int, nargs="+", default=[128], help="FAISS hits per query vector")
    args = p.parse_args()
    torch.set_num_threads(1)
    model = create_model(None, checkpoint=args.checkpoint).eval()
    store = Store.open(Path(args.store))
    spec = store.index_spec
    if spec.type != "ivf-sq8":
        sys.exit(f"error: the store's index is {spec.type}, not ivf-sq8")
    with torch.no_grad():
        sets = model.encode_texts(captions(args.data))  # (Q, n_t, D)
    queries = [TextSets(vectors=v[None], mask=m[None]) for v, m in zip(sets.vectors, sets.mask, strict=True)]
    exact = exact_top10(store, queries)  # every clip scored exactly
    clips = store.stats().clips
    print(
        f"\n### ivf-sq8 probing on {args.store}: {clips} clips, nlist {spec.nlist} (store's nprobe "
        f"{spec.nprobe}), {len(queries)} captions\n"
    )
    print("| probe by | lists probed | hits per query vector | clips reranked | recall@10 | "
          "stage 1 p50 ms | rerank p50 ms | total p50 ms |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    default_weight = vi.RADIUS_WEIGHT
    try:
        for hits in args.hits:
            searcher = Searcher(store, candidates_per_vector=hits)
            searcher.search(queries[0], top_k=10)  # loads the index
            ivf = faiss.extract_index_ivf(store._faiss.index)  # type: ignore[attr-defined]
            for weight in args.weights:
                vi.RADIUS_WEIGHT = weight
                for probes in args.probes:
                    ivf.nprobe = probes or spec.nprobe
                    found, stage1, rerank, total, cands = 0, [], [], [], []
                    for q, top in zip(queries, exact, strict=True):
                        r = searcher.search(q, top_k=10)
                        found += len(top & {m.clip_id for m in r.moments})
                        stage1.append(r.timings_ms["candidates"])
                        rerank.append(r.timings_ms["rerank"])
                        total.append(r.timings_ms["total"])
                        cands.append(r.candidates)
                    label = "q.c (plain FAISS)" if weight <= 0 else f"q.c + {weight:g} x radius"
                    print(
                        f"| {label} | {ivf.nprobe} | {hits} | {statistics.mean(cands):.0f} | "
                        f"{found / (10 * len(queries)):.4f} | {statistics.median(stage1):.1f} | "
                        f"{statistics.median(rerank):.1f} | {statistics.median(total):.1f} |",
                        flush=True,
                    )
    finally:
        vi.RADIUS_WEIGHT = default_weight
        store.close()


if __name__ == "__main__":
    main()
