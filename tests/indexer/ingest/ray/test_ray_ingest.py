"""Ingestion on Ray (local instance, 2 CPUs) against the single-process indexer on the same corpus.

One Ray instance serves the whole module: the CLI joins it with --ray-address, the Python API
uses it directly. The fault test kills the encoder actor's process (os._exit) on a chosen file.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from indexer.ingest.distributed import (
    ClipEncoder,
    DistributedError,
    RayIngestor,
    RayOptions,
    _check_reachable,
)
from indexer.search.searcher import Searcher
from indexer.store import Store
from tests.support import REPO, free_port, t2v

from .conftest import STRIDE, WINDOW, identity, items_of

pytestmark = pytest.mark.slow  # a local Ray instance

QUERIES = ["a red square", "a colourful test pattern with moving numbers", "green"]


def contents(path: Path) -> dict[str, list[tuple[float, float, bytes]]]:
    """Every stored video by file path: its clips' spans and float16 matrices (ids left out)."""
    out = {}
    with Store.open(path) as store:
        for v in store.list_videos(0, 1000):
            clips = store.clips_of(v.id)
            mats = store.matrices(np.array([c.id for c in clips], dtype=np.int64))
            out[v.path] = [(c.start, c.end, m.tobytes()) for c, m in zip(clips, mats, strict=True)]
    return out


def searches(path: Path, model: Any) -> list[list[tuple[str, float, float, float]]]:
    with Store.open(path) as store:
        searcher = Searcher(store, model)
        return [
            [(m.path, m.start, m.end, m.score) for m in searcher.search(q, top_k=8).moments] for q in QUERIES
        ]


def assert_same_as_reference(path: Path, reference: Path, model: Any) -> None:
    got, want = contents(path), contents(reference)
    assert sorted(got) == sorted(want)
    for video in want:
        assert got[video] == want[video], f"{video}: clips or matrices differ"
    assert searches(path, model) == searches(reference, model)


def test_cli_ray_store_equals_single_process_store(
    ray_cluster: str,
    corpus: dict[str, Any],
    tiny_ckpt: Path,
    model: Any,
    reference: Path,
    tmp_path: Path,
) -> None:
    index = tmp_path / "idx"
    proc = t2v(
        "index", "add", corpus["good"], corpus["bad"], corpus["missing"], "--index", index,
        "--checkpoint", tiny_ckpt, "--window", WINDOW, "--stride", STRIDE, "--batch-size", 8,
        "--ray-address", ray_cluster,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr  # some files failed
    # bad inputs are reported per file, the good ones indexed
    for name in ("empty.mp4", "notes.mp4", "missing.mp4"):
        assert any("error: " in line and name in line for line in proc.stderr.splitlines()), name
    assert "duplicate: " in proc.stdout and "e_red_copy.mp4" in proc.stdout
    assert "summary: 4 indexed (8 clips), 1 duplicate, 3 failed of 8 files" in proc.stdout, proc.stdout
    verify = t2v("index", "verify", "--index", index)
    assert verify.returncode == 0, verify.stderr
    assert not list((index / "ray-shards").glob("run-*")), "shard scratch left behind"
    assert_same_as_reference(index, reference, model)


class CrashOnce(ClipEncoder):
    """Kills its own process (as an OOM kill or a lost node would) on the first batch that holds
    a chosen file; the marker file makes later attempts (restarted actors, reruns) pass."""

    def __init__(self, *args: Any, crash_on: str, marker: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.crash_on, self.marker = crash_on, marker

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if any(self.crash_on in m for m in batch["meta"]):
            try:
                os.close(os.open(self.marker, os.O_CREAT | os.O_EXCL))
            except FileExistsError:
                pass
            else:
                os._exit(1)
        return super().__call__(batch)


def crashing(crash_on: str, marker: Path) -> type[ClipEncoder]:
    import ray

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import tests
    kw = {"crash_on": crash_on, "marker": str(marker)}

    class Crashing(CrashOnce):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kw, **kwargs)

    return Crashing


def test_killed_encoder_leaves_a_consistent_store_and_a_rerun_completes_it(
    ray_cluster: str, corpus: dict[str, Any], tiny_ckpt: Path, model: Any, reference: Path, tmp_path: Path
) -> None:
    index = tmp_path / "idx"
    items = items_of(corpus)

    def ingestor(store: Store, options: RayOptions, encoder: type[ClipEncoder]) -> RayIngestor:
        return RayIngestor(store, model, WINDOW, STRIDE, 8, options=options, encoder_cls=encoder)

    # no restarts allowed: the actor's death ends the run with an error
    no_restarts = RayOptions(videos_per_task=1, max_restarts=0)
    with Store.open(index, identity(model, tiny_ckpt), create=True) as store:
        with pytest.raises(DistributedError, match="rerun to complete"):
            ingestor(store, no_restarts, crashing("c_pattern.mp4", tmp_path / "crash1")).ingest_many(items)
    assert (tmp_path / "crash1").exists()
    with Store.open(index) as store:
        report = store.verify()
        assert report.ok, report.problems
        stored = {Path(v.path).name for v in store.list_videos(0, 100)}
    assert "c_pattern.mp4" not in stored and len(stored) < corpus["unique"]
    assert not list((index / "ray-shards").glob("run-*"))

    # the rerun (default: Ray restarts a dead encoder and retries its batch) survives another
    # crash and completes the store; what the first run committed is reported as duplicate
    with Store.open(index, identity(model, tiny_ckpt)) as store:
        again = ingestor(store, RayOptions(videos_per_task=2), crashing("b_blue.mp4", tmp_path / "crash2"))
        rerun = again.ingest_many(items)
    assert (tmp_path / "crash2").exists()
    by_name = {Path(r.path).name: r for r in rerun}
    assert [Path(r.path).name for r in rerun] == [i.path.name for i in items]  # input order
    for name in stored:
        assert by_name[name].status == "duplicate"
    assert {n for n, r in by_name.items() if r.status == "done"} == {
        "a_red.mp4", "b_blue.mp4", "c_pattern.mp4", "d_green.mp4"
    } - stored  # fmt: skip
    assert [n for n, r in by_name.items() if r.status == "failed"] == [
        "empty.mp4",
        "notes.mp4",
        "missing.mp4",
    ]
    with Store.open(index) as store:
        assert store.verify().ok
    assert_same_as_reference(index, reference, model)


def test_ray_is_imported_only_for_ray_ingestion() -> None:
    code = (
        "import sys, service.cli, service.cli.index, indexer.ingest.pipeline, indexer.search.searcher\n"
        "assert 'ray' not in sys.modules, 'ray imported'\n"
        "sys.modules['ray'] = None  # as if the extra were not installed\n"
        "from indexer.ingest.distributed import DistributedError, _import_ray\n"
        "try:\n    _import_ray()\nexcept DistributedError as e:\n    print(e)\n"
    )
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "Ray is not installed" in proc.stdout and "[distributed]" in proc.stdout


def test_unreachable_or_malformed_cluster_address_fails_fast() -> None:
    port = free_port()  # a port nobody listens on
    t0 = time.perf_counter()
    with pytest.raises(DistributedError, match=f"cannot reach the Ray cluster at 127.0.0.1:{port}"):
        _check_reachable(f"127.0.0.1:{port}")
    assert time.perf_counter() - t0 < 30  # ray.init itself would retry for minutes
    for bad in ("head-node", "ray://:10001", "host:port"):
        with pytest.raises(DistributedError, match="is not a Ray address"):
            _check_reachable(bad)
