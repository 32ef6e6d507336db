"""bench/eval_model.py as a user runs it on a tiny synthetic benchmark, and its span arithmetic."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path
from types import ModuleType

import pytest

from model.time_reversal import ReversalLexicon
from tests.cli_forks import CliForks
from tests.support import REPO, load_bench, tiny_checkpoint

SCRIPT = REPO / "bench" / "eval_model.py"


def load_script() -> ModuleType:
    return load_bench("eval_model")


def test_span_match_arithmetic() -> None:
    span_match = load_script().span_match
    # window [1, 3] vs scene [2, 5]: 1 s shared of 4 s covered, midpoint 2.0 on the scene's edge
    assert span_match(1.0, 3.0, 2.0, 5.0) == (True, True, 0.25)
    # inside the scene: IoU = window / scene
    assert span_match(3.0, 5.0, 2.5, 6.5) == (True, True, 0.5)
    # overlapping but the midpoint outside
    over, mid, iou = span_match(0.0, 2.0, 1.5, 4.0)
    assert (over, mid) == (True, False) and iou == pytest.approx(0.5 / 4.0)
    # touching at one instant is no overlap; disjoint spans have IoU 0
    assert span_match(0.0, 2.0, 2.0, 4.0)[0] is False
    assert span_match(0.0, 1.0, 3.0, 4.0) == (False, False, 0.0)
    assert span_match(2.0, 4.0, 2.0, 4.0) == (True, True, 1.0)


def meanp_checkpoint(path: Path) -> Path:
    import torch

    from model import create_model, save_checkpoint

    torch.manual_seed(0)
    cfg = replace(create_model("t2v-tiny").config, mode="meanp", num_tokens=0, name="tiny-meanp")
    m = create_model(cfg)
    save_checkpoint(path, m.config, m.state_dict())
    return path


def run(forks: CliForks, ckpt: Path, manifests: list[Path], out: Path, work: Path) -> dict:
    cmd = [str(SCRIPT), "--checkpoint", str(ckpt), "--device", "cpu", "--out", str(out),
           "--work", str(work)]  # fmt: skip
    for m in manifests:
        cmd += ["--manifest", str(m)]
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    proc = forks.run(cmd, env, timeout=300, prog="python")  # `python bench/eval_model.py ...`
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "moments (partial, right video)" in proc.stdout
    return json.loads(out.read_text())


def kinds(manifest: Path) -> tuple[int, int]:
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    return sum(r["kind"] == "partial" for r in rows), sum(r["kind"] == "full" for r in rows)


@pytest.mark.slow
def test_eval_model_on_a_tiny_benchmark(tmp_path: Path, cli_forks: CliForks) -> None:
    from indexer.corpora.synthetic import generate_benchmark

    bench = generate_benchmark(tmp_path / "b", seed=0, n_train=2, n_val=1, n_test=2, workers=1)
    test, val = bench["test"], bench["val"]
    res = run(cli_forks, tiny_checkpoint(tmp_path / "tiny.pt"), [test], tmp_path / "r.json", tmp_path / "w")
    assert res["frames"] == 12 and res["views"] == 8 and (res["window"], res["stride"]) == (2.0, 1.0)
    (m,) = res["manifests"]
    n_partial, n_full = kinds(test)
    assert m["videos"] == 2 and m["clips"] > 2 and m["note"] == ""
    mom = m["moments"]
    assert (mom["count"], mom["full_count"]) == (n_partial, n_full)
    for key in ("overlap", "midpoint", "mean_iou", "global_overlap", "full_video_top1"):
        assert 0.0 <= mom[key] <= 1.0, key
    assert mom["midpoint"] <= mom["overlap"]  # a midpoint inside the scene implies overlap
    assert (m["rows"]["partial"]["count"], m["rows"]["full"]["count"]) == (n_partial, n_full)
    for kind in ("partial", "full"):
        for key in ("v2t_video_view", "t2v_video_view", "text_view"):
            assert 0.0 <= m["rows"][kind][key] <= 1.0, (kind, key)
    # arrow of time: every caption that reversal rewrites is measured once against its twin
    lexicon = ReversalLexicon.from_file()
    rows = [json.loads(line) for line in test.read_text().splitlines()]
    for kind in ("partial", "full"):
        expected = sum(r["kind"] == kind and lexicon.reverse(r["caption"]) != r["caption"] for r in rows)
        assert expected > 0 and m["arrow_of_time"][kind]["count"] == expected
        assert 0.0 <= m["arrow_of_time"][kind]["right"] <= 1.0
    scenes = m["scenes"]
    assert scenes["count"] == n_partial and 0.0 <= scenes["r1"] <= 1.0
    assert scenes["arrow"]["count"] == m["arrow_of_time"]["partial"]["count"]

    # meanP has no views: every share is 0 and said so; two manifests, one entry each
    res = run(
        cli_forks, meanp_checkpoint(tmp_path / "meanp.pt"), [test, val], tmp_path / "r2.json", tmp_path / "w"
    )
    assert res["views"] == 0 and [m["manifest"] for m in res["manifests"]] == [str(test), str(val)]
    for m, manifest in zip(res["manifests"], (test, val), strict=True):
        assert m["note"] == "no views" and m["moments"]["count"] == kinds(manifest)[0]
        assert all(
            v == 0.0 for kind in ("partial", "full") for k, v in m["rows"][kind].items() if k != "count"
        )
