"""CLIP backbone over open_clip: per-frame image vectors and per-token text vectors."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import open_clip
import torch
from torch import Tensor, nn

from .weights import register_backbones, resolve_pretrained


class _DropRandomInitWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "initialized randomly" not in record.getMessage()


@contextmanager
def _quiet_random_init() -> Iterator[None]:
    """open_clip warns on the root logger when it builds without weights; we load them after."""
    flt = _DropRandomInitWarning()
    root = logging.getLogger()
    root.addFilter(flt)
    try:
        yield
    finally:
        root.removeFilter(flt)


@dataclass(frozen=True)
class PreprocessCfg:
    """Image preprocessing of the chosen weights, taken from open_clip (never hard-coded)."""

    size: int  # square input side in pixels
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str  # 'bicubic' or 'bilinear'
    resize_mode: str  # 'shortest' (resize + centre crop) or 'squash'

    @classmethod
    def from_open_clip(cls, clip: nn.Module) -> PreprocessCfg:
        cfg = open_clip.get_model_preprocess_cfg(clip)
        size = cfg["size"]
        side = int(size[0] if isinstance(size, (tuple, list)) else size)
        return cls(
            size=side,
            mean=tuple(float(x) for x in cfg["mean"]),  # type: ignore[arg-type]
            std=tuple(float(x) for x in cfg["std"]),  # type: ignore[arg-type]
            interpolation=str(cfg.get("interpolation", "bicubic")),
            resize_mode=str(cfg.get("resize_mode", "shortest")),
        )


@dataclass
class TokenOutput:
    tokens: Tensor  # (B, L, D) every position projected with the text projection
    mask: Tensor  # (B, L) True for SOT..EOT, False for padding
    pooled: Tensor  # (B, D) the EOT vector (open_clip's encode_text output)


class ClipBackbone(nn.Module):
    """Wraps an open_clip CLIP model; exposes the two towers separately."""

    def __init__(self, clip: nn.Module, name: str) -> None:
        super().__init__()
        self.clip: Any = clip
        self.name = name
        self.preprocess = PreprocessCfg.from_open_clip(clip)
        self.tokenizer = open_clip.get_tokenizer(name)
        pool = getattr(self.text_tower, "text_pool_type", "argmax")
        if pool not in ("argmax", "eos"):
            raise ValueError(f"backbone {name}: text pooling {pool!r} is not supported (need argmax/eos)")

    @property
    def text_tower(self) -> Any:
        """The module holding the text transformer (CustomTextCLIP keeps it in .text).

        A property, not a submodule attribute: registering it would list the text weights twice
        in the state dict when the tower is the CLIP module itself.
        """
        return getattr(self.clip, "text", self.clip)

    @classmethod
    def create(cls, name: str, pretrained: str | None, cache_dir: str | None = None) -> ClipBackbone:
        register_backbones()
        if name not in open_clip.list_models():
            raise ValueError(f"unknown open_clip model {name!r}")
        weights = resolve_pretrained(name, pretrained, cache_dir) if pretrained else None
        with _quiet_random_init():  # weights usually come from a checkpoint right after
            clip = open_clip.create_model(name, pretrained=weights, pretrained_text=False)
        return cls(clip, name)

    @property
    def dim(self) -> int:
        """D, the joint embedding dimension."""
        proj = self.text_tower.text_projection
        return int(proj.out_features if isinstance(proj, nn.Linear) else proj.shape[-1])

    def tokenize(self, texts: list[str]) -> Tensor:
        return self.tokenizer(texts)  # (B, L) int64

    def encode_frames(self, frames: Tensor) -> Tensor:
        """frames: (B, T, 3, H, W) preprocessed -> (B, T, D) projected CLS vectors (not normalised)."""
        b, t = frames.shape[:2]
        feats = self.clip.encode_image(frames.flatten(0, 1))  # (B*T, D)
        return feats.view(b, t, -1)

    def encode_tokens(self, text: Tensor) -> TokenOutput:
        """text: (B, L) token ids -> per-token projected vectors, validity mask, pooled EOT.

        The text transformer is causal, so positions after the last EOT cannot affect valid
        positions: it runs on the first max(EOT)+1 positions only (same outputs, far cheaper
        than the full context for short queries). Padding rows are returned as zeros.
        """
        tower = self.text_tower
        eos_id = getattr(tower, "text_eos_id", None)
        if getattr(tower, "text_pool_type", "argmax") == "eos" and eos_id is not None:
            eot = (text == eos_id).int().argmax(dim=-1)
        else:
            eot = text.argmax(dim=-1)  # the EOT id is the largest in CLIP's vocabulary
        full_len = text.shape[1]
        n = int(eot.max().item()) + 1
        ids = text[:, :n]  # (B, n)
        cast = tower.transformer.get_cast_dtype()
        x = tower.token_embedding(ids).to(cast)  # (B, n, W)
        x = x + tower.positional_embedding[:n].to(cast)
        attn_mask = tower.attn_mask
        x = tower.transformer(x, attn_mask=None if attn_mask is None else attn_mask[:n, :n])
        x = tower.ln_final(x)  # (B, n, W)
        proj = tower.text_projection
        x = proj(x) if isinstance(proj, nn.Linear) else x @ proj  # (B, n, D)
        positions = torch.arange(full_len, device=text.device)
        mask = positions[None, :] <= eot[:, None]  # (B, L): SOT..EOT inclusive
        pooled = x[torch.arange(x.shape[0], device=x.device), eot]  # (B, D)
        tokens = x.new_zeros((x.shape[0], full_len, x.shape[2]))  # (B, L, D)
        tokens[:, :n] = x
        tokens = tokens * mask.unsqueeze(-1)
        return TokenOutput(tokens=tokens, mask=mask, pooled=pooled)

    def drop_visual(self) -> None:
        """Free the image tower (the service only encodes queries)."""
        self.clip.visual = None  # type: ignore[assignment]
