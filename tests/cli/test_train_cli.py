"""`t2v train` / `t2v eval` as a user runs them: subprocesses, a kill mid-run, a resume."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from indexer.corpora.synthetic import generate_benchmark
from model import read_checkpoint
from tests import support
from tests.cli_forks import CliForks
from tests.support import T2v

ENV = support.cli_env(OMP_NUM_THREADS="1")


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return generate_benchmark(tmp_path_factory.mktemp("bench"), seed=1, n_train=6, n_val=2, n_test=3)


@pytest.fixture(scope="module")
def train_config(bench: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cfg")
    cfg = {
        "model": "t2v-demo",
        "train": str(bench["train"]),
        "steps": 10,
        "batch_size": 4,
        "lr_backbone": 1e-3,
        "lr_new": 1e-3,
        "warmup_steps": 2,
        "checkpoint_every": 2,
        "log_every": 1,
        "threads": 1,
        "workers": 1,
        "cache_dir": str(root / "cache"),
    }
    path = root / "train.json"
    path.write_text(json.dumps(cfg))
    return path


def _state_step(path: Path) -> int:
    return int(torch.load(path, map_location="cpu", weights_only=False)["step"])


@pytest.mark.slow  # two training runs, a kill, a resume, an eval
def test_resume_after_kill_gives_the_same_model(
    train_config: Path, tmp_path: Path, t2v: T2v, cli_forks: CliForks
) -> None:
    full = t2v("train", "-c", train_config, "--out-dir", tmp_path / "full", env=ENV)
    assert full.returncode == 0, full.stderr
    assert "model checkpoint" in full.stdout
    log = [json.loads(line) for line in (tmp_path / "full" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == list(range(1, 11))
    assert all(r["clips_per_s"] > 0 and r["loss"] > 0 for r in log)
    curves = tmp_path / "full" / "training-curves.png"  # beside model.pt (issue #10)
    assert f"training curves: {curves}" in full.stdout
    with Image.open(curves) as img:
        assert img.format == "PNG" and img.size == (600, 400)
        assert np.asarray(img.convert("L"), dtype=np.float32).std() > 10  # lines drawn, not blank

    run = tmp_path / "killed"
    proc = cli_forks.start(["train", "-c", str(train_config), "--out-dir", str(run)], ENV)
    state = run / "state.pt"
    deadline = time.monotonic() + 120
    while not state.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)  # no chance to clean up: the state on disk must be usable
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "training finished before it could be killed"
    killed_at = _state_step(state)
    killed_state = torch.load(state, map_location="cpu", weights_only=False)["model"]
    assert 2 <= killed_at < 10
    assert not (run / "model.pt").exists()

    exported = tmp_path / "export" / "model.pt"
    resumed = t2v("train", "-c", train_config, "--out-dir", run, "--export", exported, env=ENV)
    assert resumed.returncode == 0, resumed.stderr
    assert exported.read_bytes() == (run / "model.pt").read_bytes()
    assert f"resuming {run} at step {killed_at}/10" in resumed.stderr
    cfg_a, _, sha_full = read_checkpoint(tmp_path / "full" / "model.pt")
    _, _, sha_resumed = read_checkpoint(run / "model.pt")
    assert sha_resumed == sha_full  # bit-identical to the uninterrupted run
    assert cfg_a.name == "t2v-demo"

    # training moved the weights after the kill point (so the equality above is not vacuous)
    _, final_state, _ = read_checkpoint(run / "model.pt")
    assert any(not torch.equal(killed_state[k], final_state[k]) for k in final_state)

    # eval of the trained model: table on stdout, metrics per caption kind in the JSON
    out = tmp_path / "eval.json"
    bench_test = Path(json.loads(train_config.read_text())["train"]).with_name("test.jsonl")
    ev = t2v("eval", bench_test, "--checkpoint", tmp_path / "full" / "model.pt", "--out", out, env=ENV)
    assert ev.returncode == 0, ev.stderr
    assert "partial" in ev.stdout and "t2v   R@1" in ev.stdout
    res = json.loads(out.read_text())
    assert set(res["results"]) == {"all", "partial", "full"}
    assert res["results"]["full"]["queries"] == 3 and res["results"]["all"]["clips"] == 3
    assert 0 <= res["results"]["partial"]["t2v"]["R@1"] <= 100
    assert res["model"]["checkpoint_sha256"] == sha_full


def test_missing_training_data_is_a_clear_error(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from service.cli import app

    args = ["train", "--train", str(tmp_path / "missing.jsonl"), "--out-dir", str(tmp_path / "x")]
    r = CliRunner().invoke(app, [*args, "--model", "t2v-demo"])
    assert r.exit_code == 2 and "error:" in r.output and "not found" in r.output
    assert "Traceback" not in r.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "no-such-model"], "unknown model config"),
        (["--batch-size", "1"], "batch_size"),
        (["--init-backbone", "/nonexistent.pt"], "not found"),
    ],
)
def test_bad_training_options(train_config: Path, tmp_path: Path, args: list[str], message: str) -> None:
    from typer.testing import CliRunner

    from service.cli import app

    r = CliRunner().invoke(app, ["train", "-c", str(train_config), "--out-dir", str(tmp_path), *args])
    assert r.exit_code == 2
    assert message in r.output


def test_eval_of_missing_data_set(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from service.cli import app

    r = CliRunner().invoke(app, ["eval", str(tmp_path / "missing.jsonl"), "--config", "t2v-demo"])
    assert r.exit_code == 2 and "not found" in r.output


@pytest.mark.slow  # a CLI subprocess that loads a model: ~10-20 s on 2 cores
def test_synth_renderer_2_writes_its_own_benchmark(tmp_path: Path, t2v: T2v) -> None:
    out = tmp_path / "s2"
    r = t2v("synth", out, "--renderer", "2", "--train", "2", "--val", "1", "--test", "1")
    assert r.returncode == 0, r.stderr
    assert [line.split(":")[0] for line in r.stdout.splitlines()] == ["train", "val", "test", "pretrain"]
    info = json.loads((out / "benchmark.json").read_text())
    assert info["renderer"] == 2
    test_rows = [json.loads(line) for line in (out / "test.jsonl").read_text().splitlines()]
    assert {row["kind"] for row in test_rows} == {"partial", "full"}
    assert all((out / row["video"]).is_file() for row in test_rows)
    bad = t2v("synth", tmp_path / "s3", "--renderer", "3")
    assert bad.returncode == 2 and not (tmp_path / "s3").exists()


@pytest.mark.slow  # a short training run as a subprocess
def test_train_with_time_reversed_pairs(train_config: Path, tmp_path: Path, t2v: T2v) -> None:
    """`reverse_pairs` in a user's config, with their own word list: the run trains and logs; a
    word list that does not exist or a share out of range is a one-line error, not a traceback."""
    lexicon = tmp_path / "words.json"
    lexicon.write_text(json.dumps({"swap": [["left", "right"], ["up", "down"]], "sequence": [", then "]}))
    cfg = json.loads(train_config.read_text()) | {"steps": 3, "reverse_pairs": 0.5}
    good = tmp_path / "rev.json"
    good.write_text(json.dumps(cfg | {"reversal_lexicon": str(lexicon)}))
    r = t2v("train", "-c", good, "--out-dir", tmp_path / "run", timeout=600, env=ENV)
    assert r.returncode == 0, r.stderr[-2000:]
    rows = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows] == [1, 2, 3] and all(np.isfinite(row["loss"]) for row in rows)
    assert read_checkpoint(tmp_path / "run" / "model.pt")[0].frames > 0
    for extra, message in (
        ({"reversal_lexicon": str(tmp_path / "missing.json")}, "lexicon"),
        ({"reverse_pairs": 2.0}, "reverse_pairs"),
    ):
        bad = tmp_path / "bad.json"
        bad.write_text(json.dumps(cfg | extra))
        r = t2v("train", "-c", bad, "--out-dir", tmp_path / "bad-run", timeout=600, env=ENV)
        assert r.returncode == 2 and message in r.stderr + r.stdout
        assert "Traceback" not in r.stderr
