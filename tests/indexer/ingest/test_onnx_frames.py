"""Frame encoding on ONNX Runtime (`frame_encoder=onnx-fp32`): the same image-tower vectors as
torch, exported once per model, chosen by the CLI flag and the service setting, and a fall-back to
torch (not a failed ingestion) when no graph can be exported."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from indexer.store import Store
from model import T2VParser, create_model
from model.onnx_frames import OnnxFrameEncoder, frame_graph_key
from tests.support import Server, T2v, server_settings, wait_job

pytestmark = pytest.mark.slow  # ONNX exports and several ingestions


@pytest.fixture(scope="module")
def demo() -> T2VParser:
    from indexer.settings import DEMO_CHECKPOINT

    return create_model(None, checkpoint=DEMO_CHECKPOINT).eval()


def test_graph_reproduces_the_tower_and_is_exported_once(demo: T2VParser, tmp_path: Path) -> None:
    enc = OnnxFrameEncoder.for_model(demo, tmp_path)
    graph = tmp_path / f"frames-{frame_graph_key(demo)}.onnx"
    assert graph.exists() and enc.agrees()
    size = demo.backbone.preprocess.size
    # more images than one graph call takes: cut into chunks, in order
    frames = torch.randn(300, 3, size, size, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        want = demo.backbone.encode_frames(frames[None])[0]  # (300, D), torch's path
    got = enc(frames)
    assert got.shape == want.shape
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
    # a second load reuses the file; a torn file is exported again, not served
    mtime = graph.stat().st_mtime_ns
    OnnxFrameEncoder.for_model(demo, tmp_path)
    assert graph.stat().st_mtime_ns == mtime
    good = graph.read_bytes()
    graph.write_bytes(good[: len(good) // 2])
    again = OnnxFrameEncoder.for_model(demo, tmp_path)
    assert again.agrees() and graph.stat().st_size == len(good)


def _store_rows(index: Path) -> dict[str, np.ndarray]:
    with Store.open(index) as store:
        out = {}
        for v in store.list_videos(limit=100):
            ids = np.asarray([c.id for c in store.clips_of(v.id)], dtype=np.int64)
            out[v.title] = store.matrices(ids).astype(np.float32)  # (clips, n_v, D)
        return out


def test_index_add_with_the_onnx_frame_encoder(
    t2v: T2v, colour_videos: dict[str, Path], tmp_path: Path
) -> None:
    videos = [colour_videos[c] for c in ("red", "blue", "green")]
    torch_idx, onnx_idx = tmp_path / "torch" / "idx", tmp_path / "onnx-run" / "idx"
    ref = t2v("index", "add", *videos, "--index", torch_idx)
    assert ref.returncode == 0, ref.stderr
    proc = t2v("index", "add", *videos, "--index", onnx_idx, "--frame-encoder", "onnx-fp32")
    assert proc.returncode == 0, proc.stderr
    assert "summary: 3 indexed" in proc.stdout and "unavailable" not in proc.stderr
    # the graph was exported beside the store (<index>/../onnx), so ONNX Runtime encoded the frames
    assert list((tmp_path / "onnx-run" / "onnx").glob("frames-*.onnx"))
    want, got = _store_rows(torch_idx), _store_rows(onnx_idx)
    assert set(got) == set(want) == {"red", "blue", "green"}
    for title, rows in want.items():
        assert got[title].shape == rows.shape
        assert np.abs(got[title] - rows).max() < 2e-3, title  # float16 rows: a unit or two apart
    # the same moments win a query in both stores
    tops = []
    for index in (torch_idx, onnx_idx):
        hits = t2v("search", "a red box", "--index", index, "--top-k", "3", "--json")
        assert hits.returncode == 0, hits.stderr
        tops.append([(r["title"], r["start"]) for r in json.loads(hits.stdout)["results"]])
    assert tops[0] == tops[1] and tops[0][0][0] == "red"


def test_an_unknown_frame_encoder_is_a_one_line_error(
    t2v: T2v, colour_videos: dict[str, Path], tmp_path: Path
) -> None:
    proc: subprocess.CompletedProcess[str] = t2v(
        "index", "add", colour_videos["red"], "--index", tmp_path / "idx", "--frame-encoder", "int8"
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "--frame-encoder must be one of torch, onnx-fp32" in lines[0]
    assert not (tmp_path / "idx").exists()  # nothing written


def test_service_ingests_with_onnx_frames_and_falls_back_to_torch(
    colour_videos: dict[str, Path], tmp_path: Path
) -> None:
    root = colour_videos["red"].parent
    runs = {
        "onnx": server_settings(tmp_path / "onnx", root, frame_encoder="onnx-fp32"),
        # a file where the graph directory should be: no export, torch encodes instead
        "blocked": server_settings(
            tmp_path / "blocked", root, frame_encoder="onnx-fp32", frame_graph_dir=str(tmp_path / "file")
        ),
    }
    (tmp_path / "file").write_text("not a directory")
    bodies = {}
    for name, settings in runs.items():
        (tmp_path / name).mkdir()
        srv = Server(tmp_path / name, settings).start()
        try:
            with srv.client() as client:
                paths = [str(colour_videos[c]) for c in ("red", "blue")]
                job = client.post("/v1/ingest", json={"paths": paths})
                assert wait_job(client, job.json()["id"])["counts"].get("done") == 2
                bodies[name] = client.post("/v1/search", json={"query": "a red box", "top_k": 1}).json()
        finally:
            srv.stop()
        log = srv.log.read_text()
        if name == "onnx":
            # default graph dir: the service's <var_dir>/onnx, beside its query graphs
            assert list((Path(settings["var_dir"]) / "onnx").glob("frames-*.onnx"))
            assert "unavailable" not in log
        else:
            assert "frame_encoder onnx-fp32 unavailable" in log and "encoded with torch" in log
            assert (tmp_path / "file").read_text() == "not a directory"
    assert bodies["onnx"]["results"][0]["title"] == bodies["blocked"]["results"][0]["title"] == "red"
