"""Seeded synthetic videos for the partial-alignment benchmark and the demo library.

Each video is 2-4 consecutive scenes; a scene is one object (colour, shape, motion) over a plain
background. Frames are drawn with numpy and piped to ffmpeg (the imageio-ffmpeg binary), so
nothing depends on ffmpeg's drawing filters. A moving object leaves a fading trail so that its
direction is visible in a single frame: the model scores frame *sets* without temporal order.
"""

from __future__ import annotations

import json
import random
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from indexer.media.video import ffmpeg_exe
from model.fileio import atomic_path, write_text_atomic

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (225, 35, 35),
    "green": (40, 190, 50),
    "blue": (45, 80, 235),
    "yellow": (240, 220, 40),
    "purple": (155, 55, 205),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
MOTIONS: tuple[str, ...] = ("left", "right", "up", "down")
BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "black": (15, 15, 15),
    "gray": (128, 128, 128),
    "white": (240, 240, 240),
}
FPS = 10
SIZE = 96  # square frames: the model's centre crop then keeps the whole picture
# ghost copies behind a moving object, oldest first: (how far back in scene progress, opacity)
_TRAIL = ((0.36, 0.2), (0.24, 0.35), (0.12, 0.55))


@dataclass(frozen=True)
class Scene:
    colour: str
    shape: str
    motion: str
    background: str
    seconds: float
    lane: float  # position across the motion axis, as a fraction of the frame (0.25..0.75)

    @property
    def triple(self) -> tuple[str, str, str]:
        return (self.colour, self.shape, self.motion)

    def caption(self) -> str:
        """Describes this scene only."""
        return f"a {self.colour} {self.shape} moving {self.motion} on a {self.background} background"

    def phrase(self) -> str:
        """Short form used inside whole-video captions (the tiny text tower has 32 tokens)."""
        return f"a {self.colour} {self.shape} moving {self.motion}"


def full_caption(scenes: Sequence[Scene]) -> str:
    """Describes the whole video, scene by scene."""
    return ", then ".join(s.phrase() for s in scenes)


@dataclass(frozen=True)
class DemoScene:
    start: float  # seconds
    end: float
    caption: str


@dataclass(frozen=True)
class DemoVideo:
    path: Path
    title: str
    scenes: tuple[DemoScene, ...]

    @property
    def caption(self) -> str:
        """A caption for the whole video."""
        return ", then ".join(s.caption.split(" on a ")[0] for s in self.scenes)


# ---------------------------------------------------------------- drawing


def _shape_mask(shape: str, cx: float, cy: float, r: float, yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
    dx, dy = xx - cx, yy - cy
    if shape == "circle":
        return dx * dx + dy * dy <= r * r
    if shape == "square":
        half = r * 0.85
        return (np.abs(dx) <= half) & (np.abs(dy) <= half)
    if shape == "triangle":  # apex up; width grows linearly towards the base
        frac = (dy + r) / (2 * r)
        return (frac >= 0) & (frac <= 1) & (np.abs(dx) <= frac * r)
    raise ValueError(f"unknown shape {shape!r}")


def _position(scene: Scene, progress: float, size: int, r: float) -> tuple[float, float]:
    """Object centre at `progress` in [0, 1] of the scene: it crosses the frame along its motion."""
    lo, hi = r + 2, size - r - 2
    along = lo + (hi - lo) * progress  # progress < 0 (trail copies) may leave the frame
    across = size * scene.lane
    if scene.motion == "right":
        return along, across
    if scene.motion == "left":
        return size - along, across
    if scene.motion == "down":
        return across, along
    if scene.motion == "up":
        return across, size - along
    raise ValueError(f"unknown motion {scene.motion!r}")


def scene_frames(scene: Scene, size: int = SIZE, fps: int = FPS) -> Iterator[np.ndarray]:
    """(size, size, 3) uint8 RGB frames of one scene."""
    n = max(2, round(scene.seconds * fps))
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    r = size * 0.14
    bg = np.array(BACKGROUNDS[scene.background], dtype=np.float32)
    fg = np.array(COLOURS[scene.colour], dtype=np.float32)
    for i in range(n):
        p = 0.1 + 0.8 * i / (n - 1)  # keep the object fully inside the frame
        img = np.broadcast_to(bg, (size, size, 3)).copy()
        for back, alpha in _TRAIL:
            cx, cy = _position(scene, p - back, size, r)
            m = _shape_mask(scene.shape, cx, cy, r * 0.75, yy, xx)
            img[m] = img[m] * (1 - alpha) + fg * alpha
        cx, cy = _position(scene, p, size, r)
        img[_shape_mask(scene.shape, cx, cy, r, yy, xx)] = fg
        yield img.astype(np.uint8)


def render_video(path: Path, scenes: Sequence[Scene], size: int = SIZE, fps: int = FPS) -> Path:
    """Encode the scenes back to back as an H.264 mp4, bit-exact for the same input; atomic write."""
    cmd = [
        ffmpeg_exe(),
        "-y",
        "-loglevel",
        "error",
        "-f",
        "rawvideo",
        "-pix_fmt",
        "rgb24",
        "-s",
        f"{size}x{size}",
        "-r",
        str(fps),
        "-i",
        "pipe:",
        "-c:v",
        "libx264",
        "-preset",
        "veryfast",
        "-crf",
        "18",
        "-pix_fmt",
        "yuv420p",
        "-threads",
        "1",  # single-threaded x264: the same frames always give the same bytes
        "-map_metadata",
        "-1",
        "-fflags",
        "+bitexact",
        "-flags:v",
        "+bitexact",
        "-f",
        "mp4",  # the temporary file's name does not end in .mp4
    ]
    # 0o644: mkstemp makes it private; videos are meant to be served
    with atomic_path(path, mode=0o644) as tmp:
        proc = subprocess.Popen([*cmd, str(tmp)], stdin=subprocess.PIPE, stderr=subprocess.PIPE)
        assert proc.stdin is not None
        for scene in scenes:
            for frame in scene_frames(scene, size, fps):
                proc.stdin.write(frame.tobytes())
        proc.stdin.close()
        err = proc.stderr.read() if proc.stderr else b""
        if proc.wait() != 0:
            raise RuntimeError(f"ffmpeg failed rendering {path}: {err.decode(errors='replace')[-500:]}")
    return path


def scene_spans(scenes: Sequence[Scene], fps: int = FPS) -> list[tuple[float, float]]:
    """(start, end) seconds of each scene in the rendered video (frame-exact)."""
    spans, t = [], 0
    for s in scenes:
        n = max(2, round(s.seconds * fps))
        spans.append((t / fps, (t + n) / fps))
        t += n
    return spans


# ---------------------------------------------------------------- the demo library

# First scenes of the demo videos, fixed so that the README's example queries have one answer.
_DEMO_FIRST: tuple[tuple[str, str, str], ...] = (
    ("red", "circle", "left"),
    ("blue", "square", "up"),
    ("green", "triangle", "right"),
    ("yellow", "circle", "down"),
    ("purple", "square", "left"),
    ("red", "triangle", "up"),
    ("blue", "circle", "right"),
    ("green", "square", "down"),
    ("yellow", "triangle", "left"),
    ("purple", "circle", "up"),
)


def _random_scene(rng: random.Random, triple: tuple[str, str, str] | None = None) -> Scene:
    colour, shape, motion = triple or (
        rng.choice(list(COLOURS)),
        rng.choice(SHAPES),
        rng.choice(MOTIONS),
    )
    return Scene(
        colour=colour,
        shape=shape,
        motion=motion,
        background=rng.choice(list(BACKGROUNDS)),
        seconds=rng.choice((2.0, 2.5, 3.0)),
        lane=round(rng.uniform(0.3, 0.7), 3),
    )


def demo_library_scenes(seed: int = 0) -> list[list[Scene]]:
    """The demo library's scene lists; no (colour, shape, motion) appears twice in the library."""
    rng = random.Random(seed)
    used = set(_DEMO_FIRST)
    videos = []
    for first in _DEMO_FIRST:
        scenes = [_random_scene(rng, first)]
        for _ in range(rng.randint(1, 3)):
            s = _random_scene(rng)
            while s.triple in used:
                s = _random_scene(rng)
            used.add(s.triple)
            scenes.append(s)
        videos.append(scenes)
    return videos


def render_demo_library(out_dir: Path, seed: int = 0) -> list[DemoVideo]:
    """Render the demo library (10 videos of 2-4 scenes, 96x96, 10 fps) into out_dir.

    Deterministic for a seed: the same files, titles and scenes every time. Every scene's
    (colour, shape, motion) is unique in the library, so a scene query has one right video.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    result = []
    for i, scenes in enumerate(demo_library_scenes(seed)):
        first = scenes[0]
        name = f"demo-{i:02d}-{first.colour}-{first.shape}.mp4"
        path = render_video(out_dir / name, scenes)
        title = " then ".join(f"{s.colour} {s.shape}" for s in scenes).capitalize()
        spans = scene_spans(scenes)
        result.append(
            DemoVideo(
                path=path,
                title=title,
                scenes=tuple(DemoScene(a, b, s.caption()) for s, (a, b) in zip(scenes, spans, strict=True)),
            )
        )
    return result


def write_demo_manifest(videos: Sequence[DemoVideo], path: Path) -> None:
    """JSONL: one line per video with its title and scenes (for people browsing the library)."""
    with open(path, "w") as f:
        for v in videos:
            row = {"video": str(v.path), "title": v.title, "scenes": [asdict(s) for s in v.scenes]}
            f.write(json.dumps(row) + "\n")


# ---------------------------------------------------------------- the benchmark

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class BenchmarkPlan:
    """Which scenes make up each video of each split; held-out triples appear only in val/test."""

    videos: dict[str, list[list[Scene]]]
    heldout: tuple[tuple[str, str, str], ...]


def all_triples() -> list[tuple[str, str, str]]:
    return [(c, s, m) for c in COLOURS for s in SHAPES for m in MOTIONS]


def plan_benchmark(seed: int, n_train: int, n_val: int, n_test: int, n_heldout: int = 15) -> BenchmarkPlan:
    """Train videos use only seen (colour, shape, motion) triples; every val/test video has
    exactly one held-out triple (its other scenes are seen ones, in new sequences), and within
    a val/test split no scene (triple + background) repeats, so each one-scene caption has
    exactly one right video."""
    rng = random.Random(seed)
    triples = all_triples()
    rng.shuffle(triples)
    heldout, seen = triples[:n_heldout], triples[n_heldout:]
    if n_val > n_heldout * len(BACKGROUNDS) or n_test > n_heldout * len(BACKGROUNDS):
        raise ValueError(f"val/test need <= {n_heldout * len(BACKGROUNDS)} videos with {n_heldout} held-out")
    videos: dict[str, list[list[Scene]]] = {
        "train": [
            [_random_scene(rng, rng.choice(seen)) for _ in range(rng.randint(2, 4))] for _ in range(n_train)
        ]
    }
    for split, n in (("val", n_val), ("test", n_test)):
        used: set[tuple[tuple[str, str, str], str]] = set()
        out = []
        for _ in range(n):
            k = rng.randint(2, 4)
            pos = rng.randrange(k)  # where the held-out scene goes
            scenes = []
            for i in range(k):
                while True:
                    s = _random_scene(rng, rng.choice(heldout) if i == pos else rng.choice(seen))
                    if (s.triple, s.background) not in used:
                        break
                used.add((s.triple, s.background))
                scenes.append(s)
            out.append(scenes)
        videos[split] = out
    return BenchmarkPlan(videos=videos, heldout=tuple(heldout))


def generate_benchmark(
    out_dir: Path,
    seed: int = 0,
    n_train: int = 600,
    n_val: int = 40,
    n_test: int = 40,
    workers: int = 2,
    render: bool = True,
) -> dict[str, Path]:
    """Render every split into out_dir/videos/<split>/ and write out_dir/<split>.jsonl manifests.

    Manifest rows: {"video" (relative to the manifest), "caption", "kind": "partial"|"full",
    "scene": index or null, "scene_start"/"scene_end" (informational)}. Captions describe the
    whole clip's video; "partial" ones describe one scene only. Also out_dir/pretrain.jsonl:
    one clip per scene of the training videos (start/end = the scene) with its caption.
    Training videos' scenes also get the short caption without the background; val/test keep
    only the long form, which names exactly one video. render=False writes only the manifests.
    Returns {split or "pretrain": manifest path}.
    """
    from concurrent.futures import ThreadPoolExecutor

    out_dir = Path(out_dir)
    plan = plan_benchmark(seed, n_train, n_val, n_test)
    if render:
        jobs = []
        for split in SPLITS:
            for i, scenes in enumerate(plan.videos[split]):
                jobs.append((out_dir / "videos" / split / f"{split}-{i:04d}.mp4", scenes))
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:  # ffmpeg runs outside the GIL
            list(pool.map(lambda job: render_video(*job), jobs))
    manifests = {}
    for split in SPLITS:
        rows = []
        for i, scenes in enumerate(plan.videos[split]):
            rel = f"videos/{split}/{split}-{i:04d}.mp4"
            for j, (s, (a, b)) in enumerate(zip(scenes, scene_spans(scenes), strict=True)):
                rows.append(
                    {"video": rel, "caption": s.caption(), "kind": "partial", "scene": j}
                    | {"scene_start": a, "scene_end": b}
                )
                if split == "train":  # also the short form people type ("a red circle moving left")
                    rows.append({"video": rel, "caption": s.phrase(), "kind": "partial", "scene": j})
            rows.append({"video": rel, "caption": full_caption(scenes), "kind": "full", "scene": None})
        path = out_dir / f"{split}.jsonl"
        write_text_atomic(path, "".join(json.dumps(r) + "\n" for r in rows), mode=0o644)
        manifests[split] = path
    # Scene-level pairs from the training videos (a clip = one scene's time window): the
    # stand-in for CLIP's image-text pre-training, since no pretrained CLIP exists offline.
    rows = []
    for i, scenes in enumerate(plan.videos["train"]):
        rel = f"videos/train/train-{i:04d}.mp4"
        for j, (s, (a, b)) in enumerate(zip(scenes, scene_spans(scenes), strict=True)):
            rows.append(
                {"video": rel, "caption": s.caption(), "start": a, "end": b, "kind": "scene", "scene": j}
            )
    manifests["pretrain"] = out_dir / "pretrain.jsonl"
    write_text_atomic(manifests["pretrain"], "".join(json.dumps(r) + "\n" for r in rows), mode=0o644)
    info = {
        "seed": seed,
        "counts": {s: len(plan.videos[s]) for s in SPLITS},
        "heldout_triples": [list(t) for t in plan.heldout],
        "fps": FPS,
        "size": SIZE,
    }
    write_text_atomic(out_dir / "benchmark.json", json.dumps(info, indent=1) + "\n", mode=0o644)
    return manifests
