"""The service's view of the indexer: one store, the query-side model, a searcher, an ingester.

This is the only module that drives indexer.store / indexer.search.searcher / indexer.ingest.pipeline.
It hands the indexer's own records (`VideoRecord`, `ScoredMoment`) to the engine, which turns them
once into the REST schemas. All methods block: call them from a pool.
"""

from __future__ import annotations

import logging
import random
import string
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from indexer.ingest.pipeline import IngestItem, Ingestor, Prefetcher
from indexer.media.video import segment_times
from indexer.search.explain import Explanation, clip_contributions, explain_clip
from indexer.search.fusion import fused_search
from indexer.search.searcher import QueryEncoder, ScoredMoment, Searcher
from indexer.settings import resolve_device
from indexer.store import Store, VideoRecord, store_identity
from model import T2VParser, TextSets, create_model

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


@dataclass(frozen=True)
class Hit:
    """A returned moment, the time of its best-matching frame, its explanation (when asked for)
    and, in a grouped search, the other moments of its video (best first)."""

    moment: ScoredMoment
    best_frame_s: float
    explanation: Explanation | None = None
    more: tuple[Hit, ...] = ()


# Weak-match calibration: queries that describe nothing (seeded gibberish), and which quantile of
# their best scores marks the line; chosen by bench/weak_match.py on the demo library (docs/SERVICE.md).
NULL_QUERIES = 32
NULL_QUANTILE = 0.9


def null_queries(n: int = NULL_QUERIES, seed: int = 1234) -> list[str]:
    """Seeded nonsense strings (letters, digits, punctuation) of 3 to 25 characters."""
    rng = random.Random(seed)
    chars = string.ascii_lowercase + string.digits + " !?.-"
    return ["".join(rng.choice(chars) for _ in range(rng.randint(3, 25))).strip() or "zz" for _ in range(n)]


class Library:
    def __init__(self, settings: ServiceSettings, model: T2VParser, store: Store) -> None:
        self.settings = settings
        self.model = model  # text side only
        self.store = store
        self._counts: tuple[float, tuple[int, int, int]] | None = None
        self._ingest: Prefetcher | None = None  # the ingestor, decoding the next queued file ahead
        self._ingest_lock = threading.Lock()
        # one search's exact rerank uses as many threads as its query encoding (T2V_QUERY_THREADS)
        threads = query_threads(settings, model)
        encoder = query_encoder(settings, model, threads)
        self.searcher = Searcher(store, model, encoder=encoder, rerank_threads=threads)
        self._warm_up()
        self._calibration: tuple[int, float | None] | None = None  # (clips then, weak_below)
        self._calibration_lock = threading.Lock()

    def _warm_up(self) -> None:
        """One query encoded and searched in stage 1 at start, so that the first user query pays no
        set-up: the encoder's (an ONNX session's first run), the index's (an ivf-sq8 index measures
        its lists' radii on its first search: ~0.1 s per 1.6M rows). A vector engine that does not
        answer now does not stop the start: searches will say why."""
        text = self.searcher.encode("warm up")
        try:
            self.searcher.candidate_clips(text)
        except Exception as e:  # noqa: BLE001 - e.g. a remote Qdrant not up yet
            log.warning("vector index warm-up failed: %s", e)

    def describe(self) -> str:
        cfg = self.model.config
        ckpt = self.settings.model.checkpoint
        return f"{cfg.name or cfg.backbone} ({cfg.mode})" + (f" from {Path(ckpt).name}" if ckpt else "")

    def close(self) -> None:
        if self._ingest is not None:
            self._ingest.close()
        self.searcher.close()
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
        moments_per_video: int = 1,
        *,
        sources: list[str] | None = None,
    ) -> tuple[list[Hit], float | None, dict[str, float]]:
        """Hits best first (grouped: one per video, its other moments folded under it), the weak-match
        line (`weak_below`) and stage timings in seconds (encode, candidates, rerank, metadata, frames
        [, explain][, calibrate: only when the library changed since the last calibration])."""
        res = fused_search(  # the visual ranking fused with the text tracks' (indexer/search/fusion.py)
            self.searcher,
            query,  # the text: the searcher times its encoding (stages_ms.encode)
            top_k=top_k,
            group_by_video=group_by_video,
            video_ids=video_ids,
            min_score=min_score,
            text_query=query,
            sources=sources,
            moments_per_video=moments_per_video,
        )
        text = res.text
        assert text is not None
        if res.groups is not None:
            tops = [g.moments[0] for g in res.groups]
            folded = [g.moments[1:] for g in res.groups]
        else:
            tops = res.moments[:top_k]
            folded = [[] for _ in tops]
        stages = {k: v / 1000 for k, v in res.timings_ms.items() if k != "total"}
        rows = text.vectors[0][text.mask[0]]  # (n_t valid, D)
        t0 = time.perf_counter()
        # the card image is the frame that carried the match, not the window's start
        every = tops + [m for ms in folded for m in ms]
        best = self._best_frames(rows, every)
        stages["frames"] = time.perf_counter() - t0
        explained: list[Explanation | None] = [None] * len(tops)
        if explain and tops:
            # only the returned moments: plain searches pay nothing
            t0 = time.perf_counter()
            mats = self.store.matrices(np.array([m.clip_id for m in tops], dtype=np.int64))
            frames = self.model.config.frames
            explained = [
                explain_clip(rows, mats[i], m.start, m.end, frames, self.store.tau)
                for i, m in enumerate(tops)
            ]
            stages["explain"] = time.perf_counter() - t0
        hits, at = [], len(tops)
        for i, m in enumerate(tops):
            more = tuple(Hit(o, best[at + j]) for j, o in enumerate(folded[i]))
            at += len(more)
            hits.append(Hit(m, best[i], explained[i], more))
        t0 = time.perf_counter()
        calibrated = self._calibration
        weak = self.weak_below()
        if self._calibration is not calibrated:
            stages["calibrate"] = time.perf_counter() - t0
        return hits, weak, stages

    def _best_frames(self, rows: torch.Tensor, moments: list[ScoredMoment]) -> list[float]:
        """The time of the frame row with the largest share of each moment's score (seconds)."""
        if not moments:
            return []
        frames = self.model.config.frames
        mats = torch.from_numpy(self.store.matrices(np.array([m.clip_id for m in moments], dtype=np.int64)))
        with torch.no_grad():  # all moments in one batch: (C, T) frame shares -> best frame each
            best = clip_contributions(rows, mats.to(rows.device), self.store.tau)[:, :frames].argmax(1)
        out = []
        for m, i in zip(moments, best.tolist(), strict=True):
            times = segment_times(m.start, m.end, frames) if m.end > m.start else [m.start] * frames
            out.append(round(times[i], 3))
        return out

    def weak_below(self) -> float | None:
        """Moments scoring below this are weak matches (None while the library is empty).

        Calibrated on this library with this model: the NULL_QUANTILE quantile of the best score
        of NULL_QUERIES seeded nonsense queries, which describe nothing here. Recomputed when the
        number of clips has moved by more than a tenth since (see docs/SERVICE.md, "Weak matches").
        """
        clips = self.counts()[1]
        with self._calibration_lock:
            cached = self._calibration
            if (
                cached is not None
                and abs(clips - cached[0]) <= cached[0] // 10
                and (clips > 0) == (cached[0] > 0)
            ):
                return cached[1]
            value = self._calibrate() if clips > 0 else None
            self._calibration = (clips, value)
            return value

    def _calibrate(self) -> float | None:
        with torch.no_grad():
            texts = self.model.encode_texts(null_queries())  # (Q, n_t, D)
        tops = []
        for i in range(texts.vectors.shape[0]):
            one = TextSets(texts.vectors[i : i + 1], texts.mask[i : i + 1])
            res = self.searcher.search(one, top_k=1)
            if res.moments:
                tops.append(res.moments[0].score)
        return round(float(np.quantile(tops, NULL_QUANTILE)), 4) if tops else None

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

    def _ingestor(self) -> Prefetcher:
        with self._ingest_lock:
            if self._ingest is None:
                # the visual tower is only needed here: built on the first ingestion
                full = _build_model(self.settings, text_only=False)
                threads = self.settings.ingest_threads or None  # the ingestion worker's budget
                self._ingest = Prefetcher(Ingestor.from_settings(self.store, full, self.settings, threads))
            return self._ingest

    def ingest(
        self,
        path: Path,
        title: str | None,
        roots: tuple[Path, ...] | None = None,
        upcoming: tuple[Path, str | None] | None = None,
    ) -> IngestOutcome:
        """Index one file (blocking). A duplicate names the stored video; failures raise IngestFailed.
        roots: where the opened file must lie (checked on the descriptor, not the name).
        upcoming: the next queued (path, title), decoded while this file encodes."""
        ahead = IngestItem(upcoming[0], upcoming[1], roots) if upcoming is not None else None
        result = self._ingestor().ingest(IngestItem(path, title, roots), ahead)
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
        self._calibration = None  # the library changed: recalibrate now, not in the next search
        self.weak_below()


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


def query_threads(settings: ServiceSettings, model: T2VParser) -> int:
    """Threads of one search's query encoding and rerank (`ServiceSettings.encoder_threads`)."""
    return settings.encoder_threads(sum(p.numel() for p in model.parameters()))


def query_encoder(settings: ServiceSettings, model: T2VParser, threads: int) -> QueryEncoder:
    """The configured query encoder (ONNX Runtime on `threads` threads; `Library` warms it up).
    An ONNX graph that cannot be exported or loaded leaves the service on torch (same rankings,
    slower) with the reason logged, rather than not starting."""
    encoder: QueryEncoder = model
    device = next(model.parameters()).device
    if settings.query_encoder != "torch" and device.type != "cpu":
        log.info("query_encoder %s runs on the CPU only: using torch on %s", settings.query_encoder, device)
    elif settings.query_encoder != "torch":
        from model.onnx_text import OnnxTextEncoder, Precision

        precision: Precision = "int8" if settings.query_encoder == "onnx-int8" else "fp32"
        try:
            encoder = OnnxTextEncoder.for_model(model, settings.query_graphs, precision, threads=threads)
        except Exception as e:  # noqa: BLE001 - any export/runtime failure: torch still answers
            log.warning(
                "query_encoder %s unavailable (%s): queries are encoded with torch", settings.query_encoder, e
            )
    if encoder is model:
        log.info("query encoder: torch")
    else:
        log.info("query encoder: %s, %d thread(s)", settings.query_encoder, threads)
    return encoder


def open_library(settings: ServiceSettings) -> Library:
    """Load the query-side model and open (or create) the store it must match."""
    model = _build_model(settings, text_only=True)
    ident = store_identity(model)
    if settings.model.checkpoint is not None:  # a new store records it: any command can reopen it
        ident["checkpoint_path"] = str(Path(settings.model.checkpoint).resolve())
    store = Store.open(settings.index_dir, ident, create=True, backend=settings.vectors.config())
    log.info("store %s opened", settings.index_dir)
    try:
        return Library(settings, model, store)
    except BaseException:
        store.close()  # a start that fails (the query encoder, its warm-up) leaves no store open
        raise
