"""`t2v preload`: put the configured model weights into the local cache, so later starts are offline.

Used by the Docker entrypoint (start-up step) and the image build (build argument).
"""

from __future__ import annotations

import typer


def preload() -> None:
    """Fetch/verify the configured weights: a T2VParser checkpoint, or open_clip name + tag."""
    from model import get_config, read_checkpoint, resolve_pretrained
    from service.settings import ServiceSettings, load_settings

    # SettingsInvalid, CheckpointError, ConfigError, WeightsNotFoundError: one line (cli_errors)
    settings = load_settings(ServiceSettings)
    if settings.model.checkpoint is not None:
        cfg, _, digest = read_checkpoint(settings.model.checkpoint)
        typer.echo(
            f"checkpoint {settings.model.checkpoint} ok: {cfg.name or cfg.backbone}, sha256 {digest[:12]}"
        )
        return
    cfg = get_config(settings.model.config)
    if not cfg.pretrained:
        typer.echo(f"config {cfg.name}: random-init backbone, nothing to preload")
        return
    path = resolve_pretrained(cfg.backbone, cfg.pretrained, settings.model.cache_dir)
    typer.echo(f"weights {cfg.backbone}/{cfg.pretrained} cached at {path}")
