"""Issue 17: does ONNX Runtime pay for the image tower (frame encoding at ingestion) on a CPU?

    python bench/bench_frame_graph.py [--config t2v-vit-b-32] [--batch 16 64] [--threads 1 2]
                                      [--repeats 5] [--cache var/onnx-graphs]

The image tower of `--config` (random weights, pretrained=None: nothing is downloaded, speed does
not depend on them) on ONNX Runtime as ingestion runs it with `frame_encoder=onnx-fp32`
(`model.onnx_frames.OnnxFrameEncoder`: exported with a dynamic batch, folded, every linear a MatMul)
against torch on the same preprocessed frames, alternating call by call so both see the same load.
Printed per batch size and thread count: images/s of each path, the ratio, and the smallest row
cosine / largest absolute difference against torch.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model import create_model, get_config  # noqa: E402
from model.onnx_frames import OnnxFrameEncoder  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="t2v-vit-b-32")
    p.add_argument("--batch", type=int, nargs="+", default=[16, 64], help="images per tower call")
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--cache", default="var/onnx-graphs", help="where the exported graph is kept")
    args = p.parse_args()
    torch.manual_seed(0)
    model = create_model(get_config(args.config).replace(pretrained=None)).eval()
    size = model.backbone.preprocess.size
    rng = np.random.default_rng(0)
    head = "| images per call | threads | torch img/s | onnx img/s | onnx / torch | min cosine | max diff |"
    lines = [head, "|---|---|---|---|---|---|---|"]
    for threads in args.threads:
        torch.set_num_threads(threads)
        t0 = time.perf_counter()
        tower = OnnxFrameEncoder.for_model(model, Path(args.cache), threads=threads)  # exports once
        ready = time.perf_counter() - t0
        print(f"{args.config}, {threads} thread(s): graph ready in {ready:.1f} s", flush=True)
        for b in args.batch:
            x = torch.from_numpy(rng.standard_normal((b, 3, size, size), dtype=np.float32))
            with torch.no_grad():
                ref = model.backbone.clip.encode_image(x)  # (b, D), a warm-up too
            got = tower(x)
            cos = float(F.cosine_similarity(ref, got, dim=-1).min())
            diff = float((ref - got).abs().max())
            t_torch, t_onnx = [], []
            for _ in range(args.repeats):
                t = time.perf_counter()
                with torch.no_grad():
                    model.backbone.clip.encode_image(x)
                t_torch.append(time.perf_counter() - t)
                t = time.perf_counter()
                tower(x)
                t_onnx.append(time.perf_counter() - t)
            a, o = b / float(np.median(t_torch)), b / float(np.median(t_onnx))
            lines.append(f"| {b} | {threads} | {a:.1f} | {o:.1f} | {o / a:.2f}x | {cos:.6f} | {diff:.1e} |")
            print(lines[-1], flush=True)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
