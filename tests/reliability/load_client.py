"""Concurrent search clients in their own process: `python load_client.py URL CLIENTS SECONDS`.

Prints one JSON line: requests, failures (non-200 or transport errors), p50/p99/max latency (s).
"""

from __future__ import annotations

import json
import sys
import threading
import time

import httpx

QUERIES = ["a red square", "a white box moving", "green background", "something blue", "a cat"]


def main() -> None:
    url, clients, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    latencies: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def client(i: int) -> None:
        with httpx.Client(base_url=url, timeout=60) as c:
            n = i
            while time.monotonic() < stop:
                q = QUERIES[n % len(QUERIES)]
                n += 1
                t0 = time.perf_counter()
                try:
                    r = c.post("/v1/search", json={"query": q, "top_k": 10})
                    bad = None if r.status_code == 200 and "results" in r.json() else f"{r.status_code}"
                except httpx.HTTPError as e:
                    bad = type(e).__name__
                dt = time.perf_counter() - t0
                with lock:
                    latencies.append(dt)
                    if bad:
                        failures.append(bad)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lat = sorted(latencies)

    def pct(p: float) -> float:
        return lat[min(len(lat) - 1, int(p * len(lat)))] if lat else float("nan")

    out = {"requests": len(lat), "failures": len(failures), "failure_kinds": sorted(set(failures))}
    out.update(p50=pct(0.5), p99=pct(0.99), max=lat[-1] if lat else float("nan"), seconds=seconds)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
