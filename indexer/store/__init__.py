"""The store: one documented directory (manifest, SQLite metadata, float16 matrix segments, FAISS).

`Store` is the facade; the parts it composes live beside it. Import the public names from here.
"""

from indexer.store.facade import Store
from indexer.store.identity import identity_differences, searched_views, store_identity
from indexer.store.layout import MANIFEST, finish_swap, swap_in
from indexer.store.records import (
    ClipRecord,
    ClipSpan,
    ModelMismatchError,
    NewVideo,
    StoreBusyError,
    StoreError,
    StoreStats,
    VerifyReport,
    VideoNotInStoreError,
    VideoRecord,
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
    "searched_views",
    "store_identity",
    "swap_in",
]
