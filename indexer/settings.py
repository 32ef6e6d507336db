"""Settings shared by the indexer CLI and the service (pydantic-settings, prefix T2V_, nested with __)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

DEMO_CHECKPOINT = Path(__file__).resolve().parent.parent / "demo" / "t2v-demo.pt"


class ModelSettings(BaseModel):
    config: str = Field("t2v-tiny", description="model config name (model/configs) or JSON path")
    checkpoint: Path | None = Field(
        None,
        description="T2VParser checkpoint (overrides config weights); service default: the demo model",
    )
    device: str = Field("auto", description="'auto' (cuda when present), 'cpu' or 'cuda[:N]'")
    cache_dir: str | None = Field(None, description="open_clip / Hugging Face weights cache directory")


class IndexerSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="T2V_", env_nested_delimiter="__", protected_namespaces=(), extra="ignore"
    )

    model: ModelSettings = Field(default_factory=lambda: ModelSettings())
    index_dir: Path = Field(Path("var/index"), description="store directory")
    batch_size: int = Field(32, ge=1, description="clips per encoder batch")
    window: float = Field(10.0, gt=0, description="clip window length in seconds for long videos")
    stride: float = Field(5.0, gt=0, description="step between clip windows in seconds")


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device
