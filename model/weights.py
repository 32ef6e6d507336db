"""Where CLIP weights come from: an open_clip tag (cached) or a local file. Never hangs offline."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import open_clip

from .config import BACKBONE_DIR

_registered = False


class WeightsNotFoundError(FileNotFoundError):
    """Pretrained weights are neither on disk nor downloadable; the message says how to fix it."""


def register_backbones() -> None:
    """Make our own backbone configs (backbones/*.json) known to open_clip, once."""
    global _registered  # a registration flag, not model state
    if not _registered:
        open_clip.add_model_config(BACKBONE_DIR)
        _registered = True


def _looks_like_path(ref: str) -> bool:
    return os.sep in ref or ref.startswith(".") or ref.endswith((".pt", ".pth", ".bin", ".safetensors"))


def _network_reachable(host: str = "huggingface.co", port: int = 443, timeout: float = 2.0) -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0") or os.environ.get("T2V_OFFLINE"):
        return False
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _cached_file(cfg: dict, cache_dir: str | None) -> str | None:
    """The already-downloaded weights file for an open_clip pretrained cfg, if any."""
    hub = cfg.get("hf_hub", "")
    if hub:
        from huggingface_hub import try_to_load_from_cache

        model_id, filename = os.path.split(hub)
        names = [filename or "open_clip_pytorch_model.bin"]
        names.insert(0, names[0].replace(".bin", ".safetensors").replace(".pth", ".safetensors"))
        names.insert(0, "open_clip_model.safetensors")
        for name in names:
            found = try_to_load_from_cache(model_id, name, cache_dir=cache_dir)
            if isinstance(found, str) and Path(found).exists():
                return found
    url = cfg.get("url", "")
    if url:
        root = Path(cache_dir or os.path.expanduser("~/.cache/clip"))
        candidate = root / os.path.basename(url)
        if candidate.exists():
            return str(candidate)
    return None


def resolve_pretrained(backbone: str, pretrained: str, cache_dir: str | None = None) -> str:
    """A local path to the weights named by (backbone, pretrained); downloads only when online."""
    register_backbones()
    if Path(pretrained).is_file():
        return pretrained
    if _looks_like_path(pretrained):
        raise WeightsNotFoundError(
            f"weights file {pretrained!r} does not exist. Point the config's 'pretrained' "
            "(or T2V_MODEL__PRETRAINED) at an existing open_clip checkpoint file."
        )
    cfg = open_clip.get_pretrained_cfg(backbone, pretrained)
    if not cfg:
        tags = open_clip.list_pretrained_tags_by_model(backbone)
        raise WeightsNotFoundError(
            f"open_clip has no pretrained tag {pretrained!r} for {backbone!r}; known tags: {tags or 'none'}"
        )
    cached = _cached_file(cfg, cache_dir)
    if cached:
        return cached
    if not _network_reachable():
        raise WeightsNotFoundError(
            f"CLIP weights {backbone}/{pretrained} are not in the local cache and the network is "
            "unreachable (or HF_HUB_OFFLINE=1). Provide them by either: (1) running once on a host "
            "with network access so open_clip caches them (same HF_HOME / cache dir), or (2) "
            "downloading the open_clip checkpoint file yourself and setting the config's "
            "'pretrained' to its path, or (3) using a T2VParser checkpoint file (T2V_MODEL__CHECKPOINT)."
        )
    path = open_clip.download_pretrained(cfg, cache_dir=cache_dir)
    if not path:
        raise WeightsNotFoundError(f"download of {backbone}/{pretrained} failed")
    return str(path)
