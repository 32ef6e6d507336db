"""The issue-2 main job as a user runs it: `t2v rank-demo` prints a ranking per text."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import T2v


def t2v_script(*args: str) -> subprocess.CompletedProcess:
    """The installed `t2v` console script, in a fresh interpreter."""
    exe = Path(sys.executable).with_name("t2v")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([str(exe), *args], capture_output=True, text=True, env=env, timeout=300)


def test_rank_demo_ranks_every_video_and_the_demo_model_finds_them() -> None:
    demo = Path(__file__).resolve().parents[2] / "demo" / "t2v-demo.pt"
    proc = t2v_script("rank-demo", "--checkpoint", str(demo))
    assert proc.returncode == 0, proc.stderr
    assert f"from checkpoint {demo}" in proc.stdout  # says which model it ranks with
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("[")]
    assert len(lines) == 6
    right = 0
    for line in lines:
        found = re.findall(r"([a-z]+-then-[a-z]+)\.mp4 (-?\d\.\d{4})", line)
        assert len({n for n, _ in found}) == 3  # every video ranked once
        scores = [float(s) for _, s in found]
        assert scores == sorted(scores, reverse=True)
        right += line.startswith("[right]")
    assert f"{right} of 6 queries rank their video first" in proc.stdout
    # the shipped model finds the described video (distinct colours: an easy library)
    assert right >= 5, proc.stdout


@pytest.mark.slow  # a CLI run that loads a model
def test_rank_demo_missing_checkpoint_is_a_clear_error(tmp_path: Path, t2v: T2v) -> None:
    proc = t2v("rank-demo", "--checkpoint", str(tmp_path / "none.pt"))
    assert proc.returncode == 2  # cannot run (service/cli/common.py)
    assert "not found" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.slow  # two model runs
def test_rank_demo_uses_the_default_model_and_says_when_weights_are_random(t2v: T2v) -> None:
    demo = Path(__file__).resolve().parents[2] / "demo" / "t2v-demo.pt"
    proc = t2v("rank-demo")  # no flags: the one default model of every command, the demo checkpoint
    assert proc.returncode == 0, proc.stderr
    assert f"from checkpoint {demo}" in proc.stdout and "warning" not in proc.stderr
    proc = t2v("rank-demo", "--config", "t2v-tiny")  # a config without weights: ranked, but flagged
    assert proc.returncode == 0, proc.stderr
    assert "weights are random, so the ranking below means nothing" in proc.stderr
