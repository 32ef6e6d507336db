"""The web page in a real browser (Debian's /usr/bin/chromium), on a desktop and a phone viewport,
against the service serving the demo library with the demo model.

Each test drives the page as a user does (typing, clicking, keys) and keeps a screenshot per
viewport in test-artifacts/page/. One server for the module; the library view's tests add and
delete their own videos, so the others see the demo library as it was built.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, Request, Route, expect, sync_playwright

from indexer.corpora.lavfi import render_colour_box
from indexer.corpora.synthetic import render_demo_library
from tests.cli_forks import CliForks
from tests.support import REPO, Server, server_settings, wait_job

pytestmark = pytest.mark.slow  # a demo library, a server and a browser

ARTIFACTS = REPO / "test-artifacts" / "page"
KEY = "page-key"
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
    "--autoplay-policy=no-user-gesture-required",
]
VIEWPORTS: dict[str, dict[str, Any]] = {
    "desktop": {"viewport": {"width": 1280, "height": 800}},
    "phone": {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 2, "is_mobile": True},
}
# what the page fetches after a search shares the server's two workers with everyone: generous
WORK_MS = 60_000
# a query whose scene exists in the demo library (video 0's first scene), and one that means nothing
REAL_QUERY = "a red circle moving left"
NONSENSE = "zzqx 12345 !!!"


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory, cli_forks: CliForks) -> Iterator[tuple[Server, Path]]:
    """The demo library indexed over REST (4 s windows, as `t2v demo`), served with an API key.

    Yields the server and its allowed root (for the folders the tests add)."""
    root = tmp_path_factory.mktemp("page-root")
    videos = render_demo_library(root / "demo", seed=0)
    work = tmp_path_factory.mktemp("page-work")
    settings = server_settings(work, root, api_keys=[KEY], window=4.0, stride=2.0)
    srv = Server(work, settings, forks=cli_forks).start()
    try:
        with srv.client(headers={"X-API-Key": KEY}) as c:
            body = {"paths": [str(v.path) for v in videos], "titles": [v.title for v in videos]}
            r = c.post("/v1/ingest", json=body)
            assert r.status_code == 202, r.text
            job = wait_job(c, r.json()["id"], timeout=300)
            assert job["counts"].get("done") == len(videos), job
        yield srv, root
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def server(library: tuple[Server, Path]) -> Server:
    return library[0]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail("Debian's chromium is missing: scripts/test.sh installs it (apt-get install chromium)")
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        b.close()


class Tab:
    """A page at one viewport: the errors it raised and the API requests it made."""

    def __init__(self, page: Page, viewport: str, base: str) -> None:
        self.page = page
        self.viewport = viewport
        self.base = base
        self.errors: list[str] = []
        self.requests: list[str] = []
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        page.on("request", self._request)

    def _request(self, req: Request) -> None:
        if "/v1/" in req.url:
            self.requests.append(f"{req.method} {req.url.removeprefix(self.base)}")

    def goto(self, path: str = "/") -> None:
        self.page.goto(self.base + path)

    def shot(self, name: str, full_page: bool = False) -> None:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}-{self.viewport}.png"
        self.page.screenshot(path=str(path), full_page=full_page)
        assert path.stat().st_size > 1000

    def search(self, query: str) -> None:
        self.page.fill("#query", query)
        self.page.press("#query", "Enter")

    def wait_results(self) -> None:
        """The search has answered and the images of the cards on screen have loaded (the others
        load lazily, when scrolled to)."""
        self.page.wait_for_function(
            "() => !document.getElementById('search-button').disabled"
            " && document.querySelectorAll('#results .card').length > 0"
            " && [...document.querySelectorAll('#results .card img')]"
            ".filter(i => i.getBoundingClientRect().top < innerHeight)"
            ".every(i => i.complete && i.naturalWidth > 0)",
            timeout=WORK_MS,
        )


@pytest.fixture(params=list(VIEWPORTS))
def tab(request: pytest.FixtureRequest, browser: Browser, server: Server) -> Iterator[Tab]:
    context = browser.new_context(**VIEWPORTS[request.param])
    page = context.new_page()
    t = Tab(page, request.param, server.url)
    try:
        yield t
        assert not t.errors, f"the page raised: {t.errors}"
    finally:
        context.close()


def in_viewport(page: Page, selector: str) -> bool:
    box = page.locator(selector).bounding_box()
    size = page.viewport_size
    assert box is not None and size is not None
    return box["y"] >= 0 and box["x"] >= 0 and box["y"] + box["height"] <= size["height"] + 1


def player_state(page: Page) -> dict[str, Any]:
    return page.evaluate(  # type: ignore[no-any-return]
        "() => { const v = document.getElementById('player');"
        " return {t: v.currentTime, paused: v.paused, duration: v.duration, start: +v.dataset.start,"
        " end: +v.dataset.end, state: document.getElementById('moment-state').textContent}; }"
    )


# --- tests ------------------------------------------------------------------------------------


def test_first_load_focuses_the_query_and_has_a_favicon(tab: Tab) -> None:
    tab.goto("/")
    expect(tab.page.locator("#query")).to_be_focused()
    icon = tab.page.locator("link[rel=icon]").get_attribute("href")
    assert icon
    r = httpx.get(tab.base + icon)
    assert r.status_code == 200 and r.headers["content-type"].startswith("image/svg+xml")
    assert tab.requests == []  # nothing fetched before the user asks
    tab.shot("home")


def test_one_request_per_search_grouped_per_video_with_the_matching_frame(tab: Tab) -> None:
    tab.goto("/")
    tab.search(REAL_QUERY)
    tab.wait_results()
    expect(tab.page).to_have_url(re.compile(r"\?q=a\+red\+circle\+moving\+left$"))
    searches = [r for r in tab.requests if "/v1/search" in r]
    assert searches == ["POST /v1/search"], tab.requests
    cards = tab.page.locator("#search-view .card")
    video_ids = [cards.nth(i).get_attribute("data-video-id") for i in range(cards.count())]
    assert len(video_ids) == len(set(video_ids)) > 1  # one card per video
    # besides the one search: only the thumbnails of the cards on show (no per-card searches)
    others = [r for r in tab.requests if "/v1/search" not in r]
    assert all(re.fullmatch(r"GET /v1/videos/\d+/thumbnail\?t=[\d.]+", r) for r in others), others
    assert len(others) <= len(video_ids)
    # the card image is the frame the server says carried the match, inside the moment
    first = tab.page.locator("#results .card").nth(0)
    assert "weak" not in (first.get_attribute("class") or "").split()  # a real query: a good match
    with httpx.Client(base_url=tab.base) as c:
        body = {"query": REAL_QUERY, "top_k": 12, "group_by_video": True, "moments_per_video": 20}
        top = c.post("/v1/search", json=body).json()["results"][0]
    assert first.get_attribute("data-video-id") == str(top["video_id"])
    best = float(first.get_attribute("data-best-frame") or -1)
    assert best == top["best_frame_s"] and top["start"] <= best <= top["end"]
    src = first.locator("img").first.get_attribute("src") or ""
    assert src.endswith(f"thumbnail?t={best:.2f}"), (src, best)
    # its other moments are folded under it; unfolding shows them, best first
    more = first.locator("details.more")
    expect(more).to_have_count(1)
    more.locator("summary").click()
    items = more.locator(".moment")
    expect(items.first).to_be_visible()
    assert items.count() >= 1
    # the relevance strip comes from the same response: one segment per moment
    assert first.locator(".strip .seg").count() == items.count() + 1
    tab.shot("results", full_page=True)


def test_nonsense_says_no_good_match(tab: Tab) -> None:
    tab.goto("/")
    tab.search(NONSENSE)
    tab.wait_results()
    notice = tab.page.locator("#notice")
    expect(notice).to_contain_text("No good match")
    assert "warn" in (tab.page.locator("#status").get_attribute("class") or "")
    cards = tab.page.locator("#results .card")
    assert cards.count() > 0
    assert all("weak" in (cards.nth(i).get_attribute("class") or "") for i in range(cards.count()))
    expect(cards.first.locator(".badge")).to_have_text("weak match")
    tab.shot("no-good-match", full_page=True)


def test_player_opens_in_view_plays_the_moment_marked_and_stops_at_its_end(tab: Tab) -> None:
    page = tab.page
    tab.goto("/?q=" + NONSENSE.replace(" ", "+").replace("!", "%21"))
    tab.wait_results()
    with httpx.Client(base_url=tab.base) as c:
        durations = {
            v["id"]: v["duration"] for v in c.get("/v1/videos", params={"limit": 50}).json()["items"]
        }
    cards = page.locator("#results .card")
    # the last card whose moment ends before its video does (so the stop is the page's doing):
    # below the first row on a desktop, far down on a phone
    ends_early = [
        i
        for i in range(cards.count())
        if float(cards.nth(i).get_attribute("data-end") or 0)
        < durations[int(cards.nth(i).get_attribute("data-video-id") or 0)] - 0.5
    ]
    assert ends_early, "no moment ends before its video"
    last = cards.nth(ends_early[-1])
    assert ends_early[-1] > 0
    start, end = float(last.get_attribute("data-start") or 0), float(last.get_attribute("data-end") or 0)
    last.click()
    dialog = page.locator("#player-dialog")
    expect(dialog).to_be_visible()
    page.wait_for_function(
        "() => { const v = document.getElementById('player'); return v.readyState >= 2 && !v.paused; }",
        timeout=30_000,
    )
    assert in_viewport(page, "#player-dialog"), "the player must open where the user is looking"
    assert in_viewport(page, "#player")
    state = player_state(page)
    assert (state["start"], state["end"]) == (start, end)
    assert start <= state["t"] < end
    # the moment is marked on the bar under the video, to scale
    left = page.evaluate("() => parseFloat(document.getElementById('moment-range').style.left)")
    width = page.evaluate("() => parseFloat(document.getElementById('moment-range').style.width)")
    dur = state["duration"]
    assert left == pytest.approx(100 * start / dur, abs=0.5)
    assert width == pytest.approx(100 * (min(end, dur) - start) / dur, abs=0.5)
    # it stops at the moment's end, not at the video's
    page.wait_for_function("() => document.getElementById('player').paused", timeout=30_000)
    state = player_state(page)
    assert end - 0.05 <= state["t"] <= end + 0.3, state
    assert state["state"] == "end of the moment"
    tab.shot("player")
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    expect(last).to_be_focused()  # back where the user was


def test_loop_replays_the_moment(tab: Tab) -> None:
    if tab.viewport == "phone":
        pytest.skip("the same player code as on the desktop; one viewport is enough for a 4 s wait")
    page = tab.page
    tab.goto("/?q=" + REAL_QUERY.replace(" ", "+"))
    tab.wait_results()
    page.locator("#results .card").first.click()
    page.wait_for_function("() => !document.getElementById('player').paused", timeout=30_000)
    page.keyboard.press("l")
    assert page.locator("#loop").is_checked()
    # the time jumps back to the start at the end and keeps playing
    page.evaluate(
        "() => { const v = document.getElementById('player'); let top = 0; window.__wrapped = false;"
        " v.addEventListener('timeupdate', () => { if (v.currentTime + 1 < top && !v.paused)"
        " window.__wrapped = true; top = Math.max(top, v.currentTime); }); }"
    )
    page.wait_for_function("() => window.__wrapped", timeout=30_000)
    state = player_state(page)
    assert not state["paused"] and state["start"] <= state["t"] < state["end"], state


def test_keyboard_only(tab: Tab) -> None:
    page = tab.page
    tab.goto("/")
    page.keyboard.press("Tab")  # away from the query
    expect(page.locator("#query")).not_to_be_focused()
    page.keyboard.press("/")
    expect(page.locator("#query")).to_be_focused()
    page.keyboard.type(NONSENSE)
    page.keyboard.press("Enter")
    tab.wait_results()
    cards = page.locator("#results .card")
    page.keyboard.press("ArrowDown")
    expect(cards.nth(0)).to_be_focused()
    page.keyboard.press("ArrowRight")
    expect(cards.nth(1)).to_be_focused()
    page.keyboard.press("ArrowLeft")
    expect(cards.nth(0)).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator("#player-dialog")).to_be_visible()
    page.wait_for_function("() => !document.getElementById('player').paused", timeout=30_000)
    page.keyboard.press(" ")
    page.wait_for_function("() => document.getElementById('player').paused", timeout=5_000)
    page.keyboard.press("r")  # replay: from the moment's start, playing
    page.wait_for_function("() => !document.getElementById('player').paused", timeout=5_000)
    page.keyboard.press("Escape")
    expect(page.locator("#player-dialog")).to_be_hidden()
    expect(cards.nth(0)).to_be_focused()


def test_query_lives_in_the_url_and_back_goes_back(tab: Tab) -> None:
    page = tab.page
    tab.goto("/?q=" + REAL_QUERY.replace(" ", "+"))  # a shared link searches at once
    tab.wait_results()
    expect(page.locator("#query")).to_have_value(REAL_QUERY)
    first_title = page.locator("#results .card .title").first.inner_text()
    tab.search(NONSENSE)
    expect(page.locator("#notice")).to_contain_text("No good match", timeout=WORK_MS)
    assert "zzqx" in page.url
    page.go_back()
    expect(page.locator("#query")).to_have_value(REAL_QUERY)
    tab.wait_results()
    expect(page.locator("#notice")).to_be_hidden()
    assert page.locator("#results .card .title").first.inner_text() == first_title
    assert page.title().startswith(REAL_QUERY)


def test_loading_state_then_results(tab: Tab) -> None:
    """While the search is out, the button is disabled, the spinner turns and the status says so."""
    page = tab.page
    held: list[Route] = []
    # held back, then sent on to the server for real once the loading state was checked
    page.route("**/v1/search", lambda route: held.append(route))
    tab.goto("/")
    tab.search(REAL_QUERY)
    page.wait_for_function("() => document.getElementById('search-button').disabled")
    expect(page.locator("#search-button .spinner")).to_be_visible()
    expect(page.locator("#status")).to_have_text("Searching…")
    assert page.locator("#results").get_attribute("aria-busy") == "true"
    tab.shot("loading")
    assert len(held) == 1, "the search request was not seen"
    held[0].continue_()
    tab.wait_results()
    expect(page.locator("#search-button")).to_be_enabled()


def test_blank_query_is_explained_not_sent(tab: Tab) -> None:
    tab.goto("/")
    tab.search("    ")
    status = tab.page.locator("#status")
    expect(status).to_contain_text("Type what you are looking for")
    assert "error" in (status.get_attribute("class") or "")
    assert not [r for r in tab.requests if "/v1/search" in r]
    expect(tab.page.locator("#query")).to_be_focused()


def test_empty_library_then_server_gone(browser: Browser, tmp_path: Path, cli_forks: CliForks) -> None:
    """A fresh, empty service says so and links to the library; when the server is gone the error
    is shown in red with a retry, and the button comes back (never 'Searching...' forever).
    Both viewports in one test: one extra server, stopped once."""
    root = tmp_path / "root"
    root.mkdir()
    empty = Server(tmp_path, server_settings(tmp_path, root), forks=cli_forks).start()
    tabs = []
    try:
        for viewport, options in VIEWPORTS.items():
            context = browser.new_context(**options)
            tabs.append(Tab(context.new_page(), viewport, empty.url))
        for tab in tabs:
            tab.goto("/")
            tab.search(REAL_QUERY)
            notice = tab.page.locator("#notice")
            expect(notice).to_contain_text("Nothing is indexed yet", timeout=WORK_MS)
            expect(notice.locator("a")).to_have_text("Add videos in the Library")
            tab.shot("empty-library")
        empty.stop()
        for tab in tabs:
            page = tab.page
            tab.search("a blue square")
            expect(page.locator("#notice")).to_contain_text("cannot be reached", timeout=WORK_MS)
            status = page.locator("#status")
            assert "error" in (status.get_attribute("class") or "")
            colour = status.evaluate("e => getComputedStyle(e).color")
            assert colour == "rgb(185, 28, 28)", colour  # red, not the grey of normal status
            expect(page.locator("#notice button")).to_have_text("Try again")
            expect(page.locator("#search-button")).to_be_enabled()
            tab.shot("server-gone")
            assert not tab.errors, tab.errors
    finally:
        empty.stop()
        for tab in tabs:
            tab.page.context.close()


def test_library_lists_ingests_a_folder_and_deletes_with_the_key(
    tab: Tab, library: tuple[Server, Path]
) -> None:
    srv, root = library
    page = tab.page
    # each viewport adds its own videos (distinct content), in a folder on the server
    colours = ["cyan", "magenta"] if tab.viewport == "desktop" else ["olive", "navy"]
    folder = root / f"added-{tab.viewport}"
    for i, colour in enumerate(colours):
        render_colour_box(folder / f"{colour}.mp4", colour, seconds=2.0 + i)
    tab.goto("/")
    page.click("#nav-library")
    expect(page).to_have_url(re.compile(r"\?view=library$"))
    with srv.client() as c:
        total = c.get("/v1/videos", params={"limit": 1}).json()["total"]
    expect(page.locator("#video-list .video")).to_have_count(min(total, 50))
    expect(page.locator("#library-count")).to_have_text(f"({total} videos)")
    # a folder, with the key
    page.fill("#api-key", KEY)
    page.fill("#folder", str(folder))
    page.click("#folder-form button")
    expect(page.locator("#job-state")).to_have_text("done: 2/2", timeout=WORK_MS)
    assert [f"{c}.mp4: done" for c in sorted(colours)] == page.locator("#job-items li").all_inner_texts()
    expect(page.locator("#video-list .video")).to_have_count(min(total + 2, 50))
    tab.shot("library", full_page=True)
    # delete: without the key it is refused and says why; with it the video is gone
    row = page.locator("#video-list .video", has_text=colours[0]).first
    vid = row.get_attribute("data-video-id")
    page.fill("#api-key", "")
    page.evaluate("() => localStorage.removeItem('t2v-api-key')")
    row.locator(".delete").click()
    expect(row.locator(".delete")).to_have_text("Confirm delete")
    row.locator(".delete").click()
    expect(page.locator("#library-status")).to_contain_text("API key")
    assert "error" in (page.locator("#library-status").get_attribute("class") or "")
    page.fill("#api-key", KEY)
    row.locator(".delete").click()
    row.locator(".delete").click()
    expect(page.locator(f"#video-list .video[data-video-id='{vid}']")).to_have_count(0)
    with srv.client() as c:
        assert c.get(f"/v1/videos/{vid}").status_code == 404
    tab.shot("library-deleted")


def test_upload_from_the_library(tab: Tab, tmp_path: Path, server: Server) -> None:
    if tab.viewport == "phone":
        pytest.skip("the upload form is the same on both; the folder test covers the phone layout")
    video = render_colour_box(tmp_path / "teal.mp4", "teal", seconds=2.0)
    tab.goto("/?view=library")
    tab.page.fill("#api-key", KEY)
    tab.page.set_input_files("#files", str(video))
    tab.page.click("#upload-form button")
    expect(tab.page.locator("#job-state")).to_have_text("done: 1/1", timeout=WORK_MS)
    assert tab.page.eval_on_selector("#job-progress", "el => el.value") == 1
    expect(tab.page.locator("#job-items")).to_contain_text("teal.mp4: done")
    tab.shot("upload")
    with server.client() as c:
        titles = [v["title"] for v in c.get("/v1/videos", params={"title": "teal"}).json()["items"]]
    assert titles == ["teal"]


def test_thumbnails_sized_for_cards_and_cached(server: Server) -> None:
    """Card images are `thumbnail_width` (320) JPEGs; the browser keeps them an hour and then
    revalidates by ETag, which costs no ffmpeg run (304)."""
    with server.client() as c:
        res = c.post("/v1/search", json={"query": REAL_QUERY, "top_k": 3, "group_by_video": True}).json()
        url = res["results"][0]["thumbnail_url"]
        first = c.get(url)
        assert first.status_code == 200 and first.headers["content-type"] == "image/jpeg"
        assert "max-age=3600" in first.headers["cache-control"]
        etag = first.headers["etag"]
        again = c.get(url, headers={"If-None-Match": etag})
        assert again.status_code == 304 and again.content == b""
        assert c.get(url).content == first.content
    width = jpeg_width(first.content)
    assert width == 320, width


def jpeg_width(data: bytes) -> int:
    """The width in a JPEG's start-of-frame segment."""
    i = 2
    while i < len(data):
        marker, size = data[i + 1], int.from_bytes(data[i + 2 : i + 4], "big")
        if marker in (0xC0, 0xC1, 0xC2):
            return int.from_bytes(data[i + 7 : i + 9], "big")
        i += 2 + size
    raise AssertionError("no start-of-frame segment")
