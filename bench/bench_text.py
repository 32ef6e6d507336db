"""Words in video, with ground truth: videos made here with known words at known times (subtitle
tracks embedded and beside the file, text drawn into the frames, espeak-ng speech muxed in) plus
the synthetic visual benchmark's test videos, all ingested into one store with every text source on.

    python bench/bench_text.py [--visual 24] [--out results.json]

Reports per source: recall of the right moment at 1 and 5 (right video, returned start within
TOLERANCE s of the words), the median time error of the right video's first result, and the
extraction cost in seconds per minute of video (the visual encoding's beside it, same run). Then
fusion: the text queries and the visual benchmark's captions under reciprocal-rank fusion (rrf) and
calibrated scores (score), against visual-only search of the same captions (must not get worse).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from statistics import median

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from indexer.corpora.synthetic import generate_benchmark  # noqa: E402
from indexer.ingest.pipeline import Ingestor, IngestResult  # noqa: E402
from indexer.search.fusion import fused_search  # noqa: E402
from indexer.search.searcher import Searcher  # noqa: E402
from indexer.settings import DEMO_CHECKPOINT  # noqa: E402
from indexer.store import Store, store_identity  # noqa: E402
from indexer.text import TextSettings  # noqa: E402
from indexer.text.synth import ocr_video, speech_video, subtitle_video  # noqa: E402
from model import create_model  # noqa: E402

TOLERANCE = 2.0  # seconds between the returned start and the words
SECONDS = 20.0  # each text video
FILLER = "nothing much happens here"  # a second line in every text video: the time must be right

SUBTITLES = ["the purple elephant dances", "grandmother bakes fresh bread", "a rocket launches at dawn"]
SIDECARS = ["the train leaves platform nine", "seven golden keys are hidden"]
SCREEN = ["GRAND OPENING", "EXIT ONLY", "HAPPY BIRTHDAY", "SALE TODAY"]
SPOKEN = ["good morning everybody", "thank you very much", "welcome to the kitchen"]
COLOURS = ["navy", "olive", "maroon", "teal", "purple", "gray", "black", "brown", "darkgreen", "indigo"]


def make_text_videos(root: Path, rng: random.Random, render: bool = True) -> list[dict]:
    """[{path, source, phrase, time}] - one phrase per video at a random time, a filler line elsewhere."""
    out = []
    items = (
        [("subtitles", p, "embedded") for p in SUBTITLES]
        + [("subtitles", p, "sidecar") for p in SIDECARS]
        + [("ocr", p, "") for p in SCREEN]
        + [("speech", p, "") for p in SPOKEN]
    )
    for i, (source, phrase, how) in enumerate(items):
        t = round(rng.uniform(2.0, SECONDS - 5.0), 1)
        other = 1.0 if t > SECONDS / 2 else SECONDS - 3.5
        path = root / f"{source}-{i:02d}.mp4"
        colour = COLOURS[i % len(COLOURS)]
        if not render:
            pass
        elif source == "subtitles":
            cues = sorted([(t, t + 2.0, phrase), (other, other + 2.0, FILLER)])
            if how == "embedded":
                subtitle_video(path, cues, SECONDS, colour)
            else:
                subtitle_video(
                    path, cues, SECONDS, colour, embed=False, sidecar=".en.srt" if i % 2 else ".vtt"
                )
        elif source == "ocr":
            ocr_video(
                path, sorted([(t, t + 3.0, phrase), (other, other + 2.0, FILLER.upper())]), SECONDS, colour
            )
        else:
            speech_video(path, sorted([(t, phrase), (other, FILLER)]), SECONDS, colour)
        out.append({"path": path, "source": source, "phrase": phrase, "time": t})
    return out


def rank_of(results: list, video_id: int, t: float | None) -> tuple[int | None, float | None]:
    """1-based rank of the first result of the right video (within TOLERANCE of t when given),
    and that video's first result's time error."""
    err = None
    for r, m in enumerate(results, 1):
        if m.video_id != video_id:
            continue
        if t is None:
            return r, None
        err = err if err is not None else abs(m.start - t)
        if abs(m.start - t) <= TOLERANCE:
            return r, err
    return None, err


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--visual", type=int, default=24, help="synthetic benchmark test videos")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--reuse", type=Path, default=None, help="a directory an earlier run left: search only")
    args = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    rng = random.Random(args.seed)
    tmp = args.reuse or Path(tempfile.mkdtemp(prefix="t2v-bench-text-"))
    print(f"working in {tmp}", file=sys.stderr)
    text_items = make_text_videos(tmp / "text", rng, render=args.reuse is None)
    bench = generate_benchmark(
        tmp / "synth", seed=args.seed, n_train=0, n_val=0, n_test=args.visual, render=args.reuse is None
    )
    visual_rows = [json.loads(line) for line in bench["test"].read_text().splitlines() if line.strip()]
    row_paths = [(bench["test"].parent / r["video"]).resolve() for r in visual_rows]
    visual_paths = list(dict.fromkeys(row_paths))  # a video has several captions

    model = create_model(None, checkpoint=DEMO_CHECKPOINT)
    store = Store.open(tmp / "index", store_identity(model), create=True)
    ingestor = Ingestor(store, model, text=TextSettings(ocr=True, speech=True))
    t0 = time.perf_counter()
    paths = [i["path"] for i in text_items] + visual_paths
    if args.reuse is None:
        results = ingestor.ingest_many(paths)
    else:  # the store holds them: the results as ingestion gave them (costs from the stored reports)
        stored = {Path(v.path): v for v in store.list_videos(limit=10_000)}
        results = [
            IngestResult(
                str(p), "done", stored[p.resolve()].id, tracks=store.text_tracks(stored[p.resolve()].id)
            )
            for p in paths
        ]
    wall = time.perf_counter() - t0
    assert all(r.status == "done" for r in results), [r for r in results if r.status != "done"]
    records = [store.get_video(r.video_id) for r in results if r.video_id is not None]
    minutes = sum(v.duration for v in records if v is not None) / 60
    text_secs: dict[str, float] = {}
    for r in results:
        for rep in r.tracks:
            text_secs[rep.source] = text_secs.get(rep.source, 0.0) + rep.seconds
    cost = {s: round(v / minutes, 2) for s, v in text_secs.items()}
    if args.reuse is None:
        cost["visual (decode + encode)"] = round((wall - sum(text_secs.values())) / minutes, 2)
    for item, r in zip(text_items, results, strict=False):
        item["video_id"] = r.video_id

    searcher = Searcher(store, model)
    table: dict[str, dict] = {}
    for source in ("subtitles", "ocr", "speech"):
        items = [i for i in text_items if i["source"] == source]
        for method in ("rrf", "score"):
            ranks, errs = [], []
            for i in items:
                res = fused_search(searcher, i["phrase"].lower(), top_k=5, method=method)  # type: ignore[arg-type]
                rank, err = rank_of(res.moments, i["video_id"], i["time"])
                ranks.append(rank)
                if err is not None:
                    errs.append(err)
            table[f"{source} ({method})"] = {
                "queries": len(items),
                "R@1": round(sum(r == 1 for r in ranks) / len(items), 3),
                "R@5": round(sum(r is not None for r in ranks) / len(items), 3),
                "median time error s": round(median(errs), 2) if errs else None,
            }
    by_path = {Path(r.path).resolve(): r.video_id for r in results[len(text_items) :]}
    vis_ids = [int(by_path[p] or 0) for p in row_paths]
    for label, method, sources in [
        ("visual only", "rrf", ["visual"]),
        ("all, rrf", "rrf", None),
        ("all, score", "score", None),
    ]:
        ranks = []
        for row, vid in zip(visual_rows, vis_ids, strict=True):
            res = fused_search(searcher, row["caption"], sources=sources, top_k=5, method=method)  # type: ignore[arg-type]
            ranks.append(rank_of(res.moments, vid, None)[0])
        table[f"visual captions: {label}"] = {
            "queries": len(ranks),
            "R@1": round(sum(r == 1 for r in ranks) / len(ranks), 3),
            "R@5": round(sum(r is not None for r in ranks) / len(ranks), 3),
        }
    store.close()
    report = {
        "videos": len(results),
        "minutes": round(minutes, 2),
        "ingest_wall_s": round(wall, 1),
        "cost_s_per_minute": cost,
        "results": table,
        "tolerance_s": TOLERANCE,
    }
    print(json.dumps(report, indent=2))
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
