"""A second, harder renderer for the partial-alignment benchmark (`t2v synth --renderer 2`).

Same words, captions, manifest format and held-out (colour, shape, motion) combinations as
`indexer.corpora.synthetic` for the same seed, but drawn independently so that a model tuned to
renderer 1's look is tested on a different one: no motion trails (direction shows only across
frames), objects of varied size and speed that may enter from the frame's edge, textured
backgrounds (noise, stripes or a gradient in shades of the named colour), scenes of uneven
length, and per-video resolutions (some not square) and frame rates. Shapes are drawn from signed
distances with anti-aliased edges. Its own videos and splits come from its own seeded plan.
"""

from __future__ import annotations

import json
import math
import random
import subprocess
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from indexer.corpora.synthetic import (
    BACKGROUNDS,
    COLOURS,
    SPLITS,
    Scene,
    all_triples,
    full_caption,
    plan_benchmark,
)
from indexer.media.video import ffmpeg_exe
from model.fileio import atomic_path

# (width, height): even sizes (yuv420p), two of them not square
RESOLUTIONS: tuple[tuple[int, int], ...] = ((80, 64), (112, 84), (128, 96), (96, 96))
FRAME_RATES: tuple[int, ...] = (8, 12, 15, 24)
TEXTURES: tuple[str, ...] = ("noise", "stripes", "gradient")
# background shade per named colour: (centre, amplitude) so the darkest/lightest texel still reads
# as black / gray / white
_SHADE: dict[str, tuple[float, float]] = {
    "black": (30.0, 22.0),
    "gray": (128.0, 36.0),
    "white": (222.0, 26.0),
}


@dataclass(frozen=True)
class Scene2:
    colour: str
    shape: str
    motion: str
    background: str
    seconds: float  # nominal; the rendered length is a whole number of frames at the video's rate
    radius: float  # object radius, fraction of the frame's shorter side
    speed: float  # displacement per second, fraction of the frame's extent along the motion
    entry: float  # 0..1: where on its free stretch of the path the object starts
    lane: float  # 0..1: position across the motion axis
    angle: float  # degrees the square / triangle is tilted
    shade: float  # object brightness factor
    texture: str
    texture_seed: int

    @property
    def triple(self) -> tuple[str, str, str]:
        return (self.colour, self.shape, self.motion)

    def words(self) -> Scene:
        """Renderer 1's scene with the same words: the captions come from one place."""
        return Scene(self.colour, self.shape, self.motion, self.background, self.seconds, self.lane)

    def caption(self) -> str:
        return self.words().caption()

    def phrase(self) -> str:
        return self.words().phrase()


@dataclass(frozen=True)
class Video2:
    width: int
    height: int
    fps: int
    scenes: tuple[Scene2, ...]

    def frame_counts(self) -> list[int]:
        return [max(2, round(s.seconds * self.fps)) for s in self.scenes]

    def spans(self) -> list[tuple[float, float]]:
        """(start, end) seconds of each scene in the rendered video (frame-exact)."""
        out, t = [], 0
        for n in self.frame_counts():
            out.append((round(t / self.fps, 6), round((t + n) / self.fps, 6)))
            t += n
        return out

    def caption(self) -> str:
        return full_caption([s.words() for s in self.scenes])


@dataclass(frozen=True)
class BenchmarkPlan2:
    videos: dict[str, list[Video2]]
    heldout: tuple[tuple[str, str, str], ...]


# ---------------------------------------------------------------- drawing


def _smooth_noise(rng: np.random.Generator, h: int, w: int, cell: float) -> np.ndarray:
    """Bilinearly interpolated lattice noise in [-1, 1], features about `cell` pixels wide."""
    grid = rng.uniform(-1.0, 1.0, (int(h / cell) + 2, int(w / cell) + 2))
    y, x = np.arange(h) / cell, np.arange(w) / cell
    y0, x0 = y.astype(np.int64), x.astype(np.int64)
    fy, fx = (y - y0)[:, None], (x - x0)[None, :]
    top = grid[y0][:, x0] * (1 - fx) + grid[y0][:, x0 + 1] * fx
    bottom = grid[y0 + 1][:, x0] * (1 - fx) + grid[y0 + 1][:, x0 + 1] * fx
    out: np.ndarray = top * (1 - fy) + bottom * fy
    return out


def background(scene: Scene2, width: int, height: int) -> np.ndarray:
    """(height, width, 3) float32 RGB: the scene's texture in shades of its background colour."""
    rng = np.random.default_rng(scene.texture_seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    if scene.texture == "noise":
        t = 0.75 * _smooth_noise(rng, height, width, rng.uniform(6, 14)) + 0.25 * _smooth_noise(
            rng, height, width, rng.uniform(2, 3)
        )
    elif scene.texture == "stripes":
        theta, period = rng.uniform(0, math.pi), rng.uniform(5, 14)
        t = 0.8 * np.sin(2 * math.pi * (xx * math.cos(theta) + yy * math.sin(theta)) / period)
    elif scene.texture == "gradient":
        theta = rng.uniform(0, 2 * math.pi)
        ramp = xx * math.cos(theta) + yy * math.sin(theta)
        ramp = 2 * (ramp - ramp.min()) / max(1e-6, float(np.ptp(ramp))) - 1
        t = 0.8 * ramp + 0.2 * _smooth_noise(rng, height, width, 8)
    else:
        raise ValueError(f"unknown texture {scene.texture!r}")
    t = t + rng.uniform(-0.2, 0.2, (height, width))  # per-pixel grain on every texture
    centre, amp = _SHADE[scene.background]
    tint = rng.uniform(-6, 6, 3)  # a slight colour cast, well below the named colour's shade
    img = centre + amp * t[..., None] + tint
    return np.clip(img, 0, 255).astype(np.float32)


def _signed_distance(shape: str, dx: np.ndarray, dy: np.ndarray, r: float, angle: float) -> np.ndarray:
    """Pixels outside (>0) / inside (<0) the shape centred at the origin, radius r, tilted."""
    if shape == "circle":
        out: np.ndarray = np.hypot(dx, dy) - r
        return out
    a = math.radians(angle)
    u, v = dx * math.cos(a) + dy * math.sin(a), -dx * math.sin(a) + dy * math.cos(a)
    if shape == "square":
        return np.maximum(np.abs(u), np.abs(v)) - 0.85 * r
    if shape == "triangle":  # equilateral, apex up (image y points down); circumradius 1.15 r
        inradius = 0.575 * r
        s3 = math.sqrt(3) / 2
        return np.maximum.reduce([v, -s3 * u - 0.5 * v, s3 * u - 0.5 * v]) - inradius
    raise ValueError(f"unknown shape {shape!r}")


def _path(scene: Scene2, width: int, height: int) -> tuple[float, float, float, float]:
    """(start along, travel, across, radius) in pixels; `along` grows in the motion's direction."""
    if scene.motion not in ("left", "right", "up", "down"):
        raise ValueError(f"unknown motion {scene.motion!r}")
    length = width if scene.motion in ("left", "right") else height
    cross = height if scene.motion in ("left", "right") else width
    r = scene.radius * min(width, height)
    lo, hi = 0.3 * r, length - r  # it may start partly outside (entering); it ends fully inside
    travel = min(scene.speed * scene.seconds * length, hi - lo)
    start = lo + scene.entry * (hi - lo - travel)
    across = r + 1 + scene.lane * (cross - 2 * r - 2)
    return start, travel, across, r


def object_alpha(scene: Scene2, width: int, height: int, i: int, n: int) -> np.ndarray:
    """(height, width) coverage in [0, 1] of the object in frame i of n (anti-aliased edge)."""
    start, travel, across, r = _path(scene, width, height)
    along = start + travel * i / (n - 1)
    length = width if scene.motion in ("left", "right") else height
    if scene.motion in ("left", "up"):
        along = length - along
    cx, cy = (along, across) if scene.motion in ("left", "right") else (across, along)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    sd = _signed_distance(scene.shape, xx + 0.5 - cx, yy + 0.5 - cy, r, scene.angle)
    return np.clip(0.5 - sd, 0.0, 1.0).astype(np.float32)


def scene_frames(scene: Scene2, width: int, height: int, n: int) -> Iterator[np.ndarray]:
    """n (height, width, 3) uint8 RGB frames: the object over a fresh copy of the background each
    frame, so nothing it covered earlier stays behind."""
    bg = background(scene, width, height)
    fg = np.clip(np.array(COLOURS[scene.colour], dtype=np.float32) * scene.shade, 0, 255)
    for i in range(n):
        a = object_alpha(scene, width, height, i, n)[..., None]
        yield np.rint(bg * (1 - a) + fg * a).astype(np.uint8)


def video_frames(video: Video2) -> Iterator[np.ndarray]:
    for scene, n in zip(video.scenes, video.frame_counts(), strict=True):
        yield from scene_frames(scene, video.width, video.height, n)


def render_video2(path: Path, video: Video2) -> Path:
    """Encode as H.264 mp4 with fixed single-threaded x264 settings (same frames, same bytes)."""
    with atomic_path(path, mode=0o644) as tmp:
        cmd = [ffmpeg_exe(), "-y", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24"]
        cmd += ["-s", f"{video.width}x{video.height}", "-r", str(video.fps), "-i", "pipe:"]
        cmd += ["-c:v", "libx264", "-preset", "veryfast", "-crf", "18", "-pix_fmt", "yuv420p"]
        cmd += ["-threads", "1", "-map_metadata", "-1", "-fflags", "+bitexact", "-flags:v", "+bitexact"]
        cmd += ["-f", "mp4", str(tmp)]  # the temporary name ends in .tmp: name the container
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stderr=subprocess.PIPE)
        assert proc.stdin is not None and proc.stderr is not None
        try:
            for frame in video_frames(video):
                proc.stdin.write(frame.tobytes())
            proc.stdin.close()
        except BrokenPipeError:
            pass  # ffmpeg died; its exit status and stderr say why
        err = proc.stderr.read()
        if proc.wait() != 0:
            raise RuntimeError(f"ffmpeg failed rendering {path}: {err.decode(errors='replace')[-500:]}")
    return path


# ---------------------------------------------------------------- the plan


def _scene(rng: random.Random, triple: tuple[str, str, str], bg: str | None = None) -> Scene2:
    colour, shape, motion = triple
    return Scene2(
        colour=colour,
        shape=shape,
        motion=motion,
        background=bg or rng.choice(list(BACKGROUNDS)),
        seconds=round(rng.uniform(1.5, 4.0), 2),
        radius=round(rng.uniform(0.09, 0.2), 3),
        speed=round(rng.uniform(0.15, 0.45), 3),
        entry=round(rng.random(), 3),
        lane=round(rng.random(), 3),
        angle=round(rng.uniform(-15, 15), 1) if shape != "circle" else 0.0,
        shade=round(rng.uniform(0.85, 1.05), 3),
        texture=rng.choice(TEXTURES),
        texture_seed=rng.getrandbits(32),
    )


def _video(rng: random.Random, picks: Sequence[tuple[tuple[str, str, str], str | None]]) -> Video2:
    """A video of one scene per (triple, background or None for any); no two scenes are
    the same number of frames long."""
    (width, height), fps = rng.choice(RESOLUTIONS), rng.choice(FRAME_RATES)
    scenes: list[Scene2] = []
    for triple, bg in picks:
        s = _scene(rng, triple, bg)
        while round(s.seconds * fps) in {round(x.seconds * fps) for x in scenes}:
            s = replace(s, seconds=round(rng.uniform(1.5, 4.0), 2))
        scenes.append(s)
    return Video2(width, height, fps, tuple(scenes))


def plan_benchmark2(seed: int, n_train: int, n_val: int, n_test: int, n_heldout: int = 15) -> BenchmarkPlan2:
    """Renderer 1's held-out triples for this seed; otherwise an independent plan of the same
    kind: training uses only seen triples, every val/test video has exactly one held-out scene,
    and no (triple, background) repeats within val or test (one right video per scene caption)."""
    heldout = plan_benchmark(seed, 0, 0, 0, n_heldout).heldout
    seen = [t for t in all_triples() if t not in set(heldout)]
    cap = len(heldout) * len(BACKGROUNDS)
    if n_val > cap or n_test > cap:
        raise ValueError(f"val/test need <= {cap} videos with {n_heldout} held-out")
    rng = random.Random(f"synthetic2:{seed}")  # str seeds hash with sha512: stable across runs
    videos = {
        "train": [
            _video(rng, [(rng.choice(seen), None) for _ in range(rng.randint(2, 4))]) for _ in range(n_train)
        ]
    }
    for split, n in (("val", n_val), ("test", n_test)):
        used: set[tuple[tuple[str, str, str], str]] = set()
        out = []
        for _ in range(n):
            k = rng.randint(2, 4)
            pos = rng.randrange(k)
            picks: list[tuple[tuple[str, str, str], str | None]] = []
            for i in range(k):
                pool = heldout if i == pos else seen
                while True:
                    triple, bg = rng.choice(pool), rng.choice(list(BACKGROUNDS))
                    if (triple, bg) not in used:
                        break
                used.add((triple, bg))
                picks.append((triple, bg))
            out.append(_video(rng, picks))
        videos[split] = out
    return BenchmarkPlan2(videos=videos, heldout=tuple(heldout))


# ---------------------------------------------------------------- the benchmark


def _write_text(path: Path, text: str) -> None:
    with atomic_path(path, mode=0o644) as tmp:
        tmp.write_text(text)


def _jsonl(rows: list[dict[str, object]]) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


def generate_benchmark2(
    out_dir: Path,
    seed: int = 0,
    n_train: int = 600,
    n_val: int = 40,
    n_test: int = 40,
    workers: int = 2,
    render: bool = True,
) -> dict[str, Path]:
    """Renderer 2's benchmark in out_dir, laid out exactly like `generate_benchmark`'s:
    videos/<split>/<split>-NNNN.mp4, <split>.jsonl (partial rows with scene_start/scene_end, the
    short form too in train, one full row per video), pretrain.jsonl (one clip per training
    scene) and benchmark.json. render=False writes only the manifests.
    Returns {split or "pretrain": manifest path}."""
    out_dir = Path(out_dir)
    plan = plan_benchmark2(seed, n_train, n_val, n_test)

    def rel(split: str, i: int) -> str:
        return f"videos/{split}/{split}-{i:04d}.mp4"

    if render:
        jobs = [(out_dir / rel(sp, i), v) for sp in SPLITS for i, v in enumerate(plan.videos[sp])]
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:  # ffmpeg runs outside the GIL
            list(pool.map(lambda job: render_video2(*job), jobs))
    manifests: dict[str, Path] = {}
    pretrain: list[dict[str, object]] = []
    for split in SPLITS:
        rows: list[dict[str, object]] = []
        for i, video in enumerate(plan.videos[split]):
            for j, (s, (a, b)) in enumerate(zip(video.scenes, video.spans(), strict=True)):
                partial = {"video": rel(split, i), "caption": s.caption(), "kind": "partial", "scene": j}
                rows.append(partial | {"scene_start": a, "scene_end": b})
                if split == "train":
                    rows.append(partial | {"caption": s.phrase()})
                    pretrain.append(partial | {"start": a, "end": b, "kind": "scene"})
            rows.append({"video": rel(split, i), "caption": video.caption(), "kind": "full", "scene": None})
        manifests[split] = out_dir / f"{split}.jsonl"
        _write_text(manifests[split], _jsonl(rows))
    manifests["pretrain"] = out_dir / "pretrain.jsonl"
    _write_text(manifests["pretrain"], _jsonl(pretrain))
    info = {
        "renderer": 2,
        "seed": seed,
        "counts": {s: len(plan.videos[s]) for s in SPLITS},
        "heldout_triples": [list(t) for t in plan.heldout],
        "fps": sorted({v.fps for sp in SPLITS for v in plan.videos[sp]}),
        "sizes": sorted({(v.width, v.height) for sp in SPLITS for v in plan.videos[sp]}),
    }
    _write_text(out_dir / "benchmark.json", json.dumps(info, indent=1) + "\n")
    return manifests
