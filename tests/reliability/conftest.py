"""Fixtures for the reliability tests: one generated corpus, a fork zygote, process helpers."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.support import REPO, cli_env, colour_video, free_port, server_settings, settings_env, wait_ready

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


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """12 small distinct mp4s (distinct content hashes), 2-3 s each, in one allowed root."""
    root = tmp_path_factory.mktemp("corpus")
    return [colour_video(root / f"{c}.mp4", c, 2.0 + i % 2, speed=20 + 3 * i) for i, c in enumerate(COLOURS)]


@contextmanager
def mounted_tmpfs(mnt: Path, size: str) -> Iterator[Path]:
    """A real small filesystem of `size` (e.g. "3m") mounted at `mnt` (created) that a test can fill
    to the last byte; skips the test where a tmpfs cannot be mounted (not root, no `mount`)."""
    mnt.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt)], capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.decode()[:200]}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill(mnt: Path) -> Path:
    """Fill the filesystem at `mnt` to the last byte; the filler file (unlink it: space is back)."""
    filler = mnt / "filler"
    with open(filler, "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError as e:
            assert e.errno == errno.ENOSPC
        try:
            while True:
                f.write(b"\0")
                f.flush()
        except OSError:
            pass
    return filler


def base_env() -> dict[str, str]:
    return cli_env(OMP_NUM_THREADS="1")


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

    def serve(self, port: int, env: dict[str, str], log: Path, **faults: Any) -> int:
        return self.spawn({"kind": "serve", "port": port, "env": env, "log": str(log), **faults})

    def start_server(
        self, settings: dict[str, Any], log: Path, port: int | None = None, **faults: Any
    ) -> tuple[str, int]:
        """Fork a server with `settings` on `port` (a free one by default) and wait for /readyz:
        (url, pid). A server that never gets ready is killed before the error propagates.
        `faults`: the zygote's fault injections (see zygote.py)."""
        port = port or free_port()
        url = f"http://127.0.0.1:{port}"
        pid = self.serve(port, settings_env(settings), log, **faults)
        try:
            wait_ready(url, lambda: pid_alive(pid), log)
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
    model = {"checkpoint": str(checkpoint), "device": "cpu"}
    return server_settings(work, root, **{"model": model, "window": 1.0, "stride": 1.0, **extra})
