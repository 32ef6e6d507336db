"""GPU benchmarks (run by bench/gpu.sh): ViT-B/32 fp16 frame-encoding throughput, text-query latency,
and search at 1M clips (global first stage on faiss-gpu or a torch GEMM, exact rerank on the GPU,
recall@10 against exhaustive GPU scoring). Falls back to the CPU (and small sizes) without CUDA.

    python bench/bench_gpu.py [--clips 1000000] [--queries 100] [--config t2v-vit-b-32] [--smoke]

Random weights and random clustered vectors in the real shapes: speed does not depend on them.
The 1M-clip matrices live in GPU memory as float16 (1M x 20 x 512 x 2 B = 20 GiB).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model import create_model, get_config, one_query_scores  # noqa: E402


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def pct(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs), q))


def encode_bench(config: str, device: torch.device, batch: int, repeats: int) -> dict[str, float]:
    cfg = get_config(config).replace(pretrained=None)
    model = create_model(cfg, device=str(device))
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    s = model.backbone.preprocess.size
    x = torch.randn(batch, cfg.frames, 3, s, s, device=device)
    with torch.no_grad(), torch.autocast(device.type, dtype=dtype, enabled=device.type == "cuda"):
        model.encode_videos(x)  # warm-up
        sync(device)
        t0 = time.perf_counter()
        for _ in range(repeats):
            model.encode_videos(x)
        sync(device)
        wall = time.perf_counter() - t0
        lat = []
        for i in range(30):
            t1 = time.perf_counter()
            model.encode_texts([f"a person walks a dog past a red car number {i}"])
            sync(device)
            lat.append((time.perf_counter() - t1) * 1e3)
    clips = batch * repeats
    return {
        "clips_per_s": clips / wall,
        "frames_per_s": clips * cfg.frames / wall,
        "text_p50_ms": pct(lat, 50),
        "text_p95_ms": pct(lat, 95),
    }


def unit(x: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(x, dim=-1)


def search_bench(
    clips: int, queries: int, dim: int, n_v: int, n_t: int, cands: int, device: torch.device
) -> dict:
    g = torch.Generator(device=device).manual_seed(0)
    topics = max(1, min(2000, clips // 50))
    centres = unit(torch.randn(topics, dim, device=device, generator=g))
    mats = torch.empty(clips, n_v, dim, dtype=torch.float16, device=device)  # the stored sets
    topic = torch.randint(topics, (clips,), device=device, generator=g)
    t0 = time.perf_counter()
    for s in range(0, clips, 65536):
        e = min(s + 65536, clips)
        c = unit(centres[topic[s:e]] + 0.75 * unit(torch.randn(e - s, dim, device=device, generator=g)))
        noise = unit(torch.randn(e - s, n_v, dim, device=device, generator=g))
        mats[s:e] = unit(c[:, None, :] + noise).half()
    glob = unit(mats.float().mean(1) if clips * n_v * dim <= 1 << 28 else
                torch.cat([mats[s : s + 65536].float().mean(1) for s in range(0, clips, 65536)]))  # fmt: skip
    sync(device)
    build_s = time.perf_counter() - t0
    index = None
    try:
        import faiss

        if device.type == "cuda" and hasattr(faiss, "StandardGpuResources"):
            res = faiss.StandardGpuResources()
            index = faiss.GpuIndexFlatIP(res, dim)
            index.add(glob.cpu().numpy())
    except ImportError:
        pass
    stage = "faiss-gpu flat" if index is not None else f"torch GEMM on {device.type}"
    glob16 = glob.half() if device.type == "cuda" else glob
    t_tot, t_c, t_r, found = [], [], [], 0
    t_ex = []
    for qi in range(queries):
        tgt = int(torch.randint(clips, (1,), generator=g, device=device))
        rows = mats[tgt].float()[torch.randperm(n_v, device=device, generator=g)[: n_t // 2]]
        rest = unit(torch.randn(n_t - n_t // 2, dim, device=device, generator=g))
        q = torch.cat(
            [unit(rows + 0.5 * unit(torch.randn_like(rows))), unit(unit(mats[tgt].float().mean(0)) + rest)]
        )
        sync(device)
        t1 = time.perf_counter()
        probes = torch.cat([q, unit(q.mean(0, keepdim=True))])  # (n_t + 1, D)
        if index is not None:
            _, ids = index.search(probes.cpu().numpy(), cands)
            cand = torch.from_numpy(np.unique(ids[ids >= 0])).to(device)
        else:
            sims = probes.to(glob16.dtype) @ glob16.T  # (n_t + 1, N)
            cand = torch.unique(sims.topk(min(cands, clips), dim=1).indices)
        sync(device)
        t2 = time.perf_counter()
        sc = one_query_scores(q, mats[cand])
        top = cand[sc.topk(min(10, len(cand))).indices]
        sync(device)
        t3 = time.perf_counter()
        t_tot.append((t3 - t1) * 1e3)
        t_c.append((t2 - t1) * 1e3)
        t_r.append((t3 - t2) * 1e3)
        if qi < max(3, queries // 5):  # the exhaustive reference and baseline
            t4 = time.perf_counter()
            ex = one_query_scores(q, mats, block=32768)
            ref = set(ex.topk(10).indices.tolist())
            sync(device)
            t_ex.append((time.perf_counter() - t4) * 1e3)
            found += len(ref & set(top.tolist()))
    n_ref = len(t_ex)
    return {
        "clips": clips,
        "first_stage": stage,
        "hits_per_vector": cands,
        "build_s": build_s,
        "stage1_p50_ms": pct(t_c, 50),
        "rerank_p50_ms": pct(t_r, 50),
        "p50_ms": pct(t_tot, 50),
        "p95_ms": pct(t_tot, 95),
        "exhaustive_p50_ms": pct(t_ex, 50),
        "recall10": found / (10 * n_ref),
        "recall_queries": n_ref,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true", help="tiny sizes (the CPU fallback test)")
    ap.add_argument("--config", default="t2v-vit-b-32")
    ap.add_argument("--clips", type=int, default=1_000_000)
    ap.add_argument("--queries", type=int, default=100)
    ap.add_argument("--batch", type=int, default=64, help="clips per encoder call")
    ap.add_argument("--hits", type=int, default=64)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if args.smoke:
        args.config, args.clips, args.queries, args.batch = "t2v-tiny", 2000, 10, 2
    if device.type == "cpu":
        torch.set_num_threads(1)
    name = torch.cuda.get_device_name(0) if device.type == "cuda" else "CPU (fallback)"
    enc = encode_bench(args.config, device, args.batch, 3 if args.smoke else 10)
    cfg = get_config(args.config)
    dim = 512 if not args.smoke else 64
    search = search_bench(args.clips, args.queries, dim, cfg.frames + cfg.num_tokens, 16, args.hits, device)
    result = {"device": name, "config": args.config, "encode": enc, "search": search}
    print(f"device: {name}; model {args.config} (random weights)")
    print("| frames/s (fp16 on GPU) | clips/s | text query p50 ms | text query p95 ms |")
    print("|---|---|---|---|")
    print(
        f"| {enc['frames_per_s']:.0f} | {enc['clips_per_s']:.1f} | {enc['text_p50_ms']:.1f} | "
        f"{enc['text_p95_ms']:.1f} |"
    )
    s = search
    print(
        "| clips | first stage | stage 1 p50 ms | rerank p50 ms | p50 ms | p95 ms | exhaustive p50 ms | "
        "recall@10 |"
    )
    print("|---|---|---|---|---|---|---|---|")
    print(
        f"| {s['clips']:,} | {s['first_stage']} | {s['stage1_p50_ms']:.1f} | {s['rerank_p50_ms']:.1f} | "
        f"{s['p50_ms']:.1f} | {s['p95_ms']:.1f} | {s['exhaustive_p50_ms']:.1f} | {s['recall10']:.3f} |"
    )
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
