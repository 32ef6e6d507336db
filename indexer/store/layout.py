"""The store directory (docs/STORE.md): file names, the manifest, creation, crash leftovers, and
the two-rename swap that `t2v index reindex` uses to replace a whole store."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

from indexer.store import vector_index as vi
from indexer.store.metadata import Metadata
from indexer.store.records import StoreError
from model.fileio import atomic_path

FORMAT = "t2v-store"
VERSION = 1
MANIFEST = "manifest.json"
DB = "meta.sqlite"
LOCK = "write.lock"
MATRIX_DIR = "matrices"


def index_path(root: Path, generation: int) -> Path:
    """The FAISS file of one generation (compaction starts the next)."""
    return root / f"faiss-g{generation}.index"


def segment_name(generation: int, number: int) -> str:
    return f"seg-g{generation}-{number:06d}.f16"


def file_mode(root: Path) -> int:
    """Permissions for the files the store replaces atomically: those SQLite gave meta.sqlite
    (umask-derived), not mkstemp's private 0o600, so a reader running as another user (the
    service) can still open the manifest and the index."""
    return (root / DB).stat().st_mode & 0o777


def read_manifest(root: Path) -> dict[str, Any]:
    try:
        manifest = json.loads((root / MANIFEST).read_text())
    except (OSError, ValueError) as e:
        raise StoreError(f"{root / MANIFEST} cannot be read: {e}") from e
    if manifest.get("format") != FORMAT:
        raise StoreError(f"{root} is not a video store (format {manifest.get('format')!r})")
    if manifest.get("version") != VERSION:
        raise StoreError(f"{root}: store format version {manifest.get('version')} is not supported")
    return manifest


def write_manifest(root: Path, manifest: dict[str, Any]) -> None:
    with atomic_path(root / MANIFEST, mode=file_mode(root)) as tmp:
        tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def create(root: Path, identity: dict[str, Any], index_type: str | None) -> None:
    """A new empty store at `root` (refusing a directory that holds anything else)."""
    if root.exists() and not root.is_dir():
        raise StoreError(f"{root} exists and is not a directory")
    if root.is_dir() and any(p.name not in (DB, LOCK, MATRIX_DIR) for p in root.iterdir()):
        # a half-created store has only these; anything else is someone's directory
        if not (root / DB).exists():
            raise StoreError(f"{root} is not empty and is not a video store")
    root.mkdir(parents=True, exist_ok=True)
    (root / MATRIX_DIR).mkdir(exist_ok=True)
    Metadata.initialise(root / DB)
    spec = vi.choose_spec(0, int(identity["vectors_per_clip"]), int(identity["dim"]), index_type)
    now = time.time()
    manifest = {
        "format": FORMAT,
        "version": VERSION,
        "model": identity,
        "dim": int(identity["dim"]),
        "vectors_per_clip": int(identity["vectors_per_clip"]),
        "dtype": "float16",
        "index": spec.to_dict(),
        "index_pinned": index_type is not None,
        "counts": {"videos": 0, "clips": 0, "vectors": 0, "deleted_clips": 0},
        "generation": 0,
        "created_at": now,
        "updated_at": now,
    }
    # the manifest is written last: its presence means the store exists
    write_manifest(root, manifest)


def open_manifest(
    root: Path, identity: dict[str, Any] | None, create_missing: bool, index_type: str | None
) -> dict[str, Any]:
    """The manifest of the store at `root`, creating the store first when asked to."""
    finish_swap(root)
    if not (root / MANIFEST).is_file():
        if not create_missing:
            raise StoreError(f"{root} is not a video store (no {MANIFEST}); create it with `t2v index add`")
        if identity is None:
            raise StoreError("creating a store needs the model identity")
        create(root, identity, index_type)
    return read_manifest(root)


def remove_leftovers(root: Path, generation: int) -> None:
    """Under the write lock: other generations' index files and half-written temporary files."""
    current = index_path(root, generation).name
    for p in root.iterdir():
        stale_index = p.name.startswith("faiss-g") and p.name != current
        if stale_index or (p.name.startswith(".") and p.name.endswith(".tmp")):
            p.unlink()


def _swap_paths(root: Path) -> tuple[Path, Path]:
    return root.with_name(root.name + ".reindex-new"), root.with_name(root.name + ".reindex-old")


def swap_in(root: Path, new: Path) -> None:
    """Replace the store at `root` by the complete (closed) store at `new` (used by reindex).

    Two renames; a crash between them leaves `root` missing and `<root>.reindex-old` present,
    which `finish_swap` (run by every open) completes."""
    staged, retired = _swap_paths(root)
    if new != staged:
        new.rename(staged)
    if retired.exists():
        shutil.rmtree(retired)
    root.rename(retired)
    staged.rename(root)
    shutil.rmtree(retired)


def finish_swap(root: Path) -> None:
    """Complete a reindex swap interrupted between its two renames (the new store is complete)."""
    staged, retired = _swap_paths(root)
    if not root.exists() and retired.exists() and (staged / MANIFEST).is_file():
        staged.rename(root)
    if root.exists() and retired.exists():
        shutil.rmtree(retired)
