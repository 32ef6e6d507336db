"""The main job's build step: render the demo library and index it with the demo model."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from indexer.corpora.synthetic import render_demo_library, write_demo_manifest
from indexer.store import ModelMismatchError

from .library import open_library
from .settings import ServiceSettings


@dataclass(frozen=True)
class DemoSummary:
    videos: int
    clips: int
    example_query: str


def build_demo(settings: ServiceSettings, video_dir: Path, log: Callable[[str], None] = print) -> DemoSummary:
    """Render (deterministic, seed 0) and ingest every demo video not yet in the store."""
    log(f"rendering the demo library into {video_dir} ...")
    videos = render_demo_library(video_dir, seed=0)
    write_demo_manifest(videos, video_dir / "manifest.jsonl")
    try:
        lib = open_library(settings)
    except ModelMismatchError:
        # the demo store is ours to rebuild: it was indexed with an earlier demo model
        log(f"the demo store {settings.index_dir} was built with another model: rebuilding it")
        shutil.rmtree(settings.index_dir)
        lib = open_library(settings)
    try:
        for v in videos:
            outcome = lib.ingest(v.path, v.title)
            state = "already indexed" if outcome.duplicate else "indexed"
            log(f"  {state}: {v.title} ({v.path.name}) -> video {outcome.video_id}")
        _, clips, _ = lib.counts()
    finally:
        lib.close()
    example = videos[0].scenes[0].caption if videos and videos[0].scenes else "a red circle"
    return DemoSummary(videos=len(videos), clips=clips, example_query=example)
