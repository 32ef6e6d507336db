"""The page shows the line a result matched ("subtitled at 0:12.0: ...", the query's words marked)
and its "Search in" picker chooses the sources; in Debian's chromium against a live server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, sync_playwright

from indexer.text.synth import subtitle_video
from tests.cli_forks import CliForks
from tests.support import Server, server_settings, wait_job

pytestmark = pytest.mark.slow  # a server, an ingestion and a browser

CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory, cli_forks: CliForks) -> Iterator[Page]:
    root = tmp_path_factory.mktemp("page-words")
    video = subtitle_video(root / "zoo.mp4", [(12.0, 14.0, "the purple elephant dances")], 16)
    work = tmp_path_factory.mktemp("page-words-work")
    srv = Server(work, server_settings(work, root), forks=cli_forks).start()
    try:
        with srv.client() as c:
            r = c.post("/v1/ingest", json={"paths": [str(video)]})
            assert r.status_code == 202, r.text
            assert wait_job(c, r.json()["id"])["counts"].get("done") == 1
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=["--headless", "--no-sandbox"])
            tab = browser.new_page()
            tab.goto(srv.url + "/")
            yield tab
            browser.close()
    finally:
        srv.stop()


def search(page: Page, query: str, sources: str) -> None:
    page.select_option("#sources", sources)
    page.fill("#query", query)
    page.press("#query", "Enter")
    page.wait_for_function(
        "() => !document.getElementById('search-button').disabled"
        " && document.querySelectorAll('#results .card').length > 0",
        timeout=60_000,
    )


def test_the_card_shows_the_matched_line_with_the_query_words_marked(page: Page) -> None:
    search(page, "purple elephant", "")
    line = page.locator("#results .card").first.locator(".said")
    assert line.inner_text() == "subtitled at 0:12.0: the purple elephant dances"
    assert line.locator("mark").all_inner_texts() == ["purple", "elephant"]
    assert "0:12.0 – 0:14.0" in page.locator("#results .card .when").first.inner_text()


def test_pictures_only_shows_no_line(page: Page) -> None:
    search(page, "purple elephant", "visual")
    assert page.locator("#results .card .said").count() == 0
