"""Fixtures for the Ray ingestion tests: a generated corpus, the tiny model, the single-process store."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from indexer.corpora.lavfi import render_lavfi

WINDOW, STRIDE = 4.0, 2.0  # small windows: the 12 s video becomes 5 overlapping clips


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Good videos (one an exact copy), unreadable files and a missing path, in a fixed order."""
    root = tmp_path_factory.mktemp("corpus")
    good = root / "good"
    red = render_lavfi(good / "a_red.mp4", "color=c=red:s=96x64:d=3:r=8")
    render_lavfi(good / "b_blue.mp4", "color=c=blue:s=96x64:d=3:r=8")
    render_lavfi(good / "c_pattern.mp4", "testsrc=s=96x64:d=12:r=8")
    render_lavfi(good / "nested" / "d_green.mp4", "color=c=green:s=96x64:d=2:r=8")
    shutil.copy(red, good / "e_red_copy.mp4")
    bad = root / "bad"
    bad.mkdir()
    (bad / "empty.mp4").write_bytes(b"")
    (bad / "notes.mp4").write_text("this is not a video\n" * 50)
    return {"good": good, "bad": bad, "missing": root / "missing.mp4", "unique": 4, "failed": 3}


@pytest.fixture(scope="module")
def model(tiny_ckpt: Path) -> Any:
    from model import create_model

    return create_model(None, checkpoint=tiny_ckpt)


def items_of(corpus: dict[str, Any]) -> list[Any]:
    from indexer.ingest.pipeline import expand_paths

    return list(expand_paths([corpus["good"], corpus["bad"], corpus["missing"]]))


def identity(model: Any, checkpoint: Path) -> dict[str, Any]:
    from indexer.store import store_identity

    ident = store_identity(model)
    ident["checkpoint_path"] = str(checkpoint.resolve())
    return ident


@pytest.fixture(scope="module")
def reference(
    corpus: dict[str, Any], model: Any, tiny_ckpt: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The store the single-process indexer builds from the same corpus."""
    from indexer.ingest.pipeline import Ingestor
    from indexer.store import Store

    path = tmp_path_factory.mktemp("ref") / "idx"
    with Store.open(path, identity(model, tiny_ckpt), create=True) as store:
        results = Ingestor(store, model, WINDOW, STRIDE, batch_size=8).ingest_many(items_of(corpus))
    assert sum(r.status == "done" for r in results) == corpus["unique"]
    return path


@pytest.fixture(scope="module")
def ray_cluster() -> Any:
    """One local Ray instance (2 CPUs) per test module; yields its address for CLI runs."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()
