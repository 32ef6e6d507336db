"""Service settings: the indexer's settings plus network, security and limit knobs (prefix T2V_).

`load_settings()` is how commands read them: a bad value becomes one `SettingsInvalid` line that
names the environment variable (the CLI prints it as `error: ...`), not a pydantic report.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Literal, TypeVar

from pydantic import BaseModel, Field, ValidationError
from pydantic_settings import SettingsError

from indexer.settings import IndexerSettings, process_threads

PREFIX = "T2V_"
# Query models this large (text tower + decoder parameters) take the automatic 2 query threads: a
# ViT-B/32 query model (63M: CLIP zero-shot; 97M: t2v-vit-b-32 with its decoder) encodes in 18-20 ms
# on one core, 12-16 ms on two. The demo model's (3.4M) encodes in ~1 ms, and a second thread only
# cost: HTTP p50 4.3 vs 5.5 ms, 259 vs 213 searches/s with 2 clients (docs/BENCHMARKS.md, issue 17).
# No config of this project lies between, so sizes in between were not measured.
TWO_THREAD_MIN_PARAMS = 1 << 24
S = TypeVar("S", bound=IndexerSettings)


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
    query_encoder: Literal["torch", "onnx-fp32", "onnx-int8"] = Field(
        "onnx-fp32",
        description="what encodes queries on a CPU: ONNX Runtime ('onnx-fp32': the torch rankings, "
        "2.2-3.3x faster for ViT-B/32, 2.5x for the demo model; 'onnx-int8': int8 weights, 5.5x, rankings "
        "drift), exported once per model into query_graph_dir (seconds for the demo model; torch is "
        "used if the export fails), or 'torch'",
    )
    query_graph_dir: Path | None = Field(
        None, description="where exported query graphs are cached; default <var_dir>/onnx"
    )
    query_threads: int = Field(
        0,
        ge=0,
        le=64,
        description="threads of one search's query encoding (ONNX Runtime) and exact rerank (0 = auto: "
        "2 for a query model of 16M+ parameters such as ViT-B/32, else 1; 1 on a 1-core machine or with "
        "OMP_NUM_THREADS=1); 2 answer a ViT-B/32 search ~1.25x sooner on an idle machine, 1 serves more "
        "searches/s under concurrent load or beside other work",
    )
    ingest_threads: int = Field(
        0,
        ge=0,
        description="intra-op torch threads of the ingestion worker (0 = all cores, as `t2v index add`); "
        "searches keep torch_threads",
    )
    thumbnail_width: int = Field(320, ge=16, le=1920, description="thumbnail width in pixels")
    header_timeout: float = Field(
        10.0, gt=0, le=3600, description="seconds a client may take to send a request's headers (then closed)"
    )

    @property
    def uploads(self) -> Path:
        return self.upload_dir if self.upload_dir is not None else self.var_dir / "uploads"

    def encoder_threads(self, query_params: int) -> int:
        """query_threads, or the automatic choice for a query model of `query_params` parameters:
        2 where it is large enough to split and this process may use 2 cores (more were not
        measured to pay for one short query), else 1."""
        if self.query_threads:
            return self.query_threads
        return min(2, process_threads()) if query_params >= TWO_THREAD_MIN_PARAMS else 1

    @property
    def query_graphs(self) -> Path:
        return self.query_graph_dir if self.query_graph_dir is not None else self.var_dir / "onnx"

    @property
    def frame_graphs(self) -> Path:
        # the service keeps every exported graph in its state directory (frames-* beside query-*)
        return self.frame_graph_dir if self.frame_graph_dir is not None else self.var_dir / "onnx"

    @property
    def jobs_db(self) -> Path:
        return self.var_dir / "jobs.sqlite"


class SettingsInvalid(Exception):
    """A setting has a value that cannot be used; the message names its environment variable."""


def env_name(loc: Sequence[str | int]) -> str:
    """('limits', 'max_top_k') -> T2V_LIMITS__MAX_TOP_K."""
    return PREFIX + "__".join(str(part).upper() for part in loc)


def describe_error(e: ValidationError | SettingsError) -> str:
    """One line naming the setting (its environment variable) and what is wrong with its value."""
    if isinstance(e, SettingsError):  # a list or group that is not JSON
        m = re.search(r'field "([^"]+)"', str(e))
        name = env_name([m.group(1)]) if m else "a T2V_* variable"
        given = os.environ.get(name, "")
        return (
            f"setting {name}={given!r} is not valid JSON (lists are JSON in the environment, "
            f"e.g. {name}='[\"/media\"]')"
        )
    err = e.errors()[0]
    name = env_name([p for p in err["loc"] if isinstance(p, (str, int))])
    more = f" (and {e.error_count() - 1} more)" if e.error_count() > 1 else ""
    return f"setting {name}={err.get('input')!r} is invalid: {err['msg']}{more}"


def load_settings(cls: type[S], **overrides: object) -> S:
    """Settings from the environment with `overrides` (CLI flags) on top; SettingsInvalid when a
    value is unusable."""
    try:
        if not overrides:
            return cls()
        data = cls().model_dump()
        for key, value in overrides.items():
            if isinstance(value, dict):
                data[key] = {**data.get(key, {}), **value}
            else:
                data[key] = value
        return cls.model_validate(data)
    except ValidationError as e:
        loc = e.errors()[0]["loc"]
        if loc and loc[0] in overrides:  # the value came from a command-line flag: name the flag
            name = str(loc[-1] if loc[0] == "model" else loc[0])
            flag = {"allowed_roots": "--allowed-root", "api_keys": "--api-key"}.get(
                name, "--" + name.replace("_", "-")
            )
            err = e.errors()[0]
            raise SettingsInvalid(f"{flag} {err.get('input')!r} is invalid: {err['msg']}") from None
        raise SettingsInvalid(describe_error(e)) from None
    except SettingsError as e:
        raise SettingsInvalid(describe_error(e)) from None
