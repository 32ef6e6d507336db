"""The service's view of the indexer: one store, the query-side model, a searcher, an ingester.

This is the only module that drives indexer.store / indexer.search.searcher / indexer.ingest.pipeline.
It hands the indexer's own records (`VideoRecord`, `ScoredMoment`) to the engine, which turns them
once into the REST schemas. All methods block: call them from a pool.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from indexer.ingest.pipeline import Ingestor
from indexer.search.explain import Explanation, explain_clip
from indexer.search.searcher import ScoredMoment, Searcher
from indexer.settings import resolve_device
from indexer.store import Store, VideoRecord, store_identity
from model import T2VParser, create_model

from .settings import ServiceSettings

log = logging.getLogger("t2v.service")

_COUNTS_TTL = 2.0  # seconds a counts() answer is reused (metrics scrapes, readyz)


@dataclass(frozen=True)
class IngestOutcome:
    video_id: int
    duplicate: bool
    source: str | None  # the stored video's file (for a duplicate: the earlier one's)


class IngestFailed(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Library:
    def __init__(self, settings: ServiceSettings, model: T2VParser, store: Store) -> None:
        self.settings = settings
        self.model = model  # text side only
        self.store = store
        self._counts: tuple[float, tuple[int, int, int]] | None = None
        self._ingest: Ingestor | None = None
        self._ingest_lock = threading.Lock()
        self.searcher = Searcher(store, model)

    def describe(self) -> str:
        cfg = self.model.config
        ckpt = self.settings.model.checkpoint
        return f"{cfg.name or cfg.backbone} ({cfg.mode})" + (f" from {Path(ckpt).name}" if ckpt else "")

    def close(self) -> None:
        self.store.close()

    def counts(self) -> tuple[int, int, int]:
        """(videos, clips, token vectors)."""
        now = time.monotonic()
        if self._counts is None or now - self._counts[0] > _COUNTS_TTL:
            stats = self.store.stats()
            self._counts = (now, (stats.videos, stats.clips, stats.vectors))
        return self._counts[1]

    def search(
        self,
        query: str,
        top_k: int,
        group_by_video: bool,
        video_ids: list[int] | None,
        min_score: float | None,
        explain: bool = False,
    ) -> tuple[list[tuple[ScoredMoment, Explanation | None]], dict[str, float]]:
        """Moments best first (each with its explanation when asked for) and stage timings in seconds
        (encode, candidates, rerank, metadata[, explain])."""
        res = self.searcher.search(
            query,  # the text: the searcher times its encoding (stages_ms.encode)
            top_k=top_k,
            group_by_video=group_by_video,
            video_ids=video_ids,
            min_score=min_score,
            moments_per_video=1,  # grouped: the best moment stands for its video
        )
        text = res.text
        assert text is not None
        moments = res.moments[:top_k]
        stages = {k: v / 1000 for k, v in res.timings_ms.items() if k != "total"}
        explained: list[Explanation | None] = [None] * len(moments)
        if explain and moments:
            # only the returned moments: plain searches pay nothing
            t0 = time.perf_counter()
            rows = text.vectors[0][text.mask[0]]  # (n_t valid, D)
            mats = self.store.matrices(np.array([m.clip_id for m in moments], dtype=np.int64))
            frames = self.model.config.frames
            explained = [
                explain_clip(rows, mats[i], m.start, m.end, frames, self.store.tau)
                for i, m in enumerate(moments)
            ]
            stages["explain"] = time.perf_counter() - t0
        return list(zip(moments, explained, strict=True)), stages

    def list_videos(self, offset: int, limit: int, title: str | None) -> tuple[list[VideoRecord], int]:
        rows = self.store.list_videos(offset=offset, limit=limit, title_filter=title)
        return rows, self.store.count_videos(title_filter=title)

    def get_video(self, video_id: int) -> VideoRecord | None:
        return self.store.get_video(video_id)

    def delete_video(self, video_id: int) -> bool:
        try:
            self.store.remove_video(video_id)
        except KeyError:
            return False
        self._counts = None
        return True

    def _ingestor(self) -> Ingestor:
        with self._ingest_lock:
            if self._ingest is None:
                # the visual tower is only needed here: built on the first ingestion
                full = _build_model(self.settings, text_only=False)
                self._ingest = Ingestor.from_settings(self.store, full, self.settings)
            return self._ingest

    def ingest(self, path: Path, title: str | None) -> IngestOutcome:
        """Index one file (blocking). A duplicate names the stored video; failures raise IngestFailed."""
        result = self._ingestor().ingest_file(path, title)
        self._counts = None
        if result.status == "failed" or result.video_id is None:
            raise IngestFailed(result.reason or "ingestion failed")
        if result.status == "duplicate":
            dup = self.store.get_video(result.video_id)
            return IngestOutcome(result.video_id, True, dup.path if dup is not None else None)
        return IngestOutcome(result.video_id, False, str(Path(path).resolve()))

    def flush(self) -> None:
        """Persist the FAISS index (derived data; committed videos survive a crash without it)."""
        self.store.flush()


def _build_model(settings: ServiceSettings, text_only: bool) -> T2VParser:
    import torch

    m = settings.model
    ckpt = m.checkpoint
    # a config without weights gets random init: seed it so the text-only query model and the
    # ingestion model (and every restart) agree, otherwise the store would refuse the model
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return create_model(
            None if ckpt else m.config,
            checkpoint=ckpt,
            device=resolve_device(m.device),
            text_only=text_only,
            cache_dir=m.cache_dir,
        )


def open_library(settings: ServiceSettings) -> Library:
    """Load the query-side model and open (or create) the store it must match."""
    model = _build_model(settings, text_only=True)
    store = Store.open(settings.index_dir, store_identity(model), create=True)
    log.info("store %s opened", settings.index_dir)
    return Library(settings, model, store)
