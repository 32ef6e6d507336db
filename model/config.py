"""Model architectures as data: `configs/*.json` scanned into a registry, typed at the boundary."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

CONFIG_DIR = Path(__file__).parent / "configs"
BACKBONE_DIR = Path(__file__).parent / "backbones"


class ConfigError(ValueError):
    """A model config is unknown or malformed."""


@dataclass(frozen=True)
class T2VConfig:
    backbone: str  # open_clip model name (ours in backbones/*.json are registered with open_clip)
    pretrained: str | None = None  # open_clip pretrained tag, a local weights file, or None (random init)
    # zeroshot: plain CLIP, K=0, EOT vs frames; meanp: CLIP4Clip meanP baseline, EOT vs mean of frames
    mode: Literal["trained", "zeroshot", "meanp"] = "trained"
    frames: int = 12  # T: frames sampled uniformly per clip
    num_tokens: int = 8  # K: decomposition (query) tokens shared by text and video
    decoder_layers: int = 8  # L: ADT decoder depth, per modality
    decoder_heads: int = 4  # attention heads in the ADT decoder
    tau: float = 100.0  # soft-max temperature of the partial-alignment score
    plus: bool = True  # add the normalised global vector to each view ("plus" step)
    pre_norm: bool = False  # LayerNorm before each decoder sub-layer (reference has none)
    diversity_weight: float = 0.08  # weight of the view-diversity regulariser in the loss
    name: str = ""  # registry name (file stem); informational
    # Temporal branch over the frame sequence (0 = off: frames are an unordered set, as before).
    temporal_layers: int = 0
    temporal_heads: int = 8  # head width 64 at D=512, as in CLIP's own attention
    # Frames each frame attends to on either side (0 = all): a local window keeps each stored
    # frame row about its own scene (what a one-scene query matches) while still seeing motion.
    temporal_window: int = 0
    # Which rows see the temporal branch: "all" (stored frame rows, decoder memory and global
    # vector) or "views" (only the decoder memory and the global vector behind the K views; the
    # stored frame rows stay the image tower's, each about its own moment). "views" is this
    # project's extension: one-scene queries match frame rows, whole-video queries the views.
    temporal_rows: Literal["all", "views"] = "all"

    def __post_init__(self) -> None:
        if self.mode not in ("trained", "zeroshot", "meanp"):
            raise ConfigError(f"mode must be 'trained', 'zeroshot' or 'meanp', got {self.mode!r}")
        if self.frames < 1:
            raise ConfigError("frames must be >= 1")
        if self.mode == "trained" and (self.num_tokens < 1 or self.decoder_layers < 1):
            raise ConfigError("a trained config needs num_tokens >= 1 and decoder_layers >= 1")
        if self.mode in ("zeroshot", "meanp") and self.num_tokens != 0:
            raise ConfigError(f"a {self.mode} config has num_tokens = 0")
        if self.tau <= 0:
            raise ConfigError("tau must be > 0")
        if self.temporal_layers < 0 or self.temporal_heads < 1 or self.temporal_window < 0:
            raise ConfigError("temporal_layers and temporal_window must be >= 0, temporal_heads >= 1")
        if self.temporal_rows not in ("all", "views"):
            raise ConfigError(f"temporal_rows must be 'all' or 'views', got {self.temporal_rows!r}")
        if self.zeroshot and self.temporal_layers > 0:
            raise ConfigError("a zeroshot config has no trained weights, so no temporal branch")

    @property
    def zeroshot(self) -> bool:
        return self.mode == "zeroshot"

    @property
    def meanp(self) -> bool:
        return self.mode == "meanp"

    def to_dict(self, full: bool = False) -> dict[str, Any]:
        """The config as JSON data. Fields added after the first release are left out while they
        hold their default, so the configs (and store/model identities) of existing checkpoints
        and stores stay byte-for-byte what they were; `full=True` lists every field."""
        data = dataclasses.asdict(self)
        if not full:
            for key, default in _OMIT_WHEN_DEFAULT.items():
                if data[key] == default:
                    del data[key]
            if self.temporal_layers == 0:  # the branch is off: its head count means nothing
                data.pop("temporal_heads", None)
                data.pop("temporal_window", None)
                data.pop("temporal_rows", None)
        return data

    def replace(self, **changes: Any) -> T2VConfig:
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_dict(cls, data: dict[str, Any], name: str = "") -> T2VConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ConfigError(f"unknown config field(s) {sorted(unknown)}; known: {sorted(known)}")
        if "backbone" not in data:
            raise ConfigError("config needs a 'backbone' (an open_clip model name)")
        merged = {**data}
        merged.setdefault("name", name)
        try:
            return cls(**merged)
        except TypeError as e:  # wrong value types
            raise ConfigError(str(e)) from e


_OMIT_WHEN_DEFAULT: dict[str, Any] = {
    f.name: f.default
    for f in dataclasses.fields(T2VConfig)
    if f.name in ("temporal_layers", "temporal_heads", "temporal_window", "temporal_rows")
}


def list_models() -> list[str]:
    """Names of the registered T2VParser configs (file stems in model/configs)."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.json"))


def get_config(name_or_path: str | Path) -> T2VConfig:
    """A config by registry name or by path to a JSON file."""
    path = Path(name_or_path)
    if not path.suffix == ".json" or not path.exists():
        candidate = CONFIG_DIR / f"{name_or_path}.json"
        if not candidate.exists():
            if path.suffix == ".json":
                raise ConfigError(f"config file not found: {path}")
            raise ConfigError(f"unknown model config {name_or_path!r}; known: {', '.join(list_models())}")
        path = candidate
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}: invalid JSON: {e}") from e
    return T2VConfig.from_dict(data, name=path.stem)
