"""Vector backends of the store: where stage 1 of search finds candidate clips.

`faiss` (default): the store's own FAISS index file, as before. `qdrant`: a Qdrant engine, in
this process (qdrant-edge-py) or a server/cluster (qdrant-client). Chosen by `BackendConfig`
(the `T2V_VECTORS__*` settings); see docs/SCALING.md.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from indexer.store.backends.base import BACKENDS, BackendConfig, BackendKind, VectorBackend


def create_backend(
    config: BackendConfig, root: Path, manifest: dict[str, Any], lock: threading.RLock
) -> VectorBackend:
    """The backend `config` names, for the store at `root` (nothing is opened until it loads)."""
    if config.kind == "qdrant":
        from indexer.store.backends.qdrant import QdrantBackend

        return QdrantBackend(root, manifest, lock, config)
    if config.kind != "faiss":
        raise ValueError(f"unknown vector backend {config.kind!r} (choose from {', '.join(BACKENDS)})")
    from indexer.store.backends.faiss_local import FaissBackend

    return FaissBackend(root, manifest, lock)


__all__ = ["BACKENDS", "BackendConfig", "BackendKind", "VectorBackend", "create_backend"]
