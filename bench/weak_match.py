"""How the service's weak-match line (`weak_below` in a search response) is chosen: measured.

    python bench/weak_match.py [--workdir var/weak-match] [--out weak-match.json]

The service marks a moment weak when it scores below the NULL_QUANTILE quantile of the best scores
that NULL_QUERIES seeded nonsense queries (`service.library.null_queries`) reach on the same
library with the same model. This script builds the demo library (`t2v demo`'s build step, the
demo model), then, for several quantiles, measures on queries the calibration never saw:
- real queries: every scene caption of the demo library, whole ("a red circle moving left on a
  gray background"), as 5 words ("a red circle moving left") and as 3 words ("a red circle");
  "real flagged" = share whose best result is weak (the page would say "no good match");
- nonsense queries: other seeded gibberish, keyboard mash and sentences about things the
  library does not hold ("a dog playing in the snow"); "nonsense passed" = share whose best
  result is NOT weak (confident noise).
The quantile used by the service is the one with the smallest sum of the two error shares (real
flagged + nonsense passed, weighted alike), printed as "best" (results and the choice:
docs/SERVICE.md).

It also counts how often a moment's `best_frame_s` (the card image) falls inside the scene its
caption describes, each scene caption searched within its own video, against the window start
+ 0.5 s that the page showed before.
"""

from __future__ import annotations

import argparse
import json
import random
import string
import sys
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from service.demo import build_demo  # noqa: E402
from service.library import NULL_QUANTILE, Library, null_queries, open_library  # noqa: E402
from service.settings import ServiceSettings  # noqa: E402

QUANTILES = (0.5, 0.75, 0.9, 0.95, 1.0)
OFF_LIBRARY = [
    "zzqx 12345 !!!",
    "a man slices onions, then the pan catches fire",
    "a dog playing in the snow",
    "stock market crash",
    "how to bake bread",
    "the quick brown fox",
    "hello world",
    "a cat sleeping on a sofa",
    "people dancing at a wedding",
    "qwerty uiop",
    "lorem ipsum dolor sit amet",
    "car driving on a highway at night",
    "asdf",
    "12345",
    "!!!",
    "xkcd",
]


def real_queries(manifest: Path) -> dict[str, list[str]]:
    forms: dict[str, list[str]] = {"whole caption": [], "5 words": [], "3 words": []}
    for line in manifest.read_text().splitlines():
        for scene in json.loads(line)["scenes"]:
            words = scene["caption"].split()
            forms["whole caption"].append(scene["caption"])
            forms["5 words"].append(" ".join(words[:5]))
            forms["3 words"].append(" ".join(words[:3]))
    return forms


def nonsense_queries(n: int = 32) -> list[str]:
    """Held out from the calibration: another seed, other lengths, plus OFF_LIBRARY."""
    rng = random.Random(98765)
    chars = string.ascii_letters + string.digits + " !?#"
    mash = ["".join(rng.choice(chars) for _ in range(rng.randint(2, 30))).strip() or "q" for _ in range(n)]
    return mash + OFF_LIBRARY


def best_score(lib: Library, query: str) -> float:
    res = lib.searcher.search(query, top_k=1)
    return res.moments[0].score


def best_frames(lib: Library, manifest: Path) -> dict[str, int]:
    """Scene captions whose top moment (within their video) has its best frame inside the scene."""
    ids = {v.title: v.id for v in lib.list_videos(0, 1000, None)[0]}
    inside = before = total = 0
    for line in manifest.read_text().splitlines():
        video = json.loads(line)
        for scene in video["scenes"]:
            hits, _, _ = lib.search(scene["caption"], 1, False, [ids[video["title"]]], None)
            m, best = hits[0].moment, hits[0].best_frame_s
            old = m.start + min(0.5, (m.end - m.start) / 2)
            inside += scene["start"] <= best <= scene["end"]
            before += scene["start"] <= old <= scene["end"]
            total += 1
    return {"scenes": total, "best_frame_inside": inside, "start_plus_half_inside": before}


def measure(lib: Library, workdir: Path) -> dict[str, Any]:
    null_tops = [best_score(lib, q) for q in null_queries()]
    real = {
        form: [best_score(lib, q) for q in qs]
        for form, qs in real_queries(workdir / "videos" / "manifest.jsonl").items()
    }
    junk = [best_score(lib, q) for q in nonsense_queries()]
    all_real = np.array([s for scores in real.values() for s in scores])
    rows = []
    for q in QUANTILES:
        line = float(np.quantile(null_tops, q))
        row: dict[str, Any] = {
            "quantile": q,
            "weak_below": round(line, 4),
            "real_flagged": round(float((all_real < line).mean()), 3),
            "nonsense_passed": round(float((np.array(junk) >= line).mean()), 3),
        }
        for form, scores in real.items():
            row[f"real_flagged[{form}]"] = round(float((np.array(scores) < line).mean()), 3)
        rows.append(row)
    return {
        "null_queries": len(null_tops),
        "real_queries": int(all_real.size),
        "nonsense_queries": len(junk),
        "real_best_scores": [round(float(x), 4) for x in np.percentile(all_real, [0, 10, 50, 90, 100])],
        "nonsense_best_scores": [round(float(x), 4) for x in np.percentile(junk, [0, 10, 50, 90, 100])],
        "rows": rows,
        "service_quantile": NULL_QUANTILE,
        "frames": best_frames(lib, workdir / "videos" / "manifest.jsonl"),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workdir", type=Path, default=Path("var/weak-match"))
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    settings = ServiceSettings(
        index_dir=args.workdir / "index", var_dir=args.workdir / "var", window=4.0, stride=2.0
    )
    build_demo(settings, args.workdir / "videos", log=lambda m: None)
    lib = open_library(settings)
    try:
        result = measure(lib, args.workdir)
    finally:
        lib.close()
    print(
        f"{result['real_queries']} real, {result['nonsense_queries']} nonsense queries"
        " (percentiles 0/10/50/90/100)"
    )
    print(f"  best score, real:     {result['real_best_scores']}")
    print(f"  best score, nonsense: {result['nonsense_best_scores']}")
    print("quantile  weak_below  real flagged (whole / 5 words / 3 words)   nonsense passed")
    for r in result["rows"]:
        forms = " / ".join(f"{r[k]:.2f}" for k in r if k.startswith("real_flagged["))
        print(
            f"  {r['quantile']:<6}  {r['weak_below']:.4f}      {r['real_flagged']:.2f} ({forms})"
            f"{'':>14}{r['nonsense_passed']:.2f}"
        )
    best = min(result["rows"], key=lambda r: r["real_flagged"] + r["nonsense_passed"])
    print(f"best: quantile {best['quantile']} (the service uses {NULL_QUANTILE})")
    f = result["frames"]
    print(
        f"card image inside the described scene: best frame {f['best_frame_inside']}/{f['scenes']},"
        f" window start + 0.5 s {f['start_plus_half_inside']}/{f['scenes']}"
    )
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
