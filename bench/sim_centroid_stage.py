"""Issue 17: would a centroid-interaction first stage (as in late-interaction engines) keep the exact
top-10 on trained embeddings where the pooled index does not? A simulation on a kept store, not an
index type of the store.

    python bench/bench_index.py synthetic --also data/synth/val.jsonl data/synth/train.jsonl \\
        --k 128 --keep /tmp/trained                     # the trained demo store (4,532 clips)
    python bench/sim_centroid_stage.py /tmp/trained [--data data/synth/test.jsonl ...] \\
        [--nlist 256 1024 2048] [--probes 4 16] [--cap 256 512]

Every stored row is replaced by its nearest of `nlist` spherical k-means centroids (a 2-byte code
per row instead of 8-bit codes of every dimension). For each caption (the test split's captions,
encoded by the store's trained model): each query row picks its `probes` best centroids; the clips
with a row in any of them are the candidates; each candidate gets the partial-alignment score of
the query against its rows' centroids; the `cap` best are what the exact rerank would score.
Reported: the share of the exact top-10 (exhaustive scoring of every clip) among them, against the
same cap taken from the pooled keys (one normalised mean per clip, the `global-ivf` index's key).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import faiss
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.trained_store import add_store_args, captions  # noqa: E402
from indexer.search.searcher import Searcher  # noqa: E402
from indexer.store import Store  # noqa: E402
from indexer.store import vector_index as vi  # noqa: E402
from model import create_model  # noqa: E402
from model.scoring import alignment_terms  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_store_args(p, "a store kept by `bench_index.py synthetic --keep`")
    p.add_argument("--nlist", type=int, nargs="+", default=[256, 1024, 2048])
    p.add_argument("--probes", type=int, nargs="+", default=[4, 16])
    p.add_argument("--cap", type=int, nargs="+", default=[256, 512])
    args = p.parse_args()
    model = create_model(None, checkpoint=args.checkpoint).eval()
    store = Store.open(Path(args.store))
    with torch.no_grad():
        queries = [model.encode_texts([c]) for c in captions(args.data)]
    ids = store.live_clip_ids()
    mats = store.matrices(ids).astype(np.float32)  # (N, n_v, D)
    n, n_v, d = mats.shape
    searcher = Searcher(store, model)
    exact = []
    for q in queries:
        _, s = searcher.exhaustive_scores(q)
        exact.append(set(np.argsort(-s[0], kind="stable")[:10].tolist()))  # positions in `ids`
    rows_of = [q.vectors[0][q.mask[0]].float().numpy() for q in queries]  # (m, D) each
    print(
        f"\n### Centroid-interaction first stage, simulated ({n} clips, {n * n_v} rows, D={d}, "
        f"{len(queries)} captions)\n"
    )
    print(
        "| keys | probes | candidates (median) | cap | recall of the exact top-10 | "
        "approx. scoring ms (median) |"
    )
    print("|---|---|---|---|---|---|")
    pooled = vi.pool(mats)  # (N, D)
    for cap in args.cap:
        got = [len(set(np.argsort(-(pooled @ r.T).max(1), kind="stable")[:cap].tolist()) & e) / 10
               for r, e in zip(rows_of, exact, strict=True)]  # fmt: skip
        print(
            f"| pooled mean per clip (global-ivf's key), best query row | all | {n} | {cap} | "
            f"{np.mean(got):.4f} | |"
        )
    flat = mats.reshape(-1, d)
    clip_of_row = np.repeat(np.arange(n), n_v)
    for nlist in args.nlist:
        km = faiss.Kmeans(d, nlist, niter=20, seed=1, spherical=True, verbose=False)
        km.train(flat)
        centroids = np.asarray(km.centroids)  # (nlist, D)
        code = km.index.search(flat, 1)[1][:, 0]  # (rows,) nearest centroid
        codes = code.reshape(n, n_v)
        lists = [np.unique(clip_of_row[code == c]) for c in range(nlist)]
        for probes in args.probes:
            for cap in args.cap:
                recall, sizes, ms = [], [], []
                for r, e in zip(rows_of, exact, strict=True):
                    t0 = time.perf_counter()
                    sims = r @ centroids.T  # (m, nlist)
                    best = np.unique(np.argsort(-sims, axis=1)[:, :probes])
                    cand = np.unique(np.concatenate([lists[c] for c in best]))
                    approx = torch.from_numpy(sims[:, codes[cand]])  # (m, c, n_v) over the centroids
                    score = alignment_terms(approx, store.tau)["score"]  # (c,)
                    keep = cand[np.argsort(-score.numpy(), kind="stable")[:cap]]
                    ms.append((time.perf_counter() - t0) * 1e3)
                    recall.append(len(set(keep.tolist()) & e) / 10)
                    sizes.append(len(cand))
                print(
                    f"| centroid codes, nlist {nlist} | {probes} per query row | {np.median(sizes):.0f} | "
                    f"{cap} | {np.mean(recall):.4f} | {np.median(ms):.1f} |"
                )
    store.close()


if __name__ == "__main__":
    main()
