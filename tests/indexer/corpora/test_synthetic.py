"""The synthetic generator: determinism, held-out combinations, manifests that load."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from indexer.corpora.datasets import load_manifest
from indexer.corpora.synthetic import (
    BACKGROUNDS,
    DemoVideo,
    demo_library_scenes,
    generate_benchmark,
    plan_benchmark,
    render_demo_library,
)
from indexer.media.video import probe


@pytest.fixture(scope="module")
def two_libraries(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[DemoVideo], list[DemoVideo]]:
    root = tmp_path_factory.mktemp("demo")
    return render_demo_library(root / "a", seed=0), render_demo_library(root / "b", seed=0)


def test_demo_library_is_deterministic(two_libraries: tuple[list[DemoVideo], list[DemoVideo]]) -> None:
    a, b = two_libraries
    assert 8 <= len(a) <= 12
    assert [(v.title, v.scenes) for v in a] == [(v.title, v.scenes) for v in b]
    for va, vb in zip(a, b, strict=True):
        assert va.path.read_bytes() == vb.path.read_bytes()
        assert 2 <= len(va.scenes) <= 4
    # the README's example query has exactly one right video, and it is the first one
    hits = [v for v in a if any(s.caption.startswith("a red circle moving left") for s in v.scenes)]
    assert [v.path.name for v in hits] == [a[0].path.name]
    # no (colour, shape, motion) twice in the library: each scene query has one right video
    triples = [s.caption.split(" on a ")[0] for v in a for s in v.scenes]
    assert len(triples) == len(set(triples))


def test_demo_library_scene_times_match_the_files(
    two_libraries: tuple[list[DemoVideo], list[DemoVideo]],
) -> None:
    for v in two_libraries[0][:3]:
        info = probe(v.path)
        assert abs(info.duration - v.scenes[-1].end) < 0.15
        assert v.scenes[0].start == 0.0
        assert all(x.end == y.start for x, y in zip(v.scenes, v.scenes[1:], strict=False))


def test_other_seed_gives_other_library() -> None:
    assert demo_library_scenes(0) == demo_library_scenes(0)
    assert demo_library_scenes(0) != demo_library_scenes(1)


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
        # one full caption per video; per scene a partial caption naming its background, and in
        # training also the short form without it
        assert ds.caption_kind.count("full") == len(ds.clips)
        partial = ds.subset("partial").captions
        long = [c for c in partial if any(f"on a {bg} background" in c for bg in BACKGROUNDS)]
        short = [c for c in partial if c not in long]
        assert len(long) >= 2 * len(ds.clips)
        assert len(short) == (len(long) if split == "train" else 0)
        assert all(f"{c} on a " in " | ".join(long) for c in short)
    pre = load_manifest(ma["pretrain"])
    assert all(c.start is not None and c.end is not None for c in pre.clips)
    assert len(pre.clips) == len(load_manifest(ma["train"]).subset("partial").captions) // 2
    info = json.loads((tmp_path / "a" / "benchmark.json").read_text())
    assert info["counts"] == {"train": 3, "val": 2, "test": 2}
