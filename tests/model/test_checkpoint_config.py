"""Configs as data, checkpoints with config + hash, and fast offline failures for weights."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from model import (
    CheckpointError,
    ConfigError,
    T2VParser,
    create_model,
    get_config,
    list_models,
    read_checkpoint,
    save_checkpoint,
)


def test_registry_lists_configs() -> None:
    names = list_models()
    assert {"t2v-tiny", "t2v-tiny-zeroshot", "t2v-vit-b-32", "t2v-vit-b-16"} <= set(names)
    cfg = get_config("t2v-vit-b-16")
    assert (cfg.backbone, cfg.frames, cfg.num_tokens, cfg.decoder_layers) == ("ViT-B-16", 12, 8, 8)


def test_bad_configs_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown model config"):
        get_config("no-such-model")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"backbone": "t2v-tiny-clip", "frames": 12, "colour": "red"}))
    with pytest.raises(ConfigError, match="colour"):
        get_config(bad)
    bad.write_text(json.dumps({"backbone": "t2v-tiny-clip", "mode": "zeroshot", "num_tokens": 4}))
    with pytest.raises(ConfigError, match="num_tokens = 0"):
        get_config(bad)
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match="invalid JSON"):
        get_config(bad)


def test_checkpoint_round_trip_is_bit_identical(
    tmp_path: Path, tiny: T2VParser, frames: torch.Tensor
) -> None:
    path = tmp_path / "ckpt.pt"
    digest = save_checkpoint(path, tiny.config, tiny.state_dict(), extra={"step": 3})
    loaded = create_model(checkpoint=path)
    assert loaded.checkpoint_sha256 == digest
    with torch.no_grad():
        a = tiny.encode_videos(frames).vectors, tiny.encode_texts(["a red circle"]).vectors
        b = loaded.encode_videos(frames).vectors, loaded.encode_texts(["a red circle"]).vectors
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    cfg, _, digest2 = read_checkpoint(path)
    assert cfg == tiny.config and digest2 == digest


def test_checkpoint_config_mismatch_is_clear(tmp_path: Path, tiny: T2VParser) -> None:
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, tiny.config, tiny.state_dict())
    other = tiny.config.replace(num_tokens=4)
    with pytest.raises(CheckpointError, match="num_tokens: config has 4, checkpoint has 8"):
        create_model(other, checkpoint=path)


def test_corrupt_and_missing_checkpoints(tmp_path: Path, tiny: T2VParser) -> None:
    with pytest.raises(CheckpointError, match="not found"):
        create_model(checkpoint=tmp_path / "missing.pt")
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, tiny.config, tiny.state_dict())
    payload = torch.load(path, weights_only=True)
    payload["state_dict"]["query_tokens"] += 1  # content changed, hash not
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="corrupt"):
        create_model(checkpoint=path)
    path.write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="cannot be read"):
        create_model(checkpoint=path)


def _run_missing_weights(env_extra: dict[str, str], config: str) -> tuple[float, subprocess.CompletedProcess]:
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}
    env.update(env_extra)
    env["HF_HOME"] = env["XDG_CACHE_HOME"] = "/nonexistent-cache-dir"
    # time only the model creation, inside the child (imports are not what is being tested)
    code = (
        "import sys, time\nfrom model import create_model\nt = time.monotonic()\n"
        f"try:\n    create_model({config!r})\nfinally:\n    print(time.monotonic() - t)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    return float(proc.stdout.strip().splitlines()[-1]), proc


@pytest.mark.slow  # a fresh interpreter per case
@pytest.mark.parametrize("env_extra", [{"HF_HUB_OFFLINE": "1"}, {}], ids=["hf-offline", "no-network"])
def test_missing_pretrained_weights_fail_fast(env_extra: dict[str, str]) -> None:
    elapsed, proc = _run_missing_weights(env_extra, "t2v-vit-b-32")
    assert proc.returncode != 0
    assert "WeightsNotFoundError" in proc.stderr
    assert "not in the local cache" in proc.stderr and "pretrained" in proc.stderr
    assert elapsed < 5, elapsed


def test_missing_local_weights_file(tmp_path: Path) -> None:
    cfg = get_config("t2v-tiny").replace(pretrained=str(tmp_path / "nope.pt"))
    from model import WeightsNotFoundError

    start = time.monotonic()
    with pytest.raises(WeightsNotFoundError, match="does not exist"):
        create_model(cfg)
    assert time.monotonic() - start < 5


def test_state_dict_lists_each_weight_once(tiny: T2VParser) -> None:
    state = tiny.state_dict()
    ptrs = [t.data_ptr() for t in state.values() if t.numel()]
    assert len(ptrs) == len(set(ptrs)), "a tensor is listed under two names"
    n_params = sum(p.numel() for p in tiny.parameters())
    assert sum(t.numel() for k, t in state.items() if "attn_mask" not in k) >= n_params
