"""The ONNX Runtime query encoder: same query sets and rankings as torch, exported offline once,
warmed at service start and used by /v1/search."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F

from indexer.search.searcher import Searcher
from indexer.store import Store
from model import T2VParser, one_query_scores
from model.onnx_text import OnnxTextEncoder, graph_key
from service.library import _build_model, query_threads
from service.settings import ServiceSettings
from tests.support import REPO, Server, server_settings, wait_job

pytestmark = pytest.mark.slow  # one ONNX export (tens of seconds on a busy CPU)

QUERIES = [
    "a red circle moving left",
    "a green square",
    "a blue box slides to the right, then stops",
    "yellow",
    "a white box over a red background moving quickly across the frame",
    "something purple",
]


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory, colour_videos: dict[str, Path]) -> Iterator[dict]:
    """The service's query model (as the server loads it) and its graphs, exported into a var dir."""
    work = tmp_path_factory.mktemp("onnx")
    cache = work / "var" / "onnx"  # this module's own cache, not the session's shared one
    settings = server_settings(
        work, colour_videos["red"].parent, query_encoder="onnx-fp32", query_graph_dir=str(cache)
    )
    model = _build_model(ServiceSettings(**settings), text_only=True)
    encoders = {p: OnnxTextEncoder.for_model(model, cache, p) for p in ("fp32", "int8")}
    yield {"work": work, "settings": settings, "model": model, "encoders": encoders, "cache": cache}


def _rows(sets: object) -> torch.Tensor:
    return sets.vectors[0][sets.mask[0]]  # type: ignore[attr-defined]


def test_query_sets_and_rankings_match_torch(exported: dict) -> None:
    model: T2VParser = exported["model"]
    # a benchmark store: clips scattered around the rows of many captions (as trained data is)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        ref = {q: _rows(model.encode_texts([q])) for q in QUERIES}
    centres = torch.cat(list(ref.values()))  # (rows, D)
    picks = torch.randint(0, len(centres), (2000, model.num_video_vectors), generator=gen)
    mats = F.normalize(centres[picks] + 0.05 * torch.randn(*picks.shape, model.dim, generator=gen), dim=-1)

    def top10(rows: torch.Tensor) -> set[int]:
        return set(torch.topk(one_query_scores(rows, mats, tau=100.0), 10).indices.tolist())

    for precision, enc in exported["encoders"].items():
        overlap, cosines = [], []
        for q, want in ref.items():
            got = _rows(enc.encode_texts([q]))
            assert got.shape == want.shape  # only the real tokens, then the K views
            cosines.append(float((got * want).sum(-1).min()))
            overlap.append(len(top10(got) & top10(want)) / 10)
        if precision == "fp32":
            assert min(cosines) > 0.9999 and np.mean(overlap) >= 0.99
        else:  # int8 weights: close, not equal (its rankings on ViT-B/32 are in docs/BENCHMARKS.md)
            assert min(cosines) > 0.9 and np.mean(overlap) >= 0.5
    # the served graph: every linear layer a MatMul with a constant weight (pre-packed, quantisable)
    served = onnx.load(str(exported["cache"] / f"query-{graph_key(model)}-fp32.onnx"))
    consts = {i.name for i in served.graph.initializer}
    assert not {n.op_type for n in served.graph.node} & {"Gemm", "SplitToSequence"}
    assert sum(n.op_type == "MatMul" and n.input[1] in consts for n in served.graph.node) >= 4  # a layer
    # a batch of texts of different lengths gives each its own rows
    both = exported["encoders"]["fp32"].encode_texts(QUERIES[:2])
    assert both.mask.sum(1).tolist() == [len(ref[QUERIES[0]]), len(ref[QUERIES[1]])]


def _assert_torch_ranking(body: dict, index_dir: Path, model: T2VParser, query: str) -> None:
    """A /v1/search answer equals the torch path's ranking (moments and scores) over the same store."""
    store = Store.open(index_dir)
    try:
        want = Searcher(store, model).search(query, top_k=len(body["results"]))
    finally:
        store.close()
    assert [(r["video_id"], r["start"]) for r in body["results"]] == [
        (m.video_id, round(m.start, 3)) for m in want.moments
    ]
    assert [r["score"] for r in body["results"]] == pytest.approx([m.score for m in want.moments], abs=1e-4)


def test_service_warms_and_searches_with_the_exported_encoder(
    exported: dict, colour_videos: dict[str, Path]
) -> None:
    graph = exported["cache"] / f"query-{graph_key(exported['model'])}-fp32.onnx"
    mtime = graph.stat().st_mtime_ns
    # two encoder threads (set: automatic is 1 for this small model, and the test servers run
    # OMP_NUM_THREADS=1)
    srv = Server(exported["work"], {**exported["settings"], "query_threads": 2})
    srv.start("serve", "--port", str(srv.port))  # ready: model loaded, encoder warmed
    try:
        with srv.client() as client:
            job = client.post("/v1/ingest", json={"paths": [str(colour_videos[c]) for c in ("red", "blue")]})
            wait_job(client, job.json()["id"])
            body = client.post("/v1/search", json={"query": "a red box", "top_k": 4}).json()
    finally:
        srv.stop()
    assert graph.stat().st_mtime_ns == mtime  # the cached graph was reused, not exported again
    assert "query encoder: onnx-fp32, 2 thread(s)" in srv.log.read_text()
    assert body["stages_ms"]["encode"] > 0 and body["results"]
    _assert_torch_ranking(body, Path(exported["settings"]["index_dir"]), exported["model"], "a red box")


VIT_B_32_QUERY, DEMO_QUERY = 63_000_000, 3_400_000  # parameters of the query-side models


@pytest.mark.parametrize(
    ("query_threads", "omp", "cores", "params", "want"),
    [(0, None, 16, VIT_B_32_QUERY, 2), (0, None, 1, VIT_B_32_QUERY, 1), (0, "1", 16, VIT_B_32_QUERY, 1),
     (0, "4", 16, VIT_B_32_QUERY, 2), (3, "1", 16, VIT_B_32_QUERY, 3),
     (0, None, 16, DEMO_QUERY, 1), (2, None, 16, DEMO_QUERY, 2)],
)  # fmt: skip
def test_encoder_threads_default_to_two_for_a_large_query_model_where_two_cores_are_free(
    monkeypatch: pytest.MonkeyPatch, query_threads: int, omp: str | None, cores: int, params: int, want: int
) -> None:
    """Automatic: 2 threads for a ViT-B/32-sized query model with 2 cores free, 1 for the demo model
    (its ~1 ms query gains nothing from a second thread); a set T2V_QUERY_THREADS always wins."""
    import os

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cores)))
    if omp is None:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    else:
        monkeypatch.setenv("OMP_NUM_THREADS", omp)
    assert ServiceSettings(query_threads=query_threads).encoder_threads(params) == want


def test_the_automatic_query_threads_of_the_real_models(monkeypatch: pytest.MonkeyPatch) -> None:
    """The service's query models fall on the measured sides of the rule: the shipped demo model
    takes 1 thread, a ViT-B/32 one 2 (where 2 cores are free)."""
    import os

    from indexer.settings import DEMO_CHECKPOINT
    from model import create_model, get_config

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    auto = ServiceSettings()
    assert query_threads(auto, create_model(None, checkpoint=DEMO_CHECKPOINT, text_only=True)) == 1
    vit = get_config("t2v-vit-b-32").replace(pretrained=None)  # random weights: only the size counts
    assert query_threads(auto, create_model(vit, text_only=True)) == 2


def test_a_damaged_or_stale_cached_graph_is_exported_again(exported: dict, tmp_path: Path) -> None:
    model: T2VParser = exported["model"]
    name = f"query-{graph_key(model)}-fp32.onnx"
    good = (exported["cache"] / name).read_bytes()
    cache = tmp_path / "onnx"
    cache.mkdir()
    damaged = {
        "truncated": good[: len(good) // 2],  # a torn copy: does not load
        "stale": (exported["cache"] / name.replace("fp32", "int8")).read_bytes(),  # loads, other rows
    }
    for what, data in damaged.items():
        (cache / name).write_bytes(data)
        enc = OnnxTextEncoder.for_model(model, cache, "fp32")
        assert enc.agrees(), what
        assert (cache / name).read_bytes() == good, what  # replaced by a fresh export of this model
        with torch.no_grad():
            want = _rows(model.encode_texts([QUERIES[0]]))
        assert torch.allclose(_rows(enc.encode_texts([QUERIES[0]])), want, atol=1e-4), what


def test_an_int8_graph_is_quantised_from_a_checked_fp32_graph(exported: dict, tmp_path: Path) -> None:
    """A damaged fp32 graph left in the cache (a service ran with onnx-fp32 and the file was torn)
    is exported again before the int8 graph is made from it, instead of failing at every start."""
    model: T2VParser = exported["model"]
    name = f"query-{graph_key(model)}-fp32.onnx"
    good = (exported["cache"] / name).read_bytes()
    cache = tmp_path / "onnx"
    cache.mkdir()
    (cache / name).write_bytes(good[: len(good) // 2])  # torn; no int8 graph yet
    enc = OnnxTextEncoder.for_model(model, cache, "int8")
    assert enc.agrees() and enc.precision == "int8"
    assert (cache / name).read_bytes() == good


# Each child quantises the same cached fp32 graph into its own file once every child is ready.
_QUANTISE = """
import sys, time
from pathlib import Path
from model.onnx_text import quantize_graph
fp32, out, ready, go = (Path(a) for a in sys.argv[1:5])
ready.touch()
while not go.exists():
    time.sleep(0.001)
quantize_graph(fp32, out)
"""


def test_processes_quantising_one_cached_graph_at_once_all_succeed(exported: dict, tmp_path: Path) -> None:
    """Two services starting with onnx-int8 on one graph directory quantise the same fp32 graph at
    once: the quantiser's scratch file beside its input must not be shared (one process removed the
    other's, which then served with torch)."""
    fp32 = exported["cache"] / f"query-{graph_key(exported['model'])}-fp32.onnx"
    cache = tmp_path / "onnx"
    cache.mkdir()
    shared = cache / fp32.name
    shared.write_bytes(fp32.read_bytes())
    go = tmp_path / "go"
    procs = []
    for i in range(4):
        args = [str(shared), str(cache / f"int8-{i}.onnx"), str(tmp_path / f"ready-{i}"), str(go)]
        procs.append(
            subprocess.Popen(
                [sys.executable, "-c", _QUANTISE, *args], cwd=REPO, stderr=subprocess.PIPE, text=True
            )
        )
    deadline = time.monotonic() + 120  # every child imported and waiting: then all start at once
    while not all((tmp_path / f"ready-{i}").exists() for i in range(4)):
        assert time.monotonic() < deadline and all(p.poll() is None for p in procs), "a child did not start"
        time.sleep(0.01)
    go.touch()
    errors = [p.communicate(timeout=300)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, "\n".join(e[-400:] for e in errors)
    for i in range(4):
        onnx.checker.check_model(str(cache / f"int8-{i}.onnx"))
    assert sorted(f.name for f in cache.iterdir()) == sorted(
        [shared.name, *(f"int8-{i}.onnx" for i in range(4))]
    )


def test_the_service_answers_with_torch_when_no_graph_can_be_exported(
    exported: dict, colour_videos: dict[str, Path], tmp_path: Path
) -> None:
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("a file where the graph cache should go")
    settings = server_settings(
        tmp_path, colour_videos["red"].parent, query_encoder="onnx-fp32", query_graph_dir=str(blocked)
    )
    srv = Server(tmp_path, settings).start()  # still starts: torch encodes the queries
    try:
        with srv.client() as client:
            job = client.post("/v1/ingest", json={"paths": [str(colour_videos["red"])]})
            wait_job(client, job.json()["id"])
            body = client.post("/v1/search", json={"query": "a red box", "top_k": 3}).json()
    finally:
        srv.stop()
    log = srv.log.read_text()
    assert "query_encoder onnx-fp32 unavailable" in log and "encoded with torch" in log
    assert blocked.read_text() == "a file where the graph cache should go"  # nothing overwritten
    _assert_torch_ranking(body, Path(settings["index_dir"]), exported["model"], "a red box")
