"""The main job's demo library served for real: `t2v demo` prints a working curl line and scene
queries rank the right video first (with the trained demo model). The page in a browser:
tests/service/test_page.py."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from indexer.settings import DEMO_CHECKPOINT
from tests.cli_forks import CliForks
from tests.support import REPO, Server, cli_env

pytestmark = pytest.mark.slow  # `t2v demo` end to end

TRAINED_MODEL = DEMO_CHECKPOINT.exists() or bool(os.environ.get("T2V_MODEL__CHECKPOINT"))


@pytest.fixture(scope="module")
def demo_run(
    tmp_path_factory: pytest.TempPathFactory, cli_forks: CliForks
) -> Iterator[tuple[Server, Path, str]]:
    """The main job, `t2v demo`, as a user runs it: render + index the demo library, then serve.

    Yields the server, the demo work directory and the job's printed output.
    """
    work = tmp_path_factory.mktemp("demo")
    srv = Server(work, {}, forks=cli_forks)
    try:
        srv.start("demo", "--workdir", work, "--port", str(srv.port), wait=False)
        deadline = time.monotonic() + 300
        while "try:  curl" not in srv.log.read_text():  # rendered and indexed, serving
            assert srv.alive(), srv.log.read_text()
            assert time.monotonic() < deadline, srv.log.read_text()
            time.sleep(0.3)
        text = srv.log.read_text()
        srv.url = re.search(r"open (http://127\.0\.0\.1:\d+)/", text).group(1)  # type: ignore[union-attr]
        srv.wait_ready()
        yield srv, work, text
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def demo_server(demo_run: tuple[Server, Path, str]) -> Server:
    return demo_run[0]


@pytest.fixture(scope="module")
def demo_dir(demo_run: tuple[Server, Path, str]) -> Path:
    return demo_run[1]


def test_main_job_prints_url_and_a_working_curl(demo_run: tuple[Server, Path, str]) -> None:
    srv, _, text = demo_run
    assert text.count("indexed:") == 10, text
    if not TRAINED_MODEL:
        assert "random weights" in text  # the fallback says so
    assert f"open {srv.url}/" in text
    curl = text.split("try:  ", 1)[1].splitlines()[0]
    out = subprocess.run(curl, shell=True, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    body = json.loads(out.stdout)
    assert len(body["results"]) == 3
    assert body["results"][0]["title"]
    if TRAINED_MODEL:  # README's REST example: this query, the first video's first window on top
        first = demo_manifest(demo_run[1])[0]
        assert first["scenes"][0]["caption"].startswith("a red circle moving left")
        with srv.client() as c:
            top = c.post("/v1/search", json={"query": "a red circle moving left", "top_k": 3}).json()
        assert (top["results"][0]["title"], top["results"][0]["start"]) == (first["title"], 0.0)


def demo_manifest(demo_dir: Path) -> list[dict[str, Any]]:
    lines = (demo_dir / "videos" / "manifest.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


@pytest.mark.skipif(
    not TRAINED_MODEL,
    reason=f"needs the trained demo model {DEMO_CHECKPOINT} (random weights cannot rank)",
)
def test_scene_queries_rank_the_right_video_first(demo_server: Server, demo_dir: Path) -> None:
    """Each scene's (colour, shape, motion) is unique in the library, so each scene caption has
    one right video. Motion is the hard part for a frame-set model: where the colour and shape
    alone already single a video out, it must come first; for 90% of the scenes the right video
    must make the top 3 (of 10), and for most it must come first (chance: 1 in 10). The demo
    model of 2026-12-02 measured 5/5 distinctive first, 26/27 top 3, 19/27 first."""
    videos = demo_manifest(demo_dir)
    assert len(videos) == 10
    owners: dict[tuple[str, str], set[str]] = {}
    for v in videos:
        for scene in v["scenes"]:
            words = scene["caption"].split()  # "a {colour} {shape} moving {motion} on a ..."
            owners.setdefault((words[1], words[2]), set()).add(v["title"])
    firsts, distinctive, top3_misses, distinctive_misses = 0, 0, [], []
    with demo_server.client() as c:
        for v in videos:
            for scene in v["scenes"]:
                body = {"query": scene["caption"], "top_k": 5, "group_by_video": True}
                r = c.post("/v1/search", json=body)
                assert r.status_code == 200, r.text
                titles = [m["title"] for m in r.json()["results"]]
                firsts += titles[0] == v["title"]
                if v["title"] not in titles[:3]:
                    top3_misses.append((scene["caption"], v["title"], titles[:3]))
                words = scene["caption"].split()
                if len(owners[(words[1], words[2])]) == 1:
                    distinctive += 1
                    if titles[0] != v["title"]:
                        distinctive_misses.append((scene["caption"], v["title"], titles[0]))
    scenes = sum(len(v["scenes"]) for v in videos)
    assert distinctive >= 3
    assert not distinctive_misses, (
        f"distinctive scene queries ranked another video first: {distinctive_misses}"
    )
    assert len(top3_misses) <= scenes // 10, f"scene queries without their video in the top 3: {top3_misses}"
    assert firsts >= scenes / 2, f"only {firsts}/{scenes} scene queries ranked the right video first"


def test_whole_video_captions_rank_their_video_first(demo_server: Server, demo_dir: Path) -> None:
    """'a red circle moving left, then a blue square moving up' - the scene order a user
    remembers - finds the video that has those scenes (the demo model: 10 of 10 at the model
    level, docs/RESULTS.md); chance is 1 in 10."""
    videos = demo_manifest(demo_dir)
    firsts, misses = 0, []
    with demo_server.client() as c:
        for v in videos:
            query = ", then ".join(s["caption"].split(" on a ")[0] for s in v["scenes"])
            r = c.post("/v1/search", json={"query": query, "top_k": 3, "group_by_video": True})
            assert r.status_code == 200, r.text
            top = r.json()["results"][0]["title"]
            firsts += top == v["title"]
            if top != v["title"]:
                misses.append((query, v["title"], top))
    assert firsts >= 8, f"only {firsts}/10 whole-video captions ranked their video first: {misses}"


@pytest.mark.skipif(not DEMO_CHECKPOINT.exists(), reason=f"the comparison encodes with {DEMO_CHECKPOINT}")
def test_qdrant_backend_gives_the_same_results_on_the_demo_library(demo_dir: Path, tmp_path: Path) -> None:
    """Issue 21's goal "zero result differences on the demo library", through its documented
    command: every scene caption's top-10 moments (clip ids and scores) searched through FAISS
    and through the in-process Qdrant engine. On a copy: the running server holds the store."""
    pytest.importorskip("qdrant_edge")
    work = tmp_path / "demo"
    shutil.copytree(demo_dir / "videos", work / "videos", ignore=shutil.ignore_patterns("*.mp4"))
    shutil.copytree(demo_dir / "index", work / "index", ignore=shutil.ignore_patterns("*.lock"))
    cmd = [sys.executable, "bench/bench_backends.py", "--demo", str(work)]
    out = subprocess.run(cmd, cwd=REPO, env=cli_env(), capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    scenes = sum(len(v["scenes"]) for v in demo_manifest(demo_dir))
    assert result["queries"] == scenes >= 20 and result["demo_clips"] >= 20, result
    assert result["differences"] == 0, result["differ"]
