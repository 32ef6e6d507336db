"""Training loop for T2VParser (and the meanP baseline) on cached clip frames.

Data arrive as arrays (the indexer decodes and caches them), so this module depends on torch
only. Every step's batch is drawn from an RNG seeded by (seed, step): a run resumed from a
checkpoint sees exactly the batches an uninterrupted run would, and ends with the same weights.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn

from .backbone import PreprocessCfg
from .checkpoint import read_checkpoint, save_checkpoint
from .config import ConfigError, T2VConfig
from .factory import create_model
from .fileio import atomic_path
from .hard_negatives import add_hard_negatives, caption_neighbours
from .heads import dcm_logits
from .loss import t2v_loss
from .t2vparser import T2VParser, TextSets, VideoSets
from .time_reversal import ReversalLexicon

STATE_FILE = "state.pt"  # resumable training state (model + optimiser + step)
MODEL_FILE = "model.pt"  # the final model checkpoint (model.checkpoint format)


# The objective switches and the values that reproduce the objective used before they existed.
_OBJECTIVE_SWITCHES: dict[str, str] = {"head": "simple", "nce_reduction": "mean", "diversity_on": "raw"}


@dataclass(frozen=True)
class TrainConfig:
    model: str = "t2v-tiny"  # model config name or JSON path
    init_backbone: str | None = None  # start the CLIP backbone from this model checkpoint's backbone
    train: str = ""  # training data set (manifest path or msrvtt:<root>:train9k)
    val: str | None = None  # optional data set evaluated at the end
    out_dir: str = "runs/t2v"  # state.pt, model.pt, log.jsonl
    steps: int = 1000
    batch_size: int = 32  # clips per step; one caption each
    lr_backbone: float = 1e-6  # CLIP weights (SPEC); a backbone trained from scratch needs more
    lr_new: float | None = None  # ADT, MLP_v, query tokens; None: 10 x lr_backbone
    weight_decay: float = 0.2  # not applied to norms, biases and other 1-D parameters
    betas: tuple[float, float] = (0.9, 0.98)
    warmup_steps: int = 100  # linear warm-up, then cosine to 0
    grad_clip: float = 5.0
    seed: int = 0
    checkpoint_every: int = 100  # steps between resumable states
    log_every: int = 10
    device: str = "auto"
    amp: bool = True  # bfloat16 autocast on CUDA; ignored on CPU
    threads: int | None = None  # torch CPU threads; None: torch's default
    per_segment: int = 3  # cached frames per segment (odd); training picks one at random
    cache_dir: str = "var/frame-cache"
    workers: int = 2  # parallel ffmpeg decodes when filling the frame cache
    balance_kinds: bool = False  # pick a caption kind (e.g. partial/full) uniformly, then a caption
    # The T2VParser objective; the defaults are the authors', the alternatives the earlier one
    # (kept for the ablation). Test time always scores with the partial-alignment score.
    head: Literal["dcm", "simple"] = "dcm"  # training logits: DCM <q*, x*>, or the test-time score
    nce_reduction: Literal["sum", "mean"] | None = None  # InfoNCE directions; None: sum, meanP mean
    diversity_on: Literal["plus", "raw"] = "plus"  # views after "plus", or raw decoder outputs
    # Share of each batch drawn as caption-nearest neighbours of the other clips (model/hard_negatives.py):
    # clips that differ in one word (motion, order) then meet in a batch. 0: random batches.
    hard_negatives: float = 0.0
    # Share of each batch added again played backwards, with its caption as time reversal rewrites
    # it (model/time_reversal.py): direction and order words then carry loss that frame sets
    # without order cannot pay. 0: off. `reversal_lexicon`: the word pairs (None: the bundled file).
    reverse_pairs: float = 0.0
    reversal_lexicon: str | None = None

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 2:
            raise ConfigError("steps must be >= 1 and batch_size >= 2 (InfoNCE needs negatives)")
        if self.lr_backbone < 0 or (self.lr_new is not None and self.lr_new < 0):
            raise ConfigError("learning rates must be >= 0")
        if self.checkpoint_every < 1 or self.log_every < 1:
            raise ConfigError("checkpoint_every and log_every must be >= 1")
        if not 0.0 <= self.hard_negatives <= 0.5:  # each hard negative needs an anchor in the batch
            raise ConfigError("hard_negatives must be between 0 and 0.5")
        if not 0.0 <= self.reverse_pairs <= 1.0:
            raise ConfigError("reverse_pairs must be between 0 and 1")
        for key, allowed in (
            ("head", ("dcm", "simple")),
            ("nce_reduction", ("sum", "mean", None)),
            ("diversity_on", ("plus", "raw")),
        ):
            if getattr(self, key) not in allowed:
                raise ConfigError(f"{key} must be one of {allowed}, got {getattr(self, key)!r}")

    def reduction_for(self, model_config: T2VConfig) -> Literal["sum", "mean"]:
        """T2VParser sums the two InfoNCE directions (the authors); the meanP baseline averages
        them (CLIP4Clip), so its training is what it was unless a config says otherwise."""
        if self.nce_reduction is not None:
            return self.nce_reduction
        return "mean" if model_config.meanp else "sum"

    def objective_for(self, model_config: T2VConfig) -> dict[str, str | None]:
        """What the loss actually computes for this model (meanP: both heads are the cosine and
        there are no views), so that equal objectives compare equal."""
        if model_config.meanp:
            return {"head": None, "nce_reduction": self.reduction_for(model_config), "diversity_on": None}
        return {
            "head": self.head,
            "nce_reduction": self.reduction_for(model_config),
            "diversity_on": self.diversity_on,
        }

    @property
    def new_lr(self) -> float:
        return self.lr_new if self.lr_new is not None else 10 * self.lr_backbone

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ConfigError(f"unknown training field(s) {sorted(unknown)}; known: {sorted(known)}")
        data = dict(data)
        if "betas" in data:
            data["betas"] = tuple(data["betas"])
        try:
            return cls(**data)
        except TypeError as e:
            raise ConfigError(str(e)) from e

    @classmethod
    def from_file(cls, path: str | Path, **overrides: Any) -> TrainConfig:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"training config {p} not found")
        try:
            data = json.loads(p.read_text())
        except json.JSONDecodeError as e:
            raise ConfigError(f"{p}: invalid JSON: {e}") from e
        data.update({k: v for k, v in overrides.items() if v is not None})
        return cls.from_dict(data)


@dataclass
class TrainData:
    frames: np.ndarray  # (N, T, P, S, S, 3) uint8: P cached candidates per segment
    captions: list[str]
    caption_clip: list[int]  # clip index per caption
    caption_kind: list[str] | None = None  # e.g. "partial"/"full", for balance_kinds


def to_input(frames: np.ndarray | Tensor, pre: PreprocessCfg, device: torch.device | str) -> Tensor:
    """(..., S, S, 3) uint8 -> (..., 3, S, S) float, normalised with the weights' own mean/std."""
    x = torch.as_tensor(frames).to(device).float().div_(255.0).movedim(-1, -3)
    mean = torch.tensor(pre.mean, device=x.device).view(3, 1, 1)
    std = torch.tensor(pre.std, device=x.device).view(3, 1, 1)
    return (x - mean) / std


def load_backbone(model: T2VParser, checkpoint: str | Path) -> None:
    """Copy the CLIP backbone weights of another model checkpoint (any mode) into `model`."""
    ckpt_cfg, state, _ = read_checkpoint(checkpoint)
    if ckpt_cfg.backbone != model.config.backbone:
        raise ConfigError(
            f"{checkpoint} has backbone {ckpt_cfg.backbone!r}, the model has {model.config.backbone!r}"
        )
    prefix = "backbone."
    # early checkpoints also list the text tower under an alias of the CLIP module: skip it
    sub = {
        k[len(prefix) :]: v
        for k, v in state.items()
        if k.startswith(prefix) and not k.startswith(prefix + "text_tower.")
    }
    model.backbone.load_state_dict(sub, strict=True)
    # A stage-1 temporal branch (meanP + temporal learns motion on single scenes) comes along when
    # both models have one of the same shape; otherwise the model keeps its identity-at-init branch.
    temporal = {k[len("visual_temporal.") :]: v for k, v in state.items() if k.startswith("visual_temporal.")}
    if temporal and model.visual_temporal is not None:
        own = model.visual_temporal.state_dict()
        if set(temporal) == set(own) and all(temporal[k].shape == own[k].shape for k in own):
            model.visual_temporal.load_state_dict(temporal, strict=True)


def _no_decay(name: str, p: nn.Parameter) -> bool:
    return p.ndim < 2 or name.endswith(".bias") or "ln_" in name or "norm" in name


def build_optimizer(model: T2VParser, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW with four groups: {backbone, new modules} x {decay, no decay}."""
    names = {id(p): n for n, p in model.named_parameters()}
    backbone, new = model.param_groups()
    groups = []
    for params, lr in ((backbone, cfg.lr_backbone), (new, cfg.new_lr)):
        decay = [p for p in params if not _no_decay(names[id(p)], p)]
        rest = [p for p in params if _no_decay(names[id(p)], p)]
        groups += [
            {"params": decay, "lr": lr, "weight_decay": cfg.weight_decay},
            {"params": rest, "lr": lr, "weight_decay": 0.0},
        ]
    return torch.optim.AdamW([g for g in groups if g["params"]], betas=cfg.betas)


def lr_factor(step: int, warmup: int, total: int) -> float:
    """Linear warm-up over `warmup` steps, then cosine decay to 0 at `total`."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def _batch(
    data: TrainData,
    by_clip: list[list[int]],
    eligible: np.ndarray,
    cfg: TrainConfig,
    step: int,
    neighbours: list[np.ndarray] | None = None,
    reversible: np.ndarray | None = None,
) -> tuple[np.ndarray, list[int], list[int]]:
    """The step's clips (B distinct), one random frame per segment, and one caption per clip;
    then, with `reversible` (per caption: time reversal changes it), the batch positions whose
    clip is added again backwards: frames (B + R, T, S, S, 3), captions (B), reversed (R)."""
    rng = np.random.default_rng([cfg.seed, step])
    b = min(cfg.batch_size, len(eligible))
    clips = rng.choice(eligible, size=b, replace=False)
    if neighbours is not None:  # (drawn after the random clips: hard_negatives 0 keeps old batches)
        clips = add_hard_negatives(clips, neighbours, int(b * cfg.hard_negatives), eligible, rng)
    n_seg, per_seg = data.frames.shape[1], data.frames.shape[2]
    pick = rng.integers(0, per_seg, size=(b, n_seg))  # (B, T)
    frames = data.frames[clips[:, None], np.arange(n_seg)[None, :], pick]  # (B, T, S, S, 3)
    if cfg.balance_kinds and data.caption_kind is not None:
        kinds = data.caption_kind
        caps = []
        for c in clips:
            options = sorted({kinds[q] for q in by_clip[c]})
            kind = options[int(rng.integers(len(options)))]
            caps.append(int(rng.choice([q for q in by_clip[c] if kinds[q] == kind])))
    else:
        caps = [int(rng.choice(by_clip[c])) for c in clips]
    rev: list[int] = []
    if reversible is not None and cfg.reverse_pairs > 0:  # drawn last: other batches unchanged
        candidates = np.array([i for i, q in enumerate(caps) if reversible[q]], dtype=np.int64)
        n_rev = min(len(candidates), round(b * cfg.reverse_pairs))
        rev = sorted(int(i) for i in rng.permutation(candidates)[:n_rev])
        frames = np.concatenate([frames, frames[rev, ::-1]])  # (B + R, T, S, S, 3), time reversed
    return frames, caps, rev


class Trainer:
    """Model, optimiser and schedule are built first (the data's preprocessing comes from the
    model's weights); then `set_data`, optionally `maybe_resume`, then `fit`."""

    def __init__(self, cfg: TrainConfig, model_config: T2VConfig, device: str) -> None:
        if model_config.zeroshot:
            raise ConfigError("a zeroshot config has nothing to train; use a 'trained' or 'meanp' config")
        self.cfg, self.device = cfg, torch.device(device)
        self.out = Path(cfg.out_dir)
        torch.manual_seed(cfg.seed)  # same initial weights for the same seed
        self.model = create_model(model_config, device=self.device).train()
        if cfg.init_backbone:
            load_backbone(self.model, cfg.init_backbone)
        self.optim = build_optimizer(self.model, cfg)
        self.sched = torch.optim.lr_scheduler.LambdaLR(
            self.optim, lambda s: lr_factor(s, cfg.warmup_steps, cfg.steps)
        )
        self.step = 0

    def set_data(self, data: TrainData) -> None:
        if data.frames.shape[1] != self.model.config.frames:
            raise ConfigError(
                f"data has {data.frames.shape[1]} frames per clip, model wants {self.model.config.frames}"
            )
        self.data = data
        self.tokens = self.model.tokenize(data.captions)  # (Q, L), tokenised once
        self.by_clip: list[list[int]] = [[] for _ in range(data.frames.shape[0])]
        for q, c in enumerate(data.caption_clip):
            self.by_clip[c].append(q)
        self.eligible = np.array([c for c, caps in enumerate(self.by_clip) if caps])
        if len(self.eligible) < 2:
            raise ConfigError("training needs at least 2 clips with captions")
        self.neighbours: list[np.ndarray] | None = None
        if self.cfg.hard_negatives > 0:
            self.neighbours = caption_neighbours([[data.captions[q] for q in qs] for qs in self.by_clip])
        self.reversible: np.ndarray | None = None  # (Q,) bool: time reversal rewrites the caption
        self.reversed_tokens: Tensor | None = None  # (Q, L) the rewritten captions, tokenised once
        if self.cfg.reverse_pairs > 0:
            lexicon = ReversalLexicon.from_file(self.cfg.reversal_lexicon)
            backwards = [lexicon.reverse(c) for c in data.captions]
            self.reversible = np.array(
                [b != c for b, c in zip(backwards, data.captions, strict=True)]
            )  # (Q,)
            self.reversed_tokens = self.model.tokenize(backwards)  # (Q, L)

    # -- state

    def save_state(self) -> None:
        state = {
            "step": self.step,
            "model": self.model.state_dict(),
            "optim": self.optim.state_dict(),
            "sched": self.sched.state_dict(),
            "train_config": self.cfg.to_dict(),
            "model_config": self.model.config.to_dict(),
            "torch_rng": torch.get_rng_state(),
        }
        with atomic_path(self.out / STATE_FILE) as tmp:
            torch.save(state, tmp)

    def maybe_resume(self) -> bool:
        path = self.out / STATE_FILE
        if not path.is_file():
            return False
        state = torch.load(path, map_location=self.device, weights_only=False)
        if state["model_config"] != self.model.config.to_dict():
            raise ConfigError(f"{path} was written for another model config; use a fresh out_dir")
        free = ("steps", "device", "threads", *_OBJECTIVE_SWITCHES)  # the objective: compared below
        mine = {k: v for k, v in self.cfg.to_dict().items() if k not in free}
        # fields added since the state was written held their defaults then
        theirs = {
            k: v for k, v in {**TrainConfig().to_dict(), **state["train_config"]}.items() if k not in free
        }
        # a state from before the objective switches was trained with the earlier objective
        old = {
            **_OBJECTIVE_SWITCHES,
            **{k: state["train_config"][k] for k in _OBJECTIVE_SWITCHES if k in state["train_config"]},
        }
        if TrainConfig(**old).objective_for(self.model.config) != self.cfg.objective_for(self.model.config):
            raise ConfigError(f"{path} was written with another training objective; use a fresh out_dir")
        if {k: (list(v) if isinstance(v, tuple) else v) for k, v in mine.items()} != {
            k: (list(v) if isinstance(v, tuple) else v) for k, v in theirs.items()
        }:
            raise ConfigError(f"{path} was written with other training settings; use a fresh out_dir")
        self.model.load_state_dict(state["model"])
        self.optim.load_state_dict(state["optim"])
        self.sched.load_state_dict(state["sched"])
        torch.set_rng_state(state["torch_rng"])
        self.step = int(state["step"])
        return True

    # -- one step

    def train_step(self) -> dict[str, float]:
        frames, caps, rev = _batch(
            self.data, self.by_clip, self.eligible, self.cfg, self.step, self.neighbours, self.reversible
        )
        tokens = self.tokens[caps]  # (B, L)
        if rev and self.reversed_tokens is not None:  # the reversed clips' captions, in frame order
            tokens = torch.cat([tokens, self.reversed_tokens[[caps[i] for i in rev]]])  # (B + R, L)
        pre = self.model.backbone.preprocess
        x = to_input(frames, pre, self.device)  # (B, T, 3, S, S)
        use_amp = self.cfg.amp and self.device.type == "cuda"
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=use_amp):
            video = self.model.encode_videos(x)
            text = self.model.encode_texts(tokens)
            loss, parts = self.objective(text, video)
        self.optim.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        self.optim.step()
        self.sched.step()
        self.step += 1
        parts["grad_norm"] = float(gnorm)
        parts["lr_new"] = float(self.optim.param_groups[-1]["lr"])
        return parts

    def objective(self, text: TextSets, video: VideoSets) -> tuple[Tensor, dict[str, float]]:
        """The training loss of one batch (caption b belongs to clip b) and its parts."""
        cfg, mcfg = self.cfg, self.model.config
        if cfg.head == "dcm" and not mcfg.meanp:  # float32 inside, whatever the autocast
            logits = dcm_logits(text.vectors, video.vectors, text.mask, tau=mcfg.tau)  # (B, B)
        else:  # meanP: one vector a side, both heads are the cosine; keep its training as it was
            logits = self.model.score(text, video.vectors).float()  # (B, B)
        if cfg.diversity_on == "plus":
            text_views, video_views = text.views_plus, video.views_plus  # (B, K, D)
        else:
            text_views, video_views = text.views, video.views  # (B, K, D)
        return t2v_loss(logits, text_views, video_views, mcfg.diversity_weight, cfg.reduction_for(mcfg))

    def fit(self, log: Callable[[dict[str, Any]], None] | None = None) -> Path:
        """Run to cfg.steps (resuming if a state exists); returns the final model checkpoint path."""
        from tqdm import tqdm

        resumed_from = self.step
        bar = tqdm(total=self.cfg.steps, initial=self.step, file=sys.stderr, unit="step", dynamic_ncols=True)
        t0, done_since = time.perf_counter(), 0
        with open(self.out / "log.jsonl", "a") as logf:
            while self.step < self.cfg.steps:
                parts = self.train_step()
                done_since += 1
                rate = done_since * self.cfg.batch_size / max(1e-9, time.perf_counter() - t0)
                bar.update(1)
                bar.set_postfix(loss=f"{parts['loss']:.3f}", clips_s=f"{rate:.1f}")
                if self.step % self.cfg.log_every == 0 or self.step == self.cfg.steps:
                    row = {"step": self.step, **parts, "clips_per_s": rate}
                    logf.write(json.dumps(row) + "\n")
                    logf.flush()
                    if log:
                        log(row)
                if self.step % self.cfg.checkpoint_every == 0 or self.step == self.cfg.steps:
                    self.save_state()
        bar.close()
        extra = {
            "train_config": self.cfg.to_dict(),
            "steps": self.step,
            "resumed_from": resumed_from,
        }
        model_path = self.out / MODEL_FILE
        save_checkpoint(model_path, self.model.config, self.model.state_dict(), extra)
        return model_path


@torch.no_grad()
def score_dataset(model: T2VParser, frames: np.ndarray, captions: list[str], batch_size: int = 64) -> Tensor:
    """(Q, N) partial-alignment scores of every caption against every clip.

    frames: (N, T, S, S, 3) uint8 (the eval frames: each segment's middle).
    """
    model.eval()
    device = next(model.parameters()).device
    pre = model.backbone.preprocess
    videos = []
    for i in range(0, frames.shape[0], batch_size):
        x = to_input(frames[i : i + batch_size], pre, device)  # (b, T, 3, S, S)
        videos.append(model.encode_videos(x).vectors)  # (b, n_v, D)
    video = torch.cat(videos)  # (N, n_v, D)
    rows = []
    for i in range(0, len(captions), batch_size):
        text = model.encode_texts(captions[i : i + batch_size])
        rows.append(model.score(text, video).float().cpu())  # (q, N)
    return torch.cat(rows)
