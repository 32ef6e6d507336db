"""`t2v serve` as a user runs it: flags reach the server; bad flags exit non-zero with a message."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx

from tests.support import REPO, Server, free_port


def t2v(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    return subprocess.run(
        [sys.executable, "-m", "service.cli", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_serve_rejects_bad_flags(tmp_path: Path) -> None:
    out = t2v("serve", "--port", "70000")
    assert out.returncode == 2 and "port" in out.stderr and "Traceback" not in out.stderr
    out = t2v("serve", "--checkpoint", str(tmp_path / "missing.pt"))
    assert out.returncode == 2 and "missing.pt does not exist" in out.stderr
    out = t2v("serve", "--allowed-root", str(tmp_path / "nope"))
    assert out.returncode == 2 and "not a directory" in out.stderr


def test_serve_flags_configure_the_server(tmp_path: Path, colour_videos: dict[str, Path]) -> None:
    port = free_port()
    root = colour_videos["red"].parent
    cmd = [
        sys.executable,
        "-m",
        "service.cli",
        "serve",
        "--port",
        str(port),
        "--index-dir",
        str(tmp_path / "ix"),
    ]
    cmd += ["--var-dir", str(tmp_path / "var"), "--allowed-root", str(root), "--api-key", "k1"]
    srv = Server(tmp_path, {})
    srv.port, srv.url = port, f"http://127.0.0.1:{port}"
    with open(srv.log, "wb") as log:
        srv.proc = subprocess.Popen(
            cmd, cwd=REPO, env=dict(os.environ, HF_HUB_OFFLINE="1"), stdout=log, stderr=log
        )
    try:
        srv.wait_ready()
        body = {"paths": [str(colour_videos["green"])]}
        assert httpx.post(srv.url + "/v1/ingest", json=body).status_code == 401
        r = httpx.post(srv.url + "/v1/ingest", json=body, headers={"X-API-Key": "k1"})
        assert r.status_code == 202, r.text
        assert (tmp_path / "ix" / "manifest.json").exists()
        assert (tmp_path / "var" / "jobs.sqlite").exists()
    finally:
        srv.stop()
