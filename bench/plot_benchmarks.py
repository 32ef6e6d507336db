"""Benchmark plots for the docs from `bench/bench_search.py --out results.json`.

    python bench/plot_benchmarks.py results.json [--out-dir docs]

Writes bench-latency.png (p50 search latency vs store size, per first stage and distribution, the
exhaustive baseline included) and bench-recall.png (recall@10 vs clips reranked).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

from indexer.report.plots import Series, line_png


def plot(result: dict[str, Any], out_dir: Path) -> list[Path]:
    rows = result.get("rows") or []
    if not rows:
        raise ValueError("no benchmark rows (expected bench_search.py --out JSON)")
    latency: dict[str, list[tuple[float, float]]] = defaultdict(list)
    recall: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for r in rows:
        latency[f"{r['method']} ({r['dist']})"].append((r["clips"], r["p50_ms"]))
        if not r["method"].startswith("exhaustive"):  # the baseline reranks everything
            recall[f"{r['dist']}, {r['clips']} clips"].append((r["candidates"], r["recall10"]))

    def series(points: dict[str, list[tuple[float, float]]]) -> Series:
        out: Series = {}
        for name, pts in sorted(points.items()):
            pts.sort()
            out[name] = ([p[0] for p in pts], [p[1] for p in pts])
        return out

    return [
        line_png(
            out_dir / "bench-latency.png", "search latency vs store size", "clips", "p50 ms", series(latency)
        ),
        line_png(
            out_dir / "bench-recall.png",
            "two-stage recall@10 vs candidates",
            "clips reranked",
            "recall@10",
            series(recall),
        ),
    ]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", type=Path, help="bench_search.py --out JSON")
    ap.add_argument("--out-dir", type=Path, default=Path(__file__).resolve().parents[1] / "docs")
    args = ap.parse_args(argv)
    try:
        paths = plot(json.loads(args.results.read_text()), args.out_dir)
    except (OSError, ValueError, KeyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for p in paths:
        print(f"wrote {p}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
