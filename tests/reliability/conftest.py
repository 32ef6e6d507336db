"""Fixtures for the reliability tests: one generated corpus, a tiny checkpoint, a fork zygote."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from indexer.media.video import ffmpeg_exe
from tests.support import REPO

COLOURS = [
    "red",
    "green",
    "blue",
    "yellow",
    "purple",
    "orange",
    "white",
    "cyan",
    "pink",
    "gray",
    "brown",
    "navy",
]


def render(path: Path, colour: str, seconds: float, speed: int) -> Path:
    box = f"drawbox=x='mod(t*{speed},60)':y=20:w=20:h=20:color=white:t=fill"
    src = f"color=c={colour}:s=96x64:d={seconds}:r=8"
    cmd = [ffmpeg_exe(), "-y", "-loglevel", "error", "-f", "lavfi", "-i", src, "-vf", box]
    subprocess.run([*cmd, "-pix_fmt", "yuv420p", str(path)], check=True, timeout=60)
    return path


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """12 small distinct mp4s (distinct content hashes), 2-3 s each, in one allowed root."""
    root = tmp_path_factory.mktemp("corpus")
    return [render(root / f"{c}.mp4", c, 2.0 + i % 2, 20 + 3 * i) for i, c in enumerate(COLOURS)]


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch

    from model import create_model, save_checkpoint

    torch.manual_seed(0)
    m = create_model("t2v-tiny")
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    save_checkpoint(path, m.config, m.state_dict())
    return path


def base_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", PYTHONPATH=str(REPO), T2V_MODEL__DEVICE="cpu")
    env.pop("T2V_INDEX_DIR", None)
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def kill9(pid: int, timeout: float = 20.0) -> None:
    """SIGKILL and wait until the (auto-reaped) pid is gone."""
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.02)


def wait_exit(pid: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while pid_alive(pid):
        if time.monotonic() > deadline:
            kill9(pid)
            raise AssertionError(f"process {pid} still running after {timeout}s")
        time.sleep(0.05)


class Zygote:
    """tests/reliability/zygote.py as a subprocess: forks the CLI or the server on request."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("zygote.py"))],
            cwd=REPO,
            env=base_env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        assert json.loads(self.proc.stdout.readline()) == {"ready": True}

    def spawn(self, req: dict[str, Any]) -> int:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        return int(json.loads(self.proc.stdout.readline())["pid"])

    def cli(self, argv: list[str], log: Path, env: dict[str, str] | None = None) -> int:
        return self.spawn({"kind": "cli", "argv": argv, "env": env or {}, "log": str(log)})

    def serve(self, port: int, env: dict[str, str], log: Path) -> int:
        return self.spawn({"kind": "serve", "port": port, "env": env, "log": str(log)})

    def start_server(self, settings: dict[str, Any], log: Path, port: int | None = None) -> tuple[str, int]:
        """Fork a server with `settings` on `port` (a free one by default) and wait for /readyz:
        (url, pid). A server that never gets ready is killed before the error propagates."""
        port = port or free_port()
        url = f"http://127.0.0.1:{port}"
        pid = self.serve(port, server_env(settings), log)
        try:
            wait_ready(url, pid, log)
        except BaseException:
            kill9(pid)
            raise
        return url, pid

    def close(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            self.proc.wait(timeout=30)


@pytest.fixture(scope="session")
def zygote() -> Iterator[Zygote]:
    z = Zygote()
    yield z
    z.close()


def tiny_settings(work: Path, root: Path, checkpoint: Path, **extra: Any) -> dict[str, Any]:
    """Service settings these tests share: stores under `work`, ingestion confined to `root`, the
    tiny checkpoint on CPU, 1 s clips; `extra` adds or overrides settings."""
    return {
        "index_dir": str(work / "index"),
        "var_dir": str(work / "var"),
        "allowed_roots": [str(root)],
        "model": {"checkpoint": str(checkpoint), "device": "cpu"},
        "window": 1.0,
        "stride": 1.0,
        **extra,
    }


def server_env(settings: dict[str, Any]) -> dict[str, str]:
    return {f"T2V_{k.upper()}": v if isinstance(v, str) else json.dumps(v) for k, v in settings.items()}


def wait_ready(url: str, pid: int, log: Path, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            raise RuntimeError(f"server exited:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"server not ready in {timeout}s:\n{log.read_text()[-3000:]}")


def wait_job(client: httpx.Client, job_id: str, timeout: float = 120.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    job: dict[str, Any] = {}
    while time.monotonic() < deadline:
        r = client.get(f"/v1/jobs/{job_id}")
        assert r.status_code == 200, r.text
        job = r.json()
        if job["state"] == "done":
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} not done in {timeout}s: {job}")
