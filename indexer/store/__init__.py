"""The store: one documented directory (manifest, SQLite metadata, float16 matrix segments, FAISS).

`Store` is the facade; the parts it composes live beside it. Import the public names from here.
"""

from indexer.store.facade import (
    MANIFEST,
    ClipRecord,
    ClipSpan,
    ModelMismatchError,
    NewVideo,
    Store,
    StoreBusyError,
    StoreError,
    StoreStats,
    VerifyReport,
    VideoNotInStoreError,
    VideoRecord,
    finish_swap,
    identity_differences,
    store_identity,
    swap_in,
)

__all__ = [
    "MANIFEST",
    "ClipRecord",
    "ClipSpan",
    "ModelMismatchError",
    "NewVideo",
    "Store",
    "StoreBusyError",
    "StoreError",
    "StoreStats",
    "VerifyReport",
    "VideoNotInStoreError",
    "VideoRecord",
    "finish_swap",
    "identity_differences",
    "store_identity",
    "swap_in",
]
