"""Time reversal as a training signal: caption rewriting, reversed batch members, a real step."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from model import ConfigError, get_config
from model.time_reversal import ReversalLexicon
from model.train import TrainConfig, TrainData, Trainer, _batch


def test_reverse_swaps_directions_and_order() -> None:
    lex = ReversalLexicon.from_file()
    assert lex.reverse("a red square moving right on a gray background") == (
        "a red square moving left on a gray background"
    )
    assert lex.reverse("a red circle moving left, then a blue square moving up") == (
        "a blue square moving down, then a red circle moving right"
    )
    assert lex.reverse("A door opens then a man enters") == "A man leaves then a door closes"
    # whole words only, and a caption without direction or order is its own reversal
    assert lex.reverse("a bright lefty cat upstairs") == "a bright lefty cat upstairs"
    # reversing twice gives the caption back
    cap = "a green circle moving down, then a purple triangle moving left"
    assert lex.reverse(lex.reverse(cap)) == cap


def test_lexicon_errors_are_clear(tmp_path: Path) -> None:
    bad = tmp_path / "lex.json"
    bad.write_text(json.dumps({"swap": [["left", "right"], ["right", "up"]]}))
    with pytest.raises(ConfigError, match="listed twice"):
        ReversalLexicon.from_file(bad)
    bad.write_text(json.dumps({"swap": [["left"]]}))
    with pytest.raises(ConfigError, match="two words"):
        ReversalLexicon.from_file(bad)
    with pytest.raises(ConfigError, match="lexicon"):
        ReversalLexicon.from_file(tmp_path / "missing.json")
    bad.write_bytes(b"\xff\xfe\x00 not text")
    with pytest.raises(ConfigError, match="lexicon"):
        ReversalLexicon.from_file(bad)
    for shape in ([["left", "right"]], {"swap": {"left": "right"}}, {"swap": [], "sequence": "then"}):
        bad.write_text(json.dumps(shape))
        with pytest.raises(ConfigError, match="lexicon"):
            ReversalLexicon.from_file(bad)
    with pytest.raises(ConfigError, match="reverse_pairs"):
        TrainConfig(train="x", reverse_pairs=1.5)


def _moving(n: int) -> TrainData:
    rng = np.random.default_rng(0)
    moves = ("left", "right", "up", "down", "around")  # "around" has no reversal
    captions = [
        f"a {c} circle moving {moves[i % 5]}" for i, c in enumerate(["red", "green", "blue", "pink"] * 5)
    ]
    frames = rng.integers(0, 255, (n, 4, 1, 4, 4, 3), dtype=np.uint8)
    return TrainData(frames, captions[:n], list(range(n)))


def test_batch_appends_reversed_clips_of_reversible_captions() -> None:
    data = _moving(20)
    by_clip, eligible = [[i] for i in range(20)], np.arange(20)
    lex = ReversalLexicon.from_file()
    reversible = np.array([lex.reverse(c) != c for c in data.captions])
    plain = TrainConfig(train="x", batch_size=8)
    rev_cfg = TrainConfig(train="x", batch_size=8, reverse_pairs=0.5)
    for step in range(10):
        f_plain, caps_plain, none = _batch(data, by_clip, eligible, plain, step, None, reversible)
        frames, caps, rev = _batch(data, by_clip, eligible, rev_cfg, step, None, reversible)
        assert none == [] and caps == caps_plain  # same clips and captions; reversal only adds
        assert 0 < len(rev) <= 4 and frames.shape[0] == 8 + len(rev)
        assert np.array_equal(frames[:8], f_plain)
        for j, i in enumerate(rev):
            assert reversible[caps[i]]  # "moving around" is never reversed
            assert np.array_equal(frames[8 + j], f_plain[i, ::-1])  # the same frames, backwards


def test_training_step_with_reversed_pairs(tmp_path: Path) -> None:
    mcfg = get_config("t2v-demo")
    cfg = TrainConfig(
        train="x", out_dir=str(tmp_path), batch_size=4, lr_backbone=1e-3, steps=2, reverse_pairs=0.5
    )
    tr = Trainer(cfg, mcfg, "cpu")
    rng = np.random.default_rng(1)
    size = tr.model.backbone.preprocess.size
    caps = ["a red circle moving left", "a blue square moving up", "a dog", "a cat moving right"]
    tr.set_data(
        TrainData(
            rng.integers(0, 255, (4, mcfg.frames, 1, size, size, 3), dtype=np.uint8), caps, [0, 1, 2, 3]
        )
    )
    assert tr.reversible is not None and tr.reversible.tolist() == [True, True, False, True]
    first = tr.train_step()["loss"]
    assert np.isfinite(first) and tr.train_step()["loss"] != first
