"""The main job's demo library served for real: scene queries rank the right video first (with the
trained demo model), and a headless Chromium searches, clicks a card and plays the moment."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from indexer.settings import DEMO_CHECKPOINT

from .conftest import REPO, Server

ARTIFACTS = REPO / "test-artifacts"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`t2v demo --no-serve` as a user would run it: renders and indexes the demo library."""
    work = tmp_path_factory.mktemp("demo")
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    cmd = [sys.executable, "-m", "service.cli", "demo", "--workdir", str(work), "--no-serve"]
    out = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.count("indexed") >= 10, out.stdout
    if not DEMO_CHECKPOINT.exists():
        assert "random weights" in out.stderr  # the fallback says so
    return work


@pytest.fixture(scope="module")
def demo_server(demo_dir: Path) -> Iterator[Server]:
    srv = Server(demo_dir, {"index_dir": str(demo_dir / "index"), "var_dir": str(demo_dir / "var")}).start()
    yield srv
    srv.stop()


def demo_manifest(demo_dir: Path) -> list[dict[str, Any]]:
    lines = (demo_dir / "videos" / "manifest.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


@pytest.mark.skipif(
    not DEMO_CHECKPOINT.exists(),
    reason=f"needs the trained demo model {DEMO_CHECKPOINT} (random weights cannot rank)",
)
def test_scene_queries_rank_the_right_video_first(demo_server: Server, demo_dir: Path) -> None:
    videos = demo_manifest(demo_dir)
    assert len(videos) == 10
    misses = []
    with demo_server.client() as c:
        for v in videos:
            for scene in v["scenes"]:
                r = c.post("/v1/search", json={"query": scene["caption"], "top_k": 5, "group_by_video": True})
                assert r.status_code == 200, r.text
                top = r.json()["results"][0]
                if top["title"] != v["title"]:
                    misses.append((scene["caption"], v["title"], top["title"]))
    scenes = sum(len(v["scenes"]) for v in videos)
    assert not misses, f"{len(misses)}/{scenes} scene queries ranked another video first: {misses}"


def test_browser_search_click_plays_the_moment(demo_server: Server, demo_dir: Path) -> None:
    if not CHROMIUM.exists():
        pytest.fail("Debian's chromium is missing: scripts/test.sh installs it (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    query = demo_manifest(demo_dir)[0]["scenes"][0]["caption"]
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.goto(demo_server.url + "/")
            page.fill("#query", query)
            page.press("#query", "Enter")
            page.wait_for_selector(".card", timeout=30_000)
            cards = page.locator(".card")
            assert cards.count() >= 1
            first = cards.nth(0)
            assert first.locator(".title").inner_text()
            assert "score" in first.locator(".score").inner_text()
            assert " – " in first.locator(".when").inner_text()
            page.wait_for_function(
                "() => [...document.querySelectorAll('.card img')]"
                ".every(i => i.complete && i.naturalWidth > 0)",
                timeout=30_000,
            )
            # the moment that starts latest, so "from the moment's start" is not just 0
            starts = [float(cards.nth(i).get_attribute("data-start") or 0) for i in range(cards.count())]
            pick = max(range(len(starts)), key=lambda i: starts[i])
            start = starts[pick]
            cards.nth(pick).click()
            page.wait_for_function(
                """(start) => {
                    const v = document.getElementById('player');
                    return v && !v.paused && v.readyState >= 2 && v.currentTime >= start
                        && v.currentTime < start + 3;
                }""",
                arg=start,
                timeout=30_000,
            )
            t1 = page.evaluate("document.getElementById('player').currentTime")
            page.wait_for_timeout(600)
            t2 = page.evaluate("document.getElementById('player').currentTime")
            assert t2 > t1 >= start, (start, t1, t2)  # it is playing, from the moment's start on
            page.screenshot(path=str(ARTIFACTS / "browser-search.png"), full_page=True)
        finally:
            browser.close()
    assert (ARTIFACTS / "browser-search.png").stat().st_size > 1000
