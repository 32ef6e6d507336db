"""HTTP search latency of the running service (a real uvicorn process) on this machine.

    python bench/bench_service.py [--clips 10000] [--queries 100] [--config NAME --no-demo]
                                  [--encoders onnx-fp32 torch] [--query-threads 1 2] [--clients 2] [--busy 1]
                                  [--graph-dir var/onnx-graphs]

Two stores: the demo library (rendered + indexed like `t2v demo`) and a store of `--clips` clips
of random unit vectors written through the store API. For each, p50/p95 of POST /v1/search over
HTTP (one server per query encoder in `--encoders`), against the same searches run in-process (no
HTTP, torch encoder) in this run as the baseline, and the exhaustive exact scoring of every clip as
the reference the two-stage search replaces. `--config` (e.g. t2v-vit-b-32) serves that config with
random weights (nothing is downloaded) for the random store instead of the demo model.
`--query-threads`: one server per T2V_QUERY_THREADS value (ONNX encoders); `--clients K`: also the
searches/s and latency of each server with K clients sending at once; `--busy N`: N other processes
spin on a core each while measuring (a machine doing other work). The thread trade-off.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from indexer.search.searcher import Searcher  # noqa: E402
from indexer.settings import ModelSettings  # noqa: E402
from indexer.store import ClipSpan, NewVideo, Store, store_identity  # noqa: E402
from model import get_config  # noqa: E402
from service.demo import build_demo  # noqa: E402
from service.library import _build_model  # noqa: E402
from service.settings import ServiceSettings  # noqa: E402

WORDS = {
    "colour": ["red", "green", "blue", "yellow", "purple"],
    "shape": ["circle", "square", "triangle"],
    "motion": ["left", "right", "up", "down"],
}


def queries(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [
        f"a {rng.choice(WORDS['colour'])} {rng.choice(WORDS['shape'])} moving {rng.choice(WORDS['motion'])}"
        for _ in range(n)
    ]


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def timed(fn: Callable[[str], object], qs: list[str]) -> list[float]:
    fn(qs[0])  # warm-up
    out = []
    for q in qs:
        t = time.perf_counter()
        fn(q)
        out.append((time.perf_counter() - t) * 1000)
    return out


def random_store(settings: ServiceSettings, clips: int, clips_per_video: int = 10) -> None:
    model = _build_model(settings, text_only=True)
    n_v, d = model.num_video_vectors, model.dim
    rng = np.random.default_rng(0)
    with Store.open(settings.index_dir, store_identity(model), create=True) as store:
        for v in range(clips // clips_per_video):
            mats = rng.standard_normal((clips_per_video, n_v, d)).astype(np.float32)
            mats /= np.linalg.norm(mats, axis=-1, keepdims=True)
            spans = [ClipSpan(5.0 * i, 5.0 * i + 10.0) for i in range(clips_per_video)]
            video = NewVideo(
                path=f"/nonexistent/random-{v:05d}.mp4",
                title=f"random {v}",
                content_hash=f"random-{v}",
                duration=5.0 * clips_per_video + 5.0,
                fps=25.0,
                width=320,
                height=240,
                codec="h264",
                size_bytes=1,
            )
            store.add_video(video, spans, mats)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve(settings: ServiceSettings) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = dict(os.environ, HF_HUB_OFFLINE="1", T2V_INDEX_DIR=str(settings.index_dir))
    env["T2V_VAR_DIR"] = str(settings.var_dir)
    env["T2V_MODEL__CONFIG"] = settings.model.config
    env["T2V_QUERY_ENCODER"] = settings.query_encoder
    env["T2V_QUERY_GRAPH_DIR"] = str(settings.query_graphs)
    env["T2V_QUERY_THREADS"] = str(settings.query_threads)
    cmd = [sys.executable, "-m", "uvicorn", "--factory", "service.app:create_app", "--port", str(port)]
    cmd += ["--log-level", "warning"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 1800  # a first start may export the query graph (minutes under load)
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError("server did not become ready")


def concurrent(url: str, qs: list[str], clients: int) -> tuple[float, list[float]]:
    """Searches/s and per-request ms with `clients` clients sending `qs` at once, each its next
    query as soon as its last answer came."""
    from concurrent.futures import ThreadPoolExecutor

    todo = iter(qs)
    lock = threading.Lock()
    took: list[float] = []

    def client() -> None:
        with httpx.Client(base_url=url, timeout=60) as c:
            while True:
                with lock:
                    q = next(todo, None)
                if q is None:
                    return
                t = time.perf_counter()
                c.post("/v1/search", json={"query": q, "top_k": 10}).raise_for_status()
                with lock:
                    took.append((time.perf_counter() - t) * 1000)

    t0 = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        for f in [pool.submit(client) for _ in range(clients)]:
            f.result()
    return len(qs) / (time.perf_counter() - t0), took


def measure(
    name: str, settings: ServiceSettings, qs: list[str], encoders: list[str], threads: list[int], clients: int
) -> tuple[list[str], list[str]]:
    """Table rows, and per encoder where the server's time went (and its throughput with `clients`
    concurrent clients, when more than 1)."""
    model = _build_model(settings, text_only=True)
    with Store.open(settings.index_dir) as store:
        clips = store.stats().clips
        searcher = Searcher(store, model)
        inproc = timed(lambda q: searcher.search(q, top_k=10), qs)
        exhaustive = timed(
            lambda q: searcher.search(q, top_k=10, exhaustive=True), qs[: max(10, len(qs) // 5)]
        )
    runs: list[tuple[str, list[float]]] = []
    where: list[str] = []  # per encoder: the server's own stage timings, medians over the queries
    servers = [(e, t) for e in encoders for t in (threads if e != "torch" else [0])]
    for encoder, n_threads in servers:
        label = f"{encoder} encoder" + (f", T2V_QUERY_THREADS={n_threads}" if n_threads else "")
        proc, url = serve(settings.model_copy(update={"query_encoder": encoder, "query_threads": n_threads}))
        stages: dict[str, list[float]] = {}
        throughput = ""  # with `clients` at once, when more than 1
        try:
            with httpx.Client(base_url=url, timeout=60) as c:

                def http(q: str, stages: dict[str, list[float]] = stages) -> None:
                    r = c.post("/v1/search", json={"query": q, "top_k": 10})
                    r.raise_for_status()
                    body = r.json()
                    for k, v in {**body["stages_ms"], "took_ms": body["took_ms"]}.items():
                        stages.setdefault(k, []).append(float(v))

                runs.append((f"HTTP POST /v1/search, {label}", timed(http, qs)))
            if clients > 1:
                qps, took = concurrent(url, qs, clients)
                throughput = (
                    f"{name}, {label}: {clients} concurrent clients: {qps:.1f} searches/s, "
                    f"p50 {pct(took, 50):.1f} ms, p95 {pct(took, 95):.1f} ms"
                )
        finally:
            proc.terminate()
            proc.wait(timeout=30)
        where.append(
            f"{name}, {label}: server p50 ms " + ", ".join(f"{k} {pct(v, 50):.1f}" for k, v in stages.items())
        )
        where += [throughput] if throughput else []
    base50 = pct(inproc, 50)
    rows = []
    runs += [("in-process Searcher, torch encoder (baseline)", inproc)]
    for label, xs in runs + [("in-process exhaustive (reference)", exhaustive)]:
        rows.append(
            f"| {name} | {clips} | {label} | {len(xs)} | {pct(xs, 50):.1f} | {pct(xs, 95):.1f} | "
            f"{pct(xs, 50) / base50:.2f} |"
        )
    return rows, where


@contextmanager
def busy_cores(n: int) -> Iterator[None]:
    """`n` processes spinning on a core each: the service measured on a machine doing other work."""
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]
    try:
        yield
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clips", type=int, default=10_000)
    ap.add_argument("--queries", type=int, default=100)
    ap.add_argument("--config", default=None, help="serve this config with random weights (random store)")
    ap.add_argument("--no-demo", action="store_true", help="skip the demo-library store")
    ap.add_argument("--encoders", nargs="+", default=["onnx-fp32", "torch"], help="T2V_QUERY_ENCODER values")
    ap.add_argument(
        "--query-threads",
        type=int,
        nargs="+",
        default=[0],
        help="T2V_QUERY_THREADS values for the ONNX encoders (0: the service's automatic choice)",
    )
    ap.add_argument(
        "--clients", type=int, default=1, help="also the throughput with this many clients at once"
    )
    ap.add_argument(
        "--busy", type=int, default=0, help="keep this many cores busy (spinning processes) while measuring"
    )
    ap.add_argument(
        "--graph-dir", default=None, help="exported query graphs (default: a fresh temporary one)"
    )
    args = ap.parse_args()
    qs = queries(args.queries)
    import torch

    torch.set_num_threads(max(ServiceSettings().torch_threads, 1))  # the service's setting, same here
    rows: list[str] = []
    where: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        graphs = Path(args.graph_dir) if args.graph_dir else Path(tmp, "onnx")
        if not args.no_demo:
            demo = ServiceSettings(
                index_dir=Path(tmp, "demo/index"),
                var_dir=Path(tmp, "demo/var"),
                window=4.0,
                stride=2.0,
                query_graph_dir=graphs,
            )
            build_demo(demo, Path(tmp, "demo/videos"), log=lambda m: None)
            with busy_cores(args.busy):
                table, notes = measure(
                    "demo library", demo, qs, args.encoders, args.query_threads, args.clients
                )
            rows, where = rows + table, where + notes
        big = ServiceSettings(
            index_dir=Path(tmp, "big/index"), var_dir=Path(tmp, "big/var"), query_graph_dir=graphs
        )
        if args.config:  # the named config with random weights: a JSON config file with no pretrained
            cfg = Path(tmp, f"{args.config}-random.json")
            cfg.write_text(json.dumps(get_config(args.config).replace(pretrained=None).to_dict()))
            big = big.model_copy(update={"model": ModelSettings(config=str(cfg))})
        t = time.perf_counter()
        random_store(big, args.clips)
        print(f"wrote {args.clips} random clips through the store API in {time.perf_counter() - t:.1f}s")
        with busy_cores(args.busy):
            table, notes = measure(
                f"{args.clips // 1000}k random clips",
                big,
                qs,
                args.encoders,
                args.query_threads,
                args.clients,
            )
        rows, where = rows + table, where + notes
    model = ServiceSettings().model if not args.config else big.model
    busy = f"; {args.busy} other core(s) kept busy" if args.busy else ""
    print(
        f"model: {model.checkpoint or model.config}; {os.cpu_count()} CPUs; top_k=10; "
        f"sequential requests{busy}"
    )
    print("| store | clips | path | queries | p50 ms | p95 ms | p50 / baseline |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(r)
    for w in where:
        print(w)


if __name__ == "__main__":
    main()
