"""Fixtures for the indexer tests: videos rendered with ffmpeg lavfi, checkpoints, a CLI runner."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from indexer.media.video import ffmpeg_exe

REPO = Path(__file__).resolve().parents[2]


def render(path: Path, source: str, *extra: str) -> Path:
    """A small video from a lavfi source (no input files)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [ffmpeg_exe(), "-y", "-loglevel", "error", "-f", "lavfi", "-i", source, *extra, str(path)],
        check=True,
    )
    return path


def colour_video(path: Path, colour: str, seconds: float, size: str = "96x64") -> Path:
    box = "drawbox=x='mod(t*30,60)':y=20:w=20:h=20:color=white:t=fill"
    return render(path, f"color=c={colour}:s={size}:d={seconds}:r=8", "-vf", box, "-pix_fmt", "yuv420p")


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two t2v-tiny checkpoints with different weights (seeds 0 and 1)."""
    import torch

    from model import create_model, save_checkpoint

    out = tmp_path_factory.mktemp("ckpt")
    paths = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        m = create_model("t2v-tiny")
        paths.append(out / f"tiny-{seed}.pt")
        save_checkpoint(paths[-1], m.config, m.state_dict())
    return paths[0], paths[1]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(HF_HUB_OFFLINE="1", PYTHONPATH=str(REPO), T2V_MODEL__DEVICE="cpu")
    env.pop("T2V_INDEX_DIR", None)
    return env


@pytest.fixture(scope="session")
def t2v() -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run the `t2v` CLI as a subprocess (as a user would); returns the completed process."""

    def run(*args: str | Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "service.cli", *map(str, args)],
            cwd=REPO,
            env=_env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    return run


@pytest.fixture(scope="session")
def t2v_popen() -> Callable[..., subprocess.Popen[str]]:
    def start(*args: str | Path) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "service.cli", *map(str, args)],
            cwd=REPO,
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    return start
