"""Issue 17: which query vectors can put a clip into the exact top-10, on a kept store of trained
embeddings. The partial-alignment score is a mean of soft picks, each a convex combination of row
cosines, so a clip's score is at most its best (query vector, row) cosine. A clip reaches the top-10
only through a row whose cosine to some query vector is >= S10 (the exact 10th best score), and a
query vector whose best row in the whole store is below S10 cannot name any top-10 clip: its first-
stage search is wasted. The list bound q.c + r (r: the list's largest residual norm) is a proof of
such a vector's uselessness; how often it proves it, and how many lists an exact threshold search
would scan, is measured too.

    python bench/bench_index.py synthetic --also data/synth/val.jsonl data/synth/train.jsonl \\
        --k 128 --keep /tmp/trained                     # a trained demo store (4,532 clips)
    python bench/bench_relevance.py /tmp/trained [--data data/synth/test.jsonl ...]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_search import exact_top  # noqa: E402
from bench.trained_store import add_store_args, captions  # noqa: E402
from indexer.store import Store  # noqa: E402
from indexer.store import vector_index as vi  # noqa: E402
from model import TextSets, create_model  # noqa: E402

# clips per block of the every-row scan: (Q, n_t, 256 x n_v) cosines stay ~100 MB for 323 captions
BLOCK = 256


def best_rows(store: Store, queries: list[TextSets], s10: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(best cosine over every stored row (Q, n_t), rows with cosine >= S10 (Q, n_t)) per query
    vector; padding rows of a query get -inf and 0."""
    text = torch.cat([q.vectors for q in queries]).float()  # (Q, n_t, D)
    valid = torch.cat([q.mask for q in queries])  # (Q, n_t)
    best = torch.full(valid.shape, -np.inf)
    above = torch.zeros(valid.shape, dtype=torch.int64)
    ids = store.live_clip_ids()
    t = torch.from_numpy(s10).float()[:, None, None]  # (Q, 1, 1)
    for start in range(0, len(ids), BLOCK):
        rows = torch.from_numpy(store.matrices(ids[start : start + BLOCK])).float()  # (c, n_v, D)
        sim = torch.einsum("qid,rd->qir", text, rows.reshape(-1, rows.shape[-1]))  # (Q, n_t, c*n_v)
        best = torch.maximum(best, sim.max(dim=2).values)
        above += (sim >= t).sum(dim=2)
    best[~valid] = -np.inf
    above[~valid] = 0
    return best.numpy(), above.numpy()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_store_args(p, "a store kept by `bench_index.py synthetic --keep`")
    p.add_argument("--threads", type=int, default=2, help="torch threads of the exact reference")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    model = create_model(None, checkpoint=args.checkpoint).eval()
    store = Store.open(Path(args.store))
    try:
        with torch.no_grad():
            sets = model.encode_texts(captions(args.data))  # (Q, n_t, D)
        pairs = zip(sets.vectors, sets.mask, strict=True)
        queries = [TextSets(vectors=v[None], mask=m[None]) for v, m in pairs]
        _, top_scores = exact_top(store, queries, args.threads)  # (Q, 10)
        if top_scores.shape[1] < 10:
            sys.exit("error: the store holds fewer than 10 clips")
        s10 = top_scores[:, 9]
        with torch.no_grad():
            best, above = best_rows(store, queries, s10)
        k = model.config.num_tokens  # the last K valid rows of a query set are its views
        spec = store.index_spec
        radii = None
        if spec.type == "ivf-sq8":
            store.candidates(queries[0].vectors[0][queries[0].mask[0]].float().numpy(), 1)  # loads it
            radii = vi.ListRadii(store._faiss.index)  # type: ignore[attr-defined]
        relevant, words, views, word_best, gaps, busiest, lists, proven = [], [], [], [], [], [], [], []
        for qi, q in enumerate(queries):
            valid = q.mask[0].numpy()
            b, n = best[qi][valid], above[qi][valid]  # (m,)
            rel = b >= s10[qi]
            if not rel.any():  # the best clip's score <= its best cosine: some vector reaches S10
                sys.exit(f"error: no query vector reaches S10 for caption {qi}: the score bound is broken")
            view = np.arange(len(b)) >= len(b) - k
            relevant.append(int(rel.sum()))
            views.append(int((rel & view).sum()))
            words.append(int((rel & ~view).sum()))
            if (~view).any():
                word_best.append(float(b[~view].max()))
            if (~rel).any():
                gaps.append(float(s10[qi] - b[~rel].max()))
            busiest.append(int(n.max()))
            if radii is not None:
                vecs = q.vectors[0][q.mask[0]].float().numpy()  # (m, D)
                bound = vecs @ radii.centroids.T + radii.update()[None]  # (m, nlist)
                reach = bound >= s10[qi]
                lists.append(int(reach.sum()))
                proven.append(int((~reach.any(axis=1)).sum()))
        m = [int(q.mask[0].sum()) for q in queries]
        med = statistics.median
        print(f"\n### Query vectors that can name a top-10 clip: {args.store}, {store.stats().clips} clips, "
              f"{len(queries)} captions\n")  # fmt: skip
        print("| measure | median | max |\n|---|---|---|")
        print(f"| query vectors (words + {k} views) | {med(m):g} | {max(m)} |")
        print(f"| vectors whose best row reaches S10 | {med(relevant):g} | {max(relevant)} |")
        print(f"| of them views / words | {med(views):g} / {med(words):g} | {max(views)} / {max(words)} |")
        print(f"| S10 (exact 10th best score) | {med(s10.tolist()):.3f} | {s10.max():.3f} |")
        if word_best:
            print(f"| best row of any word vector | {med(word_best):.3f} | {max(word_best):.3f} |")
        if gaps:
            print(f"| S10 - best row of the closest useless vector | {med(gaps):.3f} | min {min(gaps):.3f} |")
        print(f"| rows >= S10 for the busiest vector | {med(busiest):g} | {max(busiest)} |")
        if radii is not None:
            nprobe = int(spec.nprobe)
            print(f"| (vector, list) pairs with q.c + r >= S10 (store probes {nprobe} a vector) | "
                  f"{med(lists):g} | {max(lists)} |")  # fmt: skip
            print(f"| vectors the bound proves useless | {med(proven):g} | {max(proven)} |")
    finally:
        store.close()


if __name__ == "__main__":
    main()
