"""Every store can be reopened by every command without model flags: it records its checkpoint's
path, and a store that records only the checkpoint's hash (made before paths were recorded) is
matched against the configured checkpoint and the demo model. `--json` speaks the REST vocabulary."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from indexer.store import MANIFEST
from service.library import open_library
from service.settings import ServiceSettings
from tests.support import T2v, cli_env

pytestmark = pytest.mark.slow  # four CLI runs that load a model (~4 s each on 2 busy cores)


def manifest(store: Path) -> dict:
    return json.loads((store / MANIFEST).read_text())


def test_a_store_the_service_created_is_reopened_by_the_cli(
    tmp_path: Path, tiny_ckpt: Path, colour_videos: dict[str, Path], t2v: T2v
) -> None:
    store = tmp_path / "served"
    # what `t2v serve` does on its first start: load the configured model, create the store
    lib = open_library(
        ServiceSettings(index_dir=store, var_dir=tmp_path / "var", model={"checkpoint": tiny_ckpt})
    )
    lib.close()
    assert manifest(store)["model"]["checkpoint_path"] == str(tiny_ckpt.resolve())
    # `t2v index add X --index <that store>` and `t2v search --index <that store>`: no model flags
    add = t2v("index", "add", colour_videos["red"], "--index", store, "-q")
    assert add.returncode == 0 and "1 indexed" in add.stdout, add.stderr
    out = t2v("search", "a red square", "--index", store, "--json", "--group-by-video")
    assert out.returncode == 0, out.stderr
    body = json.loads(out.stdout)
    # the REST SearchResponse's words (POST /v1/search), plus local-only clip_id/path/candidates
    assert set(body) == {"query", "results", "took_ms", "stages_ms", "candidates"}
    assert {"encode", "candidates", "rerank"} <= set(body["stages_ms"])
    assert body["took_ms"] >= sum(body["stages_ms"][k] for k in ("encode", "candidates", "rerank")) * 0.99
    (hit,) = body["results"]
    assert hit["title"] == "red" and hit["path"] == str(colour_videos["red"]) and hit["more"] == []


def test_a_store_that_records_only_the_checkpoint_hash(
    tmp_path: Path, tiny_ckpt: Path, colour_videos: dict[str, Path], t2v: T2v
) -> None:
    store = tmp_path / "old"
    add = t2v("index", "add", colour_videos["green"], "--index", store, "--checkpoint", tiny_ckpt, "-q")
    assert add.returncode == 0, add.stderr
    m = manifest(store)
    del m["model"]["checkpoint_path"]  # as the stores written before paths were recorded
    (store / MANIFEST).write_text(json.dumps(m))
    # the default model (the demo checkpoint) is not the store's: one line saying what to pass
    proc = t2v("search", "green", "--index", store)
    assert proc.returncode == 2 and proc.stderr.startswith("error: "), proc.stderr
    assert "--checkpoint or T2V_MODEL__CHECKPOINT" in proc.stderr and len(proc.stderr.splitlines()) == 1
    # the configured checkpoint has the recorded hash: it is used
    proc = t2v("search", "green", "--index", store, env=cli_env(T2V_MODEL__CHECKPOINT=str(tiny_ckpt)))
    assert proc.returncode == 0 and "green" in proc.stdout, proc.stderr
