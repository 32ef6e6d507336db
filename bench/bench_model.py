"""Model costs on this machine: encode one query, score N stored video sets (random weights).

    python bench/bench_model.py [--configs t2v-tiny t2v-vit-b-32] [--n 1000] [--repeats 20]

Prints a table; the exhaustive scoring is also timed per stored video so sizes compare: the batched
kernel (`model.score`, training and offline references) and the serving one (`one_query_scores`,
what a search's rerank runs), on the same query and videos.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from model import create_model, get_config, one_query_scores


def timed(fn, repeats: int) -> list[float]:  # type: ignore[no-untyped-def]
    fn()  # warm-up
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--configs", nargs="+", default=["t2v-tiny", "t2v-vit-b-32"])
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (service default: 1)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, N={args.n} stored videos")
    print(
        f"| config | D | n_v | encode 1 query p50 ms | score 1 query x {args.n} videos p50 ms | "
        "score p95 ms | serving kernel p50 ms | serving / batched |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name in args.configs:
        print(bench_config(name, args.n, args.repeats))


def bench_config(name: str, n: int, repeats: int) -> str:
    cfg = get_config(name).replace(pretrained=None)  # random weights: timing only
    model = create_model(cfg, text_only=True)
    g = torch.Generator().manual_seed(0)
    videos = F.normalize(torch.randn(n, model.num_video_vectors, model.dim, generator=g), dim=-1)
    videos = videos.half()  # the store keeps float16
    query = "a man slices onions, then the pan catches fire"
    with torch.inference_mode():
        enc = timed(lambda: model.encode_texts([query]), repeats)
        text = model.encode_texts([query])
        score = timed(lambda: model.score(text, videos), repeats)
        rows = text.vectors[0][text.mask[0]]  # (n_t, D) valid rows, as the searcher passes them
        serve = timed(lambda: one_query_scores(rows, videos, tau=model.config.tau), repeats)
    p95 = sorted(score)[int(0.95 * (len(score) - 1))]
    ratio = statistics.median(serve) / statistics.median(score)
    return (
        f"| {name} | {model.dim} | {model.num_video_vectors} | {statistics.median(enc):.1f} | "
        f"{statistics.median(score):.1f} | {p95:.1f} | {statistics.median(serve):.1f} | {ratio:.2f} |"
    )


if __name__ == "__main__":
    main()
