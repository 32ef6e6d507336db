"""The REST API against a real uvicorn process: ingestion (paths + uploads), duplicates, delete,
search, thumbnails, range requests, auth, path confinement and limits."""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.cli_forks import CliForks
from tests.support import Server, colour_video, server_settings, wait_job

KEY = "test-key-123"
MAX_UPLOAD = 200_000


@pytest.fixture(scope="module")
def outside(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory that is not an allowed root, holding a real video."""
    d = tmp_path_factory.mktemp("outside")
    (d / "secret.mp4").write_bytes(b"not for you")
    return d


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory,
    colour_videos: dict[str, Path],
    outside: Path,
    cli_forks: CliForks,
) -> Iterator[Server]:
    root = colour_videos["red"].parent
    # a symlink inside the root that escapes it, and a non-video inside the root
    link = root / "escape.mp4"
    if not link.exists():
        link.symlink_to(outside / "secret.mp4")
    (root / "notes.mp4").write_text("this is not a video")
    work = tmp_path_factory.mktemp("api")
    settings = server_settings(
        work,
        root,
        api_keys=[KEY],
        limits__max_upload_bytes=MAX_UPLOAD,
        limits__max_query_chars=200,
        limits__max_page_size=50,
        limits__max_active_jobs=1,
        cors_origins=["http://allowed.example"],
        ingest_threads=2,  # the ingestion worker's own budget; searches keep torch_threads (1)
    )
    srv = Server(work, settings, forks=cli_forks).start()
    yield srv
    srv.stop()


@pytest.fixture
def client(server: Server) -> Iterator[httpx.Client]:
    with server.client(headers={"X-API-Key": KEY}) as c:
        yield c


def ingest_paths(client: httpx.Client, paths: list[Path | str]) -> dict:
    r = client.post("/v1/ingest", json={"paths": [str(p) for p in paths]})
    assert r.status_code == 202, r.text
    return r.json()


def assert_error(r: httpx.Response, status: int, code: str) -> None:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    assert "Traceback" not in r.text


def test_health_and_readiness(client: httpx.Client) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz").json()
    assert ready["status"] == "ready" and ready["model"]


def test_api_docs_page_works_offline(client: httpx.Client) -> None:
    page = client.get("/docs")
    assert page.status_code == 200
    assets = re.findall(r'(?:src|href)="(/docs-assets/[^"]+)"', page.text)
    assert "/docs-assets/swagger-ui-bundle.js" in assets and "http" not in "".join(assets)
    for asset in assets:  # everything the page needs comes from this server
        assert client.get(asset).status_code == 200, asset


def test_server_path_job_lifecycle_duplicate_and_failure(client: httpx.Client, colour_videos: dict) -> None:
    root = colour_videos["red"].parent
    job = ingest_paths(client, [colour_videos["red"], colour_videos["green"], root / "notes.mp4"])
    assert job["state"] in ("queued", "running") and job["total"] == 3
    done = wait_job(client, job["id"])
    states = [it["state"] for it in done["items"]]
    assert states == ["done", "done", "failed"], done
    assert done["items"][2]["reason"]
    assert done["progress"] == 1.0
    red_id = done["items"][0]["video_id"]
    video = client.get(f"/v1/videos/{red_id}").json()
    assert (
        video["title"] == "red" and video["clips"] >= 1 and video["duration"] == pytest.approx(2.0, abs=0.2)
    )
    # the same file again (and a copy under another name) is a duplicate of the stored video
    again = wait_job(client, ingest_paths(client, [colour_videos["red"]])["id"])
    assert again["items"][0]["state"] == "duplicate"
    assert again["items"][0]["video_id"] == red_id
    listed = client.get("/v1/jobs").json()
    assert {j["id"] for j in listed["items"]} >= {job["id"], again["id"]}


def test_upload_job_search_thumbnail_and_range(client: httpx.Client, colour_videos: dict) -> None:
    blue = colour_videos["blue"]
    with open(blue, "rb") as f:
        r = client.post("/v1/ingest", files=[("files", ("my blue.mp4", f, "video/mp4"))])
    assert r.status_code == 202, r.text
    job = wait_job(client, r.json()["id"])
    item = job["items"][0]
    assert job["kind"] == "upload" and item["state"] == "done", job
    vid = item["video_id"]
    # searchable at once, with links that work
    res = client.post("/v1/search", json={"query": "a white square over blue", "top_k": 100}).json()
    hit = next(m for m in res["results"] if m["video_id"] == vid)
    assert hit["end"] > hit["start"] >= 0
    assert [m["score"] for m in res["results"]] == sorted((m["score"] for m in res["results"]), reverse=True)
    thumb = client.get(hit["thumbnail_url"])
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
    assert thumb.content[:2] == b"\xff\xd8"
    # the uploaded bytes come back, whole and in ranges
    data = blue.read_bytes()
    full = client.get(f"/v1/videos/{vid}/stream")
    assert full.status_code == 200 and full.content == data
    assert full.headers["accept-ranges"] == "bytes"
    part = client.get(f"/v1/videos/{vid}/stream", headers={"Range": "bytes=100-299"})
    assert part.status_code == 206
    assert part.content == data[100:300]
    assert part.headers["content-range"] == f"bytes 100-299/{len(data)}"
    tail = client.get(f"/v1/videos/{vid}/stream", headers={"Range": "bytes=-50"})
    assert tail.status_code == 206 and tail.content == data[-50:]
    beyond = client.get(f"/v1/videos/{vid}/stream", headers={"Range": f"bytes={len(data) + 10}-"})
    assert_error(beyond, 416, "range_not_satisfiable")
    assert beyond.headers["content-range"] == f"bytes */{len(data)}"


def test_get_search_and_grouping(client: httpx.Client, colour_videos: dict) -> None:
    wait_job(client, ingest_paths(client, [colour_videos["yellow"]])["id"])
    r = client.get("/v1/search", params={"q": "yellow", "top_k": 2, "group_by_video": True})
    assert r.status_code == 200
    results = r.json()["results"]
    assert 1 <= len(results) <= 2
    assert len({m["video_id"] for m in results}) == len(results)  # one moment per video
    only = client.post("/v1/search", json={"query": "yellow", "video_ids": [results[0]["video_id"]]}).json()
    assert {m["video_id"] for m in only["results"]} == {results[0]["video_id"]}
    high = client.post("/v1/search", json={"query": "yellow", "min_score": 10.0}).json()
    assert high["results"] == []


def test_search_marks_weak_matches_and_shows_the_matching_frame(
    client: httpx.Client, colour_videos: dict
) -> None:
    """Each moment says which frame carried the match (its thumbnail is that frame) and whether it
    is below the library's weak-match line; grouped results fold the video's other moments; the
    thumbnail is revalidated by ETag (304) instead of being extracted again."""
    wait_job(client, ingest_paths(client, [colour_videos["red"]])["id"])
    body = {"query": "a white square over red", "top_k": 5, "group_by_video": True, "moments_per_video": 3}
    res = client.post("/v1/search", json=body).json()
    line = res["weak_below"]
    assert isinstance(line, float)
    assert res["results"]
    for m in res["results"]:
        assert m["weak"] == (m["score"] < line)
        assert m["start"] <= m["best_frame_s"] <= m["end"]
        assert m["thumbnail_url"] == f"/v1/videos/{m['video_id']}/thumbnail?t={m['best_frame_s']:.2f}"
        assert len(m["more"]) <= 2 and all(o["video_id"] == m["video_id"] for o in m["more"])
    thumb = client.get(res["results"][0]["thumbnail_url"])
    assert thumb.status_code == 200 and thumb.headers["cache-control"] == "max-age=3600"
    again = client.get(res["results"][0]["thumbnail_url"], headers={"If-None-Match": thumb.headers["etag"]})
    assert again.status_code == 304 and again.content == b""
    # nonsense is weak everywhere: the line was set by queries like it
    junk = client.post("/v1/search", json={"query": "zzqx 12345 !!!", "top_k": 5}).json()
    assert junk["results"] and all(m["weak"] for m in junk["results"])


def test_delete_removes_from_library_and_search(client: httpx.Client, colour_videos: dict) -> None:
    job = wait_job(client, ingest_paths(client, [colour_videos["purple"]])["id"])
    vid = job["items"][0]["video_id"]
    assert client.delete(f"/v1/videos/{vid}").json() == {"id": vid, "deleted": True}
    assert_error(client.get(f"/v1/videos/{vid}"), 404, "not_found")
    assert_error(client.delete(f"/v1/videos/{vid}"), 404, "not_found")
    assert_error(client.get(f"/v1/videos/{vid}/stream"), 404, "not_found")
    res = client.post("/v1/search", json={"query": "purple", "top_k": 100}).json()
    assert vid not in {m["video_id"] for m in res["results"]}
    assert vid not in {v["id"] for v in client.get("/v1/videos", params={"limit": 50}).json()["items"]}
    # the file on disk is the user's: deleting the video leaves it
    assert colour_videos["purple"].exists()


def test_library_listing_pagination_and_title_filter(client: httpx.Client, colour_videos: dict) -> None:
    wait_job(client, ingest_paths(client, [colour_videos["orange"], colour_videos["white"]])["id"])
    page = client.get("/v1/videos", params={"limit": 1, "offset": 0}).json()
    assert page["limit"] == 1 and len(page["items"]) == 1 and page["total"] >= 3
    second = client.get("/v1/videos", params={"limit": 1, "offset": 1}).json()
    assert second["items"][0]["id"] != page["items"][0]["id"]
    filtered = client.get("/v1/videos", params={"title": "ORAN"}).json()
    assert [v["title"] for v in filtered["items"]] == ["orange"]


def test_auth_required_for_writes_only(server: Server, colour_videos: dict) -> None:
    with server.client() as anon:
        assert_error(
            anon.post("/v1/ingest", json={"paths": [str(colour_videos["red"])]}), 401, "unauthorized"
        )
        assert_error(anon.delete("/v1/videos/1"), 401, "unauthorized")
        with open(colour_videos["cyan"], "rb") as f:
            up = anon.post("/v1/ingest", files=[("files", ("c.mp4", f, "video/mp4"))])
        assert_error(up, 401, "unauthorized")
        assert anon.get("/v1/videos").status_code == 200  # reads stay open
        assert anon.post("/v1/search", json={"query": "red"}).status_code == 200
    with server.client(headers={"X-API-Key": "wrong"}) as bad:
        assert_error(bad.post("/v1/ingest", json={"paths": [str(colour_videos["red"])]}), 401, "unauthorized")
        assert_error(bad.get("/v1/videos"), 401, "unauthorized")
    with server.client(headers={"Authorization": f"Bearer {KEY}"}) as bearer:
        assert bearer.get("/v1/jobs").status_code == 200


@pytest.mark.parametrize(
    "make_path",
    [
        lambda root, out: str(out / "secret.mp4"),  # outside every root
        lambda root, out: f"{root}/../{out.name}/secret.mp4",  # '..' escape
        lambda root, out: f"{root}/./../{root.name}/red.mp4",  # '..' even when it lands inside
        lambda root, out: str(root / "escape.mp4"),  # symlink out of the root
        lambda root, out: "red.mp4",  # relative
        lambda root, out: "/etc/passwd",
    ],
    ids=["outside", "dotdot", "dotdot-inside", "symlink", "relative", "etc-passwd"],
)
def test_path_confinement(
    client: httpx.Client, colour_videos: dict, outside: Path, make_path: object
) -> None:
    root = colour_videos["red"].parent
    path = make_path(root, outside)  # type: ignore[operator]
    jobs_before = client.get("/v1/jobs").json()["total"]
    r = client.post("/v1/ingest", json={"paths": [str(colour_videos["green"]), path]})
    assert_error(r, 403, "path_not_allowed")
    assert client.get("/v1/jobs").json()["total"] == jobs_before  # nothing queued


def test_limits(client: httpx.Client, server: Server, colour_videos: dict, tmp_path: Path) -> None:
    assert_error(client.post("/v1/search", json={"query": "x" * 201}), 422, "invalid_input")
    assert_error(client.post("/v1/search", json={"query": "red", "top_k": 101}), 422, "invalid_input")
    assert_error(client.post("/v1/search", json={"query": "red", "top_k": 0}), 422, "invalid_input")
    assert_error(client.post("/v1/search", json={"query": ""}), 422, "invalid_input")
    assert_error(client.get("/v1/search", params={"q": "y" * 300}), 422, "invalid_input")
    assert_error(client.get("/v1/videos", params={"limit": 51}), 422, "invalid_input")
    assert_error(
        client.post("/v1/search", content=b"{not json", headers={"content-type": "application/json"}),
        422,
        "invalid_input",
    )
    assert_error(client.post("/v1/ingest", json={"paths": []}), 422, "invalid_input")
    assert_error(
        client.post("/v1/ingest", content=b"x", headers={"content-type": "text/plain"}), 400, "bad_request"
    )
    # an upload over the size limit is refused while streaming and leaves no file behind
    big = tmp_path / "big.mp4"
    big.write_bytes(os.urandom(MAX_UPLOAD + 1))
    uploads = Path(server.settings["var_dir"]) / "uploads"
    before = set(uploads.rglob("*"))
    with open(big, "rb") as f:
        r = client.post("/v1/ingest", files=[("files", ("big.mp4", f, "video/mp4"))])
    assert_error(r, 413, "payload_too_large")
    assert set(uploads.rglob("*")) == before
    # one unfinished job at a time here (limits.max_active_jobs = 1)
    paths = [colour_videos[c] for c in ("red", "green", "blue", "yellow", "orange", "white", "cyan")]
    first = ingest_paths(client, paths)
    second = client.post("/v1/ingest", json={"paths": [str(colour_videos["cyan"])]})
    assert_error(second, 429, "too_many_jobs")
    assert second.headers.get("retry-after")
    # searches keep working while the job runs
    during = client.post("/v1/search", json={"query": "red"})
    assert during.status_code == 200 and during.json()["results"]
    wait_job(client, first["id"])
    third = client.post("/v1/ingest", json={"paths": [str(colour_videos["cyan"])]})
    assert third.status_code == 202
    wait_job(client, third.json()["id"])  # leave no job running for the next test


def test_unknown_route_and_metrics(client: httpx.Client) -> None:
    assert_error(client.get("/v1/nothing-here"), 404, "not_found")
    assert_error(client.get("/v1/jobs/doesnotexist"), 404, "not_found")
    client.post("/v1/search", json={"query": "red"})
    text = client.get("/metrics").text
    assert 't2v_http_request_duration_seconds_count{method="POST",route="/v1/search",status="200"}' in text
    # errors keep their status; a path no route matches is one label, not one per path
    assert 'method="GET",route="/v1/jobs/{job_id}",status="404"' in text
    assert 'method="GET",route="unmatched",status="404"' in text and "nothing-here" not in text
    for stage in ("encode", "candidates", "rerank", "total"):
        assert f't2v_search_stage_seconds_count{{stage="{stage}"}}' in text
    assert "t2v_ingest_queue_depth" in text
    videos = float(
        next(line.split()[1] for line in text.splitlines() if line.startswith("t2v_index_videos "))
    )
    assert videos == client.get("/v1/videos").json()["total"]


def test_cors_only_for_configured_origins(client: httpx.Client) -> None:
    pre = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"}
    ok = client.options("/v1/search", headers={"Origin": "http://allowed.example", **pre})
    assert ok.status_code == 200
    assert ok.headers["access-control-allow-origin"] == "http://allowed.example"
    other = client.options("/v1/search", headers={"Origin": "http://evil.example", **pre})
    assert "access-control-allow-origin" not in other.headers
    get = client.get("/v1/videos", headers={"Origin": "http://allowed.example"})
    assert get.headers["access-control-allow-origin"] == "http://allowed.example"


def test_stage_timings_measure_the_work(client: httpx.Client, colour_videos: dict[str, Path]) -> None:
    # every stage that did work reports time (the encode stage used to be timed after encoding)
    if client.get("/v1/videos").json()["total"] == 0:
        wait_job(client, ingest_paths(client, [colour_videos["red"]])["id"])
    searches = 3
    for _ in range(searches):
        body = client.post("/v1/search", json={"query": "a red circle"}).json()
        assert body["results"]
        stages = body["stages_ms"]
        # a text-tower forward pass cannot take under 50 us; the candidates/rerank stages ran too
        assert stages["encode"] > 0.05 and stages["candidates"] > 0 and stages["rerank"] > 0
        assert sum(stages.values()) <= body["took_ms"]
    text = client.get("/metrics").text

    def metric(name: str) -> float:
        return float(next(line.split()[1] for line in text.splitlines() if line.startswith(name)))

    count = metric('t2v_search_stage_seconds_count{stage="encode"}')
    assert count >= searches
    assert metric('t2v_search_stage_seconds_sum{stage="encode"}') / count > 50e-6


def test_ingestion_runs_on_its_own_thread_budget(
    client: httpx.Client, colour_videos: dict[str, Path]
) -> None:
    # an ingestion (new or duplicate) runs in the ingest worker; searches in the query pool
    wait_job(client, ingest_paths(client, [colour_videos["red"]])["id"])
    assert client.post("/v1/search", json={"query": "red"}).status_code == 200
    text = client.get("/metrics").text
    threads = {
        pool: float(
            next(
                line.split()[1]
                for line in text.splitlines()
                if line.startswith(f't2v_torch_threads{{pool="{pool}"}}')
            )
        )
        for pool in ("search", "ingest")
    }
    assert threads == {"search": 1.0, "ingest": 2.0}


def test_error_messages_name_the_field_or_say_the_body_is_not_json(client: httpx.Client) -> None:
    def message(r: httpx.Response) -> str:
        assert_error(r, 422, "invalid_input")
        return str(r.json()["error"]["message"])

    bad_json = {"content-type": "application/json"}
    for route in ("/v1/search", "/v1/ingest"):  # FastAPI's parser and the ingest route's own
        msg = message(client.post(route, content=b'{"query":', headers=bad_json))
        # where the parser stopped: "at character 9" (FastAPI) or "at line 1 column 9" (pydantic)
        assert "not valid JSON" in msg and "9" in msg and "decode error" not in msg, msg
    assert message(client.post("/v1/ingest", json={"paths": []})).startswith("invalid ingest body: paths: ")
    assert (
        message(client.post("/v1/ingest", json={"titles": ["x"]}))
        == "invalid ingest body: paths: Field required"
    )
    assert message(client.post("/v1/search", json={"query": "red", "top_k": "many"})).startswith("top_k: ")


@pytest.mark.slow  # five files through the worker (~7 s on the loaded box)
def test_job_items_run_pipelined_and_are_acknowledged_in_order(
    client: httpx.Client, colour_videos: dict[str, Path]
) -> None:
    # the worker decodes the next queued file while the current one encodes (indexer Prefetcher)
    root = colour_videos["red"].parent
    folder = root / "queue"
    folder.mkdir(exist_ok=True)
    try:
        first = colour_video(folder / "magenta.mp4", "magenta", 5, speed=9)
        second = colour_video(folder / "navy.mp4", "navy", 4, speed=11)
        copy = shutil.copy(second, folder / "navy-copy.mp4")  # decoded before `second` commits
        third = colour_video(folder / "teal.mp4", "teal", 3, speed=13)
        job = ingest_paths(client, [first, root / "notes.mp4", second, copy, third])
        while True:  # every poll: the finished items are a prefix of the job (queue order)
            view = client.get(f"/v1/jobs/{job['id']}").json()
            states = [it["state"] for it in view["items"]]
            finished = [s not in ("queued", "running") for s in states]
            assert finished == sorted(finished, reverse=True), states
            if view["state"] == "done":
                break
            time.sleep(0.05)
        assert states == ["done", "failed", "done", "duplicate", "done"], view
        ids = [it["video_id"] for it in view["items"]]
        assert ids[0] < ids[2] < ids[4] and ids[3] == ids[2]  # the copy names the video before it
        assert view["items"][1]["reason"]
        assert client.get(f"/v1/videos/{ids[4]}").json()["title"] == "teal"
    finally:
        shutil.rmtree(folder)
