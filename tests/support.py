"""Helpers shared by every test folder: `from tests.support import ...`.

Plain functions and classes only; the pytest fixtures built on them are in tests/conftest.py.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from indexer.media.video import ffmpeg_exe

REPO = Path(__file__).resolve().parents[1]
READY_TIMEOUT = 120.0


# --- videos -------------------------------------------------------------------------------------


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


# --- the `t2v` CLI as a subprocess ----------------------------------------------------------------


def cli_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(HF_HUB_OFFLINE="1", PYTHONPATH=str(REPO), T2V_MODEL__DEVICE="cpu")
    env.pop("T2V_INDEX_DIR", None)
    return env


def t2v(*args: str | Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run the `t2v` CLI as a subprocess (as a user would); returns the completed process."""
    return subprocess.run(
        [sys.executable, "-m", "service.cli", *map(str, args)],
        cwd=REPO,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def t2v_popen(*args: str | Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "service.cli", *map(str, args)],
        cwd=REPO,
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


# --- servers --------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """`uvicorn --factory service.app:create_app` with T2V_* settings from the environment."""

    def __init__(self, workdir: Path, settings: dict[str, Any]) -> None:
        self.workdir = workdir
        self.settings = settings
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = workdir / f"server-{self.port}.log"

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["HF_HUB_OFFLINE"] = "1"
        env.setdefault("OMP_NUM_THREADS", "1")
        for key, value in self.settings.items():
            env[f"T2V_{key.upper()}"] = value if isinstance(value, str) else json.dumps(value)
        return env

    def start(self, wait: bool = True) -> Server:
        cmd = [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "service.app:create_app",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
        ]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(cmd, cwd=REPO, env=self.env(), stdout=log, stderr=log)
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"server exited with {self.proc.returncode}:\n{self.log.read_text()[-3000:]}"
                )
            try:
                if httpx.get(self.url + "/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"server not ready in {READY_TIMEOUT}s:\n{self.log.read_text()[-3000:]}")

    def kill(self) -> None:
        """SIGKILL: no shutdown hooks, like a crash."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()

    def client(self, **kw: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=60, **kw)


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
