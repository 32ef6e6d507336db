"""The temporal branch: order reaches the video set, identity at init, old models and stores unchanged."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from model import CheckpointError, ConfigError, T2VConfig, T2VParser, create_model, get_config, model_identity
from model.checkpoint import check_compatible, save_checkpoint
from model.temporal import TemporalBranch

DEMO = Path(__file__).resolve().parents[2] / "demo" / "t2v-demo.pt"


def _pair(temporal_layers: int = 2) -> tuple[T2VParser, T2VParser]:
    """The tiny model without and with the branch, from the same seed."""
    base = get_config("t2v-tiny")
    torch.manual_seed(0)
    off = create_model(base)
    torch.manual_seed(0)
    on = create_model(base.replace(temporal_layers=temporal_layers, temporal_heads=4))
    return off, on


def _train_the_branch(model: T2VParser) -> None:
    """Stand-in for training: a non-zero output projection (zero-init makes it the identity)."""
    assert model.visual_temporal is not None
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        out = model.visual_temporal.out
        out.weight.copy_(torch.randn(out.weight.shape, generator=g) * 0.5)


def _feats(model: T2VParser, batch: int = 2) -> torch.Tensor:
    g = torch.Generator().manual_seed(4)
    return torch.randn(batch, model.config.frames, model.dim, generator=g)  # (B, T, D)


def test_identity_at_init_and_same_other_weights() -> None:
    off, on = _pair()
    # built last: every other weight is what the model without the branch gets from the seed
    on_state = on.state_dict()
    for key, value in off.state_dict().items():
        assert torch.equal(value, on_state[key]), key
    extra = set(on_state) - set(off.state_dict())
    assert extra and all(k.startswith("visual_temporal.") for k in extra)
    feats = _feats(off)
    with torch.no_grad():
        assert torch.equal(
            off.video_sets_from_features(feats).vectors, on.video_sets_from_features(feats).vectors
        )


def test_reversing_frames_changes_the_set_only_with_the_branch(frames: torch.Tensor) -> None:
    off, on = _pair()
    _train_the_branch(on)
    t = off.config.frames
    with torch.no_grad():
        for model, ordered in ((off, False), (on, True)):
            fwd = model.encode_videos(frames[:2])
            rev = model.encode_videos(frames[:2].flip(1))
            assert fwd.views is not None and rev.views is not None
            # the frame rows, re-reversed, and the K views
            same_frames = torch.allclose(fwd.vectors[:, :t], rev.vectors[:, :t].flip(1), atol=1e-5)
            same_views = torch.allclose(fwd.vectors[:, t:], rev.vectors[:, t:], atol=1e-5)
            if ordered:
                assert not same_frames and not same_views
            else:  # without the branch the frames are a set: reversal only permutes rows
                assert same_frames and same_views


def test_shapes_tiny_and_vit_b_width() -> None:
    _, on = _pair()
    feats = _feats(on, batch=3)
    with torch.no_grad():
        out = on.video_sets_from_features(feats)
    t, k, d = on.config.frames, on.config.num_tokens, on.dim
    assert out.vectors.shape == (3, t + k, d)
    assert out.views_plus is not None and out.views_plus.shape == (3, k, d)
    assert torch.allclose(out.vectors.norm(dim=-1), torch.ones(3, t + k), atol=1e-5)
    assert on.num_video_vectors == t + k
    # the ViT-B width (D = 512, 8 heads), without building a ViT-B
    branch = TemporalBranch(512, 12, 2, 8)
    x = torch.randn(2, 12, 512)
    assert torch.equal(branch(x), x)
    with pytest.raises(ValueError, match="frames"):
        branch(torch.randn(2, 8, 512))
    with pytest.raises(ValueError, match="heads"):
        TemporalBranch(64, 12, 2, 5)


def test_text_side_untouched() -> None:
    off, on = _pair()
    _train_the_branch(on)
    texts = ["a red circle moving left", "a cat"]
    with torch.no_grad():
        a, b = off.encode_texts(texts), on.encode_texts(texts)
    assert torch.equal(a.vectors, b.vectors) and torch.equal(a.mask, b.mask)
    on.drop_visual()  # the service's text-only model holds no video-side weights
    assert on.visual_temporal is None
    assert not any(k.startswith("visual_temporal") for k in on.state_dict())


def test_branch_is_trained(frames: torch.Tensor) -> None:
    from model import t2v_loss

    _, on = _pair()
    on.train()
    video = on.encode_videos(frames)
    text = on.encode_texts(["a", "b c", "d e f"])
    loss, _ = t2v_loss(on.score(text, video.vectors), text.views_plus, video.views_plus, 0.08)
    loss.backward()
    assert on.visual_temporal is not None
    grad = on.visual_temporal.out.weight.grad  # zero-init: the output projection moves first
    assert grad is not None and grad.abs().sum() > 0
    _, new = on.param_groups()
    assert any(p is on.visual_temporal.out.weight for p in new)  # 10x learning rate, as STAN


def test_config_identity_unchanged_without_the_branch() -> None:
    cfg = get_config("t2v-tiny")
    assert "temporal_layers" not in cfg.to_dict() and "temporal_heads" not in cfg.to_dict()
    assert cfg.to_dict(full=True)["temporal_layers"] == 0
    assert T2VConfig.from_dict(cfg.to_dict()) == cfg
    on = get_config("t2v-demo-temporal")
    assert on.to_dict()["temporal_layers"] == 2 and T2VConfig.from_dict(on.to_dict(), name=on.name) == on
    with pytest.raises(CheckpointError, match="temporal_layers"):
        check_compatible(on, get_config("t2v-demo"), "x.pt")
    with pytest.raises(ConfigError, match="temporal"):
        get_config("t2v-tiny-zeroshot").replace(temporal_layers=2)


def test_a_checkpoint_without_temporal_branch_keeps_its_identity(tmp_path: Path) -> None:
    """Checkpoints written before the temporal branch existed (e.g. the previous demo model,
    config t2v-demo) load unchanged: same identity keys, same video sets in the temporal config."""
    torch.manual_seed(0)
    path = tmp_path / "plain.pt"
    cfg = get_config("t2v-demo")
    save_checkpoint(path, cfg, create_model(cfg).state_dict())
    plain = create_model(checkpoint=path)
    assert plain.visual_temporal is None
    ident = model_identity(plain)
    assert set(ident["config"]) == {
        "backbone", "pretrained", "mode", "frames", "num_tokens", "decoder_layers", "decoder_heads",
        "tau", "plus", "pre_norm", "diversity_weight", "name",
    }  # fmt: skip
    # the same weights in the temporal demo config compute exactly the same video sets
    torch.manual_seed(0)
    on = create_model("t2v-demo-temporal")
    missing = on.load_state_dict(plain.state_dict(), strict=False).missing_keys
    assert missing and all(k.startswith("visual_temporal.") for k in missing)
    s = plain.backbone.preprocess.size
    frames = torch.randn(2, plain.config.frames, 3, s, s, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        assert torch.equal(plain.encode_videos(frames).vectors, on.encode_videos(frames).vectors)


@pytest.mark.skipif(not DEMO.is_file(), reason="demo checkpoint not present")
def test_the_demo_model_has_its_temporal_branch() -> None:
    demo = create_model(checkpoint=DEMO)
    assert demo.visual_temporal is not None
    assert model_identity(demo)["config"]["temporal_layers"] == demo.config.temporal_layers > 0


def test_store_identity_of_text_only_model_matches() -> None:
    from indexer.store import store_identity

    _, on = _pair()  # random init: the store fingerprints the text-side weights
    ident = store_identity(on)
    assert ident["config"]["temporal_layers"] == 2
    on.drop_visual()
    assert store_identity(on) == ident


def test_frame_vectors_are_what_gets_stored() -> None:
    _, on = _pair()
    _train_the_branch(on)
    feats = _feats(on)
    with torch.no_grad():
        out = on.video_sets_from_features(feats)
        temporal = on.frame_vectors(feats)
    assert not torch.allclose(temporal, feats)
    assert torch.allclose(out.vectors[:, : on.config.frames], F.normalize(temporal, dim=-1), atol=1e-6)


def test_window_limits_what_a_frame_sees() -> None:
    """temporal_window w: frame i's output depends only on frames i-w..i+w (per layer), so with one
    layer, changing frame 0 leaves frames w+1.. unchanged; without a window every frame moves."""
    dim, frames = 32, 8
    outputs = {}
    for window in (0, 2):
        torch.manual_seed(0)
        branch = TemporalBranch(dim, frames, layers=1, heads=4, window=window).eval()
        with torch.no_grad():
            branch.out.weight.copy_(torch.randn(dim, dim) * 0.5)  # trained: not the identity
            x = torch.randn(1, frames, dim)
            y = x.clone()
            y[0, 0] += torch.randn(dim)  # change the first frame only (not a constant: LayerNorm removes one)
            outputs[window] = (branch(x) - x, branch(y) - y)  # (1, T, D) each: the branch's residual
    local_x, local_y = outputs[2]
    assert torch.allclose(local_x[0, 3:], local_y[0, 3:], atol=1e-6)  # beyond the window: untouched
    assert not torch.allclose(local_x[0, 1:3], local_y[0, 1:3], atol=1e-6)  # within it: changed
    full_x, full_y = outputs[0]
    assert not torch.allclose(full_x[0, 3:], full_y[0, 3:], atol=1e-6)


def test_window_is_part_of_the_identity_only_when_set() -> None:
    base = get_config("t2v-demo-temporal")
    assert "temporal_window" not in base.to_dict()
    local = base.replace(temporal_window=2)
    assert local.to_dict()["temporal_window"] == 2
    assert T2VConfig.from_dict(local.to_dict()).temporal_window == 2
    with pytest.raises(ConfigError):
        base.replace(temporal_window=-1)


def test_temporal_rows_views_keeps_stored_frame_rows_per_frame(frames: torch.Tensor) -> None:
    """temporal_rows "views": the stored frame rows are the image tower's (reversing the clip only
    permutes them), while the K views still see the order (they change under reversal)."""
    base = get_config("t2v-tiny").replace(temporal_layers=2, temporal_heads=4)
    torch.manual_seed(0)
    model = create_model(base.replace(temporal_rows="views"))
    _train_the_branch(model)
    t = base.frames
    with torch.no_grad():
        feats = model.backbone.encode_frames(frames[:2]).float()  # (B, T, D)
        fwd = model.encode_videos(frames[:2])
        rev = model.encode_videos(frames[:2].flip(1))
    assert torch.allclose(fwd.vectors[:, :t], F.normalize(feats, dim=-1), atol=1e-5)
    assert torch.allclose(fwd.vectors[:, :t], rev.vectors[:, :t].flip(1), atol=1e-5)
    assert not torch.allclose(fwd.vectors[:, t:], rev.vectors[:, t:], atol=1e-5)


def test_temporal_rows_is_part_of_the_identity_only_when_set() -> None:
    base = get_config("t2v-demo-temporal")
    assert "temporal_rows" not in base.to_dict()
    views = get_config("t2v-demo-temporal-views")
    assert views.to_dict()["temporal_rows"] == "views"
    assert T2VConfig.from_dict(views.to_dict()).temporal_rows == "views"
    with pytest.raises(ConfigError):
        base.replace(temporal_rows="frames")
