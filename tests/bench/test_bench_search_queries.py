"""`bench/bench_search.py` query sets: `--words random` leaves the word rows uninformative (as a
trained model's are) and builds only the K views from the target clip; the default is unchanged."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

from tests.support import REPO, load_bench

bench_search = load_bench("bench_search")


def test_random_words_leave_the_match_to_the_views(tmp_path: Path) -> None:
    corpus = bench_search.Corpus("clustered", 64, 10, topics=20)
    store, _ = bench_search.build_store(tmp_path / "s", corpus, 400, None)
    try:
        rows = store.matrices(store.live_clip_ids()).astype(np.float32).reshape(-1, 64)  # every stored row
        near = bench_search.make_queries(store, corpus, 6, 12)
        far = bench_search.make_queries(store, corpus, 6, 12, words="random")
        k = int(store.identity["num_tokens"])  # 8 views: the last 8 of the 12 rows
        for a, b in zip(near, far, strict=True):
            best_a = (a.vectors[0].numpy() @ rows.T).max(axis=1)  # (12,) best cosine of each row
            best_b = (b.vectors[0].numpy() @ rows.T).max(axis=1)
            assert best_a.min() > 0.55  # every row built from the target clip or its topic
            assert best_b[-k:].min() > 0.55 and best_b[: 12 - k].max() < best_b[-k:].min()
    finally:
        store.close()


def test_bench_search_runs_with_random_words(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "bench/bench_search.py", "--sizes", "300", "--queries", "4", "--dists", "clustered",
         "--dim", "32", "--k", "32", "--encode-queries", "1", "--encode-config", "t2v-tiny",
         "--token-max", "0", "--auto-index", "--words", "random", "--dir", str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    row = next(x for x in out.stdout.splitlines() if x.startswith("| clustered | 300 | flat"))
    assert float(row.split("|")[10].split()[0]) >= 0.9  # recall@10 of the two-stage search
