"""The ingestion API the service calls per file, in-process with the tiny model."""

from __future__ import annotations

import queue
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from indexer.corpora.lavfi import render_lavfi
from indexer.ingest import prepare
from indexer.ingest.pipeline import IngestLimits, Ingestor, IngestProgress
from indexer.store import Store, store_identity
from indexer.text import TextSettings
from indexer.text.synth import subtitle_video, write_srt
from model import create_model
from tests.support import colour_video


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model("t2v-tiny")


def test_ingest_file_then_duplicate_and_progress(model: torch.nn.Module, tmp_path: Path) -> None:
    a = colour_video(tmp_path / "a.mp4", "red", 13)
    b = colour_video(tmp_path / "b.mp4", "green", 2)
    store = Store.open(tmp_path / "idx", store_identity(model), create=True)
    ing = Ingestor(store, model, window=6, stride=3, batch_size=4)
    first = ing.ingest_file(a, title="A")
    assert first.status == "done" and first.clips == 4  # [0,6] [3,9] [6,12] [7,13]
    again = ing.ingest_file(a)
    assert again.status == "duplicate" and again.video_id == first.video_id
    events: list[IngestProgress] = []
    results = ing.ingest_many([b, tmp_path / "nope.mp4"], on_progress=events.append)
    assert sorted(r.status for r in results) == ["done", "failed"]
    finished = [e for e in events if e.last is not None]
    assert [e.files_done for e in finished] == [1, 2] and finished[-1].failed == 1
    assert events[-1].clips_done == 1 and events[-1].frames_done == model.config.frames
    video = store.get_video(first.video_id or 0)
    assert video is not None and video.title == "A" and video.num_clips == 4
    assert store.verify().ok
    store.close()


def test_a_picture_shorter_than_its_sound_is_indexed_and_cut_off_data_is_not(
    model: torch.nn.Module, tmp_path: Path
) -> None:
    """The container's duration is its longest stream's: 4 s of picture with 9 s of sound (a
    recording that kept the microphone on) is indexed over its picture, not refused as truncated;
    a file whose header promises frames its data no longer holds still fails."""
    talk = render_lavfi(
        tmp_path / "talk.mp4",
        "testsrc=s=96x64:d=4:r=8",
        extra=("-f", "lavfi", "-i", "sine=d=9", "-pix_fmt", "yuv420p", "-c:a", "aac"),
    )
    whole = render_lavfi(
        tmp_path / "whole.mp4",
        "testsrc=s=96x64:d=25:r=8",
        extra=(
            "-f",
            "lavfi",
            "-i",
            "sine=d=25",
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            "aac",
            "-movflags",
            "+faststart",
        ),
    )
    cut = tmp_path / "cut.mp4"  # the index (moov) first: it promises 25 s the data no longer holds
    cut.write_bytes(whole.read_bytes()[: int(whole.stat().st_size * 0.4)])
    store = Store.open(tmp_path / "idx", store_identity(model), create=True)
    ing = Ingestor(store, model, window=2, stride=1)
    done = ing.ingest_file(talk)
    assert done.status == "done", done.reason
    video = store.get_video(done.video_id or 0)
    assert video is not None and video.duration == pytest.approx(4.0, abs=0.2)
    clips = store.clips_of(video.id)
    assert len(clips) == 3 and max(c.end for c in clips) == pytest.approx(4.0, abs=0.2)
    failed = ing.ingest_file(cut)
    assert failed.status == "failed" and "truncated or corrupt" in failed.reason
    assert store.verify().ok and store.stats().videos == 1
    store.close()


def test_text_tracks_are_read_from_the_opened_file_and_real_sidecars_only(
    model: torch.nn.Module, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With allowed roots (the service's ingestion), a sidecar that is a symlink out of them is
    passed over, and a video swapped for a symlink after it was opened gives its subtitles from the
    file opened, not the one swapped in: text from outside the roots was stored and searchable."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    secret = subtitle_video(
        outside / "secret.mp4", [(0.5, 1.5, "outside secret alpha")], seconds=2, colour="red"
    )
    write_srt(outside / "notes.srt", [(0.5, 1.5, "outside secret beta")])
    a = colour_video(root / "a.mp4", "green", 2)
    (root / "a.srt").symlink_to(outside / "notes.srt")
    write_srt(root / "a.en.srt", [(0.5, 1.5, "inside words")])
    b = subtitle_video(root / "b.mp4", [(0.5, 1.5, "inside embedded")], seconds=2, colour="blue")
    store = Store.open(tmp_path / "idx", store_identity(model), create=True)
    ing = Ingestor(store, model, window=2, stride=1, text=TextSettings())
    ra = ing.ingest_file(a, roots=(root,))
    real_sample = prepare.sample_frames_selective

    def sample_then_swap(*args: Any, **kw: Any) -> Any:
        got = real_sample(*args, **kw)
        if not (root / "b.tmp").exists():  # b.mp4 becomes a symlink out of the root while it decodes
            (root / "b.tmp").symlink_to(secret)
            (root / "b.tmp").replace(b)
            (root / "b.tmp").touch()
        return got

    monkeypatch.setattr(prepare, "sample_frames_selective", sample_then_swap)
    rb = ing.ingest_file(b, roots=(root,))
    assert ra.status == rb.status == "done"
    texts = {r.path: [line[-1] for line in store.text_lines(r.video_id or 0)] for r in (ra, rb)}
    assert texts == {str(a): ["inside words"], str(b): ["inside embedded"]}
    store.close()


def test_limits_and_stop(model: torch.nn.Module, tmp_path: Path) -> None:
    v = colour_video(tmp_path / "v.mp4", "blue", 3, size="320x64")
    store = Store.open(tmp_path / "idx", store_identity(model), create=True)
    tight = Ingestor(store, model, limits=IngestLimits(max_side=200))
    r = tight.ingest_file(v)
    assert r.status == "failed" and "absurd resolution 320x64" in r.reason
    stop = threading.Event()
    stop.set()
    assert Ingestor(store, model).ingest_many([v], stop=stop) == []
    with pytest.raises(ValueError, match="unsearchable"):
        Ingestor(store, model, window=2, stride=5)
    store.close()


def test_stop_while_the_queue_is_full_ends_the_run(model: torch.nn.Module, tmp_path: Path) -> None:
    """`stop` set while the decode side waits on a full queue: the decode side ends without its end
    marker, and the run still ends (it waited for a marker forever), keeping every video that was
    decoded before the stop."""
    videos = [
        colour_video(tmp_path / f"v{i}.mp4", c, 2) for i, c in enumerate(["red", "green", "blue", "white"])
    ]
    store = Store.open(tmp_path / "idx", store_identity(model), create=True)
    ing = Ingestor(store, model, window=2, stride=1, batch_size=1, queue_size=1, decode_workers=1)
    stop, producer_done = threading.Event(), threading.Event()
    real_producer, real_encode = ing._producer, ing._encode
    handed: list[queue.Queue[object]] = []

    def producer(items: object, out: queue.Queue[object], stop_: threading.Event) -> None:
        handed.append(out)
        try:
            real_producer(items, out, stop_)  # type: ignore[arg-type]
        finally:
            producer_done.set()

    def encode(*args: object) -> None:
        if not stop.is_set():  # the first batch: once the next video waits in the full queue, stop
            deadline = time.monotonic() + 60
            while not handed[0].full():
                assert time.monotonic() < deadline, "the decode side did not fill the queue"
                time.sleep(0.01)
            stop.set()
            assert producer_done.wait(60)  # it gave up on the full queue: no end marker
        real_encode(*args)  # type: ignore[arg-type]

    ing._producer, ing._encode = producer, encode  # type: ignore[method-assign]
    results: list[object] = []
    run = threading.Thread(target=lambda: results.extend(ing.ingest_many(videos, stop=stop)), daemon=True)
    run.start()
    run.join(60)
    assert not run.is_alive(), "ingest_many did not return after stop"
    done = [r for r in results if getattr(r, "status", None) == "done"]
    assert 1 <= len(done) < len(videos) and store.stats().videos == len(done)
    assert store.verify().ok
    store.close()


def test_parallel_decoders_keep_input_order_for_duplicates(model: torch.nn.Module, tmp_path: Path) -> None:
    import shutil

    files = [colour_video(tmp_path / f"{c}.mp4", c, 2) for c in ("red", "green", "blue")]
    copy = tmp_path / "z_copy_of_red.mp4"
    shutil.copy(files[0], copy)
    store = Store.open(tmp_path / "idx", store_identity(model), create=True)
    ing = Ingestor(store, model, batch_size=2, decode_workers=3)
    results = ing.ingest_many([files[0], files[1], copy, files[2]])
    by_name = {Path(r.path).name: r for r in results}
    assert {n: r.status for n, r in by_name.items()} == {
        "red.mp4": "done", "green.mp4": "done", "z_copy_of_red.mp4": "duplicate", "blue.mp4": "done"
    }  # fmt: skip
    assert "red.mp4" in by_name["z_copy_of_red.mp4"].reason
    assert store.count_videos() == 3 and store.verify().ok
    store.close()


@pytest.mark.slow  # waits out a deliberately slow encoder
def test_slow_encoder_does_not_hang_the_run(
    model: torch.nn.Module, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch that encodes for longer than the decoder waits (ViT-B/32 on CPU: ~9 s per batch)
    while the queue is full must not lose the end-of-input marker (it once did after 5 s, and the
    run then waited forever)."""
    videos = [colour_video(tmp_path / f"{c}.mp4", c, 2) for c in ("red", "green", "blue")]
    store = Store.open(tmp_path / "idx", store_identity(model), create=True)
    ing = Ingestor(store, model, window=2, stride=1, batch_size=1, queue_size=1, decode_workers=1)
    encode, calls = ing._encode, []

    def slow_second(batch: list, features: dict) -> None:  # type: ignore[type-arg]
        calls.append(1)
        if len(calls) == 2:
            time.sleep(6.5)  # the last video and the end marker queue up meanwhile
        encode(batch, features)

    monkeypatch.setattr(ing, "_encode", slow_second)
    out: list = []  # type: ignore[type-arg]
    worker = threading.Thread(target=lambda: out.extend(ing.ingest_many(videos)), daemon=True)
    worker.start()
    worker.join(timeout=90)
    assert not worker.is_alive(), "ingest_many never returned"
    assert [r.status for r in out] == ["done"] * 3 and store.stats().videos == 3
    store.close()
