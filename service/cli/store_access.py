"""Opening a store and its model for a command (`t2v index ...`, `t2v search`, `t2v explain`).

Heavy imports (torch, faiss) happen inside the functions so `t2v --help` stays fast.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING

from service.cli.common import fail

if TYPE_CHECKING:
    from indexer.settings import IndexerSettings
    from indexer.store import Store
    from indexer.store.backends import BackendConfig
    from model import T2VParser

INDEX_HELP = "store directory (default: T2V_INDEX_DIR or var/index)"
CONFIG_HELP = "model config name or JSON path (default: the store's model, else T2V_MODEL__CONFIG)"
CKPT_HELP = "T2VParser checkpoint (default: the store's checkpoint, else T2V_MODEL__CHECKPOINT)"


def indexer_settings(
    window: float | None = None, stride: float | None = None, batch_size: int | None = None
) -> IndexerSettings:
    """T2V_* settings with the command's flags (those given) on top."""
    from indexer.settings import IndexerSettings

    updates = {"window": window, "stride": stride, "batch_size": batch_size}
    return IndexerSettings().model_copy(update={k: v for k, v in updates.items() if v is not None})


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
    """Explicit flags, else the model recorded in the store, else the settings' model."""
    from indexer.settings import resolve_device
    from indexer.store import MANIFEST
    from model import T2VConfig, create_model

    dev = resolve_device(device or settings.model.device)
    cache = settings.model.cache_dir
    if config is None and checkpoint is None and (index_dir / MANIFEST).is_file():
        recorded = json.loads((index_dir / MANIFEST).read_text()).get("model", {})
        ckpt = recorded.get("checkpoint_path")
        if ckpt:
            return create_model(None, checkpoint=ckpt, device=dev, text_only=text_only, cache_dir=cache)
        cfg = T2VConfig.from_dict(recorded.get("config", {}))
        if not cfg.pretrained:
            fail(f"the store at {index_dir} records no checkpoint for its model: pass --checkpoint")
        return create_model(cfg, device=dev, text_only=text_only, cache_dir=cache)
    ckpt_path = checkpoint if checkpoint is not None else settings.model.checkpoint
    cfg_name = config if config is not None else (None if ckpt_path else settings.model.config)
    return create_model(cfg_name, checkpoint=ckpt_path, device=dev, text_only=text_only, cache_dir=cache)


def open_store(
    index_dir: Path,
    model: T2VParser | None = None,
    create: bool = False,
    checkpoint: Path | None = None,
    backend: BackendConfig | None = None,
) -> Store:
    """Open a store, checking that `model` fits it (StoreError otherwise); a new store remembers the
    checkpoint's path so that `t2v search --index DIR` needs no model flags. backend: the vector
    backend (default: the T2V_VECTORS__* settings)."""
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
        return Store.open(index_dir, ident, create=create, backend=backend)
    except (OSError, sqlite3.Error) as e:  # e.g. a full disk: SQLite cannot create its WAL files
        fail(f"cannot open the store {index_dir}: {e} (disk full or not writable?)")
