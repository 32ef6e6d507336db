"""`t2v serve` as a user runs it: flags reach the server; bad flags exit non-zero with a message."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.cli_forks import CliForks
from tests.support import Server, T2v


@pytest.mark.slow  # a CLI subprocess that loads a model: ~10-20 s on 2 cores
def test_serve_rejects_bad_flags(tmp_path: Path, t2v: T2v) -> None:
    out = t2v("serve", "--port", "70000")
    assert out.returncode == 2 and "port" in out.stderr and "Traceback" not in out.stderr
    out = t2v("serve", "--checkpoint", str(tmp_path / "missing.pt"))
    assert out.returncode == 2 and "missing.pt does not exist" in out.stderr
    out = t2v("serve", "--allowed-root", str(tmp_path / "nope"))
    assert out.returncode == 2 and "not a directory" in out.stderr


@pytest.mark.slow  # a served model and an ingestion
def test_serve_flags_configure_the_server(
    tmp_path: Path, colour_videos: dict[str, Path], cli_forks: CliForks
) -> None:
    root = colour_videos["red"].parent
    srv = Server(tmp_path, {}, forks=cli_forks)  # no T2V_* settings: the flags alone configure it
    try:
        srv.start(
            "serve", "--port", str(srv.port), "--index-dir", tmp_path / "ix", "--var-dir", tmp_path / "var",
            "--allowed-root", root, "--api-key", "k1",
        )  # fmt: skip
        body = {"paths": [str(colour_videos["green"])]}
        assert httpx.post(srv.url + "/v1/ingest", json=body).status_code == 401
        r = httpx.post(srv.url + "/v1/ingest", json=body, headers={"X-API-Key": "k1"})
        assert r.status_code == 202, r.text
        assert (tmp_path / "ix" / "manifest.json").exists()
        assert (tmp_path / "var" / "jobs.sqlite").exists()
    finally:
        srv.stop()
