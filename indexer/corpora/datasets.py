"""Retrieval data sets (MSR-VTT common layout, generic JSONL manifests) and a frame cache.

A data set is a list of clips (a video, optionally a time window of it) and captions, each
caption pointing at its clip. The frame cache decodes each clip once: it stores, for each of the
T segments, `per_segment` frames at evenly spaced offsets (an odd count, so the middle one is
the segment's middle: the eval frame); training picks one of them at random per segment.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from indexer.media.video import probe, sample_frames
from model.backbone import PreprocessCfg
from model.fileio import atomic_path


class DatasetError(ValueError):
    """A data set file is missing or malformed; the message names the file (and line)."""


@dataclass(frozen=True)
class Clip:
    video: Path
    start: float | None = None  # seconds; None: from the beginning
    end: float | None = None  # seconds; None: to the end


@dataclass
class RetrievalSet:
    name: str
    clips: list[Clip]
    captions: list[str]
    caption_clip: list[int]  # index into clips, one per caption
    caption_kind: list[str] = field(default_factory=list)  # e.g. "partial"/"full"; "" if unknown

    def __post_init__(self) -> None:
        if not self.caption_kind:
            self.caption_kind = [""] * len(self.captions)

    def kinds(self) -> list[str]:
        return sorted({k for k in self.caption_kind if k})

    def subset(self, kind: str) -> RetrievalSet:
        """Only the captions of one kind; the clips (the gallery) stay the same."""
        keep = [i for i, k in enumerate(self.caption_kind) if k == kind]
        return RetrievalSet(
            f"{self.name}[{kind}]",
            self.clips,
            [self.captions[i] for i in keep],
            [self.caption_clip[i] for i in keep],
            [kind] * len(keep),
        )


class _Builder:
    """Accumulates captions, giving each distinct clip one index."""

    def __init__(self) -> None:
        self.index: dict[Clip, int] = {}
        self.clips: list[Clip] = []
        self.captions: list[str] = []
        self.caption_clip: list[int] = []
        self.kinds: list[str] = []

    def add(self, clip: Clip, caption: str, kind: str = "") -> None:
        if clip not in self.index:
            self.index[clip] = len(self.clips)
            self.clips.append(clip)
        self.captions.append(caption)
        self.caption_clip.append(self.index[clip])
        self.kinds.append(kind)

    def build(self, name: str) -> RetrievalSet:
        if not self.captions:
            raise DatasetError(f"{name}: no captions")
        return RetrievalSet(name, self.clips, self.captions, self.caption_clip, self.kinds)


def _opt_float(row: dict, key: str, where: str) -> float | None:
    value = row.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise DatasetError(f"{where}: {key!r} must be a number of seconds, got {value!r}")
    return float(value)


def load_manifest(path: str | Path, check_files: bool = True) -> RetrievalSet:
    """JSONL rows {"video", "caption", optional "start", "end", "kind"}; video paths relative to
    the manifest's directory unless absolute. Other keys are ignored."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"manifest {path} not found")
    b = _Builder()
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{n}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise DatasetError(f"{where}: invalid JSON: {e}") from e
        if not isinstance(row, dict):
            raise DatasetError(f"{where}: each line must be a JSON object")
        video, caption = row.get("video"), row.get("caption")
        if not isinstance(video, str) or not video:
            raise DatasetError(f"{where}: 'video' (a path) is required")
        if not isinstance(caption, str) or not caption.strip():
            raise DatasetError(f"{where}: 'caption' (non-empty text) is required")
        start, end = _opt_float(row, "start", where), _opt_float(row, "end", where)
        if start is not None and end is not None and end <= start:
            raise DatasetError(f"{where}: end ({end}) must be after start ({start})")
        vpath = Path(video) if Path(video).is_absolute() else path.parent / video
        if check_files and not vpath.is_file():
            raise DatasetError(f"{where}: video {vpath} not found")
        b.add(Clip(vpath, start, end), caption.strip(), str(row.get("kind", "")))
    return b.build(path.name)


MSRVTT_SPLITS = {"train9k": "MSRVTT_train.9k.csv", "test1k": "MSRVTT_JSFUSION_test.csv"}
_VIDEO_DIRS = ("videos/all", "videos", "MSRVTT_Videos", "TrainValVideo", ".")


def _msrvtt_video_dir(root: Path) -> Path:
    for d in _VIDEO_DIRS:
        if (root / d).is_dir() and any((root / d).glob("video*.mp4")):
            return root / d
    raise DatasetError(f"{root}: no video<N>.mp4 files in any of {', '.join(_VIDEO_DIRS)}")


def _read_csv(path: Path, needed: Sequence[str]) -> list[dict[str, str]]:
    if not path.is_file():
        raise DatasetError(f"{path} not found")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise DatasetError(f"{path}: no rows")
    missing = [c for c in needed if c not in rows[0]]
    if missing:
        raise DatasetError(f"{path}: missing column(s) {missing}; found {list(rows[0])}")
    return rows


def load_msrvtt(root: str | Path, split: str = "test1k", check_files: bool = True) -> RetrievalSet:
    """MSR-VTT in its common layout under root.

    train9k: every caption in MSRVTT_data.json ("sentences": [{caption, video_id}]) of the
    videos listed in MSRVTT_train.9k.csv (column video_id). test1k: the 1k-A JSFUSION csv,
    one (video_id, sentence) per row. Videos are <video_id>.mp4 in videos/all, videos, ...
    """
    root = Path(root)
    if split not in MSRVTT_SPLITS:
        raise DatasetError(f"unknown MSR-VTT split {split!r}; known: {', '.join(MSRVTT_SPLITS)}")
    vdir = _msrvtt_video_dir(root) if check_files else root / "videos"
    b = _Builder()

    def clip_of(video_id: str, where: str) -> Clip:
        vpath = vdir / f"{video_id}.mp4"
        if check_files and not vpath.is_file():
            raise DatasetError(f"{where}: video {vpath} not found")
        return Clip(vpath)

    if split == "test1k":
        csv_path = root / MSRVTT_SPLITS[split]
        for n, row in enumerate(_read_csv(csv_path, ("video_id", "sentence")), start=2):
            b.add(clip_of(row["video_id"], f"{csv_path}:{n}"), row["sentence"].strip())
        return b.build(f"msrvtt-{split}")
    ids = [r["video_id"] for r in _read_csv(root / MSRVTT_SPLITS[split], ("video_id",))]
    data_path = root / "MSRVTT_data.json"
    if not data_path.is_file():
        raise DatasetError(f"{data_path} not found")
    try:
        sentences = json.loads(data_path.read_text())["sentences"]
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise DatasetError(f"{data_path}: expected an object with 'sentences': {e}") from e
    by_video: dict[str, list[str]] = {}
    for s in sentences:
        by_video.setdefault(str(s["video_id"]), []).append(str(s["caption"]).strip())
    for vid in ids:
        if vid not in by_video:
            raise DatasetError(f"{data_path}: no sentences for {vid} (listed in {MSRVTT_SPLITS[split]})")
        clip = clip_of(vid, str(root / MSRVTT_SPLITS[split]))
        for caption in by_video[vid]:
            b.add(clip, caption)
    return b.build(f"msrvtt-{split}")


def concat(parts: list[RetrievalSet]) -> RetrievalSet:
    """One set holding every part's clips and captions (a clip listed twice stays one clip)."""
    b = _Builder()
    for part in parts:
        for caption, clip, kind in zip(part.captions, part.caption_clip, part.caption_kind, strict=True):
            b.add(part.clips[clip], caption, kind)
    return b.build("+".join(p.name for p in parts))


def load_dataset(spec: str | Path) -> RetrievalSet:
    """A manifest path (*.jsonl), or 'msrvtt:<root>[:<split>]'; several joined with '+'
    (e.g. 'data/synth/train.jsonl+data/synth2/train.jsonl') are concatenated."""
    s = str(spec)
    if "+" in s and not Path(s).exists():
        return concat([load_dataset(part) for part in s.split("+")])
    if s.startswith("msrvtt:"):
        rest = s[len("msrvtt:") :]
        root, _, split = rest.rpartition(":") if rest.endswith(tuple(MSRVTT_SPLITS)) else (rest, "", "")
        return load_msrvtt(root, split or "test1k")
    return load_manifest(s)


# ---------------------------------------------------------------- frame cache


def cache_times(start: float, end: float, frames: int, per_segment: int) -> list[float]:
    """frames * per_segment times: per segment, the midpoints of per_segment equal sub-segments."""
    if end <= start:
        raise ValueError(f"empty window [{start}, {end}]")
    seg = (end - start) / frames
    return [start + (i + (j + 0.5) / per_segment) * seg for i in range(frames) for j in range(per_segment)]


class FrameCache:
    """Decoded, resized clip frames on disk: one .npy of (T, P, S, S, 3) uint8 per clip."""

    def __init__(self, root: str | Path, pre: PreprocessCfg, frames: int, per_segment: int = 3) -> None:
        if per_segment < 1 or per_segment % 2 == 0:
            raise ValueError("per_segment must be odd so that the segment middle is cached")
        self.root = Path(root)
        self.pre = pre
        self.frames = frames
        self.per_segment = per_segment

    def key(self, clip: Clip) -> str:
        st = clip.video.stat()
        ident = [
            str(clip.video.resolve()),
            st.st_size,
            st.st_mtime_ns,
            clip.start,
            clip.end,
            self.frames,
            self.per_segment,
            self.pre.size,
            self.pre.resize_mode,
            self.pre.interpolation,
        ]
        return hashlib.sha1(json.dumps(ident).encode()).hexdigest()

    def _path(self, clip: Clip) -> Path:
        k = self.key(clip)
        return self.root / k[:2] / f"{k}.npy"

    def get(self, clip: Clip) -> np.ndarray:
        """(T, P, S, S, 3) uint8, decoding (once) on a miss."""
        path = self._path(clip)
        if path.is_file():
            return np.load(path)
        start = clip.start or 0.0
        end = clip.end if clip.end is not None else probe(clip.video).duration
        times = cache_times(start, end, self.frames, self.per_segment)
        arr = sample_frames(clip.video, times, self.pre).frames  # (T*P, S, S, 3)
        arr = arr.reshape(self.frames, self.per_segment, *arr.shape[1:])
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.save(f, arr)  # a file object: np.save would append .npy to a path
        return arr

    def load_all(
        self, clips: Sequence[Clip], workers: int = 2, progress: Callable[[int], None] | None = None
    ) -> np.ndarray:
        """(N, T, P, S, S, 3) uint8 for every clip, decoding misses in parallel (ffmpeg processes)."""

        def one(c: Clip) -> np.ndarray:
            arr = self.get(c)
            if progress:
                progress(1)
            return arr

        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            return np.stack(list(pool.map(one, clips)))
