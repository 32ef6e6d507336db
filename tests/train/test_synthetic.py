"""The synthetic generator: determinism, held-out combinations, manifests that load."""

from __future__ import annotations

import json
from pathlib import Path

from indexer.datasets import load_manifest
from indexer.synthetic import (
    BACKGROUNDS,
    generate_benchmark,
    plan_benchmark,
    render_demo_library,
)
from indexer.video import probe


def test_demo_library_is_deterministic(tmp_path: Path) -> None:
    a = render_demo_library(tmp_path / "a", seed=0)
    b = render_demo_library(tmp_path / "b", seed=0)
    assert 8 <= len(a) <= 12
    assert [(v.title, v.scenes) for v in a] == [(v.title, v.scenes) for v in b]
    for va, vb in zip(a, b, strict=True):
        assert va.path.read_bytes() == vb.path.read_bytes()
        assert 2 <= len(va.scenes) <= 4
    # the README's example query has exactly one right video, and it is the first one
    hits = [v for v in a if any(s.caption.startswith("a red circle moving left") for s in v.scenes)]
    assert [v.path.name for v in hits] == [a[0].path.name]


def test_demo_library_scene_times_match_the_files(tmp_path: Path) -> None:
    lib = render_demo_library(tmp_path, seed=0)
    for v in lib[:3]:
        info = probe(v.path)
        assert abs(info.duration - v.scenes[-1].end) < 0.15
        assert v.scenes[0].start == 0.0
        assert all(x.end == y.start for x, y in zip(v.scenes, v.scenes[1:], strict=False))


def test_other_seed_gives_other_library(tmp_path: Path) -> None:
    a = render_demo_library(tmp_path / "a", seed=0)
    b = render_demo_library(tmp_path / "b", seed=1)
    assert [v.scenes for v in a] != [v.scenes for v in b]


def test_plan_holds_combinations_out_of_training() -> None:
    plan = plan_benchmark(seed=3, n_train=200, n_val=30, n_test=30)
    held = set(plan.heldout)
    train_triples = {s.triple for scenes in plan.videos["train"] for s in scenes}
    assert not train_triples & held
    for split in ("val", "test"):
        seen_scenes = set()
        for scenes in plan.videos[split]:
            assert 2 <= len(scenes) <= 4
            assert sum(s.triple in held for s in scenes) == 1
            for s in scenes:
                key = (s.triple, s.background)
                assert key not in seen_scenes  # each one-scene caption has one right video
                seen_scenes.add(key)
    assert plan == plan_benchmark(seed=3, n_train=200, n_val=30, n_test=30)


def test_generate_benchmark_deterministic_and_loadable(tmp_path: Path) -> None:
    ma = generate_benchmark(tmp_path / "a", seed=5, n_train=3, n_val=2, n_test=2)
    mb = generate_benchmark(tmp_path / "b", seed=5, n_train=3, n_val=2, n_test=2)
    for split in ("train", "val", "test"):
        assert ma[split].read_text() == mb[split].read_text()
        rows = [json.loads(line) for line in ma[split].read_text().splitlines()]
        for row in rows:
            va, vb = ma[split].parent / row["video"], mb[split].parent / row["video"]
            assert va.read_bytes() == vb.read_bytes()
        ds = load_manifest(ma[split])
        assert len(ds.clips) == {"train": 3, "val": 2, "test": 2}[split]
        assert set(ds.kinds()) == {"partial", "full"}
        # one full caption per video; one partial caption per scene, naming its background
        assert ds.caption_kind.count("full") == len(ds.clips)
        partial = ds.subset("partial").captions
        assert all(any(f"on a {bg} background" in c for bg in BACKGROUNDS) for c in partial)
    info = json.loads((tmp_path / "a" / "benchmark.json").read_text())
    assert info["counts"] == {"train": 3, "val": 2, "test": 2}
