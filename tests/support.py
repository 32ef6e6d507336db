"""Helpers shared by every test folder: `from tests.support import ...`.

Plain functions and classes only; the pytest fixtures built on them are in tests/conftest.py.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Protocol

import httpx
import numpy as np

from indexer.corpora.lavfi import render_lavfi
from indexer.store import ClipSpan, NewVideo

if TYPE_CHECKING:
    from tests.cli_forks import CliForks, ForkedRun

REPO = Path(__file__).resolve().parents[1]
READY_TIMEOUT = 120.0


# --- inputs ---------------------------------------------------------------------------------------


def load_bench(name: str) -> ModuleType:
    """The benchmark script bench/`name`.py as a module (bench/ is scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(name, REPO / "bench" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # its dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


def clip_videos(per_video: Sequence[np.ndarray]) -> list[tuple[NewVideo, list[ClipSpan], np.ndarray]]:
    """`Store.add_videos` batches of synthetic videos, one per (clips, n_v, D) matrix block: 4 s clips
    every 2 s, video v at /v{v}.mp4."""
    return [
        (NewVideo(f"/v{v}.mp4", f"v{v}", f"h{v}", 20, 25, 64, 64, "h264", 1),
         [ClipSpan(2.0 * c, 2.0 * c + 4) for c in range(len(m))], m)
        for v, m in enumerate(per_video)
    ]  # fmt: skip


def colour_video(path: Path, colour: str, seconds: float, size: str = "96x64", speed: int = 30) -> Path:
    """A small mp4 of a white box sliding `speed` px/s over a solid colour (8 fps)."""
    box = f"drawbox=x='mod(t*{speed},60)':y=20:w=20:h=20:color=white:t=fill"
    return render_lavfi(path, f"color=c={colour}:s={size}:d={seconds}:r=8", filters=box)


def tiny_checkpoint(path: Path, seed: int = 0) -> Path:
    """A t2v-tiny checkpoint with the weights torch draws from `seed`."""
    import torch

    from model import create_model, save_checkpoint

    torch.manual_seed(seed)
    m = create_model("t2v-tiny")
    save_checkpoint(path, m.config, m.state_dict())
    return path


# --- the `t2v` CLI as a subprocess ----------------------------------------------------------------


class T2v(Protocol):
    """What the `t2v` fixture is: `t2v(*args, timeout=..., env=...)` -> the completed process."""

    def __call__(
        self, *args: str | Path, timeout: float = ..., env: dict[str, str] | None = ...
    ) -> subprocess.CompletedProcess[str]: ...


def cli_env(**overrides: str) -> dict[str, str]:
    """This environment, offline, on the CPU, with no T2V_INDEX_DIR leaking in; plus `overrides`."""
    env = dict(os.environ)
    env.update(HF_HUB_OFFLINE="1", PYTHONPATH=str(REPO), T2V_MODEL__DEVICE="cpu", **overrides)
    env.pop("T2V_INDEX_DIR", None)
    return env


def t2v_command(*args: str | Path) -> list[str]:
    return [sys.executable, "-m", "service.cli", *map(str, args)]


def t2v(
    *args: str | Path, timeout: float = 300, env: dict[str, str] | None = None, forks: CliForks | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the `t2v` CLI as a subprocess (as a user would); returns the completed process.
    `forks`: forked from that pre-imported parent (the `t2v` fixture) instead of a fresh interpreter."""
    if forks is not None:
        return forks.run([str(a) for a in args], env or cli_env(), timeout)
    return subprocess.run(
        t2v_command(*args),
        cwd=REPO,
        env=env or cli_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


# --- servers --------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def server_settings(work: Path, root: Path, **extra: Any) -> dict[str, Any]:
    """Service settings most tests share: the store and state under `work`, ingestion of server
    paths confined to `root`; `extra` adds or overrides settings."""
    return {
        "index_dir": str(work / "index"),
        "var_dir": str(work / "var"),
        "allowed_roots": [str(root)],
        **extra,
    }


def settings_env(settings: dict[str, Any]) -> dict[str, str]:
    """Settings as the service reads them from the environment: T2V_<NAME>, JSON unless a string."""
    return {f"T2V_{k.upper()}": v if isinstance(v, str) else json.dumps(v) for k, v in settings.items()}


def wait_ready(url: str, alive: Callable[[], bool], log: Path, timeout: float = READY_TIMEOUT) -> None:
    """Poll `url`/readyz until it answers 200; fail with the log's tail if the server stops being
    `alive()` or is not ready within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive():
            raise RuntimeError(f"server exited:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"server not ready in {timeout}s:\n{log.read_text()[-3000:]}")


def wait_job(client: httpx.Client, job_id: str, timeout: float = 120.0) -> dict[str, Any]:
    """Poll an ingest job until it is done; its final state."""
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


class Server:
    """The service as its own process on a free loopback port, with T2V_* settings from the
    environment: `uvicorn --factory service.app:create_app`, or a `t2v` command (`start(*args)`).
    `forks` (the `cli_forks` fixture): forked from that pre-imported parent, not a new interpreter."""

    def __init__(self, workdir: Path, settings: dict[str, Any], forks: CliForks | None = None) -> None:
        self.workdir = workdir
        self.settings = settings
        self.forks = forks
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | ForkedRun | None = None
        self.log = workdir / f"server-{self.port}.log"

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
        env.setdefault("OMP_NUM_THREADS", "1")
        env.update(settings_env(self.settings))
        return env

    def start(self, *t2v_args: str | Path, wait: bool = True) -> Server:
        """Start uvicorn, or `t2v *t2v_args` when given (stdout and stderr go to `self.log`)."""
        cmd = [sys.executable, "-m", "uvicorn", "--factory", "service.app:create_app"]
        cmd += ["--host", "127.0.0.1", "--port", str(self.port)]
        if self.forks is not None:
            prog, args = ("t2v", [str(a) for a in t2v_args]) if t2v_args else ("uvicorn", cmd[3:])
            self.proc = self.forks.start(args, self.env(), prog=prog, out=self.log, err=self.log)
        else:
            with open(self.log, "ab") as log:
                self.proc = subprocess.Popen(
                    t2v_command(*t2v_args) if t2v_args else cmd,
                    cwd=REPO,
                    env=self.env(),
                    stdout=log,
                    stderr=log,
                )
        if wait:
            self.wait_ready()
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_ready(self) -> None:
        wait_ready(self.url, self.alive, self.log)

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
