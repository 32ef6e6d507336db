"""Moment-level and view-level measurements of a trained model on the synthetic benchmark.

    python bench/eval_model.py --checkpoint CKPT --manifest data/synth/test.jsonl [--manifest ...]
                               [--window 2 --stride 1] [--work DIR] [--device auto] [--out results.json]

Per manifest (`t2v synth` test/val rows: video, caption, kind partial|full, scene_start/scene_end),
the distinct videos are indexed into a fresh store (the Ingestor, as `t2v index add` runs it) and:
1. moments (partial captions): the top moment of a search restricted to the caption's video;
   "overlap" = share whose window intersects the scene, "midpoint" = share whose window midpoint
   lies in the scene (closed interval), "mean_iou" = mean temporal IoU window vs scene;
   "global_overlap" = share whose top moment over the whole store is in the right video AND
   overlaps the scene. "full_video_top1" = share of full captions whose top moment is their video.
2. rows (partial and full captions separately): on the stored (T+K) set of the right video's best
   clip, `score_matrix_components` of the caption's valid rows; shares of queries where the winning
   video row of v2t (argmax w_video), the video row the t2v winner picks (argmax sim[argmax w_text])
   and the winning text row (argmax w_text) are views rather than frames/tokens. Zero-shot and
   meanP models have no views: the shares are 0 and the note says "no views".
3. arrow of time (partial and full captions that time reversal rewrites, model/time_reversal.py:
   "moving left" -> "moving right", "A, then B" -> "B, then A"): share whose right video scores
   the caption above its reversed twin (best moment of that video each). 0.5 = direction and
   order are invisible; frame sets without order sit there when no single frame shows direction.
4. scenes (partial captions): each described scene cut out as its own clip (T frames inside the
   scene, as stage-1 pre-training sees them); "r1" = share whose top-scored scene carries the
   caption, "arrow" = share scoring their scene above the time-reversed caption. What the model
   reads inside one scene, apart from finding the scene within a longer video.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from indexer.ingest.pipeline import Ingestor  # noqa: E402
from indexer.media.video import sample_frames, segment_times, to_model_input  # noqa: E402
from indexer.search.searcher import Searcher  # noqa: E402
from indexer.settings import resolve_device  # noqa: E402
from indexer.store import Store, store_identity  # noqa: E402
from model import T2VParser, create_model  # noqa: E402
from model.scoring import score_matrix_components  # noqa: E402
from model.time_reversal import ReversalLexicon  # noqa: E402


@dataclass(frozen=True)
class Caption:
    video: Path  # resolved against the manifest's folder
    text: str
    kind: str  # 'partial' | 'full'
    start: float | None  # the scene, partial captions only
    end: float | None


def read_manifest(path: Path) -> list[Caption]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [
        Caption((path.parent / r["video"]).resolve(), r["caption"], r["kind"], r.get("scene_start"),
                r.get("scene_end"))
        for r in rows
    ]  # fmt: skip


def span_match(start: float, end: float, a: float, b: float) -> tuple[bool, bool, float]:
    """(window intersects [a, b], window midpoint in [a, b], IoU) of a moment [start, end]."""
    inter = max(0.0, min(end, b) - max(start, a))
    union = max(end, b) - min(start, a)
    mid = (start + end) / 2
    return inter > 0, a <= mid <= b, inter / union if union > 0 else 0.0


def views_of(model: T2VParser) -> int:
    """K: views per set (0 for zero-shot and meanP, whose sets are frames / one vector)."""
    cfg = model.config
    return 0 if cfg.zeroshot or cfg.meanp else int(cfg.num_tokens)


def build_store(
    root: Path, model: T2VParser, videos: list[Path], window: float, stride: float
) -> tuple[Store, dict[Path, int]]:
    """A fresh store of `videos`, indexed as `t2v index add` does (the same Ingestor); video ids by path."""
    store = Store.open(root, store_identity(model), create=True)
    results = Ingestor(store, model, window, stride).ingest_many(videos)
    bad = [f"{r.path}: {r.status} {r.reason}" for r in results if r.status != "done"]
    if bad:  # a missing id would silently drop captions from the counts
        store.close()
        raise SystemExit("cannot index:\n" + "\n".join(bad))
    return store, {Path(r.path).resolve(): int(r.video_id) for r in results if r.video_id is not None}


def row_wins(text: torch.Tensor, video: torch.Tensor, n_tok: int, frames: int, tau: float) -> tuple[int, ...]:
    """(v2t video row is a view, t2v's picked video row is a view, winning text row is a view)."""
    parts = score_matrix_components(text, video, tau)
    v_row = int(parts["w_video"].argmax())
    t_row = int(parts["w_text"].argmax())
    picked = int(parts["sim"][t_row].argmax())
    return int(v_row >= frames), int(picked >= frames), int(t_row >= n_tok)


def mean(xs: Sequence[float]) -> float:
    return float(np.mean(xs)) if xs else 0.0


@torch.no_grad()
def scene_probe(caps: list[Caption], model: T2VParser, lexicon: ReversalLexicon) -> dict[str, Any]:
    """Single-scene retrieval among the manifest's scenes, and the arrow of time inside a scene."""
    scenes = [c for c in caps if c.kind == "partial" and c.start is not None and c.end is not None]
    if not scenes:
        return {"count": 0, "r1": 0.0, "arrow": {"count": 0, "right": 0.0}}
    pre, frames = model.backbone.preprocess, int(model.config.frames)
    device = next(model.parameters()).device
    videos = []
    for i in range(0, len(scenes), 32):
        x = torch.stack([
            to_model_input(sample_frames(c.video, segment_times(c.start or 0.0, c.end or 0.0, frames),
                                         pre).frames, pre)
            for c in scenes[i : i + 32]
        ]).to(device)  # (b, T, 3, S, S)  # fmt: skip
        videos.append(model.encode_videos(x).vectors)  # (b, n_v, D)
    video = torch.cat(videos)  # (N, n_v, D)
    texts = [c.text for c in scenes]
    scores = model.score(model.encode_texts(texts), video).float()  # (N, N)
    top = scores.argmax(dim=1).tolist()
    r1 = [texts[j] == texts[i] for i, j in enumerate(top)]  # a repeated caption: any of its scenes
    twins = [(i, r) for i, t in enumerate(texts) if (r := lexicon.reverse(t)) != t]
    arrow: list[bool] = []
    if twins:
        back = model.score(model.encode_texts([t for _, t in twins]), video).float()  # (R, N)
        arrow = [bool(scores[i, i] > back[r, i]) for r, (i, _) in enumerate(twins)]
    return {"count": len(scenes), "r1": mean(r1), "arrow": {"count": len(arrow), "right": mean(arrow)}}


def evaluate(manifest: Path, model: T2VParser, work: Path, window: float, stride: float) -> dict[str, Any]:
    caps = read_manifest(manifest)
    videos = sorted({c.video for c in caps})
    t0 = time.perf_counter()
    store, ids = build_store(Path(tempfile.mkdtemp(prefix=manifest.stem + "-", dir=work)), model, videos,
                        window, stride)  # fmt: skip
    t_index = time.perf_counter() - t0
    try:
        clips = len(store.live_clip_ids())
        searcher = Searcher(store, model)
        frames, k = int(model.config.frames), views_of(model)
        moments: dict[str, list[float]] = {k_: [] for k_ in ("overlap", "midpoint", "iou", "global")}
        full_top1: list[float] = []
        rows: dict[str, list[tuple[int, ...]]] = {"partial": [], "full": []}
        arrow: dict[str, list[float]] = {"partial": [], "full": []}
        lexicon = ReversalLexicon.from_file()
        for c in caps:
            vid = ids[c.video]
            text = searcher.encode(c.text)
            best = searcher.search(text, top_k=1, video_ids=[vid]).moments[0]
            backwards = lexicon.reverse(c.text)
            if backwards != c.text:
                twin = searcher.search(searcher.encode(backwards), top_k=1, video_ids=[vid]).moments[0]
                arrow[c.kind].append(best.score > twin.score)
            top = searcher.search(text, top_k=1).moments
            if c.kind == "partial":
                assert c.start is not None and c.end is not None
                over, mid, iou = span_match(best.start, best.end, c.start, c.end)
                moments["overlap"].append(over)
                moments["midpoint"].append(mid)
                moments["iou"].append(iou)
                hit = bool(top) and top[0].video_id == vid and span_match(top[0].start, top[0].end, c.start,
                                                                          c.end)[0]  # fmt: skip
                moments["global"].append(hit)
            else:
                full_top1.append(bool(top) and top[0].video_id == vid)
            # the exact stored set the rerank scored (float16 -> float32, as the kernel computes)
            valid = text.vectors[0][text.mask[0]].float()
            video = torch.from_numpy(store.matrices(np.array([best.clip_id]))[0]).float().to(valid.device)
            with torch.no_grad():
                rows[c.kind].append(
                    row_wins(valid, video, len(valid) - k, frames, store.tau) if k else (0, 0, 0)
                )
    finally:
        store.close()
    row_keys = ("v2t_video_view", "t2v_video_view", "text_view")
    return {
        "manifest": str(manifest),
        "videos": len(videos),
        "clips": clips,
        "index_seconds": round(t_index, 2),
        "seconds": round(time.perf_counter() - t0, 2),
        "moments": {
            "count": len(moments["overlap"]),
            "overlap": mean(moments["overlap"]),
            "midpoint": mean(moments["midpoint"]),
            "mean_iou": mean(moments["iou"]),
            "global_overlap": mean(moments["global"]),
            "full_count": len(full_top1),
            "full_video_top1": mean(full_top1),
        },
        "rows": {
            kind: {"count": len(r)} | {key: mean([x[i] for x in r]) for i, key in enumerate(row_keys)}
            for kind, r in rows.items()
        },
        "arrow_of_time": {kind: {"count": len(a), "right": mean(a)} for kind, a in arrow.items()},
        "scenes": scene_probe(caps, model, lexicon),
        "note": "" if k else "no views",
    }


def table(res: dict[str, Any], window: float, stride: float) -> str:
    m, r = res["moments"], res["rows"]
    lines = [
        f"{res['manifest']}: {res['videos']} videos, {res['clips']} clips (window {window:g}s stride "
        f"{stride:g}s), {m['count']} partial / {m['full_count']} full captions, {res['seconds']:.1f}s",
        f"  moments (partial, right video): overlap {m['overlap']:.3f}  midpoint {m['midpoint']:.3f}  "
        f"mean IoU {m['mean_iou']:.3f}",
        f"  whole store: partial right video + overlap {m['global_overlap']:.3f}  "
        f"full right video top-1 {m['full_video_top1']:.3f}",
        "  winning row is a view        partial   full" + (f"   ({res['note']})" if res["note"] else ""),
    ]
    for key, label in (("v2t_video_view", "v2t video row"), ("t2v_video_view", "t2v picked video row"),
                       ("text_view", "t2v text row")):  # fmt: skip
        lines.append(f"    {label:<26} {r['partial'][key]:>7.3f} {r['full'][key]:>6.3f}")
    a = res["arrow_of_time"]
    lines.append(
        f"  arrow of time (beats its reversed twin; 0.5 = blind): partial {a['partial']['right']:.3f} "
        f"of {a['partial']['count']}, full {a['full']['right']:.3f} of {a['full']['count']}"
    )
    sc = res["scenes"]
    lines.append(
        f"  scenes as their own clips ({sc['count']}): R@1 {sc['r1']:.3f}  arrow of time "
        f"{sc['arrow']['right']:.3f} of {sc['arrow']['count']}"
    )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", type=Path, required=True)
    ap.add_argument("--manifest", type=Path, action="append", required=True)
    ap.add_argument("--window", type=float, default=2.0, help="clip window in seconds")
    ap.add_argument("--stride", type=float, default=1.0, help="step between windows in seconds")
    ap.add_argument("--work", type=Path, default=None, help="where the stores go (default: a temp dir)")
    ap.add_argument("--device", default="auto", help="'auto', 'cpu' or 'cuda[:N]'")
    ap.add_argument("--out", type=Path, default=None, help="JSON results")
    args = ap.parse_args()
    model = create_model(None, checkpoint=args.checkpoint, device=resolve_device(args.device))
    model.eval()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work if args.work is not None else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        results = []
        for manifest in args.manifest:
            res = evaluate(manifest, model, work, args.window, args.stride)
            print(table(res, args.window, args.stride), flush=True)
            results.append(res)
    out = {
        "checkpoint": str(args.checkpoint),
        "model": model.config.name or model.config.backbone,
        "frames": int(model.config.frames),
        "views": views_of(model),
        "window": args.window,
        "stride": args.stride,
        "seconds": round(time.perf_counter() - t0, 2),
        "manifests": results,
    }
    print(f"total {out['seconds']:.1f}s")
    if args.out is not None:
        args.out.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
