"""The `t2v` command: sub-commands of the indexer, training and the service in one place.

Errors and exit codes: one policy for every command (service/cli/common.py).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import typer

from service import settings_doc
from service.cli import explain as explain_cli
from service.cli import index as index_cli
from service.cli import remote
from service.cli import search as search_cli
from service.cli import serve as cli_serve
from service.cli import train as train_cli
from service.cli import weights as cli_weights
from service.cli.common import CliTyper

app = CliTyper(help="T2VParser semantic video search", no_args_is_help=True, pretty_exceptions_enable=False)


@app.callback()
def root() -> None:
    """T2VParser semantic video search: index videos, search moments, train and serve models."""


@app.command("rank-demo")
def rank_demo(
    config: str | None = typer.Option(None, help="model config name or JSON path (its own weights)"),
    checkpoint: Path | None = typer.Option(
        None, help="T2VParser checkpoint (default: T2V_MODEL__CHECKPOINT, else the demo model)"
    ),
) -> None:
    """Build a model, render a few synthetic videos, and rank texts against them (no store)."""
    from indexer.search.rank_demo import run_rank_demo
    from indexer.settings import IndexerSettings
    from model import get_config
    from service.settings import load_settings

    if config is None and checkpoint is None:  # the one default model (the demo checkpoint)
        model = load_settings(IndexerSettings).model
        config, checkpoint = model.config, model.checkpoint
    if checkpoint is None and not get_config(config or "").pretrained:
        typer.echo(
            f"warning: {config} has neither a checkpoint nor pretrained weights: its weights are "
            "random, so the ranking below means nothing",
            err=True,
        )
    with tempfile.TemporaryDirectory() as tmp:
        for line in run_rank_demo(config or "", checkpoint, Path(tmp)):
            typer.echo(line)


app.command("demo")(cli_serve.demo)  # the main job: demo library + model, served on 127.0.0.1
app.command("serve")(cli_serve.serve)
app.command("preload")(cli_weights.preload)  # weights into the cache (Docker start-up)
app.command("settings")(settings_doc.settings_table)
app.add_typer(index_cli.index_app, name="index")  # the offline indexer (service/cli/index.py)
app.command("search")(search_cli.search)
app.command("ingest")(remote.ingest)  # into a running service over REST (service/cli/remote.py)
app.command("explain")(explain_cli.explain)  # PNG explainers (indexer/report/figures.py)
app.command("inspect-tokens")(explain_cli.inspect_tokens)
train_cli.register(app)  # t2v train / eval / synth


def main() -> None:
    app(prog_name="t2v")


if __name__ == "__main__":
    main()
