"""Issue 17: how fast can one core encode a ViT-B/32 query in fp32 at all? (the ">= 4x torch" goal)

    OMP_NUM_THREADS=1 python bench/bench_query_floor.py [--config t2v-vit-b-32] [--repeats 5]
                                                        [--cache var/onnx-graphs]

Two limits no fp32 implementation beats on this core, and the floor is the larger one:
- compute: the query graph's FLOPs (text tower + text ADT decoder on the real tokens only, as
  torch's FlopCounterMode counts them) / this core's fp32 GEMM peak (the best of a few 1024^3
  torch.mm, the rate MKL reaches on large products);
- weights: every MatMul weight of the served graph is read once per query (the token embedding is
  a lookup of n rows, not counted) / this core's read bandwidth (numpy sum over 512 MB).
Against the floor: today's torch path and the
served ONNX Runtime fp32 graph (timed interleaved, 1 thread), and the 4x target (torch / 4). A
target under the floor needs fewer or cheaper multiplies (bf16/int8 activations), which is where the
rankings move (bench/bench_query_graphs.py). Random weights (pretrained=None): nothing is
downloaded, and neither FLOPs nor speed depend on the weights.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_fast import QUERIES, time_interleaved  # noqa: E402
from model import create_model, get_config  # noqa: E402
from model.onnx_text import OnnxTextEncoder, _eot_positions, _QueryGraph, graph_key  # noqa: E402


def gemm_peak(size: int = 1024, tries: int = 5) -> float:
    """This core's fp32 matmul rate in FLOP/s: the best of `tries` size^3 products."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b  # warm-up
    best = float("inf")
    for _ in range(tries):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * size**3 / best


def read_bandwidth(tries: int = 3) -> float:
    """Bytes/s one core reads: the best of `tries` sums over a 512 MB array."""
    a = np.ones(2**27, dtype=np.float32)
    best = float("inf")
    for _ in range(tries):
        t = time.perf_counter()
        a.sum()
        best = min(best, time.perf_counter() - t)
    return a.nbytes / best


def matmul_weight_bytes(path: Path) -> int:
    """Bytes of the constant MatMul weights of an ONNX graph (what one run reads in full)."""
    import onnx
    from onnx import numpy_helper

    g = onnx.load(str(path)).graph
    consts = {i.name: i for i in g.initializer}
    used = {n.input[1] for n in g.node if n.op_type == "MatMul" and n.input[1] in consts}
    return sum(numpy_helper.to_array(consts[name]).nbytes for name in used)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="t2v-vit-b-32")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument(
        "--cache", default="var/onnx-graphs", help="the exported query graph (exported if missing)"
    )
    args = p.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = create_model(get_config(args.config).replace(pretrained=None), text_only=True).eval()
    onnx = OnnxTextEncoder.for_model(model, Path(args.cache), "fp32", threads=1)
    graph = _QueryGraph(model).eval()

    def flops(q: str) -> tuple[int, int]:
        ids = model.tokenize([q])
        ids = ids[:, : int(_eot_positions(model, ids)[0]) + 1]  # (1, n): the real tokens
        with FlopCounterMode(display=False) as counter:  # (its module tracker needs autograd on)
            graph(ids)
        return ids.shape[1], counter.get_total_flops()

    def encode_torch(q: str) -> None:
        with torch.no_grad():
            model.encode_texts([q])

    paths = {"torch": encode_torch, "onnx": lambda q: onnx.encode_texts([q])}
    times = time_interleaved(paths, QUERIES, args.repeats)
    peak = max(gemm_peak(), gemm_peak())  # best of two: the box is shared
    bandwidth = read_bandwidth()
    weights = matmul_weight_bytes(Path(args.cache) / f"query-{graph_key(model)}-fp32.onnx")
    read_ms = weights / bandwidth * 1e3
    print(
        f"\n### fp32 floor of a query ({args.config}, 1 thread: GEMM peak {peak / 1e9:.0f} GFLOP/s, "
        f"read bandwidth {bandwidth / 1e9:.1f} GB/s, MatMul weights {weights / 2**20:.0f} MiB = "
        f"{read_ms:.1f} ms; {args.repeats} interleaved runs per query)\n"
    )
    print(
        "| query | tokens | GFLOP | compute ms | floor ms | torch ms | 4x target ms | onnx-fp32 ms | "
        "onnx / floor |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    per_query = len(QUERIES)
    rows = []
    for i, q in enumerate(QUERIES):
        n, f = flops(q)
        t = float(np.median(times["torch"][i::per_query])) * 1e3
        o = float(np.median(times["onnx"][i::per_query])) * 1e3
        compute = f / peak * 1e3
        floor = max(compute, read_ms)
        rows.append((floor, t, o, compute))
        print(
            f"| {q[:40]} | {n} | {f / 1e9:.2f} | {compute:.1f} | {floor:.1f} | {t:.1f} | {t / 4:.1f} | "
            f"{o:.1f} | {o / floor:.2f} |"
        )
    floor, t, o, compute = (float(np.median(c)) for c in zip(*rows, strict=True))
    under = sum(r[1] / 4 < r[0] for r in rows)
    under_compute = sum(r[1] / 4 < r[3] for r in rows)
    print(
        f"| **median** | | | {compute:.1f} | **{floor:.1f}** | {t:.1f} | **{t / 4:.1f}** | {o:.1f} | "
        f"{o / floor:.2f} |"
    )
    print(
        f"\nBest possible fp32 speed-up over torch at 1 thread (median query): {t / floor:.2f}x "
        f"(target 4x); onnx-fp32 reaches {t / o:.2f}x. Queries whose 4x target is under the fp32 floor: "
        f"{under} of {len(rows)}; under the compute floor alone (weights read at half the bytes, e.g. "
        f"fp16): {under_compute} of {len(rows)}, median {compute:.1f} ms against {t / 4:.1f}."
    )


if __name__ == "__main__":
    main()
