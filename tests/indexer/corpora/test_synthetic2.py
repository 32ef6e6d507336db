"""Renderer 2 of the benchmark: determinism, renderer 1's held-out combinations, spans that match
the files, varied formats, no trails, textured backgrounds."""

from __future__ import annotations

import json
import subprocess
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from indexer.corpora.datasets import load_manifest
from indexer.corpora.synthetic import BACKGROUNDS, SPLITS, plan_benchmark
from indexer.corpora.synthetic2 import (
    TEXTURES,
    Scene2,
    Video2,
    background,
    generate_benchmark2,
    object_alpha,
    plan_benchmark2,
    scene_frames,
    video_frames,
)
from indexer.media.video import ffmpeg_exe, probe

SEED = 5
COUNTS = {"train": 3, "val": 2, "test": 2}


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("synth2")
    for name in ("a", "b"):
        generate_benchmark2(root / name, seed=SEED, n_train=3, n_val=2, n_test=2)
    return root / "a", root / "b"


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _phrase(triple: tuple[str, str, str]) -> str:
    return "a {} {} moving {}".format(*triple)


def _decode(path: Path, width: int, height: int) -> np.ndarray:
    raw = subprocess.run(
        [ffmpeg_exe(), "-loglevel", "error", "-i", str(path), "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
        capture_output=True,
        check=True,
    ).stdout
    return np.frombuffer(raw, np.uint8).reshape(-1, height, width, 3)


def _scene(**kw: object) -> Scene2:
    base = Scene2("red", "circle", "right", "gray", 2.0, 0.15, 0.4, 0.2, 0.5, 0.0, 1.0, "noise", 7)
    return replace(base, **kw)  # type: ignore[arg-type]


def test_deterministic_bytes(two_runs: tuple[Path, Path]) -> None:
    a, b = two_runs
    fa, fb = _files(a), _files(b)
    assert fa == fb
    assert sum(k.endswith(".mp4") for k in fa) == sum(COUNTS.values())
    assert {"train.jsonl", "val.jsonl", "test.jsonl", "pretrain.jsonl", "benchmark.json"} <= set(fa)
    assert all(p.stat().st_mode & 0o777 == 0o644 for p in a.rglob("*") if p.is_file())
    assert not list(a.rglob(".*.tmp"))


def test_heldout_as_renderer1_and_absent_from_training(two_runs: tuple[Path, Path]) -> None:
    a, _ = two_runs
    held = plan_benchmark(SEED, 0, 0, 0).heldout
    info = json.loads((a / "benchmark.json").read_text())
    assert [tuple(t) for t in info["heldout_triples"]] == list(held)
    assert info["renderer"] == 2 and info["counts"] == COUNTS
    phrases = [_phrase(t) for t in held]
    for name in ("train.jsonl", "pretrain.jsonl"):
        captions = [json.loads(line)["caption"] for line in (a / name).read_text().splitlines()]
        assert captions and not any(p in c for p in phrases for c in captions)
    for split in ("val", "test"):
        rows = [json.loads(line) for line in (a / f"{split}.jsonl").read_text().splitlines()]
        full = [r["caption"] for r in rows if r["kind"] == "full"]
        assert len(full) == COUNTS[split]
        for caption in full:
            assert sum(part in phrases for part in caption.split(", then ")) == 1


def test_plan_holds_out_like_renderer1_with_its_own_videos() -> None:
    plan = plan_benchmark2(seed=3, n_train=200, n_val=40, n_test=40)
    assert plan == plan_benchmark2(seed=3, n_train=200, n_val=40, n_test=40)
    held = set(plan.heldout)
    assert plan.heldout == plan_benchmark(3, 200, 40, 40).heldout
    assert not {s.triple for v in plan.videos["train"] for s in v.scenes} & held
    for split in ("val", "test"):
        used = set()
        for v in plan.videos[split]:
            assert 2 <= len(v.scenes) <= 4
            assert sum(s.triple in held for s in v.scenes) == 1
            for s in v.scenes:
                assert (s.triple, s.background) not in used
                used.add((s.triple, s.background))
    # its own split: not renderer 1's sequence of scenes
    r1 = plan_benchmark(3, 200, 40, 40)
    assert [[s.triple for s in v.scenes] for v in plan.videos["test"]] != [
        [s.triple for s in scenes] for scenes in r1.videos["test"]
    ]
    with pytest.raises(ValueError):
        plan_benchmark2(seed=3, n_train=1, n_val=46, n_test=1)


def test_spans_match_the_decoded_videos(two_runs: tuple[Path, Path]) -> None:
    a, _ = two_runs
    plan = plan_benchmark2(SEED, **{f"n_{k}": v for k, v in COUNTS.items()})
    for split in SPLITS:
        ds = load_manifest(a / f"{split}.jsonl")
        assert len(ds.clips) == COUNTS[split]
        rows = [json.loads(line) for line in (a / f"{split}.jsonl").read_text().splitlines()]
        for i, video in enumerate(plan.videos[split]):
            path = a / f"videos/{split}/{split}-{i:04d}.mp4"
            spans = [
                (r["scene_start"], r["scene_end"])
                for r in rows
                if r["video"].endswith(path.name) and "scene_start" in r
            ]
            assert spans == video.spans() and spans[0][0] == 0.0
            assert all(x[1] == y[0] for x, y in zip(spans, spans[1:], strict=False))
            info = probe(path)
            assert (info.width, info.height, round(info.fps)) == (video.width, video.height, video.fps)
            assert abs(info.duration - spans[-1][1]) <= 0.02
            decoded = _decode(path, video.width, video.height)
            raw = np.stack(list(video_frames(video)))
            assert len(decoded) == len(raw) == round(spans[-1][1] * video.fps)
            # every decoded frame is the rendered one (so each scene starts where its span says)
            err = np.abs(decoded.astype(np.int16) - raw).mean(axis=(1, 2, 3))
            assert err.max() < 6, err.max()
    pre = [json.loads(line) for line in (a / "pretrain.jsonl").read_text().splitlines()]
    assert len(pre) == sum(len(v.scenes) for v in plan.videos["train"])
    assert all(r["end"] > r["start"] and r["kind"] == "scene" for r in pre)


def test_formats_sizes_speeds_and_lengths_vary() -> None:
    plan = plan_benchmark2(seed=0, n_train=120, n_val=10, n_test=10)
    videos = [v for split in SPLITS for v in plan.videos[split]]
    sizes = {(v.width, v.height) for v in videos}
    assert len(sizes) >= 3 and any(w != h for w, h in sizes)
    assert len({v.fps for v in videos}) >= 3
    scenes = [s for v in videos for s in v.scenes]
    for values in ([s.radius for s in scenes], [s.speed for s in scenes]):
        assert max(values) > 1.5 * min(values)
    assert {s.texture for s in scenes} == set(TEXTURES)
    for v in videos:  # scenes of uneven length within each video
        assert len(set(v.frame_counts())) == len(v.scenes)


@pytest.mark.parametrize(
    ("motion", "axis", "sign"), [("right", 1, 1), ("left", 1, -1), ("down", 0, 1), ("up", 0, -1)]
)
def test_objects_move_and_leave_no_trail(motion: str, axis: int, sign: int) -> None:
    for shape in ("circle", "square", "triangle"):
        scene = _scene(motion=motion, shape=shape, angle=10.0 if shape != "circle" else 0.0)
        w, h, n = 112, 84, 24
        frames = list(scene_frames(scene, w, h, n))
        first, last = object_alpha(scene, w, h, 0, n), object_alpha(scene, w, h, n - 1, n)
        centres = [np.array(np.nonzero(m > 0.5)).mean(axis=1) for m in (first, last)]
        assert sign * (centres[1][axis] - centres[0][axis]) > 10  # real displacement
        assert abs(centres[1][1 - axis] - centres[0][1 - axis]) < 1  # along its axis only
        left_behind = (first >= 0.99) & (last == 0)
        assert left_behind.sum() > 20
        bg = np.rint(background(scene, w, h)).astype(np.uint8)
        assert np.array_equal(frames[-1][left_behind], bg[left_behind])  # background again, exactly
        assert not np.array_equal(frames[0][left_behind], bg[left_behind])


def test_backgrounds_are_textured_but_keep_their_colour() -> None:
    for name in BACKGROUNDS:
        for texture in TEXTURES:
            for seed in range(3):
                img = background(_scene(background=name, texture=texture, texture_seed=seed), 96, 80)
                assert img.shape == (80, 96, 3)
                assert img.std(axis=(0, 1)).mean() > 6  # not flat
                mean = img.mean()
                assert {"black": mean < 60, "gray": 95 < mean < 160, "white": mean > 195}[name], (name, mean)


def test_every_scene_renders_in_every_format() -> None:
    scenes = tuple(_scene(motion=m, radius=r) for m, r in (("left", 0.09), ("up", 0.2)))
    for w, h in ((80, 64), (128, 96)):
        video = Video2(w, h, 8, scenes)
        frames = list(video_frames(video))
        assert len(frames) == sum(video.frame_counts())
        assert all(f.shape == (h, w, 3) and f.dtype == np.uint8 for f in frames)
