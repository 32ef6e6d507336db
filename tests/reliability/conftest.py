"""Fixtures for the reliability tests: one generated corpus, the forked CLI and server, process helpers."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.cli_forks import CliForks, ForkedRun
from tests.support import cli_env, colour_video, free_port, server_settings, settings_env, wait_ready

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
FAULTS_SCRIPT = Path(__file__).with_name("faults.py")


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


def kill9(run: ForkedRun, timeout: float = 20.0) -> None:
    """SIGKILL (no shutdown hooks, like a crash) and wait until the process is gone."""
    run.kill()
    run.wait(timeout)


def wait_exit(run: ForkedRun, timeout: float) -> int:
    """Wait for the process to exit: its exit status; killed and failed after `timeout` s."""
    try:
        return run.wait(timeout)
    except subprocess.TimeoutExpired:
        kill9(run)
        raise AssertionError(f"process {run.pid} still running after {timeout}s") from None


class Forks:
    """The suite's fork server (the `cli_forks` fixture, tests/cli_forks.py) as the trials use it:
    the CLI or the server in the shared environment (`base_env()`), stdout and stderr both to one
    log, optionally with faults injected (tests/reliability/faults.py)."""

    def __init__(self, forks: CliForks) -> None:
        self.forks = forks

    def _start(self, program: list[str], env: dict[str, str], log: Path, faults: dict[str, Any]) -> ForkedRun:
        env = {**base_env(), **env}
        if program[0] == "t2v" and not faults:  # the plain CLI: forked as the `t2v` fixture forks it
            return self.forks.start(program[1:], env, out=log, err=log)
        script = [str(FAULTS_SCRIPT), json.dumps(faults), *program]
        return self.forks.start(script, env, prog="python", out=log, err=log)

    def cli(
        self, argv: list[str], log: Path, env: dict[str, str] | None = None, /, **faults: Any
    ) -> ForkedRun:
        """`t2v ARGV`, its environment `base_env()` updated with `env`."""
        return self._start(["t2v", *argv], env or {}, log, faults)

    def serve(self, port: int, env: dict[str, str], log: Path, **faults: Any) -> ForkedRun:
        return self._start(["serve", str(port)], env, log, faults)

    def start_server(
        self, settings: dict[str, Any], log: Path, port: int | None = None, **faults: Any
    ) -> tuple[str, ForkedRun]:
        """Fork a server with `settings` on `port` (a free one by default) and wait for /readyz:
        (url, process). A server that never gets ready is killed before the error propagates.
        `faults`: see tests/reliability/faults.py."""
        port = port or free_port()
        url = f"http://127.0.0.1:{port}"
        run = self.serve(port, settings_env(settings), log, **faults)
        try:
            wait_ready(url, lambda: run.poll() is None, log)
        except BaseException:
            kill9(run)
            raise
        return url, run


@pytest.fixture(scope="session")
def forks(cli_forks: CliForks) -> Forks:
    return Forks(cli_forks)


def tiny_settings(work: Path, root: Path, checkpoint: Path, **extra: Any) -> dict[str, Any]:
    """Service settings these tests share: stores under `work`, ingestion confined to `root`, the
    tiny checkpoint on CPU, 1 s clips; `extra` adds or overrides settings."""
    model = {"checkpoint": str(checkpoint), "device": "cpu"}
    return server_settings(work, root, **{"model": model, "window": 1.0, "stride": 1.0, **extra})
