"""The benchmark plot script on a real (tiny) bench_search.py run: two PNGs of the documented size."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.cli_forks import CliForks
from tests.support import REPO

pytestmark = pytest.mark.slow  # a bench run, then its plots


def run(forks: CliForks, *args: str) -> subprocess.CompletedProcess[str]:
    """`python ARGS`, forked from the pre-imported test interpreter (tests/cli_forks.py)."""
    return forks.run(list(args), dict(os.environ, HF_HUB_OFFLINE="1"), timeout=240, prog="python")


@pytest.mark.skipif(not (REPO / "bench" / "bench_search.py").exists(), reason="no bench_search.py")
def test_plots_from_a_bench_run(tmp_path: Path, cli_forks: CliForks) -> None:
    res = tmp_path / "search.json"
    bench = run(
        cli_forks,
        "bench/bench_search.py", "--sizes", "300", "1000", "--queries", "5", "--dists", "clustered",
        "--encode-queries", "1", "--encode-config", "t2v-tiny", "--dim", "64", "--topics", "20",
        "--clips-per-topic", "10", "--k", "8", "32", "--out", str(res),
    )  # fmt: skip
    assert bench.returncode == 0, bench.stderr
    methods = {r["method"] for r in json.loads(res.read_text())["rows"]}
    assert any(m.startswith("exhaustive") for m in methods) and len(methods) >= 2
    out = run(cli_forks, "bench/plot_benchmarks.py", str(res), "--out-dir", str(tmp_path / "docs"))
    assert out.returncode == 0, out.stderr
    for name in ("bench-latency.png", "bench-recall.png"):
        path = tmp_path / "docs" / name
        assert f"wrote {path}" in out.stdout
        with Image.open(path) as img:
            assert img.format == "PNG" and img.size == (600, 400)
            px = np.asarray(img.convert("RGB"), dtype=np.float32)
        assert px.std() > 10  # axes and lines, not a blank canvas
        # coloured line pixels (matplotlib's default cycle), not only black axes on white
        assert (px.max(axis=2) - px.min(axis=2) > 60).sum() > 200
    bad = run(cli_forks, "bench/plot_benchmarks.py", str(tmp_path / "missing.json"))
    assert bad.returncode == 2 and "error:" in bad.stderr
