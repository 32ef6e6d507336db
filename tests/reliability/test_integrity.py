"""Issue 16 item 5: corruption is found and repaired, never served. Each case damages a copy of one
store built with `t2v index add`, then opens it the way users do (a live server, the CLI).
Before: a half-truncated segment was padded with zeros and served; a deleted segment gave 500s
and the next ingest wrote zero rows for all old clips; overwritten FAISS bytes changed results
and `verify` said ok; FAISS rows of clips a lost WAL took away were matched for new clips."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.cli_forks import ForkedRun
from tests.support import t2v_command, wait_job

from .conftest import Forks, base_env, kill9, tiny_settings
from .test_crash import check_store
from .test_disk_full import add

pytestmark = pytest.mark.slow  # a store built by the CLI, live servers


@pytest.fixture(scope="module")
def built(
    forks: Forks, corpus: list[Path], tiny_ckpt: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    work = tmp_path_factory.mktemp("integrity")
    index = work / "index"
    add(forks, corpus[:6], index, tiny_ckpt, work / "add.log")
    assert len(check_store(index, {})) == 6, (work / "add.log").read_text()
    return index


def copy_store(built: Path, tmp_path: Path) -> Path:
    index = tmp_path / "index"
    shutil.copytree(built, index)
    return index


def serve(forks: Forks, tmp_path: Path, root: Path, ckpt: Path) -> tuple[str, ForkedRun]:
    return forks.start_server(tiny_settings(tmp_path, root, ckpt), tmp_path / "server.log")


def ids_by_path(c: httpx.Client) -> dict[str, int]:
    page = c.get("/v1/videos", params={"limit": 200}).json()["items"]
    return {v["title"]: v["id"] for v in page}


def test_lost_matrices_are_quarantined_not_served(
    forks: Forks, built: Path, corpus: list[Path], tiny_ckpt: Path, tmp_path: Path
) -> None:
    index = copy_store(built, tmp_path)
    (seg,) = sorted((index / "matrices").iterdir())
    seg.write_bytes(seg.read_bytes()[: seg.stat().st_size // 2])  # the second half is gone
    url, proc = serve(forks, tmp_path, corpus[0].parent, tiny_ckpt)
    try:
        with httpx.Client(base_url=url, timeout=60) as c:
            ready = c.get("/readyz").json()
            print(f"\nreadyz after a half-truncated segment: {ready}")
            assert ready["status"] == "degraded", ready
            assert any("ingest it again" in p for p in ready["problems"]), ready
            damaged = json.loads((index / "damaged.json").read_text())
            lost = {d["video_id"] for d in damaged}
            assert 0 < len(lost) < 6, damaged
            left = set(ids_by_path(c).values())
            assert left and not (left & lost)
            hits = c.post("/v1/search", json={"query": "a colour", "top_k": 50}).json()["results"]
            assert hits and {h["video_id"] for h in hits} <= left
            # what was lost can be ingested again, and the store verifies
            r = c.post("/v1/ingest", json={"paths": [d["path"] for d in damaged]})
            job = wait_job(c, r.json()["id"])
            assert {it["state"] for it in job["items"]} == {"done"}, job
    finally:
        kill9(proc)
    assert len(check_store(index, {})) == 6


def test_a_deleted_segment_never_gets_zero_rows(
    forks: Forks, built: Path, corpus: list[Path], tiny_ckpt: Path, tmp_path: Path
) -> None:
    index = copy_store(built, tmp_path)
    for seg in (index / "matrices").iterdir():
        seg.unlink()
    url, proc = serve(forks, tmp_path, corpus[0].parent, tiny_ckpt)
    try:
        with httpx.Client(base_url=url, timeout=60) as c:
            ready = c.get("/readyz").json()
            assert ready["status"] == "degraded" and ready["videos"] == 0, ready
            r = c.post("/v1/search", json={"query": "a colour"})
            assert r.status_code == 200 and r.json()["results"] == [], r.text
            r = c.post("/v1/ingest", json={"paths": [str(corpus[6])]})
            assert wait_job(c, r.json()["id"])["items"][0]["state"] == "done"
    finally:
        kill9(proc)
    assert len(check_store(index, {})) == 1  # every stored row is a real, unit-norm vector


def test_overwritten_faiss_bytes_are_rebuilt(
    forks: Forks, built: Path, corpus: list[Path], tiny_ckpt: Path, tmp_path: Path
) -> None:
    index = copy_store(built, tmp_path)
    (faiss_file,) = index.glob("faiss-g*.index")
    data = bytearray(faiss_file.read_bytes())
    start = len(data) // 4  # inside the vector block, past the header
    n = min(64 * 1024, len(data) // 2)
    data[start : start + n] = bytes((i * 7 + 3) % 256 for i in range(n))
    faiss_file.write_bytes(bytes(data))
    # `t2v index verify` reports and repairs nothing: the sampled check (--fast) and the full one
    # both find the overwritten rows (before: verify said ok)
    for flags in (["--fast"], []):
        argv = t2v_command("index", "verify", "--index", index, *flags)
        r = subprocess.run(argv, env=base_env(), capture_output=True, text=True)
        print(f"\nverify {flags} after overwriting {n} FAISS bytes: {r.stderr.strip()[-300:]}")
        (line,) = r.stderr.strip().splitlines()  # one line, no traceback
        assert r.returncode == 1 and line.startswith("error: verify") and "FAISS" in line, r.stdout + line
    # a normal open rebuilds FAISS from the matrices: then verify (every row) passes
    assert len(check_store(index, {})) == 6
    r = subprocess.run(
        t2v_command("index", "verify", "--index", index), env=base_env(), capture_output=True, text=True
    )
    assert r.returncode == 0 and "ok: " in r.stdout, r.stdout + r.stderr
    url, proc = serve(forks, tmp_path, corpus[0].parent, tiny_ckpt)
    try:
        with httpx.Client(base_url=url, timeout=60) as c:
            assert c.get("/readyz").json()["status"] == "ready"
    finally:
        kill9(proc)


def test_faiss_rows_of_lost_clips_are_dropped(
    forks: Forks, built: Path, corpus: list[Path], tiny_ckpt: Path, tmp_path: Path
) -> None:
    """A WAL lost after a kill -9 takes the last video's commit with it while the FAISS file kept
    its rows: the next video reuses those clip ids."""
    index = copy_store(built, tmp_path)
    db = sqlite3.connect(index / "meta.sqlite")
    last = db.execute("SELECT MAX(id) FROM videos").fetchone()[0]
    n = db.execute("SELECT COUNT(*) FROM clips WHERE video_id = ?", (last,)).fetchone()[0]
    (seg,) = db.execute("SELECT id FROM segments").fetchone()
    db.execute("DELETE FROM clips WHERE video_id = ?", (last,))
    db.execute("DELETE FROM videos WHERE id = ?", (last,))
    db.execute("UPDATE segments SET clips = clips - ? WHERE id = ?", (n, seg))
    db.execute("UPDATE sqlite_sequence SET seq = (SELECT MAX(id) FROM clips) WHERE name = 'clips'")
    db.execute("UPDATE sqlite_sequence SET seq = ? WHERE name = 'videos'", (last - 1,))
    db.commit()
    db.close()
    url, proc = serve(forks, tmp_path, corpus[0].parent, tiny_ckpt)
    try:
        with httpx.Client(base_url=url, timeout=60) as c:
            ready = c.get("/readyz").json()
            assert any("FAISS index rebuilt" in p for p in ready["problems"]), ready
            r = c.post("/v1/ingest", json={"paths": [str(corpus[7])]})
            assert wait_job(c, r.json()["id"])["items"][0]["state"] == "done"
    finally:
        kill9(proc)
    check_store(index, {})  # verify (every FAISS row read back against its matrix row) passes
