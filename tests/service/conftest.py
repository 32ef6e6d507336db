"""A real uvicorn process on a free loopback port, driven over HTTP like a client would."""

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

from indexer.search.rank_demo import render_colour_video
from indexer.settings import DEMO_CHECKPOINT

REPO = Path(__file__).resolve().parents[2]
READY_TIMEOUT = 120.0


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
    while time.monotonic() < deadline:
        r = client.get(f"/v1/jobs/{job_id}")
        assert r.status_code == 200, r.text
        job = r.json()
        if job["state"] == "done":
            return job
        time.sleep(0.25)
    raise AssertionError(f"job {job_id} not done in {timeout}s: {job}")


@pytest.fixture(scope="session")
def colour_videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Small distinct mp4s (different content hashes) inside a directory used as an allowed root."""
    root = tmp_path_factory.mktemp("library")
    out = {}
    for i, colour in enumerate(["red", "green", "blue", "yellow", "purple", "orange", "white", "cyan"]):
        out[colour] = render_colour_video(root / f"{colour}.mp4", colour, seconds=2.0 + 0.5 * (i % 3))
    return out


@pytest.fixture(scope="session")
def demo_model_available() -> bool:
    return DEMO_CHECKPOINT.exists()


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[Any]:
    started: list[Server] = []

    def make(settings: dict[str, Any], workdir: Path | None = None) -> Server:
        srv = Server(workdir or tmp_path, settings)
        started.append(srv)
        return srv

    yield make
    for srv in started:
        srv.stop()
