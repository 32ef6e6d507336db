"""What both ingestion runners share before encoding: the records, the clip plan, one video's preparation.

    plan = ClipPlan.for_store(store, model, window=10.0, stride=5.0)   # checks the model fits the store
    got = prepare_video(IngestItem(path), plan, check_duplicate)        # Prepared | IngestResult

`prepare_video` probes a file, refuses absurd inputs (limits), hashes its content (duplicates are
skipped before any decoding), cuts it into clip windows and samples every window's frames in one
decode pass. A per-file problem becomes a 'failed' IngestResult, never an exception the run sees.
The threaded runner (`pipeline.Ingestor`) and the Ray one (`distributed.RayIngestor`) both call it.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from indexer.media.opened import MediaRefused, OpenedMedia, open_media
from indexer.media.sampling import sample_frames_selective
from indexer.media.video import SampledFrames, VideoError, probe, segment_times, video_stream_end
from indexer.store import ClipSpan, NewVideo, Store, StoreError
from indexer.text.extract import TextExtractor
from indexer.text.lines import TrackReport, VideoText
from model import PreprocessCfg, T2VParser

Status = Literal["done", "duplicate", "failed"]


@dataclass(frozen=True)
class IngestLimits:
    """What counts as an absurd input (refused before decoding)."""

    max_duration: float = 24 * 3600.0  # seconds
    max_side: int = 8192  # pixels, either dimension
    min_side: int = 8
    max_frame_bytes: int = 1 << 30  # sampled frames (uint8) of one video held in memory at once


@dataclass(frozen=True)
class IngestItem:
    path: Path
    title: str | None = None
    # the file must be opened inside one of these (checked on the opened descriptor); None: anywhere
    roots: tuple[Path, ...] | None = None


@dataclass
class IngestResult:
    path: str
    status: Status
    video_id: int | None = None
    reason: str = ""
    clips: int = 0
    seconds: float = 0.0
    tracks: list[TrackReport] = field(default_factory=list)  # per text source: found/none/skipped

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class IngestProgress:
    files_total: int
    files_done: int = 0
    clips_done: int = 0
    frames_done: int = 0
    elapsed: float = 0.0
    failed: int = 0
    duplicates: int = 0
    last: IngestResult | None = None  # set when this event reports a finished file

    @property
    def frames_per_second(self) -> float:
        return self.frames_done / self.elapsed if self.elapsed > 0 else 0.0

    def finished(self, r: IngestResult, elapsed: float) -> IngestProgress:
        """Count one finished file; returns the event to report (a snapshot naming it)."""
        self.files_done += 1
        self.failed += r.status == "failed"
        self.duplicates += r.status == "duplicate"
        self.elapsed = elapsed
        return replace(self, last=r)


def as_items(items: Iterable[IngestItem | str | Path]) -> list[IngestItem]:
    return [i if isinstance(i, IngestItem) else IngestItem(Path(i)) for i in items]


def check_model_fits(store: Store, model: T2VParser) -> None:
    """The model's video sets must have the store's rows per clip and dimension."""
    if model.num_video_vectors != store.vectors_per_clip or model.dim != store.dim:
        raise StoreError("the model's video sets do not fit this store")


@dataclass(frozen=True)
class ClipPlan:
    """How a file becomes clips: windows, the model's frames per clip and input size, the limits."""

    pre: PreprocessCfg
    frames_per_clip: int
    window: float  # seconds
    stride: float
    limits: IngestLimits = IngestLimits()

    @classmethod
    def for_store(
        cls, store: Store, model: T2VParser, window: float, stride: float, limits: IngestLimits | None = None
    ) -> ClipPlan:
        """The plan for `model` writing into `store`; refuses a model or window/stride that cannot work."""
        check_model_fits(store, model)
        clip_windows(window + stride, window, stride)  # validates window/stride before any file
        pre, frames = model.backbone.preprocess, int(model.config.frames)
        return cls(pre, frames, window, stride, limits or IngestLimits())


@dataclass
class Prepared:
    """A decoded video waiting for the encoder."""

    item: IngestItem
    video: NewVideo
    spans: list[ClipSpan]
    frames: np.ndarray  # (U, S, S, 3) uint8, unique sample times
    gather: np.ndarray  # (C, T) index into frames for each clip's T frames
    started: float
    encoded: list[np.ndarray | None] = field(default_factory=list)  # per clip (n_v, D) float16
    remaining: int = 0
    text: VideoText | None = None  # the text tracks, when the runner reads them


def clip_windows(duration: float, window: float, stride: float) -> list[ClipSpan]:
    """Overlapping windows covering [0, duration]; a video no longer than `window` is one clip."""
    if window <= 0 or stride <= 0:
        raise ValueError("window and stride must be > 0")
    if stride > window:
        raise ValueError(f"stride {stride}s > window {window}s would leave parts of videos unsearchable")
    if duration <= window:
        return [ClipSpan(0.0, float(duration))]
    spans = []
    k = 0
    while k * stride + window < duration:
        spans.append(ClipSpan(k * stride, k * stride + window))
        k += 1
    spans.append(ClipSpan(max(0.0, duration - window), float(duration)))  # last window ends at the end
    return spans


def content_hash(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def expand_paths(paths: Iterable[str | Path]) -> Iterator[IngestItem]:
    """Files as given, folders recursively (sorted, hidden files skipped), *.jsonl manifests
    ({"video": path, "title": optional} per line; relative paths against the manifest's folder).
    Missing paths are yielded as-is so that they get an error line."""
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            for f in sorted(p.rglob("*")):
                if f.is_file() and not any(part.startswith(".") for part in f.relative_to(p).parts):
                    yield IngestItem(f)
        elif p.suffix == ".jsonl" and p.is_file():
            for n, line in enumerate(p.read_text().splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                    video = Path(rec["video"])
                except (ValueError, KeyError, TypeError) as e:
                    raise ValueError(f"{p}:{n}: not a manifest line {{'video': path}}: {e}") from e
                yield IngestItem(video if video.is_absolute() else p.parent / video, rec.get("title"))
        else:
            yield IngestItem(p)


def unexpected_failure(item: IngestItem, e: Exception) -> IngestResult:
    """An unexpected error while preparing one file: it fails that file, not the run."""
    return IngestResult(str(item.path), "failed", reason=f"{type(e).__name__}: {e}")


def prepare_video(
    item: IngestItem,
    plan: ClipPlan,
    check_duplicate: Callable[[Path, str], IngestResult | None],
    text: TextExtractor | None = None,
) -> Prepared | IngestResult:
    """Probe, check limits, hash, then sample every clip's frames in one decode pass, and read the
    text tracks (`text`: when given) from the same opened file.

    check_duplicate(path, content_hash) returns a 'duplicate' result to skip the file before any
    decoding.
    """
    t0 = time.perf_counter()
    try:
        # open once: probe, hash and decode read this descriptor, never the name again (a swap
        # after the job was queued cannot escape the roots or block the worker)
        opened = open_media(item.path, item.roots)
    except MediaRefused as e:
        return IngestResult(str(item.path), "failed", reason=e.reason)
    with opened:
        got = _prepare_opened(item, opened, plan, check_duplicate, t0)
        if isinstance(got, Prepared) and text is not None:
            # through the descriptor, like the frames: a name swapped since cannot feed the text
            got.text = text.extract(opened.real_path, got.video.width, got.video.height, opened, item.roots)
        return got


def _prepare_opened(
    item: IngestItem,
    opened: OpenedMedia,
    plan: ClipPlan,
    check_duplicate: Callable[[Path, str], IngestResult | None],
    t0: float,
) -> Prepared | IngestResult:
    path = item.path
    try:
        info = probe(opened.name, fds=opened.fds)
    except VideoError as e:
        return IngestResult(str(path), "failed", reason=e.reason)
    except (OSError, ValueError) as e:
        return IngestResult(str(path), "failed", reason=f"cannot read: {e}")
    lim = plan.limits
    if not (lim.min_side <= info.width <= lim.max_side and lim.min_side <= info.height <= lim.max_side):
        return IngestResult(
            str(path),
            "failed",
            reason=f"absurd resolution {info.width}x{info.height} "
            f"(each side must be {lim.min_side}..{lim.max_side} px)",
        )
    if info.duration > lim.max_duration:
        return IngestResult(
            str(path),
            "failed",
            reason=f"absurd duration {info.duration:.0f}s (limit {lim.max_duration:.0f}s)",
        )
    digest = opened.sha256()
    dup = check_duplicate(path, digest)
    if dup is not None:
        return dup
    duration = info.duration
    for attempt in range(2):
        got = _sample(opened, duration, info.fps, plan)
        if isinstance(got, str):
            return IngestResult(str(path), "failed", reason=got)
        spans, uniq, inverse, sampled = got
        last_pts = max(sampled.pts)
        if not _ends_early(last_pts, uniq, duration):
            break
        picture = _picture_end(opened, info.fps, last_pts) if attempt == 0 else None
        if picture is None:
            return IngestResult(
                str(path),
                "failed",
                reason=f"truncated or corrupt: frames end at {last_pts:.1f}s of {info.duration:.1f}s",
            )
        duration = min(duration, picture)  # the clips cover the picture
    video = NewVideo(
        path=str(opened.real_path),
        title=item.title or path.stem,
        content_hash=digest,
        duration=duration,
        fps=info.fps,
        width=info.width,
        height=info.height,
        codec=info.codec,
        size_bytes=opened.size,
        mtime=opened.st.st_mtime,
    )
    gather = inverse.reshape(len(spans), plan.frames_per_clip)  # (C, T)
    return Prepared(item, video, spans, sampled.frames, gather, t0, [None] * len(spans), len(spans))


def _ends_early(last_pts: float, times: np.ndarray, duration: float) -> bool:
    """Did decoding stop well before the last sample time (more than 1 s or 10% of the video)?"""
    return last_pts < times[-1] - max(1.0, 0.1 * duration)


def _picture_end(opened: OpenedMedia, fps: float, last_pts: float) -> float | None:
    """Where the picture ends when its frames stopped early without damage, else None. The
    container's duration is its longest stream's: a picture may end before its sound (a recording
    that kept the microphone on); packets cut off in the video stream stay an error."""
    end = video_stream_end(opened.name, opened.fds, fps)
    if end is None or end > last_pts + max(1.0, 0.1 * end):
        return None
    return max(end, last_pts + (1.0 / fps if fps > 0 else 0.0))


def _sample(
    opened: OpenedMedia, duration: float, fps: float, plan: ClipPlan
) -> tuple[list[ClipSpan], np.ndarray, np.ndarray, SampledFrames] | str:
    """The clip windows of `duration` seconds and their frames, decoded once per distinct sample
    time: (spans, distinct times (U,), each clip frame's index into them, frames), or why not."""
    lim = plan.limits
    spans = clip_windows(duration, plan.window, plan.stride)
    times = [t for s in spans for t in segment_times(s.start, s.end, plan.frames_per_clip)]
    # overlapping windows share sample times: decode each distinct time once
    uniq, inverse = np.unique(np.round(np.asarray(times), 6), return_inverse=True)
    need = len(uniq) * plan.pre.size * plan.pre.size * 3
    if need > lim.max_frame_bytes:
        return (
            f"too long to sample at once: {len(uniq)} frames need {need >> 20} MiB "
            f"(limit {lim.max_frame_bytes >> 20} MiB); split the video or use a longer stride"
        )
    try:
        sampled = sample_frames_selective(opened.name, uniq.tolist(), plan.pre, fps, fds=opened.fds)
    except VideoError as e:
        return e.reason
    return spans, uniq, inverse, sampled
