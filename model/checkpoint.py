"""Checkpoints carry their config and a content hash; loading one reproduces outputs bit for bit."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import torch

from .config import T2VConfig
from .fileio import atomic_path

FORMAT = "t2v-parser-checkpoint"
VERSION = 1
# Fields that only matter for building/training, not for what the weights compute.
_NON_ARCH_FIELDS = {"name", "pretrained", "diversity_weight"}


class CheckpointError(ValueError):
    """A checkpoint is missing, corrupt, or does not fit the requested config."""


def state_hash(state_dict: dict[str, torch.Tensor]) -> str:
    """sha256 over parameter names, dtypes, shapes and bytes, in name order."""
    h = hashlib.sha256()
    for key in sorted(state_dict):
        t = state_dict[key].detach().cpu().contiguous()
        h.update(key.encode())
        h.update(str(t.dtype).encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def _clone_shared(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """CPU copies that keep aliasing: a module registered under two names is stored once."""
    copies: dict[tuple, torch.Tensor] = {}
    out = {}
    for k, v in state_dict.items():
        t = v.detach().cpu()
        alias = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), t.stride(), t.dtype)
        if alias not in copies:
            copies[alias] = t.clone()
        out[k] = copies[alias]
    return out


def save_checkpoint(
    path: str | Path,
    config: T2VConfig,
    state_dict: dict[str, torch.Tensor],
    extra: dict[str, Any] | None = None,
) -> str:
    """Write atomically (temp file + rename); returns the content hash."""
    path = Path(path)
    state = _clone_shared(state_dict)
    digest = state_hash(state)
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "config": config.to_dict(),
        "state_dict": state,
        "sha256": digest,
        "extra": extra or {},
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return digest


def read_checkpoint(path: str | Path, verify: bool = True) -> tuple[T2VConfig, dict[str, torch.Tensor], str]:
    """(config, state_dict, sha256) of a checkpoint file; verifies the content hash."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"checkpoint {path} not found. Train one with `t2v train`, or point T2V_MODEL__CHECKPOINT "
            "at an existing .pt file (the README says where the demo model lives)."
        )
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for a bad file
        raise CheckpointError(f"checkpoint {path} cannot be read: {e}") from e
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a T2VParser checkpoint (format {FORMAT!r} expected)")
    if payload.get("version") != VERSION:
        raise CheckpointError(f"{path}: checkpoint version {payload.get('version')} unsupported")
    config = T2VConfig.from_dict(payload["config"])
    state = payload["state_dict"]
    digest = str(payload["sha256"])
    if verify and state_hash(state) != digest:
        raise CheckpointError(f"checkpoint {path} is corrupt: content hash does not match")
    return config, state, digest


def check_compatible(expected: T2VConfig, found: T2VConfig, source: str) -> None:
    """Raise CheckpointError naming every architecture field that differs."""
    a, b = expected.to_dict(full=True), found.to_dict(full=True)  # same keys on both sides
    diffs = [
        f"{k}: config has {a[k]!r}, checkpoint has {b[k]!r}"
        for k in a
        if k not in _NON_ARCH_FIELDS and a[k] != b[k]
    ]
    if diffs:
        raise CheckpointError(
            f"checkpoint {source} does not match config {expected.name or ''}: " + "; ".join(diffs)
        )
