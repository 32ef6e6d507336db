"""`t2v explain` and `t2v inspect-tokens`: PNG explainers (indexer/report/figures.py) on the command line."""

from __future__ import annotations

from pathlib import Path

import typer

from service.cli.common import fail
from service.cli.store_access import (
    CKPT_HELP,
    CONFIG_HELP,
    INDEX_HELP,
    index_dir_of,
    indexer_settings,
    load_model,
)


def _check_video(video: Path) -> None:
    """Fail fast, before loading a model."""
    from indexer.media.video import probe

    if not video.is_file():
        fail(f"no such video file: {video}")
    probe(video)  # VideoError: one line (cli_errors)


def explain(
    query: str = typer.Argument(..., help="free-text query"),
    video: Path = typer.Argument(..., help="video file to explain the query against"),
    out: Path = typer.Option(Path("explain.png"), "--out", "-o", help="PNG to write"),
    index: Path | None = typer.Option(None, "--index", "-i", help=INDEX_HELP + " (its model is used)"),
    config: str | None = typer.Option(None, help=CONFIG_HELP),
    checkpoint: Path | None = typer.Option(None, help=CKPT_HELP),
    device: str | None = typer.Option(None),
) -> None:
    """PNG: the video's frames on top, the query x video cosine heat map (words + views) below."""
    from indexer.report.figures import explain_png

    if not query.strip():
        fail("the query is empty")
    _check_video(video)
    settings = indexer_settings()
    model = load_model(index_dir_of(index, settings), config, checkpoint, device, settings)
    info = explain_png(model, query, video, out)
    typer.echo(f"wrote {out} (score {info['score']:.4f}, {info['shape'][0]}x{info['shape'][1]} matrix)")


def inspect_tokens(
    video: Path = typer.Argument(..., help="video file"),
    out: Path = typer.Option(Path("tokens.png"), "--out", "-o", help="PNG to write"),
    checkpoint: Path | None = typer.Option(None, help=CKPT_HELP),
    config: str | None = typer.Option(None, help=CONFIG_HELP),
    index: Path | None = typer.Option(None, "--index", "-i", help=INDEX_HELP + " (its model is used)"),
    device: str | None = typer.Option(None),
) -> None:
    """PNG grid: which frames each of the K decomposition tokens attends to (cross-attention)."""
    from indexer.report.figures import inspect_tokens_png

    _check_video(video)
    settings = indexer_settings()
    model = load_model(index_dir_of(index, settings), config, checkpoint, device, settings)
    info = inspect_tokens_png(model, video, out)
    typer.echo(f"wrote {out} ({info['tokens']} tokens x {info['frames']} frames)")
