"""Training internals: schedule, optimiser groups, batches, backbone initialisation."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from model import ConfigError, create_model, get_config, save_checkpoint
from model.train import TrainConfig, TrainData, Trainer, build_optimizer, load_backbone, lr_factor


def test_lr_warmup_then_cosine() -> None:
    assert lr_factor(0, warmup=4, total=20) == pytest.approx(0.25)
    assert lr_factor(3, warmup=4, total=20) == pytest.approx(1.0)
    assert lr_factor(4, warmup=4, total=20) == pytest.approx(1.0)
    assert lr_factor(12, warmup=4, total=20) == pytest.approx(0.5)  # half way through the cosine
    assert lr_factor(20, warmup=4, total=20) == pytest.approx(0.0, abs=1e-12)
    mid = lr_factor(8, warmup=4, total=20)
    assert mid == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.25)))


def test_optimizer_groups_follow_the_spec() -> None:
    model = create_model("t2v-demo")
    cfg = TrainConfig(train="x", lr_backbone=1e-6)  # lr_new defaults to 10x
    opt = build_optimizer(model, cfg)
    names = {id(p): n for n, p in model.named_parameters()}
    seen = set()
    for g in opt.param_groups:
        assert g["betas"] == (0.9, 0.98)
        for p in g["params"]:
            n = names[id(p)]
            seen.add(n)
            assert g["lr"] == pytest.approx(1e-6 if n.startswith("backbone.") else 1e-5)
            is_norm_or_bias = p.ndim < 2 or n.endswith(".bias") or "ln_" in n
            assert g["weight_decay"] == (0.0 if is_norm_or_bias else 0.2), n
    assert seen == {n for n, p in model.named_parameters() if p.requires_grad}


def _data(model_frames: int, size: int, n: int = 6) -> TrainData:
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (n, model_frames, 3, size, size, 3), dtype=np.uint8)
    captions = [f"a {c} circle moving left" for c in ("red", "green", "blue", "yellow", "purple", "white")][
        :n
    ]
    return TrainData(frames, captions, list(range(n)))


def test_same_seed_same_steps(tmp_path: Path) -> None:
    mcfg = get_config("t2v-demo")
    losses = []
    for run in ("a", "b"):
        cfg = TrainConfig(train="x", out_dir=str(tmp_path / run), batch_size=4, lr_backbone=1e-3, steps=3)
        tr = Trainer(cfg, mcfg, "cpu")
        tr.set_data(_data(mcfg.frames, tr.model.backbone.preprocess.size))
        losses.append([tr.train_step()["loss"] for _ in range(3)])
    assert losses[0] == losses[1]
    assert len(set(losses[0])) == 3  # the weights do change between steps


def test_trainer_refuses_zeroshot_and_wrong_frames(tmp_path: Path) -> None:
    cfg = TrainConfig(train="x", out_dir=str(tmp_path))
    with pytest.raises(ConfigError, match="zeroshot"):
        Trainer(cfg, get_config("t2v-tiny-zeroshot"), "cpu")
    tr = Trainer(cfg, get_config("t2v-demo"), "cpu")
    with pytest.raises(ConfigError, match="frames per clip"):
        tr.set_data(_data(5, tr.model.backbone.preprocess.size))


def test_load_backbone_copies_only_the_backbone(tmp_path: Path) -> None:
    torch.manual_seed(1)
    src = create_model("t2v-demo-meanp")
    path = tmp_path / "src.pt"
    save_checkpoint(path, src.config, src.state_dict())
    torch.manual_seed(2)
    dst = create_model("t2v-demo")
    before = {k: v.clone() for k, v in dst.state_dict().items() if not k.startswith("backbone.")}
    load_backbone(dst, path)
    for k, v in src.backbone.state_dict().items():
        assert torch.equal(dst.backbone.state_dict()[k], v)
    for k, v in before.items():
        assert torch.equal(dst.state_dict()[k], v)
    with pytest.raises(ConfigError, match="backbone"):
        load_backbone(create_model("t2v-tiny"), path)


def test_load_backbone_brings_a_matching_temporal_branch(tmp_path: Path) -> None:
    """Stage 1 (meanP + temporal) -> stage 2: the temporal branch comes along when shapes match."""
    demo = get_config("t2v-demo-temporal")
    torch.manual_seed(1)
    src = create_model(get_config("t2v-demo-meanp").replace(temporal_layers=2, temporal_heads=4, frames=12))
    assert src.visual_temporal is not None
    with torch.no_grad():
        src.visual_temporal.out.weight.normal_()  # trained: no longer the zero-init identity
    path = tmp_path / "stage1.pt"
    save_checkpoint(path, src.config, src.state_dict())
    torch.manual_seed(2)
    dst = create_model(demo)
    load_backbone(dst, path)
    assert dst.visual_temporal is not None
    for k, v in src.visual_temporal.state_dict().items():
        assert torch.equal(dst.visual_temporal.state_dict()[k], v), k
    # another frame count: the branch stays at its (identity) initialisation
    torch.manual_seed(2)
    other = create_model(demo.replace(frames=8))
    load_backbone(other, path)
    assert other.visual_temporal is not None
    assert not other.visual_temporal.out.weight.any()
    # a source without a branch leaves it alone too
    plain = tmp_path / "plain.pt"
    meanp = create_model("t2v-demo-meanp")
    save_checkpoint(plain, meanp.config, meanp.state_dict())
    again = create_model(demo)
    load_backbone(again, plain)
    assert again.visual_temporal is not None and not again.visual_temporal.out.weight.any()


def test_caption_neighbours_are_the_one_word_differences() -> None:
    from model.hard_negatives import caption_neighbours

    caps = [
        ["a red circle moving left"],
        ["a red circle moving right"],  # motion differs
        ["a blue square moving up on a white background"],
        ["a red circle moving left"],  # same words as clip 0: not a negative
        [],  # no captions: neither has nor is a neighbour
    ]
    nb = caption_neighbours(caps, keep=2)
    assert nb[0][0] == 1 and 3 not in nb[0].tolist() and 4 not in nb[0].tolist()
    assert nb[1][0] in (0, 3)
    assert nb[4].size == 0


def test_hard_negative_batches_pair_close_captions() -> None:
    from model.hard_negatives import caption_neighbours
    from model.train import _batch

    rng = np.random.default_rng(0)
    # 40 clips; a clip's closest others share all words but one (another motion, colour or shape)
    captions = [
        f"a {c} {s} moving {m}"
        for c in ("red", "green", "blue", "yellow", "purple")
        for s in ("circle", "square")
        for m in ("left", "right", "up", "down")
    ]
    n = len(captions)
    data = TrainData(rng.integers(0, 255, (n, 2, 1, 4, 4, 3), dtype=np.uint8), captions, list(range(n)))
    by_clip, eligible = [[i] for i in range(n)], np.arange(n)
    neighbours = caption_neighbours([[c] for c in captions], keep=4)
    plain = TrainConfig(train="x", batch_size=8)
    hard = TrainConfig(train="x", batch_size=8, hard_negatives=0.5)

    def close_pairs(clips: list[int]) -> int:
        return sum(1 for a in clips for b in clips if b in neighbours[a].tolist())

    counts = {"plain": 0, "hard": 0}
    for step in range(30):
        _, caps_plain, _ = _batch(data, by_clip, eligible, plain, step)
        _, caps_hard, _ = _batch(data, by_clip, eligible, hard, step, neighbours)
        assert len(set(caps_hard)) == 8  # still distinct clips
        # the 4 drawn clips are the plain batch's first 4; each hard one neighbours one of them
        assert caps_hard[:4] == caps_plain[:4]
        assert all(any(c in neighbours[a].tolist() for a in caps_hard[:4]) for c in caps_hard[4:])
        # hard_negatives 0 keeps the old batches (same random draws)
        assert _batch(data, by_clip, eligible, plain, step, None)[1] == caps_plain
        counts["plain"] += close_pairs(caps_plain)
        counts["hard"] += close_pairs(caps_hard)
    assert counts["hard"] > 1.5 * counts["plain"]  # measured: ~2x
    with pytest.raises(ConfigError, match="hard_negatives"):
        TrainConfig(train="x", hard_negatives=0.9)
