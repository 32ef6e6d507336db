"""`t2v index ...` and `t2v search` driven as subprocesses on videos rendered by the tests.

One store is built once (module fixture) and taken through add -> search -> rm -> compact ->
verify -> model mismatch -> reindex; the kill -9 test uses its own store.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from indexer.corpora.lavfi import render_lavfi
from indexer.store import Store
from tests.cli_forks import CliForks
from tests.support import T2v, cli_env, colour_video


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("lib")
    good = root / "good"
    v = {
        "red": colour_video(good / "red.mp4", "red", 3),
        "blue": colour_video(good / "nested" / "blue.mp4", "blue", 3),
        "long": render_lavfi(good / "long.mp4", "testsrc=s=96x64:d=25:r=8"),
    }
    v["red_copy"] = good / "red_copy.mp4"
    shutil.copy(v["red"], v["red_copy"])
    bad = root / "bad"
    bad.mkdir()
    v["empty"] = bad / "empty.mp4"
    v["empty"].write_bytes(b"")
    v["text"] = bad / "notes.mp4"
    v["text"].write_text("this is not a video\n" * 50)
    # moov atom at the end (ffmpeg's default): cut in half, the index is gone
    whole = render_lavfi(root / "whole.mp4", "testsrc=s=96x64:d=10:r=8")
    v["trunc_moov"] = bad / "trunc_moov.mp4"
    v["trunc_moov"].write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    # moov first (faststart): the header promises 25 s, the data stops early
    fast = render_lavfi(
        root / "fast.mp4",
        "testsrc=s=96x64:d=25:r=8",
        extra=("-pix_fmt", "yuv420p", "-movflags", "+faststart"),
    )
    v["trunc_data"] = bad / "trunc_data.mp4"
    v["trunc_data"].write_bytes(fast.read_bytes()[: int(fast.stat().st_size * 0.4)])
    v["audio"] = render_lavfi(bad / "audio.mp4", "sine=f=440:d=2", extra=())
    v["wide"] = render_lavfi(bad / "wide.mp4", "color=c=blue:s=10000x16:d=0.4:r=5")
    v["forever"] = render_lavfi(
        bad / "forever.mp4",
        "color=c=blue:s=16x16:r=0.0001:d=200000",
        extra=("-c:v", "libx264", "-pix_fmt", "yuv420p"),
    )
    v["missing"] = root / "does-not-exist.mp4"
    v["good"], v["bad"] = good, bad
    # a JSONL manifest: paths relative to it, optional titles
    colour_video(root / "listed" / "green.mp4", "green", 2)
    v["manifest"] = root / "listed.jsonl"
    v["manifest"].write_text('{"video": "listed/green.mp4", "title": "Green title"}\n')
    return v


@pytest.fixture(scope="module")
def built(
    library: dict[str, Path],
    checkpoints: tuple[Path, Path],
    tmp_path_factory: pytest.TempPathFactory,
    t2v: T2v,
) -> tuple[Path, subprocess.CompletedProcess[str]]:
    index = tmp_path_factory.mktemp("store") / "idx"
    proc = t2v(
        "index", "add", library["good"], library["bad"], library["missing"], library["manifest"],
        "--index", index, "--checkpoint", checkpoints[0], "--window", "8", "--stride", "4",
    )  # fmt: skip
    return index, proc


def _videos(index: Path) -> dict[str, Any]:
    with Store.open(index) as store:
        return {v.title: v for v in store.list_videos(limit=1000)}


def test_add_indexes_good_files_and_reports_every_bad_one(
    built: tuple[Path, subprocess.CompletedProcess[str]], library: dict[str, Path]
) -> None:
    index, proc = built
    assert proc.returncode == 1, proc.stderr
    err = proc.stderr
    expected = {
        "empty": "empty",
        "text": "not a readable video",
        "trunc_moov": "truncated",
        "trunc_data": "truncated",
        "audio": "no video stream",
        "wide": "absurd resolution 10000x16",
        "forever": "absurd duration",
        "missing": "not found",
    }
    for key, reason in expected.items():
        lines = [ln for ln in err.splitlines() if f"error: {library[key]}:" in ln]
        assert len(lines) == 1, (key, err)
        assert reason in lines[0], lines[0]
    dup_lines = [ln for ln in proc.stdout.splitlines() if ln.split("] ")[-1].startswith("duplicate:")]
    assert len(dup_lines) == 1 and "red" in dup_lines[0]
    assert "summary: 4 indexed (9 clips), 1 duplicate, 8 failed of 13 files" in proc.stdout

    videos = _videos(index)
    assert set(videos) == {"red", "blue", "long", "Green title"}
    with Store.open(index) as store:
        long_clips = store.clips_of(videos["long"].id)
        assert store.verify().ok
        assert store.stats().clips == 9
    # 25 s with 8 s windows every 4 s; the last window ends at the end of the video
    assert [(c.start, c.end) for c in long_clips] == [
        (0, 8), (4, 12), (8, 16), (12, 20), (16, 24), (17, 25)
    ]  # fmt: skip
    assert videos["blue"].num_clips == 1 and videos["blue"].duration == pytest.approx(3, abs=0.2)


def test_search_returns_exactly_scored_moments(
    built: tuple[Path, subprocess.CompletedProcess[str]], checkpoints: tuple[Path, Path], t2v: T2v
) -> None:
    import torch

    from indexer.search.searcher import Searcher
    from model import create_model

    index, _ = built
    query = "a white square moving over a red background"
    proc = t2v("search", query, "--index", index, "--json", "--top-k", "5")  # model from the store
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    moments = out["results"]
    assert len(moments) == 5
    scores = [m["score"] for m in moments]
    assert scores == sorted(scores, reverse=True)
    for m in moments:
        assert 0 <= m["start"] < m["end"] and m["title"] in {"red", "blue", "long", "Green title"}
    # the two-stage result equals exhaustive exact scoring (a tiny store: every clip is a candidate)
    model = create_model(None, checkpoint=checkpoints[0], text_only=True)
    with Store.open(index) as store, torch.no_grad():
        ids, exact = Searcher(store, model).exhaustive_scores(model.encode_texts([query]))
    exact_of = dict(zip(ids.tolist(), exact[0].tolist(), strict=True))
    # each returned moment carries its exact score, and they are the five best (ties in any order)
    assert [exact_of[m["clip_id"]] for m in moments] == pytest.approx(scores, abs=1e-4)
    assert scores == pytest.approx(sorted(exact_of.values(), reverse=True)[:5], abs=1e-4)


@pytest.mark.slow  # rm, search, compact and verify: four more CLI runs
def test_rm_never_returns_the_video_again(
    built: tuple[Path, subprocess.CompletedProcess[str]], checkpoints: tuple[Path, Path], t2v: T2v
) -> None:
    from indexer.search.searcher import Searcher
    from model import create_model

    index, _ = built
    long_id = _videos(index)["long"].id
    proc = t2v("index", "rm", str(long_id), "999", "--index", index)
    assert proc.returncode == 1  # 999 does not exist
    assert f"removed video {long_id} (6 clips)" in proc.stdout
    assert "no video with id 999" in proc.stderr

    proc = t2v(
        "search", "moving colour bars", "--index", index, "--json", "--top-k", "50", "--group-by-video"
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    # grouped: one result per video (its best moment; the others in `more`), as over REST
    assert {r["video_id"] for r in out["results"]} == {v.id for v in _videos(index).values()}
    assert long_id not in {m["video_id"] for r in out["results"] for m in [r, *r["more"]]}
    assert len(out["results"]) == 3

    proc = t2v("index", "compact", "--index", index)
    assert proc.returncode == 0 and "removed 6 clips" in proc.stdout, proc.stderr
    proc = t2v("index", "verify", "--index", index)
    assert proc.returncode == 0 and "ok: 3 clips" in proc.stdout, proc.stderr
    model = create_model(None, checkpoint=checkpoints[0], text_only=True)
    with Store.open(index) as store:
        assert store.stats().deleted_clips == 0 and store.stats().clips == 3
        hits = Searcher(store, model).search("moving colour bars", top_k=50, exhaustive=True)
        assert long_id not in {m.video_id for m in hits.moments}


@pytest.mark.slow  # a reindex with the other model (runs after the rm test)
def test_other_model_is_refused_then_reindex_rebuilds(
    built: tuple[Path, subprocess.CompletedProcess[str]], checkpoints: tuple[Path, Path], t2v: T2v
) -> None:
    from indexer.store import ModelMismatchError, store_identity
    from model import create_model, read_checkpoint

    index, _ = built
    before = set(_videos(index))
    other = create_model(None, checkpoint=checkpoints[1], text_only=True)
    with pytest.raises(ModelMismatchError, match="different model.*t2v index reindex"):
        Store.open(index, store_identity(other))
    proc = t2v("search", "red", "--index", index.parent / "not-a-store")  # exits before loading a model
    assert proc.returncode == 2 and "is not a video store" in proc.stderr

    proc = t2v("index", "reindex", "--index", index, "--checkpoint", checkpoints[1], "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert "3 indexed" in proc.stdout
    stats = json.loads(t2v("index", "stats", "--index", index, "--json").stdout)
    assert stats["model"]["weights"] == f"checkpoint:{read_checkpoint(checkpoints[1])[2]}"
    assert stats["videos"] == 3 and set(_videos(index)) == before
    with Store.open(index, store_identity(other)) as store:  # the new model now fits
        assert store.verify().ok
    assert not index.with_name(index.name + ".reindex-new").exists()


@pytest.mark.slow  # indexes ten videos twice
def test_kill_9_during_add_then_recovery_and_resume(
    checkpoints: tuple[Path, Path],
    tmp_path: Path,
    t2v: T2v,
    cli_forks: CliForks,
) -> None:
    colours = ["red", "green", "blue", "yellow", "cyan", "magenta", "white", "gray", "orange", "purple"]
    lib = tmp_path / "lib"
    for c in colours:
        colour_video(lib / f"{c}.mp4", c, 6)
    index = tmp_path / "idx"
    args = ["index", "add", lib, "--index", index, "--checkpoint", checkpoints[0], "--batch-size", "1"]
    proc = cli_forks.start([str(a) for a in args], cli_env())
    committed = 0
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if (index / "meta.sqlite").exists() and (index / "manifest.json").exists():
                db = sqlite3.connect(f"file:{index / 'meta.sqlite'}?mode=ro", uri=True, timeout=5)
                try:
                    committed = db.execute("SELECT COUNT(*) FROM videos").fetchone()[0]
                except sqlite3.OperationalError:
                    committed = 0
                finally:
                    db.close()
                if committed >= 2:
                    break
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert 2 <= committed < len(colours), "the kill should land in the middle of the run"

    # the next open recovers by itself: every stored video is complete, nothing half-present
    check = t2v("index", "verify", "--index", index)
    assert check.returncode == 0, check.stderr
    with Store.open(index) as store:
        present = store.list_videos(limit=100)
        for v in present:
            assert v.num_clips == len(store.clips_of(v.id)) == 1
        assert len(store.live_clip_ids()) == len(present)
        assert store.stats().index_vectors == len(present) * store.vectors_per_clip
    n_before = len(present)
    assert n_before >= committed

    # resume: what was stored is skipped as a duplicate, the rest is indexed
    again = t2v("index", "add", lib, "--index", index)
    assert again.returncode == 0, again.stderr
    assert again.stdout.count("duplicate:") == n_before
    assert again.stdout.count("indexed:") == len(colours) - n_before
    with Store.open(index) as store:
        assert store.verify().ok and store.count_videos() == len(colours)
