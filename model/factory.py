"""Build a T2VParser from a config name/file, optionally loading a checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from .backbone import ClipBackbone
from .checkpoint import CheckpointError, check_compatible, read_checkpoint
from .config import T2VConfig, get_config
from .t2vparser import T2VParser


def create_model(
    config: str | Path | T2VConfig | None = None,
    checkpoint: str | Path | None = None,
    device: str | torch.device = "cpu",
    text_only: bool = False,
    cache_dir: str | None = None,
) -> T2VParser:
    """A T2VParser in eval mode.

    With a checkpoint, its stored config is used (and checked against `config` when given);
    the backbone is built without pretrained weights since the checkpoint holds them.
    """
    cfg = get_config(config) if isinstance(config, (str, Path)) else config
    digest: str | None = None
    if checkpoint is not None:
        ckpt_cfg, state, digest = read_checkpoint(checkpoint)
        if cfg is not None:
            check_compatible(cfg, ckpt_cfg, str(checkpoint))
        cfg = ckpt_cfg
        backbone = ClipBackbone.create(cfg.backbone, pretrained=None, cache_dir=cache_dir)
        model = T2VParser(cfg, backbone)
        # early checkpoints also listed the text tower under an alias of the CLIP module
        state = {k: v for k, v in state.items() if not k.startswith("backbone.text_tower.")}
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as e:
            raise CheckpointError(f"checkpoint {checkpoint} weights do not fit its config: {e}") from e
    else:
        if cfg is None:
            raise ValueError("create_model needs a config or a checkpoint")
        backbone = ClipBackbone.create(cfg.backbone, pretrained=cfg.pretrained, cache_dir=cache_dir)
        model = T2VParser(cfg, backbone)
    model.checkpoint_sha256 = digest
    if text_only:
        model.drop_visual()
    return model.to(device).eval()


def model_identity(model: T2VParser) -> dict[str, Any]:
    """What a store records to refuse a different model later."""
    cfg = model.config
    return {
        "config": cfg.to_dict(),
        "checkpoint_sha256": getattr(model, "checkpoint_sha256", None),
        "dim": model.dim,
        "frames": cfg.frames,
        "num_tokens": cfg.num_tokens,
        "vectors_per_clip": model.num_video_vectors,
    }
