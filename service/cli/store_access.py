"""Opening a store and its model for a command (`t2v index ...`, `t2v search`, `t2v explain`).

Heavy imports (torch, faiss) happen inside the functions so `t2v --help` stays fast.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING, Any

from service.cli.common import fail

if TYPE_CHECKING:
    from indexer.settings import IndexerSettings
    from indexer.store import Store
    from indexer.store.backends import BackendConfig
    from model import T2VParser

INDEX_HELP = "store directory (default: T2V_INDEX_DIR or var/index)"
CONFIG_HELP = "model config name or JSON path (default: the store's model, else T2V_MODEL__CONFIG)"
CKPT_HELP = "T2VParser checkpoint (default: the store's, else T2V_MODEL__CHECKPOINT, else the demo model)"


def indexer_settings(
    window: float | None = None, stride: float | None = None, batch_size: int | None = None
) -> IndexerSettings:
    """T2V_* settings with the command's flags (those given) on top."""
    from indexer.settings import IndexerSettings
    from service.settings import load_settings

    updates = {"window": window, "stride": stride, "batch_size": batch_size}
    return load_settings(IndexerSettings).model_copy(
        update={k: v for k, v in updates.items() if v is not None}
    )


def index_dir_of(index: Path | None, settings: IndexerSettings) -> Path:
    return index if index is not None else settings.index_dir


def require_store(index_dir: Path) -> None:
    """Fail before loading a model when there is no store to use."""
    from indexer.store import MANIFEST

    if not (index_dir / MANIFEST).is_file():
        fail(f"{index_dir} is not a video store; build one with `t2v index add`")


def load_model(
    index_dir: Path,
    config: str | None,
    checkpoint: Path | None,
    device: str | None,
    settings: IndexerSettings,
    text_only: bool = False,
) -> T2VParser:
    """The model for a command on the store at `index_dir` (see `load_model_and_path`)."""
    return load_model_and_path(index_dir, config, checkpoint, device, settings, text_only)[0]


def load_model_and_path(
    index_dir: Path,
    config: str | None,
    checkpoint: Path | None,
    device: str | None,
    settings: IndexerSettings,
    text_only: bool = False,
) -> tuple[T2VParser, Path | None]:
    """(model, the checkpoint file it came from). Explicit flags win; else an existing store's own
    model (`store_checkpoint`); else the settings' model (by default the demo checkpoint)."""
    from indexer.settings import resolve_device
    from indexer.store import MANIFEST
    from model import T2VConfig, create_model

    dev = resolve_device(device or settings.model.device)
    cache = settings.model.cache_dir
    if config is None and checkpoint is None and (index_dir / MANIFEST).is_file():
        recorded = json.loads((index_dir / MANIFEST).read_text()).get("model", {})
        ckpt = store_checkpoint(index_dir, recorded, settings)
        if ckpt is not None:
            model = create_model(None, checkpoint=ckpt, device=dev, text_only=text_only, cache_dir=cache)
            return model, ckpt
        cfg = T2VConfig.from_dict(recorded.get("config", {}))
        if not cfg.pretrained:
            fail(f"the store at {index_dir} records no weights for its model: pass --checkpoint")
        return create_model(cfg, device=dev, text_only=text_only, cache_dir=cache), None
    # a --config flag alone means that config's own weights, not the configured checkpoint
    ckpt_path = (
        checkpoint if checkpoint is not None else settings.model.checkpoint if config is None else None
    )
    cfg_name = config if config is not None else (None if ckpt_path else settings.model.config)
    model = create_model(cfg_name, checkpoint=ckpt_path, device=dev, text_only=text_only, cache_dir=cache)
    return model, ckpt_path


def store_model(index_dir: Path, settings: IndexerSettings) -> Path | None:
    """The checkpoint of the store at `index_dir` (see `store_checkpoint`); None when there is no
    store yet or its model has no checkpoint."""
    from indexer.store import MANIFEST

    if not (index_dir / MANIFEST).is_file():
        return None
    recorded = json.loads((index_dir / MANIFEST).read_text()).get("model", {})
    return store_checkpoint(index_dir, recorded, settings)


def store_checkpoint(index_dir: Path, recorded: dict[str, Any], settings: IndexerSettings) -> Path | None:
    """The checkpoint a store was built with: the path it records, else the configured checkpoint or
    the demo model when its content hash is the one the store records (stores made before paths
    were recorded). None when the store's model has no checkpoint (pretrained weights)."""
    from indexer.settings import DEMO_CHECKPOINT
    from model import read_checkpoint

    want = recorded.get("checkpoint_sha256")
    if not want:
        return None
    path = recorded.get("checkpoint_path")
    if path and Path(path).is_file():
        return Path(path)  # create_model verifies its hash; Store.open its identity
    for candidate in dict.fromkeys(p for p in (settings.model.checkpoint, DEMO_CHECKPOINT) if p is not None):
        if Path(candidate).is_file() and read_checkpoint(candidate, verify=False)[2] == want:
            return Path(candidate)
    where = f"recorded at {path}, which no longer exists" if path else f"sha256 {want[:12]}..."
    fail(
        f"the store at {index_dir} was built with a checkpoint ({where}) that is not here: "
        "pass it with --checkpoint or T2V_MODEL__CHECKPOINT"
    )


def open_store(
    index_dir: Path,
    model: T2VParser | None = None,
    create: bool = False,
    checkpoint: Path | None = None,
    backend: BackendConfig | None = None,
    check: bool = True,
) -> Store:
    """Open a store, checking that `model` fits it (StoreError otherwise); a new store remembers the
    checkpoint's path so that `t2v search --index DIR` needs no model flags. backend: the vector
    backend (default: the T2V_VECTORS__* settings). check: False skips the integrity check on open
    and its repairs (`t2v index verify` reports instead)."""
    from indexer.store import Store, store_identity

    ident = None
    if model is not None:
        ident = store_identity(model)
        if ident["weights"].startswith("random:"):
            fail(
                f"model {model.config.name or model.config.backbone} has no trained or pretrained "
                "weights: pass --checkpoint (a T2VParser .pt file) or a config with pretrained weights"
            )
        if checkpoint is not None:
            ident["checkpoint_path"] = str(Path(checkpoint).resolve())
    try:
        backend = backend or indexer_settings().vectors.config()
        return Store.open(index_dir, ident, create=create, backend=backend, check=check)
    except (OSError, sqlite3.Error) as e:  # e.g. a full disk: SQLite cannot create its WAL files
        fail(f"cannot open the store {index_dir}: {e} (disk full or not writable?)")
