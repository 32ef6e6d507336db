"""The one exit-code policy of `t2v` (service/cli/common.py), as a user sees it: 2 and exactly one
`error: ` line on stderr when a command cannot run, 1 when it ran but some items failed."""

from __future__ import annotations

import importlib
import subprocess
from pathlib import Path

import pytest

from service.cli.common import DOMAIN_ERRORS, domain_errors, format_time
from tests import support
from tests.support import T2v, cli_env, colour_video, free_port


def assert_cannot_run(proc: subprocess.CompletedProcess[str], *words: str) -> None:
    lines = proc.stderr.splitlines()
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    for w in words:
        assert w in lines[0], lines[0]


@pytest.mark.slow  # a CLI subprocess that loads a model: ~10-20 s on 2 cores
def test_missing_store_for_search(tmp_path: Path, t2v: T2v) -> None:
    proc = t2v("search", "a red square", "--index", tmp_path / "no-store")
    assert_cannot_run(proc, "is not a video store")


@pytest.mark.slow  # a CLI subprocess that loads a model: ~10-20 s on 2 cores
def test_missing_config_for_index_add(tmp_path: Path, t2v: T2v) -> None:
    video = colour_video(tmp_path / "red.mp4", "red", 1.0)
    proc = t2v("index", "add", video, "--index", tmp_path / "store", "--config", tmp_path / "nope.json")
    assert_cannot_run(proc, "nope.json")
    assert not (tmp_path / "store").exists()  # failed before creating anything


def test_search_of_a_server_that_is_not_there() -> None:
    proc = support.t2v("search", "a red square", "--server", f"http://127.0.0.1:{free_port()}")
    assert_cannot_run(proc, "cannot reach")


@pytest.mark.slow  # indexes a video with a model, then three more CLI runs
def test_some_bad_files_exit_1_then_a_bad_index_type_exits_2(
    tmp_path: Path, checkpoints: tuple[Path, Path], t2v: T2v
) -> None:
    good = colour_video(tmp_path / "red.mp4", "red", 2.0)
    bad = tmp_path / "bad.mp4"
    bad.write_text("not a video")
    store = tmp_path / "store"
    proc = t2v("index", "add", good, bad, "--index", store, "--checkpoint", checkpoints[0], "-q")
    assert proc.returncode == 1, proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if "error: " in ln]
    assert len(errors) == 1 and str(bad) in errors[0], proc.stderr  # the per-file line
    assert "1 indexed" in proc.stdout and "1 failed of 2 files" in proc.stdout

    proc = t2v("index", "compact", "--index", store, "--index-type", "bogus")
    assert_cannot_run(proc, "unknown index type 'bogus'")
    assert t2v("index", "verify", "--index", store).returncode == 0  # nothing was touched


@pytest.mark.parametrize("module", sorted(DOMAIN_ERRORS))
def test_every_domain_error_name_resolves(module: str) -> None:
    mod = importlib.import_module(module)
    for name in DOMAIN_ERRORS[module]:
        cls = getattr(mod, name)
        assert isinstance(cls, type) and issubclass(cls, Exception)
        assert cls in domain_errors()


def test_format_time() -> None:
    assert format_time(5.5) == "0:05.50"
    assert format_time(125.0) == "2:05.00"
    assert format_time(3725.25) == "1:02:05.25"


@pytest.mark.slow  # the media code imports torch (~4 s)
def test_a_missing_ffmpeg_is_named(tmp_path: Path, t2v: T2v) -> None:
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"\0" * 64)
    env = cli_env(IMAGEIO_FFMPEG_EXE=str(tmp_path / "gone" / "ffmpeg"))
    proc = t2v(
        "explain", "a red square", video, "--index", tmp_path / "store", "-o", tmp_path / "x.png", env=env
    )
    assert_cannot_run(proc, "ffmpeg", "IMAGEIO_FFMPEG_EXE")
