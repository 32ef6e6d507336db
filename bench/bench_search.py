"""Search scaling: two-stage search vs exhaustive partial-alignment scoring, in the real shapes.

    python bench/bench_search.py [--sizes 1000 10000 100000] [--queries 100] [--dists isotropic clustered]
                                 [--http-sizes 10000] [--out results.json]

Stores of random unit vectors in ViT-B/32's shapes (D=512, T+K=20 rows per clip, float16,
memory-mapped) written through the store API, two distributions:
- isotropic: every row uniform on the sphere (no neighbourhood structure: the worst case for
  any first stage, the exact top-10 is decided by single lucky cosines);
- clustered: each clip drawn around one of `--topics` topic centres (rows = clip centre + noise),
  queries made from a stored clip's topic (what real embeddings look like: neighbourhoods).
Per size and distribution: stage timings, p50/p95 end to end in-process (after encoding),
recall@10 against exhaustive scoring of every clip (the reference, computed batched), the
per-query exhaustive latency (the baseline, same run), RAM and disk per clip. Query encoding
(ViT-B/32 text tower, random weights, 1 thread) is timed once: it does not depend on the store.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from indexer.search.searcher import Searcher  # noqa: E402
from indexer.store import ClipSpan, NewVideo, Store, searched_views  # noqa: E402
from indexer.store import vector_index as vi  # noqa: E402
from model import TextSets, partial_alignment_scores  # noqa: E402

CLIPS_PER_VIDEO = 10


@dataclass
class Row:
    dist: str
    clips: int
    method: str  # 'exhaustive' or the first stage
    queries: int
    candidates: float  # mean clips reranked
    cand_ms: float  # p50 stage 1
    rerank_ms: float  # p50 stage 2
    p50_ms: float
    p95_ms: float
    recall10: float
    speedup: float  # exhaustive p50 / this p50
    recall_queries: int = 0  # queries with an exact reference (0: all of them)


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


class Corpus:
    """Deterministic random clip matrices, generated in blocks (never all in memory)."""

    def __init__(self, dist: str, dim: int, n_v: int, topics: int, seed: int = 0) -> None:
        self.dist, self.dim, self.n_v = dist, dim, n_v
        rng = np.random.default_rng(seed)
        self.centres = unit(rng.standard_normal((topics, dim), dtype=np.float32))
        self.seed = seed

    def block(self, start: int, n: int) -> tuple[np.ndarray, np.ndarray]:
        """(matrices (n, n_v, D) float16, topic of each clip (n,))."""
        # a distinct, non-zero-padded seed per block: SeedSequence([s, 0]) equals SeedSequence(s),
        # which would make the first block's noise the topic centres themselves
        rng = np.random.default_rng([self.seed, start + 1, 7])
        noise = rng.standard_normal((n, self.n_v, self.dim), dtype=np.float32)
        if self.dist == "isotropic":
            return unit(noise).astype(np.float16), np.zeros(n, np.int64)
        topic = rng.integers(len(self.centres), size=n)
        # clip centre ~0.8 cosine to its topic, rows ~0.7 cosine to their clip centre
        centre = unit(self.centres[topic] + 0.75 * unit(rng.standard_normal((n, self.dim), dtype=np.float32)))
        rows = unit(centre[:, None, :] + 1.0 * unit(noise))
        return rows.astype(np.float16), topic


def build_store(
    root: Path,
    corpus: Corpus,
    clips: int,
    index_type: str | None,
    identity: dict | None = None,
    trained: bool = False,
) -> tuple[Store, float]:
    """A store of `clips` clips (videos of CLIPS_PER_VIDEO) with the FAISS index `index_type`
    (None: the store's own choice by size, upgraded as it grows, as ingestion does). trained: the
    store's model identity is a (made-up) trained checkpoint's, so its K views are searched first
    and its token-level range is the one of a trained model (`indexer.store.searched_views`)."""
    weights = f"checkpoint:bench-{corpus.dist}" if trained else f"random:bench-{corpus.dist}"
    ident = identity or {
        "config": {"backbone": "random", "tau": 100.0, "mode": "trained"},
        "checkpoint_sha256": weights.split(":")[1] if trained else None,
        "dim": corpus.dim,
        "frames": corpus.n_v - 8,
        "num_tokens": 8,
        "vectors_per_clip": corpus.n_v,
        "weights": weights,
    }
    t0 = time.perf_counter()
    store = Store.open(root, ident, create=True, index_type=None if index_type is None else "global")
    step = 10_000
    for start in range(0, clips, step):
        n = min(step, clips - start) // CLIPS_PER_VIDEO * CLIPS_PER_VIDEO
        mats, _ = corpus.block(start, n)
        batch = []
        for v in range(n // CLIPS_PER_VIDEO):
            vid = (start + v * CLIPS_PER_VIDEO) // CLIPS_PER_VIDEO
            spans = [ClipSpan(5.0 * c, 5.0 * c + 10) for c in range(CLIPS_PER_VIDEO)]
            video = NewVideo(f"/bench/{vid}.mp4", f"v{vid}", f"h{vid}", 55, 30, 64, 64, "h264", 1)
            batch.append((video, spans, mats[v * CLIPS_PER_VIDEO : (v + 1) * CLIPS_PER_VIDEO]))
        store.add_videos(batch)
    if index_type not in (None, "global"):
        store.rebuild_index(index_type)
    store.flush()
    return store, time.perf_counter() - t0


def make_queries(
    store: Store, corpus: Corpus, n: int, n_t: int, seed: int = 1, words: str = "near"
) -> list[TextSets]:
    """Queries of n_t rows. Isotropic: half planted (half the rows near a stored clip's rows),
    half pure noise. Clustered: half the rows near one stored clip, the rest near its topic.
    words="random": only the last K rows (the views) are built so, the word rows before them are
    random, as a trained model's are: its word vectors' best rows stay 0.07-0.14 below the exact
    10th best score (bench/bench_relevance.py), so the views carry the match."""
    rng = np.random.default_rng(seed)
    ids = store.live_clip_ids()
    views = int(store.identity.get("num_tokens") or 0) if words == "random" else n_t
    first = n_t - min(views, n_t)  # the rows built from the target start here
    out = []
    for _ in range(n):
        target = store.matrices(ids[rng.integers(len(ids))][None]).astype(np.float32)[0]  # (n_v, D)
        half = (n_t - first) // 2
        q = unit(rng.standard_normal((n_t, corpus.dim), dtype=np.float32))
        rows = target[rng.choice(len(target), size=half, replace=False)]
        near = rows + 0.5 * unit(rng.standard_normal((half, corpus.dim), dtype=np.float32))
        q[first : first + half] = unit(near)
        if corpus.dist == "clustered":
            centre = unit(target.mean(0))
            q[first + half :] = unit(centre + 1.0 * q[first + half :])
        out.append(TextSets(vectors=torch.from_numpy(q)[None], mask=torch.ones(1, n_t, dtype=torch.bool)))
    return out


def exact_top10(store: Store, queries: list[TextSets], threads: int = 2) -> list[set[int]]:
    """The reference: every live clip scored exactly, all queries batched per block of clips
    (`threads` torch threads: offline work, unlike the timed single-threaded searches)."""
    ids, _ = exact_top(store, queries, threads)
    return [set(r.tolist()) for r in ids]


def exact_top(store: Store, queries: list[TextSets], threads: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """(clip ids (Q, 10), exact scores (Q, 10)) of each query's ten best live clips, best first."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return _exact_top(store, queries)
    finally:
        torch.set_num_threads(before)


def _exact_top(store: Store, queries: list[TextSets]) -> tuple[np.ndarray, np.ndarray]:
    ids = store.live_clip_ids()
    text = torch.cat([q.vectors for q in queries])  # (Q, n_t, D)
    mask = torch.cat([q.mask for q in queries])
    best = np.full((len(queries), 0), 0.0, np.float32)
    best_ids = np.zeros((len(queries), 0), np.int64)
    block = 2048
    for start in range(0, len(ids), block):
        chunk = ids[start : start + block]
        mats = torch.from_numpy(store.matrices(chunk))
        with torch.no_grad():
            s = partial_alignment_scores(text, mats, mask, tau=store.tau).numpy()  # (Q, c)
        best = np.concatenate([best, s], axis=1)
        best_ids = np.concatenate([best_ids, np.broadcast_to(chunk, s.shape)], axis=1)
        keep = np.argsort(-best, axis=1, kind="stable")[:, :10]
        best = np.take_along_axis(best, keep, 1)
        best_ids = np.take_along_axis(best_ids, keep, 1)
    return best_ids, best


def pct(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs), q)) if xs else float("nan")


def run_searches(searcher: Searcher, queries: list[TextSets], top: list[set[int]]) -> dict[str, float]:
    """Every query timed; recall over the first len(top) queries (those with a reference)."""
    searcher.search(queries[0], top_k=10)  # warm-up (page cache, FAISS, torch)
    tot, cand, rr, n_c, found = [], [], [], [], 0
    for i, q in enumerate(queries):
        r = searcher.search(q, top_k=10)
        tot.append(r.timings_ms["total"])
        cand.append(r.timings_ms["candidates"])
        rr.append(r.timings_ms["rerank"])
        n_c.append(r.candidates)
        if i < len(top):
            found += len(top[i] & {m.clip_id for m in r.moments})
    return {
        "candidates": float(np.mean(n_c)),
        "cand_ms": pct(cand, 50),
        "rerank_ms": pct(rr, 50),
        "p50": pct(tot, 50),
        "p95": pct(tot, 95),
        "recall": found / (10 * max(1, len(top))),
    }


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) / 1024
    return float("nan")


def dir_bytes(p: Path) -> int:
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())


def encode_times(n: int, config: str) -> tuple[float, float, str]:
    """p50/p95 ms of encoding one query with `config`'s text tower, random weights, 1 thread."""
    from model import create_model, get_config

    cfg = get_config(config).replace(pretrained=None)
    model = create_model(cfg, text_only=True)
    words = ["a man", "slices onions", "then the pan", "catches fire", "on a beach", "at night"]
    xs = []
    with torch.no_grad():
        model.encode_texts(["warm up"])
        for i in range(n):
            t0 = time.perf_counter()
            model.encode_texts([" ".join(words[: 1 + i % len(words)]) + f" {i}"])
            xs.append((time.perf_counter() - t0) * 1e3)
    return pct(xs, 50), pct(xs, 95), config


def bench_size(
    tmp: Path, dist: str, clips: int, args: argparse.Namespace, log: list[str]
) -> tuple[list[Row], dict[str, float | str]]:
    # ~clips_per_topic clips around each centre (capped at --topics centres)
    corpus = Corpus(dist, args.dim, args.n_v, max(1, min(args.topics, clips // args.clips_per_topic)))
    index_type: str | None = "global-ivf" if clips >= args.ivf_from else "global"
    if args.auto_index:
        index_type = None  # what ingestion does: the store picks and upgrades its index by itself
    rss0 = rss_mib()
    trained = args.words == "random"  # a trained model's queries and store, emulated
    store, build_s = build_store(tmp / f"{dist}-{clips}", corpus, clips, index_type, trained=trained)
    queries = make_queries(store, corpus, args.queries, args.n_t, words=args.words)
    n_ref = min(len(queries), args.reference_queries or len(queries))
    t0 = time.perf_counter()
    top = exact_top10(store, queries[:n_ref], args.reference_threads)
    ref_s = time.perf_counter() - t0
    rows: list[Row] = []
    # baseline: exhaustive scoring of every clip per query (a few queries at large sizes)
    searcher = Searcher(store)
    n_ex = max(args.exhaustive_min, min(len(queries), args.exhaustive_budget // max(clips, 1)))
    ex = [searcher.search(q, top_k=10, exhaustive=True).timings_ms["total"] for q in queries[:n_ex]]
    ex50 = pct(ex, 50)
    rows.append(
        Row(dist, clips, "exhaustive (baseline)", n_ex, clips, 0.0, ex50, ex50, pct(ex, 95), 1.0, 1.0)
    )
    spec = store.index_spec
    label = f"{spec.type}" + (f" (nlist {spec.nlist}, nprobe {spec.nprobe})" if spec.nlist else "")
    for k in args.k:
        s = Searcher(store, candidates_per_vector=k, max_candidates=args.max_candidates)
        m = run_searches(s, queries, top)
        rows.append(
            Row(dist, clips, f"{label}, {k} hits/vector", len(queries), m["candidates"], m["cand_ms"],
                m["rerank_ms"], m["p50"], m["p95"], m["recall"], ex50 / m["p50"], n_ref)
        )  # fmt: skip
    for kind in args.kinds:
        # another first stage over the same store, queries and reference (ratios in one run)
        info = store.rebuild_index(kind)
        extra = f" (nlist {info['nlist']}, nprobe {info['nprobe']}, {info['codec']})" if info["nlist"] else ""
        for k in args.k:
            m = run_searches(Searcher(store, candidates_per_vector=k, max_candidates=args.max_candidates),
                             queries, top)  # fmt: skip
            rows.append(
                Row(dist, clips, f"{kind}{extra}, {k} hits/vector", len(queries), m["candidates"],
                    m["cand_ms"], m["rerank_ms"], m["p50"], m["p95"], m["recall"], ex50 / m["p50"], n_ref)
            )  # fmt: skip
    if args.kinds:
        views = searched_views(store.identity)
        store.rebuild_index(index_type or vi.auto_kind(clips, corpus.n_v, corpus.dim, views))
    if clips <= args.token_max:
        # the token-level first stage (every row in FAISS) for the comparison the SPEC asks for
        store.rebuild_index("flat")
        n_tok = min(len(queries), args.token_queries or len(queries))
        for k in args.k[-1:]:
            m = run_searches(Searcher(store, candidates_per_vector=k, max_candidates=args.max_candidates),
                             queries[:n_tok], top[:n_tok])  # fmt: skip
            rows.append(
                Row(dist, clips, f"flat token-level (every row), {k} hits/vector", n_tok,
                    m["candidates"], m["cand_ms"], m["rerank_ms"], m["p50"], m["p95"], m["recall"],
                    ex50 / m["p50"], min(n_tok, n_ref))
            )  # fmt: skip
        store.rebuild_index(index_type or "flat")
    stats = store.stats()
    disk = dir_bytes(store.root)
    faiss_file = max(
        (store.root / f).stat().st_size for f in os.listdir(store.root) if f.startswith("faiss-g")
    )
    mem = {
        "disk_bytes_per_clip": disk / clips,
        "faiss_bytes_per_clip": faiss_file / clips,
        "rss_growth_mib": rss_mib() - rss0,
        "build_s": build_s,
        "reference_s": ref_s,
        "reference_queries": n_ref,
        "index": label,
        "clips": stats.clips,
    }
    log.append(
        f"{dist} {clips}: built in {build_s:.1f} s ({label}), exact reference for {n_ref} "
        f"queries in {ref_s:.1f} s, disk {disk / clips:.0f} B/clip"
    )
    store.close()
    return rows, mem


def table(rows: list[Row]) -> list[str]:
    out = [
        "| data | clips | search | queries | clips reranked | stage 1 p50 ms | rerank p50 ms | "
        "p50 ms | p95 ms | recall@10 | speed-up vs exhaustive |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        # recall over fewer queries than were timed (large stores: the reference is costly)
        rq = f" ({r.recall_queries} q)" if 0 < r.recall_queries < r.queries else ""
        out.append(
            f"| {r.dist} | {r.clips:,} | {r.method} | {r.queries} | {r.candidates:.0f} | {r.cand_ms:.1f} | "
            f"{r.rerank_ms:.1f} | {r.p50_ms:.1f} | {r.p95_ms:.1f} | {r.recall10:.3f}{rq} | {r.speedup:.1f}x |"
        )
    return out


def main(argv: list[str] | None = None) -> dict[str, object]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 10_000, 100_000])
    ap.add_argument("--dists", nargs="+", default=["clustered", "isotropic"])
    ap.add_argument("--queries", type=int, default=100)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--n-v", type=int, default=20)
    ap.add_argument("--n-t", type=int, default=16, help="query rows (valid tokens + K views)")
    ap.add_argument(
        "--words", choices=["near", "random"], default="near",
        help="query word rows built like the views (near), or random as a trained model's (random: "
        "the store is then a trained checkpoint's, searched views first)",
    )  # fmt: skip
    ap.add_argument("--topics", type=int, default=2000, help="clustered: at most this many centres")
    ap.add_argument("--clips-per-topic", type=int, default=50)
    ap.add_argument("--k", type=int, nargs="+", default=[8, 32])
    ap.add_argument("--max-candidates", type=int, default=512)
    ap.add_argument("--ivf-from", type=int, default=50_000, help="global-ivf from this many clips")
    ap.add_argument("--kinds", nargs="*", default=[], help="also time these index types (vector_index)")
    ap.add_argument("--token-queries", type=int, default=0, help="queries for it (0: all)")
    ap.add_argument("--token-max", type=int, default=10_000, help="token-level comparison up to here")
    ap.add_argument("--exhaustive-min", type=int, default=3, help="baseline queries at least")
    ap.add_argument("--reference-queries", type=int, default=0, help="recall over this many (0: all)")
    ap.add_argument("--reference-threads", type=int, default=2, help="torch threads for the reference")
    ap.add_argument("--auto-index", action="store_true", help="let the store choose its index by size")
    ap.add_argument("--exhaustive-budget", type=int, default=2_000_000, help="clip scorings for the baseline")
    ap.add_argument("--encode-config", default="t2v-vit-b-32")
    ap.add_argument("--encode-queries", type=int, default=30)
    ap.add_argument("--dir", default=None, help="where the stores go (default: a temporary dir)")
    ap.add_argument("--out", default=None, help="also write the results as JSON here")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    enc50, enc95, enc_cfg = encode_times(args.encode_queries, args.encode_config)
    rows: list[Row] = []
    mems: dict[str, dict[str, float | str]] = {}
    log: list[str] = []
    if args.dir is not None:  # a folder the user names is made, not a traceback
        Path(args.dir).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        for dist in args.dists:
            for clips in args.sizes:
                r, mem = bench_size(Path(tmp), dist, clips, args, log)
                rows += r
                mems[f"{dist}-{clips}"] = mem
                print("\n".join(table(r)), flush=True)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result: dict[str, object] = {
        "encode": {"config": enc_cfg, "p50_ms": enc50, "p95_ms": enc95},
        "rows": [asdict(r) for r in rows],
        "memory": mems,
        "peak_rss_mib": peak,
        "log": log,
        "args": vars(args),
    }
    print(f"query encode ({enc_cfg}, random weights, 1 thread): p50 {enc50:.1f} ms, p95 {enc95:.1f} ms")
    print("\n".join(table(rows)))
    print(json.dumps(mems, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
