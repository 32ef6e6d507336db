"""Issue 17: ingestion of a queue of files, service against CLI, ratios measured in one run.

    python bench/bench_ingest_queue.py inproc    [--seconds 30 30 30] [--config t2v-vit-b-32]
    python bench/bench_ingest_queue.py processes [--seconds 30 30 30] [--config t2v-vit-b-32]

inproc: one process, one model, the same videos through the three ways files reach the encoder:
`Ingestor.ingest_file` one after another (the service's worker before the prefetch), `Prefetcher`
(the service's worker now: the next file decodes while the current one encodes) and
`Ingestor.ingest_many` (what `t2v index add` runs); `decode-only`: just the decode side of each
file (what the prefetch can hide behind encoding). Wall and CPU seconds (this process; ffmpeg is
a child process and not counted).
processes: `t2v index add` (its summary's seconds: ingestion without the model load) against a
`uvicorn` service given one job with the same files (POST /v1/ingest until the job is done; a
one-file warm-up job first builds the service's ingestion model). Same OMP_NUM_THREADS for both.
Weights are random (pretrained=None): nothing is downloaded, and speed does not depend on them.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from indexer.corpora.lavfi import render_lavfi  # noqa: E402
from indexer.ingest.pipeline import IngestItem, Ingestor, IngestResult, Prefetcher  # noqa: E402
from indexer.ingest.prepare import Prepared  # noqa: E402
from indexer.store import Store, store_identity  # noqa: E402
from model import create_model, get_config  # noqa: E402

WINDOW, STRIDE = 10.0, 5.0


def render_videos(out: Path, seconds: list[float], hue: int = 0) -> list[Path]:
    """Distinct H.264 files (durations apart by 0.1 s; another `hue`: other pixels, same work)."""
    h264 = ("-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p")
    tint = f"hue=h={hue}" if hue else "null"
    return [
        render_lavfi(out / f"v{i}-{s:.0f}.mp4", f"testsrc2=s=320x240:d={s + 0.1 * i}:r=30", tint, h264)
        for i, s in enumerate(seconds)
    ]


def random_checkpoint(config: str, out: Path) -> Path:
    """A checkpoint of the config with random weights (seed 0): what the CLI and the service load."""
    from model import save_checkpoint

    torch.manual_seed(0)
    model = create_model(get_config(config).replace(pretrained=None))
    path = out / "model.pt"
    save_checkpoint(path, model.config, model.state_dict())
    return path


def bench_inproc(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = create_model(get_config(args.config).replace(pretrained=None))
    with tempfile.TemporaryDirectory() as tmp:
        videos = render_videos(Path(tmp), args.seconds)
        items = [IngestItem(v) for v in videos]
        rows = []
        for mode in args.modes:
            store = Store.open(Path(tmp) / f"idx-{mode}-{len(rows)}", store_identity(model), create=True)
            ing = Ingestor(store, model, WINDOW, STRIDE, args.batch)
            t0, c0 = time.perf_counter(), time.process_time()
            if mode == "one-by-one":
                results = [ing.ingest_file(i.path) for i in items]
            elif mode == "prefetch":
                pre = Prefetcher(ing)
                results = [
                    pre.ingest(i, items[k + 1] if k + 1 < len(items) else None) for k, i in enumerate(items)
                ]
                pre.close()
            elif mode == "decode-only":  # what the prefetch can hide: probe, hash, frames of each file
                prepared = [ing.prepare(i) for i in items]
                results = [
                    IngestResult(str(g.item.path), "done", clips=len(g.spans))
                    if isinstance(g, Prepared)
                    else g
                    for g in prepared
                ]
            else:
                results = ing.ingest_many(items, flush=False)
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            assert [r.status for r in results] == ["done"] * len(items), results
            clips = sum(r.clips for r in results)
            rows.append((mode, clips, wall, cpu))
            store.close()
            print(f"{mode}: {clips} clips, {wall:.1f} s wall, {cpu:.1f} s CPU", flush=True)
    base = (
        {"one-by-one": min(w for m, _, w, _ in rows if m == "one-by-one")}
        if "one-by-one" in args.modes
        else {}
    )
    print(f"\n### Queue of {len(items)} files ({args.config}, {args.threads} threads, in one process)\n")
    print("| path | clips | wall s | CPU s | clips/s | wall vs one-by-one |")
    print("|---|---|---|---|---|---|")
    for mode, clips, wall, cpu in rows:
        ratio = f"{base['one-by-one'] / wall:.2f}x" if "one-by-one" in base else "-"
        print(f"| {mode} | {clips} | {wall:.1f} | {cpu:.1f} | {clips / wall:.3f} | {ratio} |")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_cli(videos: list[Path], ckpt: Path, index: Path, env: dict[str, str]) -> float:
    cmd = [sys.executable, "-m", "service.cli", "index", "add", *map(str, videos)]
    cmd += ["--index", str(index), "--checkpoint", str(ckpt), "--quiet"]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    m = re.search(r"summary: (\d+) indexed .* in ([\d.]+)s", proc.stdout)
    if proc.returncode != 0 or m is None or int(m.group(1)) != len(videos):
        raise SystemExit(f"t2v index add failed:\n{proc.stdout}\n{proc.stderr}")
    return float(m.group(2))


def run_job(client: httpx.Client, videos: list[Path]) -> float:
    t0 = time.perf_counter()
    r = client.post("/v1/ingest", json={"paths": [str(v) for v in videos]})
    assert r.status_code == 202, r.text
    while True:
        job = client.get(f"/v1/jobs/{r.json()['id']}").json()
        if job["state"] == "done":
            break
        time.sleep(0.2)
    took = time.perf_counter() - t0
    assert [it["state"] for it in job["items"]] == ["done"] * len(videos), job
    return took


def bench_processes(args: argparse.Namespace) -> None:
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS=str(args.threads), PYTHONUNBUFFERED="1")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        videos = render_videos(work / "videos", args.seconds)
        warm = render_videos(work / "warm", [2.0])
        ckpt = random_checkpoint(args.config, work)
        port = free_port()
        senv = dict(
            env,
            T2V_MODEL__CHECKPOINT=str(ckpt),
            T2V_INDEX_DIR=str(work / "svc-index"),
            T2V_VAR_DIR=str(work / "svc-var"),
            T2V_ALLOWED_ROOTS=json.dumps([str(work)]),
        )
        cmd = [sys.executable, "-m", "uvicorn", "--factory", "service.app:create_app", "--port", str(port)]
        with open(work / "server.log", "wb") as log:
            server = subprocess.Popen(cmd, cwd=ROOT, env=senv, stdout=log, stderr=log)
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
                deadline = time.monotonic() + 600
                while True:
                    if server.poll() is not None or time.monotonic() > deadline:
                        raise SystemExit((work / "server.log").read_text()[-3000:])
                    try:
                        if client.get("/readyz").status_code == 200:
                            break
                    except httpx.HTTPError:
                        pass
                    time.sleep(0.5)
                run_job(client, warm)  # builds the ingestion model (lazily, on the first item)
                cli, svc = [], []
                for k in range(args.repeats):  # alternating, so that both see the same load
                    cli.append(run_cli(videos, ckpt, work / f"cli-{k}", env))
                    print(f"cli {k}: {cli[-1]:.1f} s", flush=True)
                    # the service's store holds the earlier runs' files: each run its own (tinted) renders
                    batch = videos if k == 0 else render_videos(work / f"s{k}", args.seconds, hue=40 * k)
                    svc.append(run_job(client, batch))
                    print(f"service {k}: {svc[-1]:.1f} s", flush=True)
        finally:
            server.terminate()
            server.wait(timeout=60)
    print(
        f"\n### Service vs CLI ({args.config}, {len(videos)} files of {args.seconds} s, "
        f"{args.threads} threads)\n"
    )
    print("| run | CLI s | service s | service/CLI |")
    print("|---|---|---|---|")
    for k, (c, s) in enumerate(zip(cli, svc, strict=True)):
        print(f"| {k} | {c:.1f} | {s:.1f} | {s / c:.2f} |")
    print(f"| best | {min(cli):.1f} | {min(svc):.1f} | {min(svc) / min(cli):.2f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("inproc", "processes"):
        p = sub.add_parser(name)
        p.add_argument("--seconds", type=float, nargs="+", default=[30.0, 30.0, 30.0])
        p.add_argument("--config", default="t2v-vit-b-32")
        p.add_argument("--threads", type=int, default=2)
        p.add_argument("--batch", type=int, default=32)
        if name == "inproc":
            p.add_argument("--modes", nargs="+", default=["one-by-one", "prefetch", "ingest_many"])
        else:
            p.add_argument("--repeats", type=int, default=1)
    args = ap.parse_args()
    bench_inproc(args) if args.cmd == "inproc" else bench_processes(args)


if __name__ == "__main__":
    main()
