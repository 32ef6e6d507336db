"""The service warms its vector index at start, as it warms its query encoder: the first user
query does not pay the index's set-up (an ivf-sq8 index's list radii)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from indexer.search.searcher import Searcher
from indexer.store import ClipSpan, NewVideo, Store
from model import TextSets
from service.engine import Engine
from service.library import Library, open_library
from service.metrics import Metrics
from service.settings import ServiceSettings


def test_the_service_measures_its_ivf_sq8_index_at_start(tmp_path: Path, tiny_ckpt: Path) -> None:
    ckpt = {"checkpoint": tiny_ckpt}
    settings = ServiceSettings(index_dir=tmp_path / "store", var_dir=tmp_path / "var", model=ckpt)
    open_library(settings).close()  # creates the store for the model
    with Store.open(settings.index_dir) as store:
        n_v, d = store.vectors_per_clip, store.dim
        rng = np.random.default_rng(0)
        mats = rng.standard_normal((200, n_v, d)).astype(np.float32)
        mats /= np.linalg.norm(mats, axis=-1, keepdims=True)
        store.add_videos([
            (NewVideo(f"/v{v}.mp4", f"v{v}", f"h{v}", 20, 25, 64, 64, "h264", 1),
             [ClipSpan(2.0 * c, 2.0 * c + 4) for c in range(10)], mats[10 * v : 10 * v + 10])
            for v in range(20)
        ])  # fmt: skip
        store.rebuild_index("ivf-sq8")
        store.flush()
    lib = open_library(settings)
    try:
        backend = lib.store._faiss
        assert lib.store.index_spec.type == "ivf-sq8" and backend._radii is not None
        assert backend._radii.index is backend.index and backend._radii.update().any()
        hits, _, stages = lib.search("a red square", 3, False, None, None)
        assert hits and stages["candidates"] > 0
    finally:
        lib.close()


def _settings(tmp_path: Path, ckpt: Path) -> ServiceSettings:
    return ServiceSettings(index_dir=tmp_path / "store", var_dir=tmp_path / "var", model={"checkpoint": ckpt})


def _closed(monkeypatch: pytest.MonkeyPatch, cls: type[Store] | type[Library]) -> list[object]:
    """The objects of `cls` closed from now on (their close still runs)."""
    closed: list[object] = []
    real_close = cls.close

    def spy(self: Store | Library) -> None:
        closed.append(self)
        real_close(self)  # type: ignore[arg-type]

    monkeypatch.setattr(cls, "close", spy)
    return closed


def test_a_start_that_fails_closes_the_store_it_opened(
    tmp_path: Path, tiny_ckpt: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The library opens the store before it warms the query encoder: when the warm-up fails the
    start fails with that error, and the store it opened is closed, not left holding its files."""
    settings = _settings(tmp_path, tiny_ckpt)
    closed = _closed(monkeypatch, Store)

    def broken(self: Searcher, query: str) -> TextSets:
        raise RuntimeError("the query encoder broke")

    monkeypatch.setattr(Searcher, "encode", broken)
    with pytest.raises(RuntimeError, match="the query encoder broke"):
        open_library(settings)
    assert len(closed) == 1 and isinstance(closed[0], Store) and closed[0].root == settings.index_dir


def test_an_engine_whose_start_fails_after_opening_the_library_closes_it(
    tmp_path: Path, tiny_ckpt: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The weak-match calibration runs after the library opened: when it fails, readiness reports
    why and the library (its store) is closed, not left open by an engine that will never serve it."""
    settings = _settings(tmp_path, tiny_ckpt)
    closed = _closed(monkeypatch, Library)

    def broken(self: Library) -> float | None:
        raise RuntimeError("calibration broke")

    monkeypatch.setattr(Library, "weak_below", broken)
    engine = Engine(settings, Metrics())

    async def run() -> None:
        await engine.start()
        await engine.stop()

    asyncio.run(run())
    assert engine.load_error == "RuntimeError: calibration broke"
    assert len(closed) == 1
