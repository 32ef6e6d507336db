"""`t2v explain` and `t2v inspect-tokens`: PNG explainers (indexer/report/figures.py) on the command line."""

from __future__ import annotations

from pathlib import Path

import typer

from service.cli.index import (
    _CKPT_HELP,
    _CONFIG_HELP,
    _INDEX_HELP,
    _fail,
    _index_dir,
    _load_model,
    _model_errors,
    _settings,
)


def _check_video(video: Path) -> None:
    """Fail fast, before loading a model."""
    from indexer.media.video import VideoError, probe

    if not video.is_file():
        raise _fail(f"no such video file: {video}")
    try:
        probe(video)
    except VideoError as e:
        raise _fail(str(e)) from None


def explain(
    query: str = typer.Argument(..., help="free-text query"),
    video: Path = typer.Argument(..., help="video file to explain the query against"),
    out: Path = typer.Option(Path("explain.png"), "--out", "-o", help="PNG to write"),
    index: Path | None = typer.Option(None, "--index", "-i", help=_INDEX_HELP + " (its model is used)"),
    config: str | None = typer.Option(None, help=_CONFIG_HELP),
    checkpoint: Path | None = typer.Option(None, help=_CKPT_HELP),
    device: str | None = typer.Option(None),
) -> None:
    """PNG: the video's frames on top, the query x video cosine heat map (words + views) below."""
    from indexer.media.video import VideoError
    from indexer.report.figures import explain_png

    if not query.strip():
        raise _fail("the query is empty")
    _check_video(video)
    settings = _settings()
    try:
        model = _load_model(_index_dir(index, settings), config, checkpoint, device, settings)
        info = explain_png(model, query, video, out)
    except _model_errors() + (VideoError,) as e:
        raise _fail(str(e)) from None
    typer.echo(f"wrote {out} (score {info['score']:.4f}, {info['shape'][0]}x{info['shape'][1]} matrix)")


def inspect_tokens(
    video: Path = typer.Argument(..., help="video file"),
    out: Path = typer.Option(Path("tokens.png"), "--out", "-o", help="PNG to write"),
    checkpoint: Path | None = typer.Option(None, help=_CKPT_HELP),
    config: str | None = typer.Option(None, help=_CONFIG_HELP),
    index: Path | None = typer.Option(None, "--index", "-i", help=_INDEX_HELP + " (its model is used)"),
    device: str | None = typer.Option(None),
) -> None:
    """PNG grid: which frames each of the K decomposition tokens attends to (cross-attention)."""
    from indexer.media.video import VideoError
    from indexer.report.figures import FigureError, inspect_tokens_png

    _check_video(video)
    settings = _settings()
    try:
        model = _load_model(_index_dir(index, settings), config, checkpoint, device, settings)
        info = inspect_tokens_png(model, video, out)
    except _model_errors() + (VideoError, FigureError) as e:
        raise _fail(str(e)) from None
    typer.echo(f"wrote {out} ({info['tokens']} tokens x {info['frames']} frames)")
