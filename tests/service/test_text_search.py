"""Searching what is said and written, against a live server: videos with a subtitle track, a sidecar
file, on-screen text and speech are ingested through POST /v1/ingest, and a phrase from each finds its video
at the time of the words; `sources` picks the rankings; a deleted video's words are not found."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from indexer.corpora.lavfi import render_colour_box
from indexer.text.synth import ocr_video, speech_video, subtitle_video
from tests.cli_forks import CliForks
from tests.support import Server, server_settings, t2v, wait_job

pytestmark = pytest.mark.slow  # a server, five ingestions with OCR and speech: a minute or two


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("words")
    return {
        # 16 s: three 10 s windows (stride 5); the words are in the last one
        "embedded": subtitle_video(root / "embedded.mp4", [(12.0, 14.0, "the purple elephant dances")], 16),
        "sidecar": subtitle_video(
            root / "sidecar.mp4",
            [(3.0, 4.5, "grandmother bakes bread")],
            8,
            "olive",
            embed=False,
            sidecar=".en.srt",
        ),
        "screen": ocr_video(root / "screen.mp4", [(4.0, 7.0, "GRAND OPENING")], 8),
        "spoken": speech_video(root / "spoken.mp4", [(3.0, "good morning everybody")], 7),
        "plain": render_colour_box(root / "plain.mp4", "red", seconds=3.0),
    }


@pytest.fixture(scope="module")
def client(
    tmp_path_factory: pytest.TempPathFactory, library: dict[str, Path], cli_forks: CliForks
) -> Iterator[httpx.Client]:
    work = tmp_path_factory.mktemp("text-api")
    settings = server_settings(work, library["plain"].parent, text={"ocr": True, "speech": True})
    srv = Server(work, settings, forks=cli_forks).start()
    with srv.client() as c:
        r = c.post("/v1/ingest", json={"paths": [str(p) for p in library.values()]})
        assert r.status_code == 202, r.text
        job = wait_job(c, r.json()["id"])
        assert [i["state"] for i in job["items"]] == ["done"] * len(library), job
        yield c
    srv.stop()


def search(client: httpx.Client, query: str, **extra: object) -> list[dict]:
    r = client.post("/v1/search", json={"query": query, "top_k": 5, **extra})
    assert r.status_code == 200, r.text
    results: list[dict] = r.json()["results"]
    return results


def ids(client: httpx.Client) -> dict[str, int]:
    videos = client.get("/v1/videos").json()["items"]
    return {v["title"]: v["id"] for v in videos}


def test_a_phrase_finds_its_video_at_the_time_of_the_words(client: httpx.Client) -> None:
    vid = ids(client)
    top = search(client, "purple elephant")[0]
    assert top["video_id"] == vid["embedded"]
    assert (top["start"], top["end"]) == (12.0, 14.0)
    assert top["matches"][0] == {
        "source": "subtitles",
        "start": 12.0,
        "end": 14.0,
        "text": "the purple elephant dances",
    }
    assert top["sources"] == ["visual", "subtitles"] and top["visual_score"] is not None
    side = search(client, "who bakes bread")[0]
    assert side["video_id"] == vid["sidecar"] and side["start"] == 3.0
    screen = search(client, '"grand opening"')[0]
    assert screen["video_id"] == vid["screen"] and screen["matches"][0]["source"] == "ocr"
    assert abs(screen["start"] - 4.0) <= 1.0  # OCR reads one frame a second
    # PocketSphinx hears espeak-ng's "good morning everybody" as "oh morning everybody"
    spoken = search(client, "morning everybody")[0]
    assert spoken["video_id"] == vid["spoken"] and spoken["matches"][0]["source"] == "speech"
    assert abs(spoken["start"] - 3.0) <= 0.5


def test_each_video_reports_its_text_tracks(client: httpx.Client) -> None:
    vid = ids(client)

    def tracks(name: str) -> dict[str, dict]:
        r = client.get(f"/v1/videos/{vid[name]}")
        assert r.status_code == 200, r.text
        return {t["source"]: t for t in r.json()["text_tracks"]}

    plain = tracks("plain")
    assert plain["speech"]["status"] == "none" and plain["speech"]["reason"] == "no audio stream"
    assert plain["subtitles"]["status"] == "none" and plain["ocr"]["status"] == "none"
    spoken = tracks("spoken")["speech"]
    assert spoken["status"] == "found" and spoken["lines"] >= 1 and "pocketsphinx" in spoken["reason"]
    assert tracks("embedded")["subtitles"]["lines"] == 1


def test_sources_choose_the_rankings(client: httpx.Client) -> None:
    vid = ids(client)
    visual = search(client, "purple elephant", sources=["visual"])
    assert visual and all(r["matches"] == [] and r["sources"] == ["visual"] for r in visual)
    only_ocr = search(client, "purple elephant", sources=["ocr"])
    assert only_ocr == []  # the words are in subtitles, not on screen
    subs = search(client, "elephant", sources=["subtitles"])
    assert [r["video_id"] for r in subs] == [vid["embedded"]] and subs[0]["visual_score"] is None
    got = client.get("/v1/search", params={"q": "elephant", "sources": ["subtitles"]})
    assert got.status_code == 200 and [r["video_id"] for r in got.json()["results"]] == [vid["embedded"]]
    assert client.get("/v1/search", params={"q": "x", "sources": "sound"}).status_code == 422
    for bad in (["sound"], []):
        r = client.post("/v1/search", json={"query": "x", "sources": bad})
        assert r.status_code == 422, r.text


def test_cli_against_the_server_shows_the_line_and_takes_sources(client: httpx.Client) -> None:
    url = str(client.base_url).rstrip("/")
    found = t2v("search", "purple elephant", "--server", url, "-k", "1")
    assert found.returncode == 0, found.stderr
    lines = found.stdout.splitlines()
    assert "embedded" in lines[0] and "0:12.00" in lines[0]
    assert lines[1] == "    subtitled at 0:12.00: the *purple* *elephant* dances"
    visual = t2v("search", "purple elephant", "--server", url, "-k", "1", "--source", "visual")
    assert visual.returncode == 0, visual.stderr
    assert "subtitled" not in visual.stdout
    bad = t2v("search", "x", "--server", url, "--source", "sound")
    assert bad.returncode != 0 and bad.stderr.strip().startswith("error:")


def test_deleted_videos_words_are_not_found(client: httpx.Client) -> None:
    vid = ids(client)
    before = search(client, "grandmother", sources=["subtitles"])
    assert [r["video_id"] for r in before] == [vid["sidecar"]]
    assert client.delete(f"/v1/videos/{vid['sidecar']}").status_code in (200, 204)
    assert search(client, "grandmother", sources=["subtitles"]) == []
