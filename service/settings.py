"""Service settings: the indexer's settings plus network, security and limit knobs (prefix T2V_)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field, model_validator

from indexer.settings import DEMO_CHECKPOINT, IndexerSettings


class LimitSettings(BaseModel):
    max_query_chars: int = Field(500, ge=1, description="longest accepted query text (422 above)")
    max_top_k: int = Field(100, ge=1, le=100, description="largest top_k a search may ask for (422 above)")
    max_page_size: int = Field(200, ge=1, description="largest page of GET /v1/videos (422 above)")
    max_upload_bytes: int = Field(2 * 1024**3, ge=1, description="largest single uploaded file (413 above)")
    max_items_per_job: int = Field(1000, ge=1, description="most paths/files in one ingest request (413)")
    max_active_jobs: int = Field(4, ge=1, description="unfinished ingest jobs at once (429 above)")
    max_concurrent_searches: int = Field(
        16, ge=1, description="searches in flight at once; more are refused at once (429 + Retry-After)"
    )


class ServiceSettings(IndexerSettings):
    host: str = Field("127.0.0.1", description="bind address")
    port: int = Field(8000, ge=0, le=65535, description="bind port")
    api_keys: list[str] = Field(default_factory=list, description="keys for write endpoints (X-API-Key)")
    allowed_roots: list[Path] = Field(
        default_factory=list, description="server directories that POST /v1/ingest may read from"
    )
    var_dir: Path = Field(Path("var"), description="service state: jobs database, uploads")
    upload_dir: Path | None = Field(None, description="where uploads land; default <var_dir>/uploads")
    limits: LimitSettings = Field(default_factory=lambda: LimitSettings())
    cors_origins: list[str] = Field(default_factory=list, description="allowed CORS origins ('*' for any)")
    workers: int = Field(2, ge=1, le=64, description="threads for model/FAISS/ffmpeg work")
    torch_threads: int = Field(
        1,
        ge=0,
        description="intra-op torch threads per worker (0 = torch default); 1 keeps query latency low "
        "on shared CPUs, where multi-threaded kernels stall on busy cores",
    )
    ingest_threads: int = Field(
        0,
        ge=0,
        description="intra-op torch threads of the ingestion worker (0 = all cores, as `t2v index add`); "
        "searches keep torch_threads",
    )
    thumbnail_width: int = Field(320, ge=16, le=1920, description="thumbnail width in pixels")

    @model_validator(mode="after")
    def _demo_checkpoint_default(self) -> ServiceSettings:
        # a fresh checkout serves the project's own demo model when it has been trained
        if self.model.checkpoint is None and self.model.config == "t2v-tiny" and DEMO_CHECKPOINT.exists():
            self.model.checkpoint = DEMO_CHECKPOINT
        return self

    @property
    def uploads(self) -> Path:
        return self.upload_dir if self.upload_dir is not None else self.var_dir / "uploads"

    @property
    def jobs_db(self) -> Path:
        return self.var_dir / "jobs.sqlite"
