"""bench/gpu.sh runs on a host without CUDA (its CPU fallback) and reports sane figures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import REPO

pytestmark = pytest.mark.slow  # runs the GPU benchmark script's CPU fallback


def test_gpu_script_cpu_fallback(tmp_path: Path) -> None:
    out = tmp_path / "gpu.json"
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHON=sys.executable, CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run(
        ["bash", str(REPO / "bench" / "gpu.sh"), "--smoke", "--out", str(out)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "cuda: False" in proc.stdout
    res = json.loads(out.read_text())
    assert res["device"] == "CPU (fallback)"
    assert res["encode"]["frames_per_s"] > 0 and res["encode"]["text_p50_ms"] > 0
    s = res["search"]
    assert s["clips"] == 2000 and s["first_stage"].startswith("torch GEMM")
    assert 0 < s["p50_ms"] <= s["p95_ms"]
    # clustered data with a planted target: the two-stage top-10 matches exhaustive scoring
    assert s["recall10"] >= 0.9
