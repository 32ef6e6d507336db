"""Data set loaders (MSR-VTT common layout, JSONL manifest) and the frame cache."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

import indexer.corpora.datasets as datasets
from indexer.corpora.datasets import (
    DatasetError,
    FrameCache,
    cache_times,
    load_dataset,
    load_manifest,
    load_msrvtt,
)
from indexer.corpora.synthetic import Scene, render_video, scene_spans
from model.backbone import PreprocessCfg

PRE = PreprocessCfg(
    size=32, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), interpolation="bilinear", resize_mode="shortest"
)


def _two_scene_video(path: Path) -> Path:
    """2 s on black, then 2 s on white: which scene a frame comes from shows in its corner pixel."""
    scenes = [
        Scene("red", "circle", "left", "black", 2.0, 0.5),
        Scene("blue", "square", "up", "white", 2.0, 0.5),
    ]
    assert scene_spans(scenes) == [(0.0, 2.0), (2.0, 4.0)]
    return render_video(path, scenes, size=48)


@pytest.fixture(scope="module")
def msrvtt_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny MSR-VTT common layout: 3 videos, 2 in the 9k train split, 1 in the 1k-A test csv."""
    root = tmp_path_factory.mktemp("msrvtt")
    vdir = root / "videos" / "all"
    src = _two_scene_video(root / "src.mp4")
    for i in range(3):
        vdir.mkdir(parents=True, exist_ok=True)
        (vdir / f"video{i}.mp4").write_bytes(src.read_bytes())
    sentences = [
        {"caption": "a man is cooking", "video_id": "video0", "sen_id": 0},
        {"caption": "someone cooks food", "video_id": "video0", "sen_id": 1},
        {"caption": "a dog runs", "video_id": "video1", "sen_id": 2},
        {"caption": "cars race", "video_id": "video2", "sen_id": 3},
    ]
    (root / "MSRVTT_data.json").write_text(json.dumps({"videos": [], "sentences": sentences}))
    with open(root / "MSRVTT_train.9k.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["video_id"])
        w.writerows([["video0"], ["video1"]])
    with open(root / "MSRVTT_JSFUSION_test.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["", "key", "vid_key", "video_id", "sentence"])
        w.writerow([0, "ret0", "msr9770", "video2", "cars race on a track"])
    return root


def test_msrvtt_train_split(msrvtt_root: Path) -> None:
    ds = load_msrvtt(msrvtt_root, "train9k")
    assert [c.video.name for c in ds.clips] == ["video0.mp4", "video1.mp4"]
    assert ds.captions == ["a man is cooking", "someone cooks food", "a dog runs"]
    assert ds.caption_clip == [0, 0, 1]


def test_msrvtt_test_split(msrvtt_root: Path) -> None:
    ds = load_dataset(f"msrvtt:{msrvtt_root}:test1k")
    assert [c.video.name for c in ds.clips] == ["video2.mp4"]
    assert ds.captions == ["cars race on a track"] and ds.caption_clip == [0]


def test_msrvtt_errors(msrvtt_root: Path, tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="unknown MSR-VTT split"):
        load_msrvtt(msrvtt_root, "val")
    with pytest.raises(DatasetError, match="no video"):
        load_msrvtt(tmp_path, "test1k")
    bad = tmp_path / "bad"
    (bad / "videos").mkdir(parents=True)
    (bad / "videos" / "video0.mp4").write_bytes(b"x")
    (bad / "MSRVTT_JSFUSION_test.csv").write_text("video,sentence\nvideo0,hi\n")
    with pytest.raises(DatasetError, match="missing column"):
        load_msrvtt(bad, "test1k")


def test_manifest_loader(tmp_path: Path) -> None:
    video = _two_scene_video(tmp_path / "clips" / "a.mp4")
    rows = [
        {"video": "clips/a.mp4", "caption": "whole video", "kind": "full"},
        {"video": "clips/a.mp4", "caption": "first half", "start": 0, "end": 2.0},
        {"video": str(video), "caption": "  again whole  ", "kind": "full"},
    ]
    m = tmp_path / "m.jsonl"
    m.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    ds = load_manifest(m)
    assert len(ds.clips) == 2  # the absolute and relative paths name the same clip
    assert ds.clips[1].start == 0.0 and ds.clips[1].end == 2.0
    assert ds.caption_clip == [0, 1, 0]
    assert ds.captions[2] == "again whole"
    assert ds.caption_kind == ["full", "", "full"]
    assert ds.subset("full").captions == ["whole video", "again whole"]


def test_manifests_joined_with_plus_are_concatenated(tmp_path: Path) -> None:
    _two_scene_video(tmp_path / "one" / "a.mp4")
    _two_scene_video(tmp_path / "two" / "a.mp4")  # same relative name, another folder: another clip
    for sub, kind in (("one", "full"), ("two", "partial")):
        rows = [{"video": "a.mp4", "caption": f"{sub} video", "kind": kind}]
        rows.append({"video": "a.mp4", "caption": f"{sub} again", "kind": kind})
        (tmp_path / sub / "m.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    ds = load_dataset(f"{tmp_path / 'one' / 'm.jsonl'}+{tmp_path / 'two' / 'm.jsonl'}")
    assert ds.captions == ["one video", "one again", "two video", "two again"]
    assert ds.caption_clip == [0, 0, 1, 1]
    assert [c.video.parent.name for c in ds.clips] == ["one", "two"]
    assert ds.caption_kind == ["full", "full", "partial", "partial"]
    with pytest.raises(DatasetError, match="missing.jsonl not found"):
        load_dataset(f"{tmp_path / 'one' / 'm.jsonl'}+{tmp_path / 'missing.jsonl'}")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "m.jsonl:2: invalid JSON"),
        ('{"caption": "x"}', "m.jsonl:2: 'video'"),
        ('{"video": "clips/a.mp4", "caption": ""}', "m.jsonl:2: 'caption'"),
        ('{"video": "clips/a.mp4", "caption": "x", "start": 3, "end": 1}', "must be after start"),
        ('{"video": "clips/a.mp4", "caption": "x", "start": "0"}', "number of seconds"),
        ('{"video": "nope.mp4", "caption": "x"}', "not found"),
    ],
)
def test_manifest_errors_name_the_line(tmp_path: Path, line: str, message: str) -> None:
    _two_scene_video(tmp_path / "clips" / "a.mp4")
    m = tmp_path / "m.jsonl"
    m.write_text('{"video": "clips/a.mp4", "caption": "ok"}\n' + line + "\n")
    with pytest.raises(DatasetError, match=message):
        load_manifest(m)


def test_cache_times_are_segment_middles() -> None:
    t = cache_times(2.0, 8.0, frames=3, per_segment=3)  # segments of 2 s, sub-segments of 2/3 s
    assert t == pytest.approx([2 + 1 / 3, 3, 3 + 2 / 3, 4 + 1 / 3, 5, 5 + 2 / 3, 6 + 1 / 3, 7, 7 + 2 / 3])
    assert cache_times(0.0, 4.0, frames=4, per_segment=1) == pytest.approx([0.5, 1.5, 2.5, 3.5])


def test_frame_cache_samples_the_right_times_and_decodes_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from indexer.corpora.datasets import Clip

    video = _two_scene_video(tmp_path / "v.mp4")
    cache = FrameCache(tmp_path / "cache", PRE, frames=4, per_segment=3)
    arr = cache.get(Clip(video))
    assert arr.shape == (4, 3, 32, 32, 3) and arr.dtype == np.uint8
    corner = arr[:, :, 0, 0].mean(axis=-1)  # (T, P) corner brightness
    # segments 0-1 cover 0-2 s (black scene), segments 2-3 cover 2-4 s (white scene)
    assert (corner[:2] < 60).all() and (corner[2:] > 200).all()
    # a window of the second scene only: every frame is from the white scene
    window = cache.get(Clip(video, 2.0, 4.0))
    assert (window[:, :, 0, 0].mean(axis=-1) > 200).all()

    def no_decode(*args: object, **kwargs: object) -> None:
        raise AssertionError("decoded again")

    monkeypatch.setattr(datasets, "sample_frames", no_decode)
    again = cache.load_all([Clip(video), Clip(video, 2.0, 4.0)], workers=2)
    assert again.shape == (2, 4, 3, 32, 32, 3)
    assert np.array_equal(again[0], arr) and np.array_equal(again[1], window)
    # another preprocessing size is another cache entry, not a stale hit
    with pytest.raises(AssertionError, match="decoded again"):
        FrameCache(tmp_path / "cache", PRE.__class__(**{**PRE.__dict__, "size": 24}), 4, 3).get(Clip(video))


def test_frame_cache_rejects_even_per_segment(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="odd"):
        FrameCache(tmp_path, PRE, frames=4, per_segment=2)
