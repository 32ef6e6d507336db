"""Issue 17: which ONNX query graph is fast enough AND keeps the torch rankings (one run, 1 thread).

    OMP_NUM_THREADS=1 python bench/bench_query_graphs.py [--config t2v-vit-b-32] [--repeats 3]
                                                         [--checkpoint CKPT] [--cache var/onnx-graphs]

Variants of the same text tower + text ADT decoder (random weights, pretrained=None: nothing is
downloaded, speed does not depend on them), timed interleaved query by query so that every path sees
the same machine load:
- torch fp32 (the baseline);
- onnx fp32 raw: the torch export as it comes (Gemm nodes, packed in_proj split at run time);
- onnx fp32: the served graph (`model.onnx_text.export_query_graph`: folded, every linear a MatMul);
- onnx int8: the served int8 graph (`quantize_graph`: per-tensor int8 weights, dynamic activations);
- int8 per-channel weights (the MatMuls with 2-D weights), int8 MLP only (the 4x-wide MatMuls),
  int8 blockwise weight-only (`MatMulNBits`, 8 bits, block 32, int8 compute).
Rankings: top-10 overlap with torch on stores of 5,000 random clip sets clustered around the
queries' own rows (noise 0.05: tight score gaps; 0.2: wider), and the smallest row cosine.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_fast import QUERIES, time_interleaved, top10  # noqa: E402
from model import T2VParser, create_model, get_config  # noqa: E402
from model.onnx_graph import prepare_graph  # noqa: E402
from model.onnx_text import OnnxTextEncoder, export_raw_graph, graph_key, quantize_graph  # noqa: E402


def _weights(path: Path, wide_only: bool) -> list[str]:
    """Names of the MatMuls with a 2-D constant weight (only the 4x-wide MLP ones if `wide_only`)."""
    m = onnx.load(str(path), load_external_data=False)
    dims = {i.name: tuple(i.dims) for i in m.graph.initializer}
    out = []
    for n in m.graph.node:
        d = dims.get(n.input[1], ()) if n.op_type == "MatMul" else ()
        if len(d) == 2 and (not wide_only or max(d) == 4 * min(d)):
            out.append(n.name)
    return out


def build(model: T2VParser, cache: Path) -> dict[str, Path]:
    """Every variant's file (cached under `cache` by the model's graph key)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    cache.mkdir(parents=True, exist_ok=True)
    key = graph_key(model)
    f = {
        name: cache / f"query-{key}-{name}.onnx"
        for name in ("raw", "fp32", "int8", "int8-per-channel", "int8-mlp", "nbits8")
    }
    if not f["raw"].exists():
        export_raw_graph(model, f["raw"])
    if not f["fp32"].exists():
        prepare_graph(f["raw"], f["fp32"])
    if not f["int8"].exists():
        quantize_graph(f["fp32"], f["int8"])
    q8 = {"weight_type": QuantType.QInt8, "op_types_to_quantize": ["MatMul"]}
    if not f["int8-per-channel"].exists():
        nodes = _weights(f["fp32"], wide_only=False)
        quantize_dynamic(
            str(f["fp32"]), str(f["int8-per-channel"]), nodes_to_quantize=nodes, per_channel=True, **q8
        )
    if not f["int8-mlp"].exists():
        quantize_dynamic(
            str(f["fp32"]), str(f["int8-mlp"]), nodes_to_quantize=_weights(f["fp32"], True), **q8
        )
    if not f["nbits8"].exists():
        q = MatMulNBitsQuantizer(
            onnx.load(str(f["fp32"])), bits=8, block_size=32, is_symmetric=True, accuracy_level=4
        )
        q.process()
        q.model.save_model_to_file(str(f["nbits8"]), use_external_data_format=False)
    return f


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="t2v-vit-b-32")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--clips", type=int, default=5000)
    p.add_argument(
        "--checkpoint", default=None, help="a trained checkpoint instead of random --config weights"
    )
    p.add_argument("--cache", default="var/onnx-graphs", help="where the variants are cached")
    args = p.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    if args.checkpoint:  # trained weights: rankings with real score gaps
        model = create_model(None, checkpoint=args.checkpoint, text_only=True).eval()
    else:
        model = create_model(get_config(args.config).replace(pretrained=None), text_only=True).eval()
    t0 = time.perf_counter()
    files = build(model, Path(args.cache))
    setup = time.perf_counter() - t0

    def session(path: Path) -> OnnxTextEncoder:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        return OnnxTextEncoder(
            model, ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"]), "fp32"
        )

    def rows_of(encode: Callable[[list[str]], object]) -> Callable[[str], torch.Tensor]:
        def run(q: str) -> torch.Tensor:
            with torch.no_grad():
                s = encode([q])
            return s.vectors[0][s.mask[0]]  # type: ignore[attr-defined]

        return run

    paths: dict[str, Callable[[str], torch.Tensor]] = {"torch fp32": rows_of(model.encode_texts)}
    for name in ("raw", "fp32", "int8", "int8-per-channel", "int8-mlp", "nbits8"):
        paths[f"onnx {name}"] = rows_of(session(files[name]).encode_texts)
    ref = {q: paths["torch fp32"](q) for q in QUERIES}
    rng = np.random.default_rng(0)
    centres = torch.cat(list(ref.values()))  # (rows, D)
    stores = {}
    for noise in (0.05, 0.2):
        picks = torch.from_numpy(rng.integers(0, len(centres), size=(args.clips, model.num_video_vectors)))
        nz = torch.from_numpy(
            rng.standard_normal((args.clips, model.num_video_vectors, model.dim), dtype=np.float32)
        )
        stores[noise] = F.normalize(centres[picks] + noise * nz, dim=-1).half()  # (N, n_v, D)
    load = os.getloadavg()[0]
    times = time_interleaved(paths, QUERIES, args.repeats)
    print(
        f"\n### Query graphs ({args.checkpoint or args.config}, CPU, 1 thread, {len(QUERIES)} queries x "
        f"{args.repeats}, interleaved; load average {load:.1f} at start; build {setup:.0f} s)\n"
    )
    print("| path | file MB | p50 ms | vs torch | min row cosine | top-10 overlap, noise 0.05 | 0.2 |")
    print("|---|---|---|---|---|---|---|")
    base = float(np.median(times["torch fp32"]))
    for name, fn in paths.items():
        got = {q: fn(q) for q in QUERIES}
        cos = min(float((got[q] * ref[q]).sum(-1).min()) for q in QUERIES)
        ov = {
            n: np.mean([len(top10(got[q], m) & top10(ref[q], m)) / 10 for q in QUERIES])
            for n, m in stores.items()
        }
        size = files[name.split()[1]].stat().st_size / 2**20 if name.startswith("onnx") else float("nan")
        p50 = float(np.median(times[name]))
        print(
            f"| {name} | {size:.0f} | {p50 * 1e3:.1f} | {base / p50:.2f}x | {cos:.5f} | "
            f"{ov[0.05]:.3f} | {ov[0.2]:.3f} |"
        )


if __name__ == "__main__":
    main()
