"""The issue-2 main job as a user runs it: `t2v rank-demo` prints a ranking per text."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path


def t2v(*args: str) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("t2v")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([str(exe), *args], capture_output=True, text=True, env=env, timeout=300)


def test_rank_demo_prints_a_ranking_of_every_video() -> None:
    proc = t2v("rank-demo")
    assert proc.returncode == 0, proc.stderr
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("'")]
    assert len(lines) == 3
    for line in lines:
        found = re.findall(r"(red|green|blue)\.mp4 (-?\d\.\d{4})", line)
        assert sorted(n for n, _ in found) == ["blue", "green", "red"]
        scores = [float(s) for _, s in found]
        assert scores == sorted(scores, reverse=True)


def test_rank_demo_missing_checkpoint_is_a_clear_error(tmp_path: Path) -> None:
    proc = t2v("rank-demo", "--checkpoint", str(tmp_path / "none.pt"))
    assert proc.returncode == 2  # cannot run (service/cli/common.py)
    assert "not found" in proc.stderr and "Traceback" not in proc.stderr
