"""Settings shared by the indexer CLI and the service (pydantic-settings, prefix T2V_, nested with __)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Literal, get_args

from pydantic import BaseModel, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from indexer.text.settings import TextSettings

if TYPE_CHECKING:
    from indexer.store.backends import BackendConfig

DEMO_CHECKPOINT = Path(__file__).resolve().parent.parent / "demo" / "t2v-demo.pt"
FrameEncoder = Literal["torch", "onnx-fp32"]
FRAME_ENCODERS: tuple[str, ...] = get_args(FrameEncoder)


class ModelSettings(BaseModel):
    config: str = Field("t2v-tiny", description="model config name (model/configs) or JSON path")
    checkpoint: Path | None = Field(
        None,
        description="T2VParser checkpoint (overrides config weights); default: the demo model "
        "(demo/t2v-demo.pt) while the config is t2v-tiny",
    )
    device: str = Field("auto", description="'auto' (cuda when present), 'cpu' or 'cuda[:N]'")
    cache_dir: str | None = Field(None, description="open_clip / Hugging Face weights cache directory")


class VectorSettings(BaseModel):
    """Where stage 1 of search runs (indexer/store/backends, docs/SCALING.md)."""

    backend: Literal["faiss", "qdrant"] = Field(
        "faiss", description="'faiss': the store's own index; 'qdrant': a Qdrant engine ('.[qdrant]' extra)"
    )
    qdrant_url: str | None = Field(None, description="Qdrant server/cluster URL; unset: in-process engine")
    qdrant_path: Path | None = Field(None, description="in-process Qdrant directory (default <index>/qdrant)")
    qdrant_api_key: str | None = Field(None, description="API key sent to the Qdrant server")
    collection: str = Field("t2v_clips", min_length=1, description="Qdrant collection of this store")
    shards: int = Field(1, ge=1, description="shard_number of a new server collection")
    replicas: int = Field(1, ge=1, description="replication_factor of a new server collection")
    prefetch: int = Field(512, ge=1, description="clips the pooled query vector proposes (Qdrant)")
    row_prefetch: int = Field(32, ge=0, description="clips each query row proposes (Qdrant; 0: none)")
    rescored: int = Field(384, ge=1, description="clips kept after Qdrant's MaxSim, then reranked exactly")
    hnsw_ef: int = Field(64, ge=1, description="HNSW beam width of Qdrant's prefetch searches")
    write: bool = Field(True, description="false on read-only replicas: never write the Qdrant collection")

    def config(self) -> BackendConfig:
        """The store's typed backend configuration."""
        from indexer.store.backends import BackendConfig

        return BackendConfig(
            kind=self.backend,
            qdrant_url=self.qdrant_url,
            qdrant_path=self.qdrant_path,
            qdrant_api_key=self.qdrant_api_key,
            collection=self.collection,
            shards=self.shards,
            replicas=self.replicas,
            prefetch=self.prefetch,
            row_prefetch=self.row_prefetch,
            rescored=self.rescored,
            hnsw_ef=self.hnsw_ef,
            write=self.write,
        )


class IndexerSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="T2V_", env_nested_delimiter="__", protected_namespaces=(), extra="ignore"
    )

    model: ModelSettings = Field(default_factory=lambda: ModelSettings())
    index_dir: Path = Field(Path("var/index"), description="store directory")
    batch_size: int = Field(32, ge=1, description="clips per encoder batch")
    window: float = Field(10.0, gt=0, description="clip window length in seconds for long videos")
    stride: float = Field(5.0, gt=0, description="step between clip windows in seconds")
    text: TextSettings = Field(
        default_factory=lambda: TextSettings(), description="text tracks read at ingestion (T2V_TEXT__*)"
    )
    vectors: VectorSettings = Field(default_factory=lambda: VectorSettings())
    frame_encoder: FrameEncoder = Field(
        "torch",
        description="what runs the image tower at ingestion on a CPU: 'torch', or 'onnx-fp32' (ONNX "
        "Runtime: 1.7-2.5x faster for ViT-B/32 on an EPYC CPU, vectors within 4e-6 of torch's but not "
        "bit-identical), exported once per model into frame_graph_dir; torch is used if the export fails",
    )
    frame_graph_dir: Path | None = Field(
        None,
        description="where exported image-tower graphs are cached; default <index_dir>/../onnx "
        "(the service: <var_dir>/onnx)",
    )

    @property
    def frame_graphs(self) -> Path:
        return self.frame_graph_dir if self.frame_graph_dir is not None else self.index_dir.parent / "onnx"

    @model_validator(mode="after")
    def _demo_checkpoint_default(self) -> IndexerSettings:
        # one default model for every command and the service: the project's demo checkpoint,
        # unless the user configured a config or a checkpoint of their own
        if self.model.checkpoint is None and self.model.config == "t2v-tiny" and DEMO_CHECKPOINT.exists():
            self.model.checkpoint = DEMO_CHECKPOINT
        return self


def process_threads(default: int | None = None) -> int:
    """Intra-op torch threads for this process: OMP_NUM_THREADS when it is a positive integer (the
    user's, or Ray's per actor), else `default` (None: every CPU this process may run on, which is
    what `t2v index add` runs with)."""
    env = os.environ.get("OMP_NUM_THREADS", "")
    if env.isdigit() and int(env) > 0:
        return int(env)
    return default if default is not None else len(os.sched_getaffinity(0))


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device
