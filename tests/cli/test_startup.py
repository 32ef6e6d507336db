"""What a user sees when `t2v serve` / `t2v demo` cannot start: one `error:` line naming what to fix
and exit code 2 (bad settings, a taken port, a store of another model), never a traceback or a
server left answering 503; and, when it can start, the URL it serves."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests import support
from tests.cli_forks import CliForks
from tests.support import Server, T2v, cli_env


def one_error_line(proc: subprocess.CompletedProcess[str], *words: str) -> str:
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    for w in words:
        assert w in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize(
    ("env", "words"),
    [
        ({"T2V_PORT": "abc"}, ("T2V_PORT", "'abc'", "integer")),
        ({"T2V_ALLOWED_ROOTS": "/srv/media"}, ("T2V_ALLOWED_ROOTS", "not valid JSON", '["/media"]')),
        ({"T2V_LIMITS__MAX_TOP_K": "0"}, ("T2V_LIMITS__MAX_TOP_K", "greater than or equal to 1")),
    ],
)
def test_a_bad_setting_is_one_line_naming_it(env: dict[str, str], words: tuple[str, ...]) -> None:
    # a fresh interpreter: reading the settings at start-up, as the installed command does
    one_error_line(support.t2v("serve", env=cli_env(**env)), *words)


@pytest.mark.slow  # a CLI subprocess that loads a model: ~10-20 s on 2 cores
def test_a_bad_setting_stops_every_command_that_reads_it(t2v: T2v) -> None:
    # `t2v preload` (the Docker start-up step) reads the service settings too
    one_error_line(t2v("preload", env=cli_env(T2V_PORT="abc")), "T2V_PORT")
    one_error_line(t2v("index", "stats", env=cli_env(T2V_BATCH_SIZE="many")), "T2V_BATCH_SIZE")


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield int(s.getsockname()[1])


@pytest.mark.slow  # a CLI subprocess that loads a model: ~10-20 s on 2 cores
def test_a_taken_port_is_reported_not_moved(taken_port: int, tmp_path: Path, t2v: T2v) -> None:
    line = one_error_line(t2v("serve", "--port", str(taken_port)), f"port {taken_port}", "already in use")
    assert "--port" in line
    # the demo checks the port before rendering/indexing anything, and never moves to another one
    proc = t2v("demo", "--port", str(taken_port), "--workdir", tmp_path / "demo")
    one_error_line(proc, f"port {taken_port}", "already in use")
    assert not (tmp_path / "demo").exists()


@pytest.mark.slow  # a store built by one command, a server refused, a server started (~15 s)
def test_serve_prints_its_url_or_refuses_a_store_of_another_model(
    tmp_path: Path,
    checkpoints: tuple[Path, Path],
    colour_videos: dict[str, Path],
    t2v: T2v,
    cli_forks: CliForks,
) -> None:
    store = tmp_path / "store"
    add = t2v("index", "add", colour_videos["red"], "--index", store, "--checkpoint", checkpoints[0], "-q")
    assert add.returncode == 0, add.stderr
    srv = Server(tmp_path, {}, forks=cli_forks)
    args = ["serve", "--port", str(srv.port), "--index-dir", str(store), "--var-dir", str(tmp_path / "var")]
    # another model than the store's: one line that says what to do, and the process is gone
    proc = t2v(*args, "--checkpoint", checkpoints[1], env=srv.env())
    line = one_error_line(proc, "cannot start", "different model", "t2v index reindex")
    assert "Traceback" not in proc.stderr and str(store) in line
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{srv.url}/healthz", timeout=2)
    # no model chosen: the store's own checkpoint is used; the URL is printed, then "ready"
    srv.start(*args)
    r = httpx.post(f"{srv.url}/v1/search", json={"query": "red"}, timeout=60)
    srv.stop()
    out = srv.log.read_text()
    assert f"t2v serve: {srv.url}/" in out and "ready: t2v-tiny" in out, out
    assert r.status_code == 200 and r.json()["results"][0]["title"] == "red", r.text


@pytest.mark.slow  # the service starts far enough to look for the weights
def test_serve_refuses_a_config_whose_weights_are_missing_offline(
    tmp_path: Path, t2v: T2v, cli_forks: CliForks
) -> None:
    srv = Server(tmp_path, {"model__cache_dir": str(tmp_path / "empty-cache")}, forks=cli_forks)
    args = [
        "serve",
        "--port",
        str(srv.port),
        "--index-dir",
        str(tmp_path / "ix"),
        "--var-dir",
        str(tmp_path / "v"),
    ]
    proc = t2v(*args, "--config", "clip-vit-b-32-zeroshot", env=srv.env())
    line = one_error_line(proc, "cannot start", "not in the local cache", "Provide them")
    assert "Traceback" not in proc.stderr, line
    assert f"t2v serve: {srv.url}/" in proc.stdout and "ready" not in proc.stdout
