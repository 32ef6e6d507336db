"""Test-wide settings (everything offline, deterministic, quiet) and the fixtures several test
folders share; plain helpers are in tests/support.py."""

from __future__ import annotations

import os
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from indexer.corpora.lavfi import render_colour_box  # noqa: E402
from tests import support  # noqa: E402
from tests.cli_forks import CliForks  # noqa: E402
from tests.support import T2v  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def shared_query_graphs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One cache of exported ONNX query graphs for every service this session starts (in-process,
    forked or a fresh interpreter: all read T2V_QUERY_GRAPH_DIR), so that each model is exported
    once per run instead of once per test server. A test that checks exporting sets its own."""
    path = tmp_path_factory.mktemp("query-graphs")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("T2V_QUERY_GRAPH_DIR", str(path))
        yield path


@pytest.fixture(scope="session")
def cli_forks(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CliForks]:
    forks = CliForks(tmp_path_factory.mktemp("cli-runs"))
    yield forks
    forks.close()


@pytest.fixture(scope="session")
def t2v(cli_forks: CliForks) -> T2v:
    """`tests.support.t2v` forked from one pre-imported interpreter (tests/cli_forks.py): the same
    command, environment and exit status, without importing torch again for every run."""
    return partial(support.t2v, forks=cli_forks)


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A t2v-tiny checkpoint (seed 0)."""
    return support.tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny-0.pt", seed=0)


@pytest.fixture(scope="session")
def checkpoints(tiny_ckpt: Path) -> tuple[Path, Path]:
    """Two t2v-tiny checkpoints with different weights (seeds 0 and 1)."""
    return tiny_ckpt, support.tiny_checkpoint(tiny_ckpt.with_name("tiny-1.pt"), seed=1)


@pytest.fixture(scope="session")
def colour_videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Small distinct mp4s (different content hashes) inside a directory used as an allowed root."""
    root = tmp_path_factory.mktemp("library")
    out = {}
    for i, colour in enumerate(["red", "green", "blue", "yellow", "purple", "orange", "white", "cyan"]):
        out[colour] = render_colour_box(root / f"{colour}.mp4", colour, seconds=2.0 + 0.5 * (i % 3))
    return out
