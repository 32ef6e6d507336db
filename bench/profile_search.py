"""Where a search's time goes: py-spy samples the search loop, grouped into the search's parts.

    python bench/profile_search.py --dist isotropic --clips 100000 [--index global-ivf] [--seconds 30]

Builds a store like `bench_search.py` does (random unit vectors in ViT-B/32's shapes), then runs
searches in a loop while `py-spy record` (native frames included) samples this process; prints a
table of the share of samples per part (inclusive: a sample counts for the first part, in the
order below, found in its stack). The store build is not sampled.
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import bench_search  # noqa: E402
import torch  # noqa: E402

from indexer.search.searcher import Searcher  # noqa: E402

# (part, marks): a sample belongs to the first part with a frame containing one of its marks.
# Marks are the project's own Python functions ("name (path"), not BLAS symbols: FAISS and torch
# both call sgemm_.
PARTS: list[tuple[str, tuple[str, ...]]] = [
    ("stage 1: FAISS search", ("candidates (",)),
    ("stage 1: merge hits (numpy unique/argsort)", ("candidate_clips (",)),
    ("stage 2: gather float16 rows (memmap)", ("matrices (",)),
    ("stage 2: score kernel (fp16->fp32, GEMM, soft-max)", ("one_query_scores", "partial_alignment")),
    ("stage 2: other", ("rerank (",)),
    ("metadata (SQLite)", ("clip_records (",)),
]


def classify(stack: list[str]) -> str:
    for part, marks in PARTS:
        if any(m in frame and ("indexer" in frame or "model" in frame) for frame in stack for m in marks):
            return part
    return "other (final sort, result assembly, Python)"


def summarise(raw: Path) -> collections.Counter[str]:
    """py-spy's raw format: 'frame;frame;...;leaf count' per line."""
    out: collections.Counter[str] = collections.Counter()
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            out[classify(stack.split(";"))] += int(count)
    return out


def main(argv: list[str] | None = None) -> collections.Counter[str]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dist", default="isotropic", choices=["isotropic", "clustered"])
    ap.add_argument("--clips", type=int, default=100_000)
    ap.add_argument("--index", default="global-ivf", help="first-stage index type")
    ap.add_argument("--k", type=int, default=64, help="hits per query vector")
    ap.add_argument("--seconds", type=int, default=30, help="sampling time")
    ap.add_argument("--rate", type=int, default=200, help="samples per second")
    ap.add_argument("--dir", default=None)
    args = ap.parse_args(argv)
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        raise SystemExit("py-spy is not installed (pip install py-spy; it is in the dev extra)")
    torch.set_num_threads(1)
    corpus = bench_search.Corpus(args.dist, 512, 20, max(1, min(2000, args.clips // 50)))
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        store, build_s = bench_search.build_store(Path(tmp) / "s", corpus, args.clips, args.index)
        queries = bench_search.make_queries(store, corpus, 50, 16)
        searcher = Searcher(store, candidates_per_vector=args.k, max_candidates=512)
        searcher.search(queries[0])  # warm-up outside the samples
        raw = Path(tmp) / "profile.txt"
        cmd = [spy, "record", "--pid", str(os.getpid()), "--native", "--format", "raw", "--rate",
               str(args.rate), "--duration", str(args.seconds), "--output", str(raw)]  # fmt: skip
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        n, totals = 0, []
        while proc.poll() is None:  # polled here: a waiting thread would be sampled as busy
            r = searcher.search(queries[n % len(queries)], top_k=10)
            totals.append(r.timings_ms["total"])
            n += 1
        if proc.returncode != 0 or not raw.exists():
            err = proc.stderr.read() if proc.stderr else ""
            raise SystemExit(f"py-spy failed ({proc.returncode}): {err}")
        parts = summarise(raw)
        store.close()
    total = sum(parts.values()) or 1
    spec = f"{args.dist} {args.clips:,} clips, {args.index}, {args.k} hits/vector"
    print(f"\nProfile: {spec}; {n} searches in {args.seconds} s (median {sorted(totals)[n // 2]:.1f} ms), "
          f"{total} samples; store built in {build_s:.0f} s\n")  # fmt: skip
    print("| part of the search | share of samples |")
    print("|---|---|")
    for part, count in parts.most_common():
        print(f"| {part} | {100 * count / total:.1f}% |")
    return parts


if __name__ == "__main__":
    main()
